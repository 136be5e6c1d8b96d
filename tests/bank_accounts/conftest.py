"""Fixtures of the bank account tests: numbers, a service client, the service with defaults, the broker queue."""

import pytest

from bank_accounts.models import BankAccount, BankAccountHistory
from bank_accounts.services import bank_account_save
from tests.broker import drain as drain_queue

# Valid ABA routing numbers (checksum ok) and account numbers that appear nowhere else in a test run.
ROUTING = "026009593"
ROUTING_2 = "011000015"
ACCOUNT = "739146285017"
ACCOUNT_2 = "48305172961"
SHORT_ACCOUNT = "5820731"  # below the 8 digits the log redaction masks: only the code keeps it out of logs
REMOVAL_QUEUE = "blocklist-remove"


@pytest.fixture
def service(client_as):
    return client_as("service")


def url(user_id: str = "user-1", account_id: str = "acc-1") -> str:
    return f"/api/v1/users/{user_id}/bank-accounts/{account_id}"


def save(**overrides):
    kwargs = {"user_id": "user-1", "account_id": "acc-1", "account_number": ACCOUNT, "routing_number": ROUTING,
              "actor": "service:test"}
    kwargs.update(overrides)
    return bank_account_save(**kwargs)


def counts() -> tuple[int, int]:
    return BankAccount.objects.count(), BankAccountHistory.objects.count()


def drain(queue: str = REMOVAL_QUEUE) -> list[tuple[dict, object]]:
    """Read and ack every message on ``queue`` (default: the blocklist-remove queue)."""
    return drain_queue(queue)


@pytest.fixture
def removal_queue():
    """The blocklist-remove queue, empty before the test; call it to drain what the test sent."""
    drain()
    return drain
