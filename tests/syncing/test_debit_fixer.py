"""Debit-card fixer (SPEC §7.8): ``manage.py fix_debit_cards`` enqueues one job per distinct card on ``debit-fixer``;
each action's effect and its audit entry; bad input refused with nothing enqueued; a failing job dead-lettered
after its one attempt."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from cards.models import ChangeType, DebitCard, DebitCardChange
from cards.services import card_hash, card_invalidate
from core.models import AuditEntry, DeadLetter
from syncing.debit_fixer import debit_card_fix
from syncing.debit_fixer_jobs import FIX_QUEUE, FIX_TASK, fix_debit_card_task
from tests.broker import drain
from tests.syncing.conftest_h4 import DEBIT, cards_state, make_card, refresh_calls

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_queue():
    drain(FIX_QUEUE)
    yield
    drain(FIX_QUEUE)


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("fix_debit_cards", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def queued() -> list[dict]:
    messages = drain(FIX_QUEUE)
    assert {headers["task"] for headers, _ in messages} <= {FIX_TASK}
    return [payload[1] for _, payload in messages]


def audits(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=f"debit_card.fix.{action}").order_by("pk"))


def test_the_job_is_on_its_queue_with_one_attempt():
    assert (fix_debit_card_task.name, fix_debit_card_task.job_queue, fix_debit_card_task.attempts,
            fix_debit_card_task.time_limit) == (FIX_TASK, "debit-fixer", 1, 54)


# --- the command ------------------------------------------------------------------------------------------------------

def test_one_job_per_distinct_card_and_unknown_users_reported():
    first, second = make_card("u-1"), make_card("u-2")
    out, err = run("--user-id", "u-1", "--user-id", "u-2", "--user-id", "u-1", "--user-id", "u-nocard",
                   "--action", "revalidate", "--reason", "ticket 42")
    jobs = queued()
    assert sorted(job["card_id"] for job in jobs) == sorted([first.pk, second.pk])
    assert all((job["action"], job["reason"]) == ("revalidate", "ticket 42") for job in jobs)
    assert "enqueued=2 unknown_users=1" in out and "u-nocard" in out
    assert "\r" in err and "2/2 enqueued" in err


def test_ids_from_a_file_skip_comments_blanks_and_duplicates(tmp_path):
    cards = [make_card(f"u-{n}") for n in range(1, 4)]
    path = tmp_path / "ids.txt"
    path.write_text("# support ticket 42\nu-1\n\n  u-2  # trailing comment\nu-1\nu-3\nu-missing\n")
    out, _ = run("--file", str(path), "--action", "scrub")
    assert sorted(job["card_id"] for job in queued()) == sorted(card.pk for card in cards)
    assert "enqueued=3 unknown_users=1" in out


@pytest.mark.parametrize("args", [
    ("--action", "revalidate"),  # no ids
    ("--user-id", "u-1", "--action", "explode"),  # unknown action
    ("--user-id", "u-1", "--user-id", "bad id", "--action", "rehash"),  # a malformed id
    ("--file", "/nonexistent/ids.txt", "--action", "rehash"),  # unreadable file
    ("--user-id", "u-1", "--file", "/tmp/x", "--action", "rehash"),  # both sources
    ("--user-id", "u-1"),  # no action
])
def test_bad_input_is_a_command_error_and_nothing_is_enqueued(args):
    make_card("u-1")
    with pytest.raises(CommandError):
        run(*args)
    assert queued() == []


def test_a_file_with_no_ids_is_a_command_error(tmp_path):
    make_card("u-1")
    path = tmp_path / "ids.txt"
    path.write_text("# nothing here\n\n   \n")
    with pytest.raises(CommandError, match="no user ids"):
        run("--file", str(path), "--action", "scrub")
    assert queued() == []


def test_the_enqueued_job_runs_the_action(sandbox):
    card = make_card("u-1")
    DebitCard.objects.filter(pk=card.pk).update(force_failure=True)
    run("--user-id", "u-1", "--action", "scrub", "--reason", "QA leftovers")
    [job] = queued()
    result = fix_debit_card_task.apply(kwargs=job)
    assert result.successful() and result.get()["outcome"] == "scrubbed"
    assert DebitCard.objects.get(pk=card.pk).force_failure is False
    [entry] = audits("scrub")
    assert (entry.actor, entry.reason, entry.user_id, entry.target_id) == ("debit_fixer", "QA leftovers", "u-1",
                                                                            str(card.pk))
    assert entry.changes["outcome"] == "scrubbed"


# --- the actions ------------------------------------------------------------------------------------------------------

def test_revalidate_clears_the_invalid_state_once():
    card = make_card("u-1")
    card_invalidate(user_id="u-1", reason="declined 05")
    assert debit_card_fix(card_id=card.pk, action="revalidate", reason="support checked").outcome == "revalidated"
    card.refresh_from_db()
    assert (card.is_valid, card.invalid_date, card.invalid_reason) == (True, None, "")
    change = DebitCardChange.objects.filter(user_id="u-1").first()
    assert (change.change_type, change.actor) == (ChangeType.ADMIN_UPDATED, "debit_fixer")
    before = cards_state()[:2]
    assert debit_card_fix(card_id=card.pk, action="revalidate", reason="again").outcome == "already_valid"
    assert cards_state()[:2] == before
    assert [e.changes["outcome"] for e in audits("revalidate")] == ["revalidated", "already_valid"]


def test_rehash_uses_the_current_hash_key(settings):
    card = make_card("u-1")
    old_hash = card.hashed_card_number
    settings.HASH_KEY = "a-rotated-hash-key-for-the-test-0123456789"
    new_hash = card_hash(last4=card.masked_card_number, card_exp=card.card_exp)
    assert new_hash != old_hash
    assert debit_card_fix(card_id=card.pk, action="rehash").outcome == "rehashed"
    card.refresh_from_db()
    assert card.hashed_card_number == new_hash
    change = DebitCardChange.objects.filter(user_id="u-1").first()
    assert (change.old_hashed_card_number, change.new_hashed_card_number) == (old_hash, new_hash)
    [entry] = audits("rehash")
    assert entry.reason == "debit-card fixer run by an operator" and new_hash not in str(entry.changes)
    assert debit_card_fix(card_id=card.pk, action="rehash").outcome == "unchanged"


def test_scrub_clears_the_failure_switch_and_strips_whitespace():
    card = make_card("u-1")
    DebitCard.objects.filter(pk=card.pk).update(force_failure=True, debit_transaction_reference_id=f"  {DEBIT}\t")
    fixed = debit_card_fix(card_id=card.pk, action="scrub", reason="QA")
    assert fixed.outcome == "scrubbed"
    card.refresh_from_db()
    assert (card.force_failure, card.debit_transaction_reference_id) == (False, DEBIT)
    [entry] = audits("scrub")
    assert entry.changes["whitespace_stripped"] == ["debit_transaction_reference_id"]
    assert DEBIT not in str(entry.changes)
    before = cards_state()[:2]
    assert debit_card_fix(card_id=card.pk, action="scrub", reason="QA").outcome == "unchanged"
    assert cards_state()[:2] == before


def test_refresh_tokens_refreshes_now_even_an_invalid_card(sandbox):
    card = make_card("u-1")  # young: not due for the scheduled refresh
    card_invalidate(user_id="u-1", reason="declined 05")
    assert debit_card_fix(card_id=card.pk, action="refresh-tokens", reason="ticket 7").outcome == "refreshed"
    card.refresh_from_db()
    assert card.debit_transaction_reference_id.startswith("tok_") and card.token_refreshed_at is not None
    assert len(refresh_calls(sandbox)) == 2
    assert audits("refresh-tokens")[0].changes == {"outcome": "refreshed"}


def test_refresh_tokens_refused_invalidates_the_card(sandbox):
    card = make_card("u-1", debit="unknown")
    assert debit_card_fix(card_id=card.pk, action="refresh-tokens").outcome == "refused: 5030"
    card.refresh_from_db()
    assert not card.is_valid and card.invalid_reason == "token refresh refused: 5030"


def test_a_card_gone_is_audited_as_such():
    fixed = debit_card_fix(card_id=987654, action="rehash", reason="ticket")
    assert fixed.outcome == "card_not_found"
    assert audits("rehash")[0].changes == {"outcome": "card_not_found"}


def test_a_failing_job_is_dead_lettered_after_one_attempt_and_changes_nothing(sandbox):
    card = make_card("u-1")
    sandbox.fault("usio.RefreshToken", "500", count=1)
    before = cards_state()[:2]
    result = fix_debit_card_task.apply(kwargs={"card_id": card.pk, "action": "refresh-tokens", "reason": "t"})
    assert result.failed()
    assert cards_state()[:2] == before
    letter = DeadLetter.objects.get(task_name=FIX_TASK)
    assert (letter.queue, letter.attempts) == ("debit-fixer", 1)
    assert letter.kwargs == {"card_id": card.pk, "action": "refresh-tokens", "reason": "t"}
    assert len(refresh_calls(sandbox)) == 1  # no retry
    assert audits("refresh-tokens")[0].changes == {"outcome": "error: ProcessorUnavailable"}
