"""The whole suite's logs hold no secret (pytest plugin, registered by tests/conftest.py).

Every log record of the session goes, through the project's own filters and JSON formatter (the production
pipeline of ``config.settings.base.LOGGING``), to ``var/test-logs/suite-<pid>.jsonl`` (or ``$LOG_AUDIT_DIR``),
each line stamped with the test that was running. The secrets are every value the suite itself handled: each bank
account number and card token saved (``post_save`` of the two models, plaintext as saved), each API key and
end-user JWT the fixtures made (``remember``), and the configured secrets (``SECRET_KEY``, ``HASH_KEY``,
``FIELD_ENCRYPTION_KEY``, the JWT and JPM webhook secrets). The logs of the processes the tests started
(``worker-*.log``, ``gunicorn-*.log`` under pytest's temporary directory) are read too.

At the end of the session every line is searched; a secret found fails the session (exit status 1) with the
test that logged it and the secret's kind and last four characters — never the secret itself. The file is kept
only when it holds a leak.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

MIN_LENGTH = 6  # shorter values (e.g. a 4-digit CVV) cannot be told apart from ordinary numbers in a log
# A short value without digits is a word (a sandbox's magic token "unknown", say) that logs use for other things.
WORD_LIKE_BELOW = 16
_DIGIT_RUNS = re.compile(r"\d+")
_WORDS = re.compile(r"[A-Za-z0-9_.~+/=-]+")
_NAMES = re.compile(r"[A-Za-z0-9_-]+")

_secrets: dict[str, str] = {}  # value -> kind
_current = {"test": "-"}


def remember(value: str | None, kind: str) -> None:
    """Record a secret the suite handled (the fixtures call this for API keys and JWTs)."""
    if not value or len(value) < MIN_LENGTH:
        return
    if len(value) < WORD_LIKE_BELOW and sum(c.isdigit() for c in value) < 4:
        return
    _secrets.setdefault(value, kind)


class _AuditHandler(logging.FileHandler):
    """Writes each record stamped with the running test; the stamp is removed again after the write, so that no
    other handler sees it (a parametrized test's id may hold a card number the test feeds the code)."""

    def emit(self, record: logging.LogRecord) -> None:
        record.test = _current["test"]
        try:
            super().emit(record)
        finally:
            del record.test


def _remember_saved(sender, instance, **kwargs) -> None:
    for field, kind in (("account_number", "account number"), ("transaction_reference_id", "card token"),
                        ("debit_transaction_reference_id", "card token")):
        value = getattr(instance, field, None)
        if isinstance(value, str):
            remember(value, kind)


def _remember_settings() -> None:
    from django.conf import settings

    for name in ("SECRET_KEY", "HASH_KEY", "JWT_SECRET", "JPM_WEBHOOK_SECRET"):
        remember(getattr(settings, name, ""), name)
    for key in getattr(settings, "FIELD_ENCRYPTION_KEY", []) or []:
        remember(key, "FIELD_ENCRYPTION_KEY")


def findings_in(text: str) -> list[str]:
    """The kinds (with last four characters) of the remembered secrets that occur in ``text``."""
    found = []
    candidates = {*_DIGIT_RUNS.findall(text), *_WORDS.findall(text), *_NAMES.findall(text)}
    for value in candidates & _secrets.keys():
        found.append(f"{_secrets[value]} …{value[-4:]}")
    for value, kind in _secrets.items():  # secrets that are not one word (a JWT secret with spaces, say)
        if not _WORDS.fullmatch(value) and value in text:
            found.append(f"{kind} …{value[-4:]}")
    return found


class LogAudit:
    def __init__(self, config: pytest.Config):
        self.config = config
        root = Path(config.rootpath)
        directory = Path(os.environ.get("LOG_AUDIT_DIR") or root / "var" / "test-logs")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"suite-{os.getpid()}.jsonl"
        self.handler: logging.Handler | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session):
        from django.db.models.signals import post_save

        from bank_accounts.models import BankAccount
        from cards.models import DebitCard
        from core.logging import JsonFormatter, RedactionFilter, RequestIdFilter

        handler = _AuditHandler(self.path, mode="w", encoding="utf-8")
        for log_filter in (RequestIdFilter(), RedactionFilter()):
            handler.addFilter(log_filter)
        handler.setFormatter(JsonFormatter())
        logging.getLogger().addHandler(handler)
        self.handler = handler
        for model in (BankAccount, DebitCard):
            post_save.connect(_remember_saved, sender=model, dispatch_uid=f"log-audit-{model.__name__}")
        _remember_settings()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        root = logging.getLogger()
        if self.handler is not None and self.handler not in root.handlers:
            # logging was configured again (Celery's setup_logging → dictConfig replaces the root's handlers)
            root.addHandler(self.handler)
        _current["test"] = item.nodeid
        try:
            return (yield)
        finally:
            _current["test"] = "-"

    def _process_logs(self) -> list[Path]:
        base = self.config._tmp_path_factory.getbasetemp() if hasattr(self.config, "_tmp_path_factory") else None
        if base is None or not Path(base).exists():
            return []
        return sorted(p for pattern in ("worker-*.log", "gunicorn-*.log") for p in Path(base).rglob(pattern))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self.handler is None:
            return
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        leaks: list[str] = []
        lines = 0
        for path in [self.path, *self._process_logs()]:
            if not path.exists():
                continue
            with open(path, encoding="utf-8", errors="replace") as log:
                for number, line in enumerate(log, 1):
                    lines += 1
                    for finding in findings_in(line):
                        test = re.search(r'"test": "([^"]*)"', line)
                        where = test.group(1) if test else f"{path.name}:{number}"
                        leaks.append(f"{finding} in the log of {where}")
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        summary = f"log audit: {lines} log lines, {len(_secrets)} secrets, {len(leaks)} found"
        if reporter:
            reporter.write_line(summary)
            for leak in leaks[:50]:
                reporter.write_line(f"  LEAK {leak}", red=True)
        if leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        else:
            self.path.unlink(missing_ok=True)  # kept only when it holds a leak


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LogAudit(config), "log-audit")
