"""Fixtures of the fraud tests: inputs that appear nowhere else, a check helper, ageing of earlier checks."""

from datetime import timedelta

from django.utils import timezone

from fraud.models import FraudCheck, FraudResult
from fraud.services import fraud_check

ROUTING = "021000021"  # passes the ABA checksum
ACCOUNT = "583920174615"
ROUTING_2 = "011000015"
ACCOUNT_2 = "90817263544"
INSTALL = "inst-7f3c9a1e-5b2d"
LAST4 = "4242"
EXP = "112031"
CHECKS_URL = "/api/v1/fraud/checks"
RESULTS_URL = "/api/v1/fraud/results"


def check(user_id: str = "u-1", **inputs) -> FraudCheck:
    return fraud_check(user_id=user_id, **inputs)


def signal(result: FraudCheck, name: str) -> dict:
    (found,) = [s for s in result.signals if s["name"] == name]
    return found


def age(row: FraudCheck, *, hours: float = 0, seconds: float = 0) -> None:
    """Make an earlier check ``hours`` + ``seconds`` old (test setup: the clock cannot be moved)."""
    FraudCheck.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=hours, seconds=seconds))


def counts() -> tuple[int, int]:
    return FraudCheck.objects.count(), FraudResult.objects.count()
