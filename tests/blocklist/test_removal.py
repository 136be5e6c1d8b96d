"""blocklist_enqueue_removal and the blocklist.remove_for_user job (SPEC §7 queue blocklist-remove, §8).

The job is run for real: called directly (what a worker does with the message), through ``.apply()`` (Celery's
tracer, success and dead-lettering), and end to end from a bank account save with eager execution.
"""

import pytest
from django.db import transaction

from blocklist.models import BlocklistRecord
from blocklist.selectors import blocklist_is_blocked, blocklist_status
from blocklist.services import blocklist_block, blocklist_enqueue_removal
from blocklist.tasks import remove_for_user
from config.celery import app
from core.errors import ValidationError
from core.models import DeadLetter
from tests.blocklist.conftest import REMOVAL_QUEUE, counts, statuses

pytestmark = pytest.mark.django_db


def _kwargs_of(messages) -> list[dict]:
    assert all(headers["task"] == "blocklist.remove_for_user" for headers, _ in messages), messages
    return [payload[1] for _, payload in messages]


def test_the_job_is_declared_on_its_queue_with_the_spec_attempts_and_time_limit():
    assert remove_for_user.name == "blocklist.remove_for_user"
    assert app.tasks["blocklist.remove_for_user"].job_queue == REMOVAL_QUEUE  # registered under its name
    assert remove_for_user.job_queue == REMOVAL_QUEUE
    assert app.amqp.router.route({}, remove_for_user.name, task_type=remove_for_user)["queue"].name == REMOVAL_QUEUE
    assert (remove_for_user.attempts, remove_for_user.time_limit) == (10, 540)
    assert remove_for_user.acks_late is True


# --- the job ----------------------------------------------------------------------------------------------------------

def test_the_job_unblocks_a_blocked_user_and_is_idempotent():
    blocklist_block(user_id="u-1", reason="R02 return", actor="mx")
    assert remove_for_user(user_id="u-1", reason="bank account updated") is True
    state = blocklist_status(user_id="u-1")
    assert (state.status, state.source, state.reason) == ("NOTBLOCKED", "bank_account_update", "bank account updated")
    assert BlocklistRecord.objects.filter(user_id="u-1").first().actor == "system"
    before = counts()
    assert remove_for_user(user_id="u-1", reason="bank account updated") is False  # a redelivered message
    assert counts() == before
    assert statuses("u-1") == ["BLOCKED", "NOTBLOCKED"]


def test_the_job_leaves_a_user_who_is_not_blocked_alone():
    assert remove_for_user(user_id="u-never", reason="bank account created") is False
    assert counts() == (0, 0)


def test_the_job_through_celerys_tracer():
    blocklist_block(user_id="u-1", reason="R02 return", actor="mx")
    result = remove_for_user.apply(kwargs={"user_id": "u-1", "reason": "bank account deleted"})
    assert result.successful() and result.get() is True
    assert not blocklist_is_blocked(user_id="u-1")
    again = remove_for_user.apply(kwargs={"user_id": "u-1", "reason": "bank account deleted"})
    assert again.successful() and again.get() is False
    assert statuses("u-1") == ["BLOCKED", "NOTBLOCKED"]


@pytest.mark.parametrize("kwargs", [{"user_id": "bad id", "reason": "r"}, {"user_id": "u-1", "reason": " "}])
def test_a_job_with_invalid_arguments_is_dead_lettered_at_once(kwargs):
    blocklist_block(user_id="u-1", reason="R02 return", actor="mx")
    before = counts()
    result = remove_for_user.apply(kwargs=kwargs)
    assert result.failed()
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.queue, letter.attempts) == ("blocklist.remove_for_user", REMOVAL_QUEUE, 1)
    assert letter.kwargs == kwargs
    assert counts() == before
    assert blocklist_is_blocked(user_id="u-1")


# --- enqueueing -------------------------------------------------------------------------------------------------------

def test_enqueue_sends_one_message_only_after_commit(removal_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            blocklist_enqueue_removal(user_id="u-1", reason="bank account updated")
            assert removal_queue() == []  # not before the commit
    assert len(callbacks) == 1
    assert _kwargs_of(removal_queue()) == [{"user_id": "u-1", "reason": "bank account updated"}]


def test_enqueue_in_a_rolled_back_transaction_sends_nothing(removal_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            blocklist_enqueue_removal(user_id="u-1", reason="bank account updated")
            raise RuntimeError("the bank account save fails")
    assert callbacks == []
    assert removal_queue() == []


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"user_id": "bad id", "reason": "r"}, "invalid_user_id"),
    ({"user_id": "u-1", "reason": ""}, "reason_required"),
])
def test_enqueue_refuses_bad_arguments_in_the_callers_transaction(kwargs, code, removal_queue,
                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ValidationError) as exc:
            blocklist_enqueue_removal(**kwargs)
    assert exc.value.code == code
    assert callbacks == []
    assert removal_queue() == []


def test_the_message_sent_runs_as_the_job(removal_queue, django_capture_on_commit_callbacks):
    blocklist_block(user_id="u-1", reason="R02 return", actor="mx")
    with django_capture_on_commit_callbacks(execute=True):
        blocklist_enqueue_removal(user_id="u-1", reason="bank account updated")
    (kwargs,) = _kwargs_of(removal_queue())
    assert remove_for_user(**kwargs) is True  # what the worker does with it
    assert not blocklist_is_blocked(user_id="u-1")


@pytest.fixture
def eager():
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = previous


def test_a_bank_account_save_unblocks_the_user_end_to_end(eager, django_capture_on_commit_callbacks):
    from bank_accounts.services import bank_account_save

    blocklist_block(user_id="u-1", reason="R02 return", actor="mx")
    with django_capture_on_commit_callbacks(execute=True):
        bank_account_save(user_id="u-1", account_id="acc-1", account_number="739146285017",
                          routing_number="026009593", actor="service:test")
    state = blocklist_status(user_id="u-1")
    assert (state.status, state.source) == ("NOTBLOCKED", "bank_account_update")
