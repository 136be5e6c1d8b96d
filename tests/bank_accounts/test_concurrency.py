"""Concurrent saves of one account (PostgreSQL: row locks and the unique key; SQLite: serialised writes).

Either way the outcome must be the same: one row, one create, and a history that matches the final row.
"""

import threading

import pytest
from django.db import connection

from bank_accounts.models import BankAccount, BankAccountHistory
from bank_accounts.services import bank_account_hash
from tests.bank_accounts.conftest import ACCOUNT, ACCOUNT_2, ROUTING, ROUTING_2, drain, save

THREADS = 6


def _race(numbers: list[tuple[str, str]]) -> list:
    barrier = threading.Barrier(len(numbers))
    results, errors = [], []

    def run(account_number, routing_number):
        try:
            barrier.wait(timeout=10)
            results.append(save(user_id="race", account_id="acc", account_number=account_number,
                                routing_number=routing_number))
        except Exception as exc:  # collected: an exception in a thread must fail the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in numbers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == len(numbers)
    return results


@pytest.fixture
def clean_queue():
    drain()
    yield
    drain()  # the committed saves really enqueued removals: leave the queue as it was


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_saves_of_the_same_numbers_make_one_account(clean_queue):
    results = _race([(ACCOUNT, ROUTING)] * THREADS)
    assert sorted((r.created, r.changed) for r in results) == [(False, False)] * (THREADS - 1) + [(True, True)]
    assert BankAccount.objects.count() == 1
    assert list(BankAccountHistory.objects.values_list("action", flat=True)) == ["create"]
    assert len(drain()) == 1  # one removal: the no-op saves enqueued nothing


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_of_different_numbers_serialise(clean_queue):
    pairs = [(ACCOUNT, ROUTING), (ACCOUNT_2, ROUTING_2)] * (THREADS // 2)
    results = _race(pairs)
    assert sum(r.created for r in results) == 1
    account = BankAccount.objects.get()
    history = list(BankAccountHistory.objects.order_by("pk").values_list("action", "account_routing_hash", "last4"))
    assert history[0][0] == "create" and all(action == "update" for action, _, _ in history[1:])
    assert len(history) == sum(r.changed for r in results)
    # The newest history row describes the row as it ended, and the row is consistent with itself.
    assert history[-1][1:] == (account.account_routing_hash, account.last4)
    assert account.account_routing_hash == bank_account_hash(routing_number=account.routing_number,
                                                             account_number=account.account_number)
    assert account.last4 == account.account_number[-4:]
    assert len(drain()) == len(history)
