"""SPEC §8 changeability: at most DEBIT_CARD_MAX_CHANGES card saves in 30 days; never while a card payment is
PROCESSING (pending the payments app)."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from cards import selectors, services
from cards.models import ChangeType, DebitCardChange
from core.errors import ConflictError
from tests.cards.conftest import USER, save, state

pytestmark = pytest.mark.django_db


def _save_n(n: int) -> None:
    for i in range(n):
        save(masked_card_number=f"{1000 + i}")


def _age_changes(days: float, seconds: float = 0) -> None:
    DebitCardChange.objects.filter(user_id=USER).update(at=timezone.now() - timedelta(days=days, seconds=seconds))


def test_a_new_user_may_change():
    assert selectors.card_changeable(user_id=USER) == (True, None)


def test_three_saves_in_30_days_block_the_fourth():
    _save_n(3)
    assert selectors.card_changeable(user_id=USER) == (False, "max_changes_reached")
    before = state()
    with pytest.raises(ConflictError) as exc:
        save(masked_card_number="9999")
    assert exc.value.code == "debit_card_not_changeable"
    assert exc.value.details == {"reason": "max_changes_reached", "max_changes": 3, "window_days": 30}
    assert state() == before


def test_changes_still_inside_the_window_on_day_30_count():
    _save_n(3)
    _age_changes(days=29, seconds=86400 - 60)  # one minute short of 30 days
    assert selectors.card_changeable(user_id=USER) == (False, "max_changes_reached")


def test_changes_older_than_30_days_no_longer_count_31st_day():
    _save_n(3)
    _age_changes(days=30, seconds=60)  # on the 31st day
    assert selectors.card_changeable(user_id=USER) == (True, None)
    save(masked_card_number="9999")
    assert selectors.card_changes_in_window(user_id=USER) == 1


def test_window_slides_change_by_change():
    _save_n(2)
    _age_changes(days=31)
    _save_n(2)  # 2 recent + 2 old
    assert selectors.card_changeable(user_id=USER) == (True, None)
    save(masked_card_number="9999")
    assert selectors.card_changeable(user_id=USER) == (False, "max_changes_reached")


@override_settings(DEBIT_CARD_MAX_CHANGES=5)
def test_the_limit_is_a_setting():
    _save_n(4)
    assert selectors.card_changeable(user_id=USER) == (True, None)
    save(masked_card_number="9999")
    assert selectors.card_changeable(user_id=USER) == (False, "max_changes_reached")


@override_settings(DEBIT_CARD_MAX_CHANGES=0)
def test_a_zero_limit_refuses_every_save():
    with pytest.raises(ConflictError):
        save()


def test_deletions_invalidations_and_admin_updates_do_not_count():
    save()
    services.card_invalidate(user_id=USER, reason="decline")
    services.card_admin_update(user_id=USER, actor="mx", reason="fix", is_valid=True)
    services.card_delete(user_id=USER, actor="x")
    save(masked_card_number="2222")
    assert DebitCardChange.objects.count() == 5
    assert selectors.card_changes_in_window(user_id=USER) == 2
    assert selectors.card_changeable(user_id=USER) == (True, None)


def test_delete_is_not_limited_by_the_change_count():
    _save_n(3)
    services.card_delete(user_id=USER, actor="x")
    assert DebitCardChange.objects.filter(change_type=ChangeType.DELETED).count() == 1


def test_other_users_changes_do_not_count():
    for i in range(3):
        save(f"other-{i}")
        save("crowd", masked_card_number=f"{2000 + i}")
    assert selectors.card_changeable(user_id=USER) == (True, None)


@pytest.mark.parametrize(("method", "status", "blocked"), [
    ("pinless", "PROCESSING", True), ("rtp", "PROCESSING", True), ("ach", "PROCESSING", False),
    ("pinless", "COMPLETED", False), ("pinless", "FAILED", False),
])
def test_a_processing_card_payment_blocks_card_changes(method, status, blocked):
    from decimal import Decimal

    from payments.models import Payment

    Payment.objects.create(user_id=USER, purpose="float", payment_method=method, payment_type="debit",
                           payment_provider="usio", amount=Decimal("5.00"), payment_status=status)
    Payment.objects.create(user_id="someone-else", purpose="float", payment_method="pinless",
                           payment_type="debit", payment_provider="usio", amount=Decimal("5.00"))
    assert selectors.user_has_processing_card_payment(user_id=USER) is blocked
    expected = (False, "payment_processing") if blocked else (True, None)
    assert selectors.card_changeable(user_id=USER) == expected
    if blocked:
        before = state()
        with pytest.raises(ConflictError) as exc:
            save(masked_card_number="4242")
        assert exc.value.details["reason"] == "payment_processing"
        assert state() == before
