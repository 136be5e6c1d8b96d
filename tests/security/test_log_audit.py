"""The suite-wide log audit (tests/log_audit.py) fails a session whose logs hold a secret, and names the test.

A pytest subprocess runs tests/security/log_leak_probe.py: one probe test logs the JWT secret, one logs a card
token, one logs an account number (which the project's redaction masks, so it is no leak).
"""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.security.log_leak_probe import TOKEN

ROOT = Path(__file__).resolve().parents[2]
PROBE = "tests/security/log_leak_probe.py"


def run_probe(tmp_path, *selection: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", PROBE, "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'probe'}",
         *selection],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "LOG_AUDIT_DIR": str(tmp_path)},
    )  # fmt: skip


def test_a_secret_in_the_logs_fails_the_session_and_names_the_test(tmp_path):
    result = run_probe(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "3 passed" in out  # every probe test passed: the audit alone failed the session
    assert f"LEAK JWT_SECRET …{settings.JWT_SECRET[-4:]} in the log of {PROBE}::test_logs_the_jwt_secret" in out
    assert f"LEAK card token …{TOKEN[-4:]} in the log of {PROBE}::test_logs_a_card_token" in out
    assert "2 found" in out
    # the report names the secret by kind and last four characters, never in full
    assert settings.JWT_SECRET not in out and TOKEN not in out


def test_a_masked_account_number_is_no_leak(tmp_path):
    result = run_probe(tmp_path, "-k", "account_number")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "0 found" in out
