"""blocklist_block_for_returns: the records of one blocklist_block_for_return per item, set-based."""

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from blocklist.models import BlocklistRecord, BlocklistSource
from blocklist.services import (
    blocklist_block,
    blocklist_block_for_return,
    blocklist_block_for_returns,
    blocklist_unblock,
)
from core.errors import ValidationError
from tests.blocklist.conftest import counts

pytestmark = pytest.mark.django_db

PAYMENTS = {name: uuid.uuid4() for name in ("p1", "p1b", "p2", "p3", "p4", "p6")}


def _scenario(prefix: str) -> list[tuple[str, str | None, uuid.UUID | None]]:
    """Users in every situation; returns the return items (user, code, payment) in order."""
    u = {n: f"{prefix}-u{n}" for n in range(1, 7)}
    blocklist_block(user_id=u[2], reason="fraud", actor="mx-alice")  # already BLOCKED
    # u3: blocked for p3, then unblocked by support: a redelivered p3 must not block again
    blocklist_block_for_return(user_id=u[3], return_code="R02", payment_id=PAYMENTS["p3"])
    blocklist_unblock(user_id=u[3], reason="verified", actor="mx-bob", source=BlocklistSource.MANUAL)
    return [
        (u[1], "R02", PAYMENTS["p1"]),   # blocks
        (u[1], "R03", PAYMENTS["p1b"]),  # the same user again: already blocked by the item before
        (u[2], "R02", PAYMENTS["p2"]),   # already BLOCKED
        (u[3], "R02", PAYMENTS["p3"]),   # payment already on record
        (u[4], "R01", PAYMENTS["p4"]),   # not a blocking code
        (u[5], "r16", None),             # blocks, without a payment
        (u[6], "AC04", PAYMENTS["p6"]),  # blocks (ISO code)
    ]


def _records(prefix: str) -> list[tuple]:
    rows = BlocklistRecord.objects.filter(user_id__startswith=f"{prefix}-").order_by("user_id", "created_at", "id")
    return [(r.user_id.removeprefix(f"{prefix}-"), r.status, r.source, r.actor, r.reason, r.return_code,
             r.payment_id) for r in rows]


class _Rollback(Exception):
    pass


def test_the_same_records_as_one_call_per_item_in_order():
    items = _scenario("u")
    with pytest.raises(_Rollback), transaction.atomic():  # one call per item, then undone
        one_by_one = sum(blocklist_block_for_return(user_id=user, return_code=code, payment_id=payment)
                         for user, code, payment in items)
        sequential = _records("u")
        raise _Rollback
    batched = blocklist_block_for_returns(returns=items)
    assert (one_by_one, batched) == (3, 3)
    assert _records("u") == sequential
    blocked = BlocklistRecord.objects.filter(source=BlocklistSource.AUTO, status="BLOCKED", actor="system")
    assert sorted(r.user_id for r in blocked) == ["u-u1", "u-u3", "u-u5", "u-u6"]  # u3: its first block, before


def test_queries_do_not_grow_with_the_items():
    def queries(n: int, prefix: str) -> int:
        items = [(f"{prefix}-{i}", "R02", uuid.uuid4()) for i in range(n)]
        with CaptureQueriesContext(connection) as ctx:
            assert blocklist_block_for_returns(returns=items) == n
        return len(ctx.captured_queries)

    few, many = queries(2, "few"), queries(20, "many")
    if connection.features.can_distinct_on_fields:
        assert few == many
    else:  # one read of the current record per user where DISTINCT ON is missing (SQLite)
        assert many - few == 18


def test_a_malformed_item_writes_nothing():
    before = counts()
    with pytest.raises(ValidationError) as exc:
        blocklist_block_for_returns(returns=[("good-user", "R02", uuid.uuid4()), ("good-user-2", "R02", "not-a-uuid")])
    assert exc.value.code == "invalid_payment_id"
    assert counts() == before


def test_no_blocking_item_touches_the_database():
    with CaptureQueriesContext(connection) as ctx:
        assert blocklist_block_for_returns(returns=[("u-x", "R01", uuid.uuid4()), ("u-y", None, None)]) == 0
    assert ctx.captured_queries == []
