"""The back-office dashboard (issue 8): ``/admin/dashboard/``.

The figures are checked against seeded rows with known statuses, dates and return codes, the return-rate colours
exactly at the SPEC §12 thresholds, the charts parsed as XML, and the query count held constant.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from backoffice import charts
from backoffice.selectors import nacha_return_rates
from core.business_days import CHICAGO, add_business_days, chicago_date
from core.models import (
    DeadLetter,
    JobRun,
    OutboxConsumption,
    OutboxEvent,
    PushDelivery,
    PushSubscription,
)
from payments.models import Payment
from payments.selectors import payment_stuck_cutoffs
from tests.backoffice.conftest import login

pytestmark = pytest.mark.django_db

SUBSCRIPTION_MID = "29111679"
FLOAT_DEBIT_MID = "29063402"
OTHER_MID = "55550000"


def staff_client(client, group: str | None):
    return login(client, f"staff-{group or 'none'}", group)


def _payment(*, status="COMPLETED", method="ach", payment_type="debit", provider="usio", purpose="subscription",
             merchant=SUBSCRIPTION_MID, submit_date=None, return_date=None, return_code=None, amount="10.00",
             created_at=None) -> Payment:
    return Payment(
        id=uuid.uuid4(), user_id="u-dash", purpose=purpose, payment_method=method, payment_type=payment_type,
        payment_provider=provider, merchant_account=None if provider == "jpm" else merchant,
        amount=Decimal("0" if purpose == "prenote" else amount), payment_status=status,
        submit_date=submit_date if submit_date is not None else timezone.now() - timedelta(days=2),
        return_date=return_date, return_code=return_code)


def debits(n: int, returns: list[str | None] = (), **kw) -> list[Payment]:
    """``n`` ACH debits submitted 10 days ago; the first ``len(returns)`` returned 5 days ago with those codes."""
    submitted = timezone.now() - timedelta(days=10)
    rows = []
    for i in range(n):
        if i < len(returns):
            rows.append(_payment(status="FAILED", submit_date=submitted, return_date=timezone.now() - timedelta(days=5),
                                 return_code=returns[i], **kw))
        else:
            rows.append(_payment(status="COMPLETED", submit_date=submitted, **kw))
    return rows


def dashboard(client):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 200
    return response.content.decode()


def cell(html: str, element_id: str) -> tuple[str, str]:
    """(class, text) of the element with ``id``."""
    match = re.search(rf'<td id="{re.escape(element_id)}" class="([^"]*)">([^<]*)</td>', html)
    assert match, f"no cell {element_id}"
    return match.group(1), match.group(2).strip()


def parse_svg(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314  (our own page's markup, not untrusted input)


def our_svgs(html: str) -> list[str]:
    return re.findall(r'<svg class="bo-chart.*?</svg>', html, flags=re.S)


# --- (b) Nacha return rates ---------------------------------------------------------------------------------------
@pytest.fixture
def return_rate_data():
    rows = []
    # subscription: 3 administrative returns of 100 (R02, AC04 → R02, ac01 → R03) = 3.00 %: NOT under 3 % → red.
    rows += debits(100, ["R02", "AC04", " ac01 "], merchant=SUBSCRIPTION_MID)
    # float debit: 29 administrative of 1000 = 2.90 % (not red), 5 unauthorized (R07) = 0.50 % → red.
    rows += debits(1000, ["R03"] * 29 + ["R07"] * 5, merchant=FLOAT_DEBIT_MID, purpose="float")
    # another account: 4 unauthorized (MD01 → R10) of 1000 = 0.40 %: under 0.5 % → not red.
    rows += debits(1000, ["MD01"] * 4, merchant=OTHER_MID, purpose="loan")
    # JPM: 3 of 20 returned with R01 = 15.00 % overall → red; neither administrative nor unauthorized.
    rows += debits(20, ["R01"] * 3, provider="jpm")
    # Left out of every rate: a returned prenote, credits, card debits, returns and debits older than 60 days,
    # a PROCESSING debit, a debit rejected before the network (FAILED without a return).
    now = timezone.now()
    rows += [
        _payment(purpose="prenote", status="FAILED", provider="jpm", return_code="R02", return_date=now),
        _payment(payment_type="credit", purpose="float", status="FAILED", return_code="R02", return_date=now,
                 merchant=SUBSCRIPTION_MID),
        _payment(method="pinless", status="FAILED", return_code="05", merchant=SUBSCRIPTION_MID),
        _payment(status="FAILED", provider="jpm", submit_date=now - timedelta(days=70),
                 return_date=now - timedelta(days=61), return_code="R02"),
        _payment(status="COMPLETED", provider="jpm", submit_date=now - timedelta(days=61)),
        _payment(status="PROCESSING", provider="jpm"),
        _payment(status="FAILED", provider="jpm", return_code="AC04"),  # rejected: no return_date
    ]
    Payment.objects.bulk_create(rows)


def test_return_rates_per_merchant_account_red_exactly_at_the_thresholds(client, return_rate_data):
    html = dashboard(staff_client(client, "support"))
    assert cell(html, f"rate-{SUBSCRIPTION_MID}-administrative") == ("bo-over", "3.00% (3)")
    assert cell(html, f"rate-{SUBSCRIPTION_MID}-overall") == ("bo-ok", "3.00% (3)")
    assert cell(html, f"rate-{SUBSCRIPTION_MID}-unauthorized") == ("bo-ok", "0.00% (0)")
    assert cell(html, f"rate-{FLOAT_DEBIT_MID}-administrative") == ("bo-ok", "2.90% (29)")
    assert cell(html, f"rate-{FLOAT_DEBIT_MID}-unauthorized") == ("bo-over", "0.50% (5)")
    assert cell(html, f"rate-{FLOAT_DEBIT_MID}-overall") == ("bo-ok", "3.40% (34)")
    assert cell(html, f"rate-{OTHER_MID}-unauthorized") == ("bo-ok", "0.40% (4)")
    assert cell(html, "rate-jpm-overall") == ("bo-over", "15.00% (3)")
    assert cell(html, "rate-jpm-administrative") == ("bo-ok", "0.00% (0)")
    assert f"{SUBSCRIPTION_MID} (subscription)" in html and f"{FLOAT_DEBIT_MID} (float_debit)" in html
    # the charts: one bar per account and kind, red (fill and class) exactly where the table is red
    svgs = {kind: re.search(rf'id="chart-rate-{kind}".*?(<svg.*?</svg>)', html, flags=re.S).group(1)
            for kind in ("overall", "administrative", "unauthorized")}
    for kind, over in (("overall", 1), ("administrative", 1), ("unauthorized", 1)):
        tree = parse_svg(svgs[kind])
        bars = [r for r in tree.iter("rect") if "bo-bar" in r.get("class", "")]
        assert len(bars) == 4
        red = [r for r in bars if "bo-over" in r.get("class")]
        assert len(red) == over and all(r.get("fill") == charts.RED for r in red)
        assert any(line.get("class") == "bo-threshold" for line in tree.iter("line"))


def test_return_rate_denominators_leave_out_what_never_entered_the_network(return_rate_data):
    rates = {r.account: r for r in nacha_return_rates(now=timezone.now())}
    assert set(rates) == {SUBSCRIPTION_MID, FLOAT_DEBIT_MID, OTHER_MID, "jpm"}
    jpm = rates["jpm"]
    assert (jpm.debits, jpm.returned, jpm.administrative, jpm.unauthorized) == (20, 3, 0, 0)
    sub = rates[SUBSCRIPTION_MID]
    assert (sub.debits, sub.returned, sub.administrative) == (100, 3, 3)


def test_returns_without_debits_in_the_window_are_red():
    now = timezone.now()
    Payment.objects.bulk_create([_payment(status="FAILED", submit_date=now - timedelta(days=65),
                                          return_date=now - timedelta(days=1), return_code="R01")])
    [rate] = nacha_return_rates(now=now)
    assert rate.debits == 0 and rate.rates["overall"] is None and rate.over["overall"] is True


# --- (a) payments per day -------------------------------------------------------------------------------------------
def test_payments_per_day_by_status_and_method(client):
    now = timezone.now()
    today = chicago_date(now)
    noon = lambda d: datetime.combine(d, datetime.min.time(), tzinfo=CHICAGO) + timedelta(hours=12)  # noqa: E731
    Payment.objects.bulk_create([
        _payment(status="COMPLETED", method="pinless", submit_date=noon(today - timedelta(days=2))),
        _payment(status="COMPLETED", method="pinless", submit_date=noon(today - timedelta(days=2))),
        _payment(status="FAILED", method="ach", submit_date=noon(today - timedelta(days=2)), return_code="R01"),
        _payment(status="ACHSENT", method="ach", submit_date=noon(today - timedelta(days=29))),
        _payment(status="COMPLETED", method="rtp", payment_type="credit", purpose="float",
                 submit_date=noon(today - timedelta(days=30))),  # the 31st day back: outside the chart
    ])
    html = dashboard(staff_client(client, "support"))
    totals = dict(re.findall(r'<td id="status-total-(\w+)">(\d+)</td>', html))
    assert totals == {"PROCESSING": "0", "ACHSENT": "1", "CLEARED": "0", "COMPLETED": "2", "FAILED": "1",
                      "CHARGED_BACK": "0", "REFUNDED": "0"}
    methods = dict(re.findall(r'<td id="method-total-(\w+)">(\d+)</td>', html))
    assert methods == {"ach": "2", "pinless": "2", "rtp": "0"}
    day = (today - timedelta(days=2)).strftime("%m-%d")
    assert f"{day} — COMPLETED: 2" in html and f"{day} — FAILED: 1" in html and f"{day} — pinless: 2" in html
    assert "(4 payments)" in html


# --- the SVG --------------------------------------------------------------------------------------------------------
def test_charts_are_well_formed_svg_with_escaped_text_and_no_external_url(client):
    Payment.objects.bulk_create(debits(10, ["R02"], merchant="<b>&'x\"</b>"))
    html = dashboard(staff_client(client, "support"))
    svgs = our_svgs(html)
    assert len(svgs) == 5  # by status, by method, three rate charts
    for svg in svgs:
        tree = parse_svg(svg)  # raises on malformed XML (an unescaped label would break it)
        assert tree.tag == "svg"
        assert "http" not in svg and "<b>" not in svg
    assert any("&lt;b&gt;&amp;" in svg for svg in svgs)
    # Nothing external on the page: Django's admin base names the SVG namespace (an identifier, never fetched).
    page = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://(?!testserver)", page)
    assert "<script src=" not in page or all(s.startswith("/") for s in re.findall(r'<script src="([^"]+)"', page))


def test_stacked_chart_helper_escapes_and_scales():
    svg = charts.stacked_bar_chart(title="t <&>", labels=["a", "b"],
                                   series=[charts.Series("x<y", [3, 0], "#000000"), charts.Series("z", [1, 2], "#fff")])
    tree = parse_svg(str(svg))
    rects = [r for r in tree.iter("rect") if r.find("title") is not None]
    assert [r.find("title").text for r in rects] == ["a — x<y: 3", "a — z: 1", "b — z: 2"]
    assert tree.find("title").text == "t <&>"


# --- (c) stuck payments ---------------------------------------------------------------------------------------------
def test_stuck_counts_match_the_changelist_stuck_filter(client):
    now = timezone.now()
    _, achsent_cutoff = payment_stuck_cutoffs(now=now)
    rows = [
        _payment(status="PROCESSING", submit_date=now - timedelta(minutes=30)),
        _payment(status="PROCESSING", submit_date=now),
        _payment(status="ACHSENT", submit_date=achsent_cutoff - timedelta(hours=1)),
        _payment(status="ACHSENT", submit_date=achsent_cutoff - timedelta(days=3)),
        _payment(status="ACHSENT", submit_date=achsent_cutoff + timedelta(hours=1)),
    ]
    Payment.objects.bulk_create(rows)
    Payment.objects.filter(pk=rows[0].pk).update(created_at=now - timedelta(minutes=30))
    c = staff_client(client, "support")
    html = dashboard(c)
    assert re.search(r'id="stuck-processing"><span class="bo-number bo-over">1</span>', html)
    assert re.search(r'id="stuck-achsent"><span class="bo-number bo-over">2</span>', html)
    assert 'href="/admin/payments/payment/?stuck=processing"' in html
    assert 'href="/admin/payments/payment/?stuck=achsent"' in html
    # the same payments as the changelist's filter lists
    for value, expected in (("processing", {rows[0].pk}), ("achsent", {rows[2].pk, rows[3].pk})):
        response = c.get("/admin/payments/payment/", {"stuck": value})
        assert {obj.pk for obj in response.context["cl"].result_list} == expected
    assert add_business_days(chicago_date(now), -6) == achsent_cutoff.date()


# --- (d) dead letters, (e) outbox -------------------------------------------------------------------------------------
def test_dead_letters_waiting_and_the_newest_ten(client):
    letters = DeadLetter.objects.bulk_create([
        DeadLetter(task_name=f"jobs.task_{i}", queue="usio-sync", last_error=f"boom {i}", attempts=10)
        for i in range(12)])
    DeadLetter.objects.filter(pk=letters[0].pk).update(replayed_at=timezone.now(), replayed_by="ops")
    html = dashboard(staff_client(client, "support"))
    assert re.search(r'id="dead-letters-waiting"><span class="bo-number bo-over">11</span>', html)
    section = html[html.index('id="section-dead-letters"'):html.index('id="section-jobs"')]
    assert section.count('href="/admin/core/deadletter/') == 10
    assert "jobs.task_0<" not in section
    assert "action-replay-" not in section  # support may not replay


def test_outbox_backlog(client):
    now = timezone.now()
    events = [OutboxEvent.objects.create(event_id=uuid.uuid4(), type="T", subject="s", aggregate_id=f"a{i}",
                                         sequence=1, data={}, occurred_at=now,
                                         published_at=now if i == 0 else None) for i in range(3)]
    OutboxConsumption.objects.create(consumer="c1", event_id=events[0].event_id, status="failing", attempts=2)
    OutboxConsumption.objects.create(consumer="c2", event_id=events[0].event_id, status="dead", attempts=9)
    OutboxConsumption.objects.create(consumer="c3", event_id=events[0].event_id, status="done")
    subscription = PushSubscription.objects.create(name="sub", url="https://example.invalid/hook", secret="s3cret")
    PushDelivery.objects.create(subscription=subscription, event=events[1], next_attempt_at=now)
    html = dashboard(staff_client(client, "support"))
    assert re.search(r'id="outbox-unpublished"><span class="bo-number">2</span>', html)
    assert re.search(r'id="outbox-consumptions"><span class="bo-number bo-over">1 / 1</span>', html)
    assert re.search(r'id="outbox-deliveries"><span class="bo-number">1 / 0</span>', html)
    assert "example.invalid" not in html and "s3cret" not in html


# --- (f) scheduled jobs -----------------------------------------------------------------------------------------------
def test_scheduled_jobs_with_their_last_run(client):
    now = timezone.now()
    cron = CrontabSchedule.objects.create(minute="0", hour="17", day_of_week="*", day_of_month="*",
                                          month_of_year="*", timezone="UTC")
    every = IntervalSchedule.objects.create(every=15, period="minutes")
    PeriodicTask.objects.create(name="check-ach", task="syncing.check_ach_schedule", crontab=cron, last_run_at=now)
    PeriodicTask.objects.create(name="reconcile", task="payments.reconcile", interval=every, enabled=False)
    JobRun.objects.create(name="check-ach", task_name="syncing.check_ach_schedule", last_started_at=now,
                          last_finished_at=now, last_outcome="failed", last_error="Usio down", runs=4, failures=1)
    JobRun.objects.create(name="fix_debit_cards", task_name="cards.fix", last_started_at=now,
                          last_outcome="succeeded", runs=1)
    html = dashboard(staff_client(client, "support"))
    section = html[html.index('id="section-jobs"'):]
    row = re.search(r'<tr id="job-check-ach" class="bo-over">.*?</tr>', section, flags=re.S).group(0)
    assert "failed" in row and "Usio down" in row and "4 / 1" in row and "0 17 * * *" in row
    row = re.search(r'<tr id="job-reconcile" class="">.*?</tr>', section, flags=re.S).group(0)
    assert "no run recorded" in row and "every 15 minutes" in row and ">no<" in row
    row = re.search(r'<tr id="job-fix_debit_cards" class="">.*?</tr>', section, flags=re.S).group(0)
    assert "by hand" in row and "bo-ok" in row


# --- permissions, query counts ----------------------------------------------------------------------------------------
def test_staff_without_a_group_gets_403(client):
    assert staff_client(client, None).get("/admin/dashboard/").status_code == 403


def test_anonymous_is_sent_to_login(client):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_admin_sees_the_dashboard_and_replay_links(client):
    DeadLetter.objects.create(task_name="jobs.x", queue="usio-sync", last_error="boom", attempts=10)
    html = dashboard(staff_client(client, "admin"))
    assert 'id="section-dead-letters"' in html
    dl = DeadLetter.objects.get()
    from backoffice.views import optional_url

    replay = optional_url("admin:core_deadletter_replay", dl.pk)
    assert (f'id="action-replay-{dl.pk}"' in html) == bool(replay)


def _dashboard_queries(client, n: int, django_assert_max_num_queries) -> int:
    Payment.objects.all().delete()
    now = timezone.now()
    Payment.objects.bulk_create(
        [_payment(status=s, submit_date=now - timedelta(days=i % 40), merchant=f"m{i % 7}",
                  return_date=now - timedelta(days=1) if s == "FAILED" else None, return_code="R02")
         for i, s in zip(range(n), ["COMPLETED", "FAILED", "ACHSENT", "PROCESSING"] * n, strict=False)])
    with django_assert_max_num_queries(25), CaptureQueriesContext(connection) as ctx:
        dashboard(client)
    return len(ctx)


def test_query_count_does_not_grow_with_the_number_of_payments(client, django_assert_max_num_queries):
    c = staff_client(client, "admin")
    for i in range(3):
        DeadLetter.objects.create(task_name=f"jobs.{i}", queue="q", last_error="e", attempts=1)
        PeriodicTask.objects.create(name=f"p{i}", task="t", interval=IntervalSchedule.objects.create(
            every=i + 1, period="minutes"))
    assert _dashboard_queries(c, 5, django_assert_max_num_queries) == _dashboard_queries(
        c, 50, django_assert_max_num_queries)
