"""Fixtures of the cards tests: valid card bodies, callers per role, a raw (pre-redaction) log capture."""

import logging
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from cards import services
from cards.models import DebitCard, DebitCardChange
from core.models import AuditEntry

USER = "user-1"
OTHER_USER = "user-2"
CARD_URL = f"/api/v1/users/{USER}/debit-card"
PAN = "4111111111111111"  # Visa test number: 16 digits, passes Luhn


def today():
    return timezone.localtime(timezone.now(), ZoneInfo(settings.BUSINESS_TIME_ZONE))


def exp_in(years: int = 2, month: int = 12) -> str:
    return f"{month:02d}{today().year + years}"


def card_body(**overrides) -> dict:
    body = {
        "masked_card_number": "1111",
        "card_exp": exp_in(2),
        "transaction_reference_id": "tok_credit_000000000001",
        "debit_transaction_reference_id": "tok_debit_000000000001",
    }
    body.update(overrides)
    return body


def save(user_id: str = USER, actor: str = "test", **overrides) -> DebitCard:
    card, _ = services.card_save(user_id=user_id, actor=actor, **card_body(**overrides))
    return card


def state() -> tuple:
    """Everything the cards endpoints can write, to assert a refused request changed nothing."""
    return (
        list(DebitCard.objects.order_by("pk").values()),
        list(DebitCardChange.objects.order_by("pk").values()),
        AuditEntry.objects.count(),
    )


@pytest.fixture
def caller(client_as, make_jwt):
    """``caller(role)``: an APIClient for service/support/admin, ``user`` (JWT of USER), ``other_user`` (JWT of
    another user) or ``none`` (no credentials)."""

    def _caller(role: str) -> APIClient:
        if role == "none":
            return APIClient()
        if role in ("user", "other_user"):
            client = APIClient()
            token = make_jwt(USER if role == "user" else OTHER_USER)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            return client
        return client_as(role)

    return _caller


class _RawCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record):
        parts = [str(record.msg), repr(record.args), record.getMessage()]
        parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in ("msg", "args")]
        self.texts.append(" ".join(parts))


@pytest.fixture
def raw_logs():
    """Every log record as emitted by the code, before any redaction filter touches it (installed first on the
    root logger, at DEBUG). Returns a callable giving all captured text joined."""
    handler = _RawCapture()
    root = logging.getLogger()
    level = root.level
    root.handlers.insert(0, handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: "\n".join(handler.texts)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
