"""The back-office groups get their permissions from core.groups after migrate (SPEC §10, issue 8)."""

import pytest
from django.contrib.auth.models import Group, Permission

from core.groups import sync_group_permissions

pytestmark = pytest.mark.django_db


def perms(group: str) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}"
            for p in Group.objects.get(name=group).permissions.select_related("content_type")}


def test_support_views_everything_it_works_with_and_acts_only_on_its_four_actions():
    support = perms("support")
    for app_model in ("payments.view_payment", "cards.view_debitcard", "bank_accounts.view_bankaccount",
                      "refunds.view_refund", "blocklist.view_blocklistrecord", "fraud.view_fraudcheck",
                      "syncing.view_usiotransaction", "core.view_deadletter", "core.view_outboxevent",
                      "core.view_auditentry", "core.view_jobrun"):
        assert app_model in support
    assert {"refunds.add_refund", "blocklist.add_blocklistrecord", "cards.change_debitcard",
            "payments.sync_payment"} <= support
    non_view = {p for p in support if not p.split(".")[1].startswith("view_")}
    assert non_view == {"refunds.add_refund", "blocklist.add_blocklistrecord", "cards.change_debitcard",
                        "payments.sync_payment"}
    for forbidden in ("core.view_apikey", "core.view_pushsubscription", "core.replay_deadletter",
                      "core.redeliver_event", "payments.mark_payment_failed",
                      "django_celery_beat.view_periodictask", "auth.change_user"):
        assert forbidden not in support


def test_admin_has_every_project_and_schedule_permission_but_not_user_management():
    admin = perms("admin")
    for needed in ("core.add_apikey", "core.change_pushsubscription", "core.replay_deadletter",
                   "core.redeliver_event", "payments.mark_payment_failed", "payments.sync_payment",
                   "django_celery_beat.change_periodictask", "refunds.add_refund"):
        assert needed in admin
    assert not any(p.startswith("auth.") for p in admin)  # staff accounts are the superuser's


def test_sync_is_idempotent_and_restores_a_hand_edited_group():
    support = Group.objects.get(name="support")
    support.permissions.add(Permission.objects.get(codename="add_apikey"))
    before_admin = perms("admin")

    sync_group_permissions()
    sync_group_permissions()

    assert "core.add_apikey" not in perms("support")
    assert perms("admin") == before_admin
