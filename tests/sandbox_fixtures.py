"""The sandbox as a real process on a free port for the test session (``sandbox`` fixture).

Clients are pointed at it with short read timeouts (1.5 s) and the sandbox hangs "timeout" answers 3 s, so
timeouts are provoked for real and quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent
READ_TIMEOUT = 1.5
HANG_SECONDS = 3.0
WEBHOOK_SECRET = "test-jpm-webhook-secret"


def sandbox_settings(url: str, keys_dir: Path) -> dict:
    """The settings that point the service's clients at the sandbox (the test process overrides them; processes
    the tests start get them as environment variables: ``SandboxHandle.env``)."""
    return {
        "SANDBOX_URL": url,
        "USIO_BASE_URL": f"{url}/usio",
        "USIO_READ_TIMEOUT": READ_TIMEOUT,
        "JPM_BASE_URL": f"{url}/jpm",
        "JPM_TOKEN_URL": f"{url}/jpm/oauth2/token",
        "JPM_PRIVATE_KEY_PATH": str(keys_dir / "jpm-client-key.pem"),
        "JPM_READ_TIMEOUT": READ_TIMEOUT,
        "JPM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SLACK_WEBHOOK_URL": f"{url}/slack/webhook",
        "TRANSACTION_SERVICE_URL": f"{url}/transactions",
        "OUTBOUND_READ_TIMEOUT": READ_TIMEOUT,
    }


class SandboxHandle:
    """The running sandbox and its control API."""

    def __init__(self, url: str, keys_dir: Path, log_path: Path):
        self.url = url
        self.keys_dir = keys_dir
        self.log_path = log_path

    def control(self, method: str, path: str, json=None, **params):
        response = requests.request(method, f"{self.url}/_control/{path.lstrip('/')}", json=json, params=params,
                                    timeout=10)
        response.raise_for_status()
        return response.json()

    def env(self) -> dict[str, str]:
        """``sandbox_settings`` as environment variables, for worker and server processes."""
        return {name: str(value) for name, value in sandbox_settings(self.url, self.keys_dir).items()}

    def reset(self) -> None:
        self.control("POST", "reset")

    def advance(self, *, days: float = 0, seconds: float = 0) -> str:
        return self.control("POST", "clock/advance", {"days": days, "seconds": seconds})["now"]

    def fault(self, operation: str, mode: str, count: int = 1, delay: float = 0.0) -> None:
        self.control("POST", "faults", {"operation": operation, "mode": mode, "count": count, "delay": delay})

    def requests(self, service: str | None = None, operation: str | None = None) -> list[dict]:
        params = {k: v for k, v in {"service": service, "operation": operation}.items() if v}
        return self.control("GET", "requests", **params)["requests"]

    def wait_for_requests(self, operation: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
        """The logged requests of ``operation`` (``usio.SubmitCCVoid``, ``jpm.payment_status`` …) once there are
        ``count``, or those logged after ``timeout`` seconds: the sandbox logs a request as it answers, so a hung
        ("timeout") one appears only once its answer is sent."""
        deadline = time.monotonic() + timeout
        while True:
            logged = self.requests(operation=operation)
            if len(logged) >= count or time.monotonic() > deadline:
                return logged
            time.sleep(0.1)

    def received(self, service: str) -> list[dict]:
        return self.control("GET", f"{service}/received")["received"]

    def configure(self, **settings) -> dict:
        return self.control("PATCH", "config", settings)


def _wait_for_ready(proc: subprocess.Popen, log_path: Path, deadline: float = 30.0) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with {proc.returncode}:\n{log_path.read_text()}")
        for line in log_path.read_text().splitlines():
            if line.startswith("SANDBOX_READY "):
                return line.split(" ", 1)[1].strip()
        time.sleep(0.05)
    raise RuntimeError(f"sandbox not ready after {deadline}s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("sandbox")
    keys_dir, log_path = base / "keys", base / "sandbox.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", "0", "--keys-dir", str(keys_dir),
             "--hang-seconds", str(HANG_SECONDS), "--jpm-webhook-secret", WEBHOOK_SECRET],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        url = _wait_for_ready(proc, log_path)
        overrides = override_settings(**sandbox_settings(url, keys_dir))
        overrides.enable()
        try:
            yield SandboxHandle(url, keys_dir, log_path)
        finally:
            overrides.disable()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def sandbox(sandbox_server) -> SandboxHandle:
    """The session's sandbox, reset (ledger, clock, faults, request log, tokens) before the test."""
    from integrations.jpm import clear_token_cache

    sandbox_server.reset()
    clear_token_cache()  # the sandbox forgot the tokens it issued; the client must not reuse one
    return sandbox_server
