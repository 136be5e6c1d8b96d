"""Usio token refresh (SPEC §7.4): due-ness, de-duplication by token pair, refresh through the sandbox, refusal,
processor failures dead-lettered after exactly one attempt, and no second refresh the next day."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from cards.models import ChangeType, DebitCard, DebitCardChange
from cards.services import card_save
from config.celery import app
from core.models import DeadLetter
from core.schedules import all_schedules
from syncing.token_refresh import token_refresh_pair, token_refresh_schedule
from syncing.token_refresh_jobs import (
    REFRESH_TASK,
    SCHEDULE_TASK,
    usio_token_refresh_job,
    usio_token_refresh_schedule_task,
    usio_token_refresh_task,
)
from tests.broker import drain
from tests.syncing.conftest_h4 import (
    CREDIT,
    DEBIT,
    cards_state,
    dead_letters,
    exp_in_years,
    exp_this_month,
    make_card,
    refresh_calls,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _settings(settings):
    # 40 days: a card expiring at the end of this month is inside the window whatever today's date.
    settings.USIO_TOKEN_EXPIRY_DAYS = 40
    settings.USIO_TOKEN_MAX_AGE_DAYS = 180
    drain("usio-refresh")
    yield
    drain("usio-refresh")


def _scheduled(**kwargs) -> list[list[int]]:
    """The card ids of each job the scheduler fans out (sorted)."""
    return sorted(ids for ids, _ in _jobs(**kwargs))


def _jobs(**kwargs) -> list[tuple[list[int], str]]:
    jobs: list[tuple[list[int], str]] = []
    token_refresh_schedule(enqueue=lambda ids, pair: jobs.append((ids, pair)), **kwargs)
    return jobs


def test_jobs_are_declared_with_the_spec_queue_attempts_and_schedule():
    assert app.tasks[REFRESH_TASK].job_queue == "usio-refresh"  # registered under its name
    route = app.amqp.router.route({}, REFRESH_TASK, task_type=usio_token_refresh_task)
    assert route["queue"].name == "usio-refresh"
    assert (usio_token_refresh_task.job_queue, usio_token_refresh_task.attempts,
            usio_token_refresh_task.time_limit) == ("usio-refresh", 1, 54)
    assert usio_token_refresh_schedule_task.job_queue == "default"
    [spec] = [s for s in all_schedules() if s.name == "usio token refresh"]
    assert (spec.task, spec.crontab, spec.prod_only) == (SCHEDULE_TASK, "0 15 * * *", False)


def test_due_by_expiry_or_by_age_and_nothing_else():
    expiring = make_card("u-expiring", debit="d-exp", credit="c-exp", card_exp=exp_this_month())
    old = make_card("u-old", debit="d-old", credit="c-old", age_days=181)
    make_card("u-fresh", debit="d-fresh", credit="c-fresh")  # young, expiring in years
    make_card("u-young", debit="d-young", credit="c-young", age_days=179)  # not yet old
    refreshed_recently = make_card("u-refreshed", debit="d-ref", credit="c-ref", age_days=400)
    DebitCard.objects.filter(pk=refreshed_recently.pk).update(token_refreshed_at=timezone.now() - timedelta(days=1))
    refreshed_long_ago = make_card("u-refreshed-old", debit="d-ro", credit="c-ro", age_days=400)
    DebitCard.objects.filter(pk=refreshed_long_ago.pk).update(
        token_refreshed_at=timezone.now() - timedelta(days=200))
    expiring_refreshed = make_card("u-exp-ref", debit="d-er", credit="c-er", card_exp=exp_this_month())
    DebitCard.objects.filter(pk=expiring_refreshed.pk).update(token_refreshed_at=timezone.now() - timedelta(hours=1))
    invalid_old = make_card("u-invalid", debit="d-inv", credit="c-inv", age_days=400)
    DebitCard.objects.filter(pk=invalid_old.pk).update(is_valid=False, invalid_date=timezone.now(),
                                                       invalid_reason="declined 05")

    assert _scheduled() == sorted([[expiring.pk], [old.pk], [refreshed_long_ago.pk]])


def test_due_ness_follows_the_clock():
    card = make_card("u-1", card_exp=exp_in_years(2))
    assert _scheduled() == []
    assert _scheduled(now=timezone.now() + timedelta(days=181)) == [[card.pk]]


def test_cards_sharing_a_token_pair_are_one_job():
    first = make_card("u-1", age_days=200)
    second = make_card("u-2", age_days=200)
    other = make_card("u-3", debit="d-other", credit=CREDIT, age_days=200)  # same credit token, other pair
    assert _scheduled() == sorted([[first.pk, second.pk], [other.pk]])


def test_the_scheduler_task_enqueues_one_message_per_pair_without_tokens():
    first = make_card("u-1", age_days=200)
    second = make_card("u-2", age_days=200)
    third = make_card("u-3", debit="d-3", credit="c-3", age_days=200)
    result = usio_token_refresh_schedule_task.apply()
    assert result.successful() and result.get()["enqueued"] == 2
    messages = drain("usio-refresh")
    assert {headers["task"] for headers, _ in messages} == {REFRESH_TASK}
    assert sorted(payload[1]["card_ids"] for _, payload in messages) == sorted([[first.pk, second.pk], [third.pk]])
    raw = json.dumps([payload for _, payload in messages])
    assert DEBIT not in raw and CREDIT not in raw


def test_two_cards_sharing_a_pair_are_refreshed_with_one_pair_of_calls(sandbox, capsys):
    first = make_card("u-1", age_days=200)
    second = make_card("u-2", age_days=200)
    call_command("run_job", "usio_token_refresh")
    output = json.loads(capsys.readouterr().out)
    assert (output["job"], output["result"]["pairs"], output["result"]["refreshed"]) == ("usio_token_refresh", 1, 2)

    calls = refresh_calls(sandbox)
    assert len(calls) == 2  # the debit token and the credit token, once each for both cards
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.debit_transaction_reference_id.startswith("tok_") and first.debit_transaction_reference_id != DEBIT
    assert first.transaction_reference_id.startswith("tok_") and first.transaction_reference_id != CREDIT
    assert (second.transaction_reference_id, second.debit_transaction_reference_id) == (
        first.transaction_reference_id, first.debit_transaction_reference_id)
    assert first.token_refreshed_at is not None and second.token_refreshed_at is not None
    assert first.is_valid and second.is_valid
    changes = DebitCardChange.objects.filter(actor="token_refresh")
    assert sorted(changes.values_list("user_id", "change_type")) == [("u-1", ChangeType.TOKENS_REFRESHED),
                                                                     ("u-2", ChangeType.TOKENS_REFRESHED)]
    history = json.dumps(list(DebitCardChange.objects.values()), default=str)
    assert first.debit_transaction_reference_id not in history and DEBIT not in history

    # The next day nothing is due: the tokens were refreshed a day ago.
    before = cards_state()
    result = usio_token_refresh_job(now=timezone.now() + timedelta(days=1))
    assert result["pairs"] == 0
    assert len(refresh_calls(sandbox)) == 2
    assert cards_state() == before


def test_the_worker_through_celerys_tracer_and_a_redelivery_changes_nothing(sandbox):
    card = make_card("u-1", age_days=200)
    [(card_ids, pair)] = _jobs()
    assert DEBIT not in pair and CREDIT not in pair
    result = usio_token_refresh_task.apply(kwargs={"card_ids": card_ids, "pair": pair})
    assert result.successful() and result.get()["refreshed"] == [card.pk]
    card.refresh_from_db()
    assert card.debit_transaction_reference_id != DEBIT
    before = cards_state()
    again = usio_token_refresh_task.apply(kwargs={"card_ids": card_ids, "pair": pair})  # a redelivered message
    assert again.successful() and again.get()["skipped"] == [card.pk]
    assert len(refresh_calls(sandbox)) == 2  # the new pair was not refreshed again
    assert cards_state() == before


def test_a_card_replaced_after_scheduling_is_left_alone(sandbox):
    kept = make_card("u-1", age_days=200)
    replaced = make_card("u-2", age_days=200)
    [(card_ids, pair)] = _jobs()
    card_save(user_id="u-2", masked_card_number="1111", card_exp=exp_in_years(3), transaction_reference_id="c-new",
              debit_transaction_reference_id="d-new", actor="service:test")
    result = token_refresh_pair(card_ids=card_ids, pair=pair)
    assert (result.refreshed, result.skipped) == ([kept.pk], [replaced.pk])
    replaced.refresh_from_db()
    assert (replaced.transaction_reference_id, replaced.debit_transaction_reference_id) == ("c-new", "d-new")
    assert replaced.token_refreshed_at is None
    assert len(refresh_calls(sandbox)) == 2


def test_a_refused_refresh_invalidates_the_cards_with_the_reason(sandbox):
    first = make_card("u-1", debit="unknown", age_days=200)
    second = make_card("u-2", debit="unknown", age_days=200)
    result = usio_token_refresh_job()
    assert (result["invalidated"], result["refreshed"]) == (2, 0)
    for card in (first, second):
        card.refresh_from_db()
        assert not card.is_valid and card.invalid_date is not None
        assert card.invalid_reason == "token refresh refused: 5030"
        assert (card.debit_transaction_reference_id, card.transaction_reference_id) == ("unknown", CREDIT)
        assert card.token_refreshed_at is None
    assert DebitCardChange.objects.filter(change_type=ChangeType.INVALIDATED, actor="token_refresh").count() == 2
    assert len(refresh_calls(sandbox)) == 1  # refused at the debit token: the credit token is not asked for
    assert DeadLetter.objects.count() == 0


def test_usio_down_leaves_the_card_unchanged_and_dead_letters_after_one_attempt(sandbox):
    card = make_card("u-1", age_days=200)
    [(card_ids, pair)] = _jobs()
    sandbox.fault("usio.RefreshToken", "500", count=1)
    before = cards_state()
    result = usio_token_refresh_task.apply(kwargs={"card_ids": card_ids, "pair": pair})
    assert result.failed()
    assert cards_state() == before
    [letter] = dead_letters(REFRESH_TASK)
    assert (letter.queue, letter.attempts, letter.kwargs) == ("usio-refresh", 1, {"card_ids": [card.pk],
                                                                                 "pair": pair})
    assert "ProcessorUnavailable" in letter.last_error
    assert len(refresh_calls(sandbox)) == 1  # one attempt: no retry (the fault was for one call only)

    # The replay (the same message) refreshes the card.
    assert usio_token_refresh_task.apply(kwargs=letter.kwargs).successful()
    card.refresh_from_db()
    assert card.debit_transaction_reference_id != DEBIT and card.token_refreshed_at is not None


def _malformed_refresh(sandbox) -> DeadLetter:
    card = make_card("u-1", age_days=200)
    sandbox.fault("usio.RefreshToken", "malformed", count=1)
    before = cards_state()
    assert usio_token_refresh_task.apply(kwargs={"card_ids": [card.pk]}).failed()
    assert cards_state() == before
    [letter] = dead_letters(REFRESH_TASK)
    return letter


def test_a_malformed_answer_changes_nothing_and_is_dead_lettered_after_one_attempt(sandbox):
    letter = _malformed_refresh(sandbox)
    assert letter.attempts == 1 and "ProcessorProtocolError" in letter.last_error


def test_a_malformed_answer_is_dead_lettered_with_the_raw_answer_and_no_token(sandbox):
    letter = _malformed_refresh(sandbox)
    assert letter.raw_answer is not None and letter.raw_answer["operation"] == "RefreshToken"
    assert DEBIT not in json.dumps(letter.raw_answer) and "tok_" not in json.dumps(letter.raw_answer)


def test_run_job_keeps_the_raw_answer_of_a_malformed_refresh(sandbox):
    card = make_card("u-1", age_days=200)
    sandbox.fault("usio.RefreshToken", "malformed", count=1)
    before = cards_state()
    assert usio_token_refresh_job()["dead_lettered"] == 1
    assert cards_state() == before
    [letter] = dead_letters(REFRESH_TASK)
    assert letter.kwargs["card_ids"] == [card.pk] and letter.attempts == 1
    assert letter.raw_answer["operation"] == "RefreshToken" and letter.raw_answer["status"] == 200
    assert DEBIT not in json.dumps(letter.raw_answer) and "tok_" not in json.dumps(letter.raw_answer)


def test_run_job_dead_letters_a_failing_pair_and_goes_on(sandbox):
    failing = make_card("u-1", debit="d-1", credit="c-1", age_days=200)
    working = make_card("u-2", debit="d-2", credit="c-2", age_days=200)
    sandbox.fault("usio.RefreshToken", "500", count=1)  # the first pair's first call
    result = usio_token_refresh_job()
    assert (result["pairs"], result["refreshed"], result["dead_lettered"]) == (2, 1, 1)
    [letter] = dead_letters(REFRESH_TASK)
    assert letter.kwargs["card_ids"] == [failing.pk]
    failing.refresh_from_db()
    working.refresh_from_db()
    assert failing.debit_transaction_reference_id == "d-1" and working.debit_transaction_reference_id != "d-2"


def test_the_store_leaves_a_card_replaced_during_the_usio_calls_alone():
    """The worker read the pair, called Usio; meanwhile the user replaced the card: the store must skip it."""
    from cards.services import card_store_refreshed_tokens

    kept = make_card("u-1")
    replaced = make_card("u-2")
    card_save(user_id="u-2", masked_card_number="1111", card_exp=exp_in_years(3), transaction_reference_id="c-new",
              debit_transaction_reference_id="d-new", actor="service:test")
    before = DebitCard.objects.get(pk=replaced.pk)
    updated = card_store_refreshed_tokens(card_ids=[kept.pk, replaced.pk], old_credit_token=CREDIT,
                                          old_debit_token=DEBIT, new_credit_token="c-fresh",
                                          new_debit_token="d-fresh")
    assert updated == [kept.pk]
    assert DebitCard.objects.get(pk=replaced.pk).__dict__ | {"_state": None} == before.__dict__ | {"_state": None}
    kept.refresh_from_db()
    assert (kept.transaction_reference_id, kept.debit_transaction_reference_id) == ("c-fresh", "d-fresh")
