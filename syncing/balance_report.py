"""Balance reporting (SPEC §7.6, prod only): the Usio prefunding balance of every merchant account to Slack.

For each account of ``USIO_SYNC_ACCOUNTS`` (subscription, float_debit, float_credit, loan), in that order,
``usio_client(name).get_prefunding_balance()``. An account that cannot be read (any ``ProcessorError``: down,
timeout, refused, credentials, a malformed answer, not configured) is reported as failed with the kind of
failure — never skipped — and the others are still read. Two shapes:

- **daily** (13:00 UTC): a summary, one line per account and the total of the readable ones
  (``text`` for notifications + ``blocks`` for the channel);
- **hourly** (every hour): one condensed line.

Posted with ``slack_client().post_message``; a Slack failure raises (the ``default`` queue retries the whole
report, re-reading the balances, then dead-letters it). Nothing is written to the database.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorDeclined,
    ProcessorError,
    ProcessorProtocolError,
    ProcessorTimeout,
    ProcessorUnavailable,
)

logger = logging.getLogger(__name__)

MODES = ("daily", "hourly")


def _failure(exc: ProcessorError) -> str:
    """A short, secret-free description of why an account could not be read."""
    if isinstance(exc, ProcessorUnavailable):
        return "unavailable"
    if isinstance(exc, ProcessorTimeout):
        return "timed out"
    if isinstance(exc, ProcessorDeclined):
        return f"refused ({exc.code})"
    if isinstance(exc, ProcessorAuthError):
        return "credentials refused"
    if isinstance(exc, ProcessorProtocolError):
        return "unreadable answer"
    if isinstance(exc, ProcessorConfigurationError):
        return "not configured"
    return "error"


@dataclass
class AccountBalance:
    account: str
    merchant_id: str
    balance: Decimal | None = None
    failure: str | None = None

    @property
    def label(self) -> str:
        return f"{self.account} ({self.merchant_id or '?'})"


@dataclass
class BalanceReport:
    mode: str
    at: str
    accounts: list[AccountBalance] = field(default_factory=list)

    @property
    def readable(self) -> list[AccountBalance]:
        return [a for a in self.accounts if a.balance is not None]

    @property
    def total(self) -> Decimal:
        return sum((a.balance for a in self.readable), Decimal("0.00"))

    def as_dict(self) -> dict:
        return {"mode": self.mode, "at": self.at, "total": str(self.total),
                "accounts": [{**asdict(a), "balance": None if a.balance is None else str(a.balance)}
                             for a in self.accounts],
                "failed": [a.account for a in self.accounts if a.failure is not None]}


def money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def balances_read(*, mode: str = "daily", now: datetime | None = None) -> BalanceReport:
    """Read every configured account's prefunding balance (module docstring); never raises a processor error."""
    from integrations.usio import usio_client

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    moment = now or timezone.now()
    report = BalanceReport(mode=mode, at=moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    accounts = getattr(settings, "USIO_ACCOUNTS", {}) or {}
    for name in settings.USIO_SYNC_ACCOUNTS:
        merchant_id = str((accounts.get(name) or {}).get("merchant_id") or "")
        entry = AccountBalance(account=name, merchant_id=merchant_id)
        try:
            entry.balance = usio_client(name).get_prefunding_balance().amount
        except ProcessorError as exc:
            entry.failure = _failure(exc)
            logger.warning("usio balance unreadable",
                           extra={"usio_account": name, "error": type(exc).__name__, "failure": entry.failure})
        report.accounts.append(entry)
    return report


def _line(entry: AccountBalance) -> str:
    return f"{entry.label}: {money(entry.balance) if entry.balance is not None else entry.failure}"


def report_message(report: BalanceReport) -> tuple[str, list | None]:
    """``(text, blocks)`` for Slack: the daily summary (one line per account, the total) or the hourly line."""
    readable, count = len(report.readable), len(report.accounts)
    failed = count - readable
    total = f"Total ({readable} of {count} accounts): {money(report.total)}"
    if report.mode == "hourly":
        parts = " · ".join(
            f"{a.account} {money(a.balance) if a.balance is not None else a.failure.upper()}" for a in report.accounts)
        flag = f" · {failed} FAILED" if failed else ""
        return f"Usio balances {report.at}: {parts} · total {money(report.total)}{flag}", None
    title = f"Usio prefunding balances — {report.at}"
    lines = [_line(a) for a in report.accounts]
    warning = f":warning: {failed} account(s) could not be read" if failed else None
    text = "\n".join([title, *(f"• {line}" for line in lines), total, *([warning] if warning else [])])
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {line}" for line in lines)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{total}*"}},
    ]
    if warning:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": warning}]})
    return text, blocks


def balance_report_post(*, mode: str = "daily", now: datetime | None = None) -> dict:
    """Read the balances and post the ``mode`` report to Slack (SPEC §7.6). Returns the report (JSON-able).
    A Slack failure (``ProcessorError``, or ``SLACK_WEBHOOK_URL`` unset) propagates. Not idempotent by nature: a
    retry posts again (a duplicate line in a channel beats a missing report)."""
    from integrations.slack import slack_client

    report = balances_read(mode=mode, now=now)
    text, blocks = report_message(report)
    slack_client().post_message(text=text, blocks=blocks)
    result = report.as_dict()
    logger.info("balance report posted", extra={"mode": mode, "failed": result["failed"]})
    return result
