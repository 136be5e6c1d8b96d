"""Blocklist services and selectors: append-only records, current state = newest, idempotent changes, audit."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from blocklist.models import BlocklistRecord, BlocklistSource, BlocklistStatus
from blocklist.selectors import (
    blocklist_block_count,
    blocklist_current_record,
    blocklist_history,
    blocklist_is_blocked,
    blocklist_status,
)
from blocklist.services import blocklist_block, blocklist_block_for_return, blocklist_unblock
from core.errors import ValidationError
from core.models import AuditEntry
from tests.blocklist.conftest import counts, statuses

pytestmark = pytest.mark.django_db


def block(user_id="u-1", reason="chargeback fraud", actor="mx-alice", **kw):
    return blocklist_block(user_id=user_id, reason=reason, actor=actor, **kw)


def unblock(user_id="u-1", reason="verified identity", actor="mx-bob", source=BlocklistSource.MANUAL):
    return blocklist_unblock(user_id=user_id, reason=reason, actor=actor, source=source)


# --- state and history ---------------------------------------------------------------------------------------------

def test_a_user_never_on_the_blocklist_is_not_blocked():
    assert blocklist_is_blocked(user_id="u-new") is False
    assert blocklist_current_record(user_id="u-new") is None
    state = blocklist_status(user_id="u-new")
    assert (state.status, state.reason, state.source, state.return_code, state.since) == (
        "NOTBLOCKED", None, None, None, None)
    assert list(blocklist_history(user_id="u-new")) == []


def test_block_appends_a_record_and_the_user_is_blocked():
    change = block()
    assert change.changed is True
    record = BlocklistRecord.objects.get()
    assert change.record == record
    assert (record.user_id, record.status, record.source, record.reason, record.actor) == (
        "u-1", "BLOCKED", "manual", "chargeback fraud", "mx-alice")
    assert record.return_code is None and record.payment_id is None
    assert blocklist_is_blocked(user_id="u-1") is True
    state = blocklist_status(user_id="u-1")
    assert (state.status, state.reason, state.source, state.since) == ("BLOCKED", "chargeback fraud", "manual",
                                                                       record.created_at)
    assert blocklist_is_blocked(user_id="u-2") is False  # another user is untouched


def test_blocking_a_blocked_user_appends_nothing_and_keeps_the_first_reason():
    first = block(reason="first")
    before = counts()
    again = block(reason="second", actor="mx-carol")
    assert again.changed is False
    assert again.record == first.record
    assert counts() == before
    assert blocklist_status(user_id="u-1").reason == "first"


def test_unblock_appends_notblocked_and_unblocking_again_is_a_no_op():
    block()
    change = unblock()
    assert change.changed is True
    assert change.record.status == "NOTBLOCKED" and change.record.source == "manual"
    assert blocklist_is_blocked(user_id="u-1") is False
    before = counts()
    again = unblock(reason="twice")
    assert again.changed is False and again.record == change.record
    assert counts() == before


def test_unblocking_a_user_never_blocked_writes_nothing():
    change = unblock(user_id="u-never")
    assert change.changed is False and change.record is None
    assert counts() == (0, 0)


def test_history_is_append_only_and_newest_first():
    block(reason="one")
    unblock(reason="two")
    block(reason="three")
    unblock(reason="four", source=BlocklistSource.BANK_ACCOUNT_UPDATE)
    history = list(blocklist_history(user_id="u-1"))
    assert [r.reason for r in history] == ["four", "three", "two", "one"]
    assert [r.status for r in history] == ["NOTBLOCKED", "BLOCKED", "NOTBLOCKED", "BLOCKED"]
    assert history[0].source == "bank_account_update"
    assert blocklist_block_count(user_id="u-1") == 2


def test_the_newest_record_wins_ties_on_created_at_by_id():
    """Two records with the same timestamp: the later insert (higher id) is the current state."""
    block()
    unblock()
    same = timezone.now()
    BlocklistRecord.objects.filter(user_id="u-1").update(created_at=same)  # test setup: force the tie
    assert blocklist_current_record(user_id="u-1").status == "NOTBLOCKED"
    assert [r.status for r in blocklist_history(user_id="u-1")] == ["NOTBLOCKED", "BLOCKED"]


def test_a_record_is_never_older_than_the_one_it_follows():
    """Even when the previous record carries a later clock (another host), the new record stays the newest."""
    first = block().record
    future = timezone.now() + timedelta(minutes=5)
    BlocklistRecord.objects.filter(pk=first.pk).update(created_at=future)  # test setup: a skewed clock
    second = unblock().record
    assert second.created_at >= future
    assert blocklist_is_blocked(user_id="u-1") is False


def test_manual_changes_are_audited_with_actor_and_reason():
    record = block().record
    unblocked = unblock().record
    entries = list(AuditEntry.objects.order_by("at", "id").values_list("actor", "action", "target_id", "reason",
                                                                         "user_id"))
    assert entries == [
        ("mx-alice", "blocklist.block", str(record.pk), "chargeback fraud", "u-1"),
        ("mx-bob", "blocklist.unblock", str(unblocked.pk), "verified identity", "u-1"),
    ]


def test_bank_account_unblock_is_not_a_support_action_and_is_not_audited():
    block()
    audited = AuditEntry.objects.count()
    unblock(source=BlocklistSource.BANK_ACCOUNT_UPDATE, actor="system")
    assert AuditEntry.objects.count() == audited


def test_the_reason_is_stored_trimmed():
    assert block(reason="  padded  ").record.reason == "padded"


# --- refused input: precise codes, nothing written -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"user_id": "bad id"}, "invalid_user_id"),
        ({"user_id": ""}, "invalid_user_id"),
        ({"user_id": "x" * 65}, "invalid_user_id"),
        ({"reason": ""}, "reason_required"),
        ({"reason": "   "}, "reason_required"),
        ({"reason": None}, "reason_required"),
        ({"reason": "x" * 2001}, "reason_too_long"),
        ({"actor": ""}, "actor_required"),
        ({"actor": "a" * 151}, "invalid_actor"),
        ({"source": "bank_account_update"}, "invalid_source"),
        ({"source": "nonsense"}, "invalid_source"),
    ],
)
def test_block_refuses_bad_input_and_writes_nothing(kwargs, code):
    with pytest.raises(ValidationError) as exc:
        block(**kwargs)
    assert exc.value.code == code
    assert counts() == (0, 0)


@pytest.mark.parametrize(("source", "code"), [("auto", "invalid_source"), ("", "invalid_source")])
def test_unblock_refuses_an_automatic_source(source, code):
    block()
    before = counts()
    with pytest.raises(ValidationError) as exc:
        unblock(source=source)
    assert exc.value.code == code
    assert counts() == before
    assert blocklist_is_blocked(user_id="u-1")


def test_the_reason_limit_is_inclusive():
    assert block(reason="x" * 2000).changed


def test_selectors_refuse_a_malformed_user_id():
    for selector in (blocklist_is_blocked, blocklist_status, blocklist_history):
        with pytest.raises(ValidationError) as exc:
            selector(user_id="no spaces please")
        assert exc.value.code == "invalid_user_id"


def test_a_failure_in_the_callers_transaction_rolls_the_block_back():
    with pytest.raises(RuntimeError), transaction.atomic():
        block()
        raise RuntimeError("caller fails")
    assert counts() == (0, 0)


def test_the_database_refuses_inconsistent_records():
    """The constraints hold even for code that bypasses the services."""
    from django.db import IntegrityError

    bad = [
        {"status": "BLOCKED", "source": "bank_account_update"},
        {"status": "NOTBLOCKED", "source": "auto"},
        {"status": "MAYBE", "source": "manual"},
        {"status": "BLOCKED", "source": "manual", "return_code": "R02"},
        {"status": "BLOCKED", "source": "manual", "reason": ""},
    ]
    for fields in bad:
        values = {"user_id": "u-1", "reason": "r", "actor": "a", "created_at": timezone.now(), **fields}
        with pytest.raises(IntegrityError), transaction.atomic():
            BlocklistRecord.objects.create(**values)
    assert BlocklistRecord.objects.count() == 0


# --- automatic blocks from return codes -----------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["R02", "R03", "R04", "R16", "AC04", "BE01", "AC01", "AC06"])
def test_a_blocking_return_code_blocks_automatically(code):
    payment_id = uuid.uuid4()
    assert blocklist_block_for_return(user_id="u-1", return_code=code.lower() + " ", payment_id=payment_id) is True
    record = BlocklistRecord.objects.get()
    assert (record.status, record.source, record.return_code, record.payment_id, record.actor) == (
        "BLOCKED", "auto", code, payment_id, "system")
    assert code in record.reason
    state = blocklist_status(user_id="u-1")
    assert (state.status, state.source, state.return_code) == ("BLOCKED", "auto", code)
    assert AuditEntry.objects.count() == 0  # not a support action


@pytest.mark.parametrize("code", ["R01", "R10", "AM04", "AC03", "", None])
def test_a_non_blocking_return_code_writes_nothing(code):
    assert blocklist_block_for_return(user_id="u-1", return_code=code, payment_id=uuid.uuid4()) is False
    assert counts() == (0, 0)


def test_a_return_for_an_already_blocked_user_appends_nothing():
    block()
    before = counts()
    assert blocklist_block_for_return(user_id="u-1", return_code="R02", payment_id=uuid.uuid4()) is False
    assert counts() == before
    assert blocklist_status(user_id="u-1").source == "manual"


def test_the_same_payment_never_blocks_twice_even_after_an_unblock():
    """A redelivered return event must not undo support's unblock."""
    payment_id = str(uuid.uuid4())
    assert blocklist_block_for_return(user_id="u-1", return_code="R02", payment_id=payment_id) is True
    unblock()
    assert blocklist_block_for_return(user_id="u-1", return_code="R02", payment_id=payment_id) is False
    assert statuses("u-1") == ["BLOCKED", "NOTBLOCKED"]
    # A return of another payment does block again.
    assert blocklist_block_for_return(user_id="u-1", return_code="AC04", payment_id=uuid.uuid4()) is True
    assert statuses("u-1") == ["BLOCKED", "NOTBLOCKED", "BLOCKED"]


def test_a_return_without_a_payment_id_still_blocks():
    assert blocklist_block_for_return(user_id="u-1", return_code="R16", payment_id=None) is True
    assert BlocklistRecord.objects.get().payment_id is None


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"payment_id": "not-a-uuid"}, "invalid_payment_id"),
    ({"user_id": "bad id"}, "invalid_user_id"),
])
def test_block_for_return_refuses_bad_input(kwargs, code):
    values = {"user_id": "u-1", "return_code": "R02", "payment_id": uuid.uuid4(), **kwargs}
    with pytest.raises(ValidationError) as exc:
        blocklist_block_for_return(**values)
    assert exc.value.code == code
    assert counts() == (0, 0)


def test_manual_block_with_source_auto_is_allowed_but_carries_no_code():
    change = block(source=BlocklistSource.AUTO)
    assert change.record.source == "auto" and change.record.return_code is None
    assert AuditEntry.objects.count() == 0


def test_statuses_helper_sees_only_the_user():
    block(user_id="u-a")
    block(user_id="u-b")
    unblock(user_id="u-b")
    assert statuses("u-a") == [BlocklistStatus.BLOCKED]
    assert statuses("u-b") == [BlocklistStatus.BLOCKED, BlocklistStatus.NOTBLOCKED]
