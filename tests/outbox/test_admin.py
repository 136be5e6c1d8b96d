"""The back office of the outbox: push subscriptions (secret write-only), deliveries (read-only, retry of dead ones),
events and consumer handlings (read-only)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings

from core.models import AuditEntry, PushDelivery, PushSubscription
from core.outbox_push import push_run, push_subscription_create
from core.outbox_relay import outbox_relay_run
from tests.outbox.conftest import make_payment, move

pytestmark = pytest.mark.django_db

SECRET = "whsec-admin-0123456789abcdef"
ADD_URL = "/admin/core/pushsubscription/add/"


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "root-password-12345")
    client.force_login(user)
    return client


def form(**overrides) -> dict:
    return {"name": "ledger", "url": "https://ledger.example.com/hooks", "event_types": "[]", "active": "on",
            "new_secret": SECRET, **overrides}


def test_an_admin_creates_a_subscription_and_never_sees_the_secret_again(superuser_client):
    response = superuser_client.post(ADD_URL, form(event_types='["FLOAT_DEBIT_RETURNED"]'))
    assert response.status_code == 302, response.content.decode()[:2000]

    subscription = PushSubscription.objects.get()
    assert (subscription.name, subscription.secret, subscription.event_types) == (
        "ledger", SECRET, ["FLOAT_DEBIT_RETURNED"])
    entry = AuditEntry.objects.get(action="push_subscription_create")
    assert entry.actor == "root" and SECRET not in str(entry.changes)

    page = superuser_client.get(f"/admin/core/pushsubscription/{subscription.pk}/change/").content.decode()
    assert SECRET not in page and 'type="password"' in page
    assert SECRET not in superuser_client.get("/admin/core/pushsubscription/").content.decode()


def test_saving_without_a_secret_keeps_it_and_a_new_one_replaces_it(superuser_client):
    subscription = push_subscription_create(name="ledger", url="https://ledger.example.com/hooks", secret=SECRET,
                                            actor="test")
    change_url = f"/admin/core/pushsubscription/{subscription.pk}/change/"

    assert superuser_client.post(change_url, form(name="renamed", new_secret="")).status_code == 302
    subscription.refresh_from_db()
    assert (subscription.name, subscription.secret) == ("renamed", SECRET)

    assert superuser_client.post(change_url, form(new_secret="another-secret-9876543210")).status_code == 302
    subscription.refresh_from_db()
    assert subscription.secret == "another-secret-9876543210"
    assert AuditEntry.objects.filter(action="push_subscription_update").count() == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"new_secret": ""}, "new_secret"), ({"new_secret": "short"}, "new_secret"), ({"url": "ftp://x.example"}, "url"),
     ({"event_types": '["nope"]'}, "event_types")],
)
def test_an_invalid_form_is_shown_again_and_nothing_is_written(superuser_client, overrides, field):
    response = superuser_client.post(ADD_URL, form(**overrides))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert PushSubscription.objects.count() == 0 and AuditEntry.objects.count() == 0


@override_settings(OUTBOX_PUSH_MAX_ATTEMPTS=1)
def test_the_retry_action_revives_dead_deliveries_only_for_holders_of_the_permission(client, receiver, registry):
    push_subscription_create(name="ledger", url=f"{receiver.url}/hooks", secret=SECRET, actor="test")
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED", "COMPLETED")
    outbox_relay_run()
    receiver.statuses = [500]
    push_run()  # #1 dies (one attempt), #2 goes through
    dead = PushDelivery.objects.get(status="dead")
    delivered = PushDelivery.objects.get(status="delivered")

    staff = get_user_model().objects.create_user("mx", "mx@example.com", "mx-password-12345", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_pushdelivery"))
    client.force_login(staff)
    changelist = "/admin/core/pushdelivery/"
    assert client.get(changelist).status_code == 200
    action = {"action": "retry", "_selected_action": [dead.pk, delivered.pk]}
    client.post(changelist, action)
    assert PushDelivery.objects.get(pk=dead.pk).status == "dead"  # no permission: no action

    staff.user_permissions.add(Permission.objects.get(codename="retry_pushdelivery"))
    client.force_login(get_user_model().objects.get(pk=staff.pk))
    assert client.post(changelist, action).status_code == 302
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("pending", 0)
    assert PushDelivery.objects.get(pk=delivered.pk).status == "delivered"  # never sent again
    assert AuditEntry.objects.get(action="push_delivery_retry").actor == "mx"
    push_run()
    assert PushDelivery.objects.filter(status="delivered").count() == 2
    assert len(receiver.requests) == 3


def test_deliveries_events_and_consumptions_are_read_only(superuser_client, registry, receiver):
    push_subscription_create(name="ledger", url=f"{receiver.url}/hooks", secret=SECRET, actor="test")
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")
    outbox_relay_run()
    for path in ("pushdelivery", "outboxevent", "outboxconsumption"):
        assert superuser_client.get(f"/admin/core/{path}/").status_code == 200
        assert superuser_client.get(f"/admin/core/{path}/add/").status_code == 403
    delivery = PushDelivery.objects.get()
    page = superuser_client.get(f"/admin/core/pushdelivery/{delivery.pk}/change/").content.decode()
    assert SECRET not in page and 'name="status"' not in page
    assert superuser_client.get(f"/admin/core/pushsubscription/{delivery.subscription_id}/delete/").status_code == 403
