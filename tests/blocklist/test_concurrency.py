"""Concurrent blocks and unblocks of one user are serialised (PostgreSQL advisory lock; SQLite IMMEDIATE).

Threads with their own database connections start together on a barrier. Without the per-user lock, N first
blocks of a user who has no record would all read "no record" and append N BLOCKED rows. Run on PostgreSQL
(``DATABASE_URL=postgres://...``) this exercises the advisory lock; on SQLite, the IMMEDIATE transactions.
"""

import itertools
import random

import pytest
from django.db import connection

from blocklist.models import BlocklistSource
from blocklist.selectors import blocklist_history, blocklist_is_blocked
from blocklist.services import blocklist_block, blocklist_block_for_return, blocklist_unblock
from core.models import AuditEntry
from tests.blocklist.conftest import statuses
from tests.concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


def _run_together(calls):
    """Run each callable in its own thread (own DB connection), released at once by a barrier."""
    results = run_concurrently(lambda index: calls[index](), len(calls))
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise errors[0]
    return results


def test_the_backend_under_test():
    # Reported in the output so a reader knows which locking path ran.
    assert connection.vendor in ("postgresql", "sqlite")


def test_concurrent_first_blocks_append_exactly_one_record():
    results = _run_together([
        (lambda n=n: blocklist_block(user_id="u-race", reason=f"block {n}", actor=f"mx-{n}").changed)
        for n in range(THREADS)
    ])
    assert sum(results) == 1
    assert statuses("u-race") == ["BLOCKED"]
    assert AuditEntry.objects.filter(user_id="u-race").count() == 1


def test_concurrent_returns_for_one_user_block_once():
    import uuid

    results = _run_together([
        (lambda: blocklist_block_for_return(user_id="u-ret", return_code="R02", payment_id=uuid.uuid4()))
        for _ in range(THREADS)
    ])
    assert sum(results) == 1
    assert statuses("u-ret") == ["BLOCKED"]


def test_concurrent_unblocks_append_exactly_one_record():
    blocklist_block(user_id="u-race", reason="fraud", actor="mx")
    results = _run_together([
        (lambda n=n: blocklist_unblock(user_id="u-race", reason=f"unblock {n}", actor="mx",
                                       source=BlocklistSource.BANK_ACCOUNT_UPDATE).changed)
        for n in range(THREADS)
    ])
    assert sum(results) == 1
    assert statuses("u-race") == ["BLOCKED", "NOTBLOCKED"]


def test_a_storm_of_mixed_changes_leaves_an_alternating_log():
    """Every appended record flips the state; the final state is the last record's; nothing else is touched."""
    rng = random.Random(4)

    def change(n: int) -> bool:
        if rng.random() < 0.5:
            return blocklist_block(user_id="u-storm", reason=f"b{n}", actor="mx").changed
        return blocklist_unblock(user_id="u-storm", reason=f"u{n}", actor="mx", source="manual").changed

    appended = 0
    for round_ in range(5):
        appended += sum(_run_together([(lambda n=round_ * 100 + n: change(n)) for n in range(THREADS)]))
    log = statuses("u-storm")
    assert len(log) == appended
    assert log, "no change at all: the storm did not run"
    assert log[0] == "BLOCKED"
    assert all(a != b for a, b in itertools.pairwise(log)), log
    assert blocklist_is_blocked(user_id="u-storm") is (log[-1] == "BLOCKED")
    newest = list(blocklist_history(user_id="u-storm"))
    assert [r.status for r in reversed(newest)] == log
    assert all(a.created_at >= b.created_at for a, b in itertools.pairwise(newest))


def test_two_users_do_not_wait_for_each_other_and_both_block():
    results = _run_together([
        (lambda u=u: blocklist_block(user_id=u, reason="r", actor="mx").changed)
        for u in ("u-a", "u-b", "u-c", "u-d")
    ])
    assert results == [True, True, True, True]
