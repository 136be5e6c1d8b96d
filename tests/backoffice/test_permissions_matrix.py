"""The back office's permission matrix (issue 8, SPEC §10), enforced server-side.

Every ModelAdmin registered on the admin site and every custom back-office URL (found in the URL resolver, not in a
hand list) is requested by a staff user of the ``support`` group, of the ``admin`` group and of no group, and the
answer must be exactly what the groups grant (``core/groups.py``). The expectations below are written out by hand
from the issue, not derived from the groups, so that a change of the groups that breaks the contract fails here.

Also: no page of the admin shows a bank account's number, whoever looks (only the last 4).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import get_resolver, reverse
from django.utils import timezone

from core.models import AuditEntry
from tests.backoffice.conftest import login as staff_login

pytestmark = pytest.mark.django_db

ROLES = ("support", "admin", "nogroup")
PROJECT_APPS = ("core", "payments", "cards", "bank_accounts", "refunds", "blocklist", "fraud", "syncing")
ADMIN_APPS = (*PROJECT_APPS, "django_celery_beat")
# What support may not even see: credentials, outbound subscriptions and their deliveries, idempotency records.
SUPPORT_HIDDEN = {"core.apikey", "core.pushsubscription", "core.pushdelivery", "core.idempotencykey"}
# The permissions of support's four actions.
SUPPORT_ACTIONS = {"refunds.add_refund", "blocklist.add_blocklistrecord", "cards.change_debitcard",
                   "payments.sync_payment"}
BEAT_MODELS = ("periodictask", "intervalschedule", "crontabschedule", "solarschedule", "clockedschedule")
# Add pages that answer something else than 403 (everything else is added through services, or never).
ADD_PAGES = {
    "core.pushsubscription": {"admin": 200},
    "blocklist.blocklistrecord": {"admin": 302, "support": 302},  # → the "Block a user" page
    **{f"django_celery_beat.{model}": {"admin": 200} for model in BEAT_MODELS},
}
# Delete pages the admin group may open (API keys, schedules); money, history and evidence are never deleted.
ADMIN_DELETABLE = {"core.apikey", *(f"django_celery_beat.{model}" for model in BEAT_MODELS)}

# The agreed custom back-office URLs → the permission each needs ("view": any back-office role).
CUSTOM_URL_PERMISSION = {
    "payments_payment_refund": "refunds.add_refund",
    "payments_payment_sync": "payments.sync_payment",
    "payments_payment_mark_failed": "payments.mark_payment_failed",
    "blocklist_blocklistrecord_block": "blocklist.add_blocklistrecord",
    "blocklist_blocklistrecord_unblock": "blocklist.add_blocklistrecord",
    "cards_debitcard_override": "cards.change_debitcard",
    "core_deadletter_replay": "core.replay_deadletter",
    "core_outboxevent_redeliver": "core.redeliver_event",
    "backoffice_users": "view",
    "backoffice_user": "view",
    "backoffice_dashboard": "view",
}
STANDARD_SUFFIXES = ("_changelist", "_add", "_change", "_delete", "_history")
ADMIN_SITE_NAMES = {"index", "login", "logout", "password_change", "password_change_done", "jsi18n", "app_list",
                    "autocomplete", "view_on_site"}

ACCOUNT_NUMBER, ROUTING_NUMBER = "615243870912", "026009593"
USER_ID = "u-matrix"

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label_lower)
LABELS = [model._meta.label_lower for model, _ in REGISTRY]


def admin_url(model, page: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}", args=args)


def can_view(role: str, label: str) -> bool:
    app = label.split(".")[0]
    if role == "admin":
        return app in ADMIN_APPS
    if role == "support":
        return app in PROJECT_APPS and label not in SUPPORT_HIDDEN
    return False


def expected_add(role: str, label: str) -> int:
    return ADD_PAGES.get(label, {}).get(role, 403)


def expected_delete(role: str, label: str) -> int:
    return 200 if role == "admin" and label in ADMIN_DELETABLE else 403


def make_rows() -> None:
    """One row of every model where it is cheap, through the services where they exist."""
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    from bank_accounts.services import bank_account_save
    from blocklist.services import blocklist_block
    from cards.services import card_save
    from core.audit import audit_record
    from core.auth.api_keys import api_key_create
    from core.models import DeadLetter, IdempotencyKey, JobRun, OutboxConsumption, OutboxEvent, PushDelivery
    from core.outbox_push import push_subscription_create
    from fraud.models import FraudCheck, FraudResult
    from tests.outbox.conftest import make_payment, move

    now = timezone.now()
    api_key_create(name="matrix", role="service")
    DeadLetter.objects.create(task_name="tests.matrix", queue="default", args=[], kwargs={}, last_error="x",
                              attempts=1)
    audit_record(actor="test", action="test.setup", target_type="test", target_id="1", reason="setup")
    IdempotencyKey.objects.create(client_id="c", key="k", fingerprint="f", lease_expires_at=now)
    payment = make_payment("subscription_ach", user_id=USER_ID)
    move(payment, "ACHSENT")
    event = OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).first()
    if event is None:
        from core.outbox import outbox_record

        event = outbox_record(type="SUBSCRIPTION_SENT", subject=str(payment.pk), aggregate_id=str(payment.pk),
                              data={"id": str(payment.pk), "user_id": USER_ID})
    OutboxConsumption.objects.create(consumer="tests.matrix", event_id=event.event_id)
    subscription = push_subscription_create(name="matrix", url="https://example.com/hooks",
                                            secret="whsec-matrix-0123456789", actor="test")
    PushDelivery.objects.create(subscription=subscription, event=event, next_attempt_at=now)
    JobRun.objects.create(name="matrix", task_name="tests.matrix", last_started_at=now, last_outcome="succeeded")
    card_save(user_id=USER_ID, masked_card_number="4242", card_exp=f"12{now.year + 2}",
              transaction_reference_id="tok_matrix_credit", debit_transaction_reference_id="tok_matrix_debit",
              actor="test")
    bank_account_save(user_id=USER_ID, account_id="acc-matrix", account_number=ACCOUNT_NUMBER,
                      routing_number=ROUTING_NUMBER, actor="service:test")
    blocklist_block(user_id="u-blocked", reason="fraud", actor="test")
    check = FraudCheck.objects.create(user_id=USER_ID, window_hours=24, verdict="clear", created_at=now)
    FraudResult.objects.create(user_id=USER_ID, verdict="legitimate", score=Decimal("0.1"), source="test",
                               created_by="test", fraud_check=check)
    interval = IntervalSchedule.objects.create(every=5, period="minutes")
    CrontabSchedule.objects.create(minute="0")
    SolarSchedule.objects.create(event="sunrise", latitude=Decimal("10"), longitude=Decimal("10"))
    ClockedSchedule.objects.create(clocked_time=now)
    PeriodicTask.objects.create(name="matrix", task="tests.matrix", interval=interval)


def login(client, role: str):
    return staff_login(client, f"matrix-{role}", None if role == "nogroup" else role)


def snapshot() -> tuple:
    """Row counts of every registered model and the audit trail: a refused or empty request changes none."""
    return ({label: model._default_manager.count() for (model, _), label in zip(REGISTRY, LABELS, strict=True)},
            list(AuditEntry.objects.order_by("pk").values_list("pk", flat=True)))


def first_row(model):
    return model._default_manager.order_by("pk").first()


def assert_no_account_number(response, url: str) -> None:
    body = response.content.decode(errors="replace")
    assert ACCOUNT_NUMBER not in body and ROUTING_NUMBER not in body, url


@pytest.fixture
def rows():
    make_rows()


@pytest.mark.parametrize("role", ROLES)
def test_changelist_add_change_and_delete_pages_answer_as_the_groups_say(client, rows, role):
    login(client, role)
    before = snapshot()
    wrong = []
    for (model, _), label in zip(REGISTRY, LABELS, strict=True):
        checks = [("changelist", admin_url(model, "changelist"), 200 if can_view(role, label) else 403),
                  ("add", admin_url(model, "add"), expected_add(role, label))]
        row = first_row(model)
        if row is not None:
            checks += [("change", admin_url(model, "change", row.pk), 200 if can_view(role, label) else 403),
                       ("history", admin_url(model, "history", row.pk), 200 if can_view(role, label) else 403),
                       ("delete", admin_url(model, "delete", row.pk), expected_delete(role, label))]
        for page, url, expected in checks:
            response = client.get(url)
            assert_no_account_number(response, url)
            if response.status_code != expected:
                wrong.append((label, page, response.status_code, expected))
    assert wrong == [], "(model, page, got, expected)"
    assert snapshot() == before


@pytest.mark.parametrize("role", ["support", "nogroup"])
def test_tampered_posts_to_model_pages_are_refused_and_change_nothing(client, rows, role):
    login(client, role)
    before = snapshot()
    wrong = []
    for (model, _), label in zip(REGISTRY, LABELS, strict=True):
        posts = [("add", admin_url(model, "add"), {"name": "tampered", "reason": "tampered"})]
        row = first_row(model)
        if row is not None:
            posts += [("change", admin_url(model, "change", row.pk), {"reason": "tampered", "is_valid": ""}),
                      ("delete", admin_url(model, "delete", row.pk), {"post": "yes"})]
        for page, url, data in posts:
            status = client.post(url, data).status_code
            # Support's "add" of a blocklist record only redirects to the block page (it acts on nothing).
            expected = 302 if (role, label, page) == ("support", "blocklist.blocklistrecord", "add") else 403
            if status != expected:
                wrong.append((label, page, status, expected))
    assert wrong == [], "(model, page, got, expected)"
    assert snapshot() == before


def custom_url_names() -> list[str]:
    """The back office's own admin URLs, from the resolver: names under the admin namespace that start with a
    project app's prefix (or ``backoffice_``) and are not one of the admin's standard model pages."""
    resolver = get_resolver().namespace_dict["admin"][1]
    prefixes = (*(f"{app}_" for app in PROJECT_APPS), "backoffice_")
    return sorted(
        name for name in resolver.reverse_dict if isinstance(name, str)
        and name.startswith(prefixes) and not name.endswith(STANDARD_SUFFIXES) and name not in ADMIN_SITE_NAMES
    )


def custom_url(name: str) -> str:
    resolver = get_resolver().namespace_dict["admin"][1]
    params = resolver.reverse_dict.getlist(name)[0][0][0][1]
    if not params:
        return reverse(f"admin:{name}") + (f"?user_id={USER_ID}" if name.startswith("blocklist_") else "")
    if params == ["user_id"]:
        return reverse(f"admin:{name}", kwargs={"user_id": USER_ID})
    model = next(model for model, _ in REGISTRY
                 if name.startswith(f"{model._meta.app_label}_{model._meta.model_name}_"))
    row = first_row(model)
    assert row is not None, f"no {model._meta.label_lower} row to test {name}"
    return reverse(f"admin:{name}", kwargs={params[0]: row.pk})


def allowed(role: str, name: str) -> bool | None:
    """True/False as the groups say; None for a URL outside the agreed table (only "no group → 403" is known)."""
    if role == "nogroup":
        return False
    permission = CUSTOM_URL_PERMISSION.get(name)
    if permission is None:
        return None
    return permission == "view" or role == "admin" or permission in SUPPORT_ACTIONS


def test_the_resolver_lists_the_agreed_urls_this_brief_owns():
    names = custom_url_names()
    for name in ("blocklist_blocklistrecord_block", "blocklist_blocklistrecord_unblock", "cards_debitcard_override",
                 "core_deadletter_replay", "core_outboxevent_redeliver"):
        assert name in names


@pytest.mark.parametrize("role", ROLES)
def test_custom_back_office_urls_answer_as_the_groups_say_on_get_and_post(client, rows, role):
    login(client, role)
    tampered = {"reason": "tampered", "user_id": "u-tampered", "is_valid": "invalid", "amount": "1.00",
                "targets": ["consumer:payments.blocklist_auto_block"]}
    before = snapshot()
    wrong = []
    for name in custom_url_names():
        url = custom_url(name)
        expected = allowed(role, name)
        get_status = client.get(url).status_code
        if expected is False:
            post_status = client.post(url, tampered).status_code
            if (get_status, post_status) != (403, 403):
                wrong.append((name, "get/post", (get_status, post_status), (403, 403)))
        elif expected:
            # Allowed: the page opens; an empty POST (no reason) acts on nothing.
            post_status = client.post(url, {}).status_code
            if get_status not in (200, 302) or post_status in (403, 404, 500):
                wrong.append((name, "get/empty post", (get_status, post_status), "200 then a form error"))
    assert wrong == [], "(url name, request, got, expected)"
    assert snapshot() == before
