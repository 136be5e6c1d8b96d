"""Balance report (SPEC §7.6): the Usio prefunding balance of every merchant account posted to Slack (the sandbox's
webhook), a failing account reported and never skipped, a Slack failure retried then dead-lettered, both
schedules prod only."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from core.models import DeadLetter
from core.schedules import all_schedules, schedules_sync
from syncing.balance_report import balance_report_post
from syncing.balance_report_jobs import REPORT_TASK, balance_report_task

pytestmark = pytest.mark.django_db(transaction=True)

BALANCES = {"subscription": "1234.56", "float_debit": "20000.00", "float_credit": "99.01", "loan": "0.00"}


def merchant(name: str) -> str:
    return settings.USIO_ACCOUNTS[name]["merchant_id"]


@pytest.fixture
def balances(sandbox):
    for name, amount in BALANCES.items():
        sandbox.control("PUT", f"usio/balances/{merchant(name)}", {"balance": amount})
    return sandbox


def test_both_schedules_are_registered_prod_only_and_created_disabled_outside_prod():
    specs = {s.name: s for s in all_schedules() if s.task == REPORT_TASK}
    assert {name: (s.crontab, s.prod_only, s.kwargs) for name, s in specs.items()} == {
        "balance report daily": ("0 13 * * *", True, {"mode": "daily"}),
        "balance report hourly": ("0 * * * *", True, {"mode": "hourly"}),
    }
    assert settings.ENVIRONMENT != "prod"
    schedules_sync()
    rows = PeriodicTask.objects.filter(task=REPORT_TASK)
    assert {(row.name, row.enabled, row.crontab.hour, row.crontab.minute, json.loads(row.kwargs)["mode"])
            for row in rows} == {("balance report daily", False, "13", "0", "daily"),
                                 ("balance report hourly", False, "*", "0", "hourly")}
    assert (balance_report_task.job_queue, balance_report_task.attempts) == ("default", 3)


def test_the_daily_report_lists_every_account_and_the_total(balances, capsys):
    call_command("run_job", "balance_report", "--mode", "daily")
    result = json.loads(capsys.readouterr().out)["result"]
    assert (result["total"], result["failed"]) == ("21333.57", [])

    [posted] = balances.received("slack")
    text = posted["text"]
    for name, amount in (("subscription", "$1,234.56"), ("float_debit", "$20,000.00"), ("float_credit", "$99.01"),
                         ("loan", "$0.00")):
        assert f"{name} ({merchant(name)}): {amount}" in text
    assert "Total (4 of 4 accounts): $21,333.57" in text
    assert posted["blocks"][0]["type"] == "header"
    assert "$1,234.56" in json.dumps(posted["blocks"]) and "$21,333.57" in json.dumps(posted["blocks"])
    assert len(balances.requests("usio", "usio.GetPrefundingBalance")) == 4


def test_the_hourly_report_is_one_line(balances):
    balance_report_post(mode="hourly")
    [posted] = balances.received("slack")
    assert "\n" not in posted["text"] and "blocks" not in posted
    assert "subscription $1,234.56" in posted["text"] and "loan $0.00" in posted["text"]
    assert "total $21,333.57" in posted["text"]


@pytest.mark.parametrize("mode", ["daily", "hourly"])
def test_an_account_that_cannot_be_read_is_reported_as_failed_and_the_others_are_present(balances, mode):
    balances.fault("usio.GetPrefundingBalance", "500", count=1)  # the first account asked: subscription
    result = balance_report_post(mode=mode)
    assert result["failed"] == ["subscription"] and result["total"] == "20099.01"
    [posted] = balances.received("slack")
    text = posted["text"]
    if mode == "daily":
        assert f"subscription ({merchant('subscription')}): unavailable" in text
        assert "Total (3 of 4 accounts): $20,099.01" in text
        assert "1 account(s) could not be read" in text
    else:
        assert "subscription UNAVAILABLE" in text and "1 FAILED" in text
    for amount in ("$20,000.00", "$99.01", "$0.00"):
        assert amount in text
    assert "1,234.56" not in text


def test_a_malformed_balance_and_a_missing_account_are_reported_too(balances, settings):
    settings.USIO_SYNC_ACCOUNTS = ["subscription", "float_debit", "nowhere"]
    balances.fault("usio.GetPrefundingBalance", "malformed", count=1)
    result = balance_report_post(mode="daily")
    assert result["failed"] == ["subscription", "nowhere"]
    text = balances.received("slack")[0]["text"]
    assert "subscription" in text and "unreadable answer" in text and "nowhere (?): not configured" in text
    assert "Total (1 of 3 accounts): $20,000.00" in text


def test_a_slack_failure_is_retried_then_dead_lettered(balances):
    balances.fault("slack.webhook", "500", count=3)
    result = balance_report_task.apply(kwargs={"mode": "daily"})
    assert result.failed()
    assert len(balances.requests("slack")) == 3  # the default queue's three attempts
    assert balances.received("slack") == []
    letter = DeadLetter.objects.get(task_name=REPORT_TASK)
    assert (letter.queue, letter.attempts, letter.kwargs) == ("default", 3, {"mode": "daily"})


def test_one_slack_failure_is_retried_and_the_report_posted_once(balances):
    balances.fault("slack.webhook", "500", count=1)
    assert balance_report_task.apply(kwargs={"mode": "hourly"}).successful()
    assert len(balances.received("slack")) == 1
    assert DeadLetter.objects.count() == 0


def test_slack_refusing_the_message_raises(balances):
    from integrations.errors import ProcessorDeclined

    balances.fault("slack.webhook", "400", count=1)
    with pytest.raises(ProcessorDeclined):
        balance_report_post(mode="daily")
