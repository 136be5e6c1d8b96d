"""A save, update or delete sends one blocklist.remove_for_user job for the user, only once its transaction commits.

The message is read from the configured broker (kombu), as a worker would receive it; then the job is run with
those arguments to show the effect: the user is unblocked.
"""

import pytest
from django.db import transaction

from bank_accounts.services import bank_account_delete, bank_account_set_prenote_status
from core.errors import NotFoundError, ValidationError
from tests.bank_accounts.conftest import ACCOUNT_2, ROUTING_2, save

pytestmark = pytest.mark.django_db


def _removals(messages) -> list[dict]:
    assert all(headers["task"] == "blocklist.remove_for_user" for headers, _ in messages), messages
    return [payload[1] for _, payload in messages]


@pytest.mark.parametrize("action", ["create", "update", "delete"])
def test_each_change_enqueues_one_removal_after_commit(action, removal_queue, django_capture_on_commit_callbacks):
    if action != "create":
        save(user_id="u-7")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        if action == "create":
            save(user_id="u-7")
        elif action == "update":
            save(user_id="u-7", account_number=ACCOUNT_2, routing_number=ROUTING_2)
        else:
            bank_account_delete(user_id="u-7", account_id="acc-1", actor="t")
        assert removal_queue() == []  # registered, not sent: the transaction has not committed
    assert len(callbacks) == 1
    kwargs = _removals(removal_queue())
    assert len(kwargs) == 1
    assert kwargs[0]["user_id"] == "u-7"
    assert action in kwargs[0]["reason"]


def test_a_rolled_back_save_enqueues_nothing(removal_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            save(user_id="u-7")
            raise RuntimeError("the caller's transaction fails after the save")
    assert callbacks == []
    assert removal_queue() == []


@pytest.mark.parametrize("call", [
    lambda: save(user_id="u-7", routing_number="026009594"),
    lambda: save(user_id="u-7", account_number="12"),
    lambda: bank_account_delete(user_id="u-7", account_id="missing", actor="t"),
])
def test_a_failed_change_enqueues_nothing(call, removal_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises((ValidationError, NotFoundError)):
            call()
    assert callbacks == []
    assert removal_queue() == []


def test_no_change_and_prenote_status_enqueue_nothing(removal_queue, django_capture_on_commit_callbacks):
    save(user_id="u-7")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        save(user_id="u-7")  # the same numbers again
        bank_account_set_prenote_status(user_id="u-7", account_id="acc-1", prenote_status="pending", actor="t")
    assert callbacks == []
    assert removal_queue() == []


def test_the_enqueued_job_unblocks_the_user(removal_queue, django_capture_on_commit_callbacks):
    from blocklist.selectors import blocklist_is_blocked
    from blocklist.services import blocklist_block
    from blocklist.tasks import remove_for_user

    blocklist_block(user_id="u-7", reason="R02 return", actor="mx")
    assert blocklist_is_blocked(user_id="u-7")
    with django_capture_on_commit_callbacks(execute=True):
        save(user_id="u-7")
    (kwargs,) = _removals(removal_queue())
    remove_for_user(**kwargs)  # what the worker does with the message
    assert not blocklist_is_blocked(user_id="u-7")
