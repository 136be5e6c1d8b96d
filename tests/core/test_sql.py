"""core.sql: the hand-written INSERT and UPDATE give what the ORM's ``save`` / ``create`` / ``update`` give."""

import uuid
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.models import IdempotencyKey, IdempotencyKeyStatus
from core.sql import insert_row, update_where
from payments.models import Payment, PaymentStatusChange

pytestmark = pytest.mark.django_db

_SET_BY_THE_INSERT = {"id", "created_at", "updated_at"}
_SUBMITTED = timezone.now()


def _payment(**overrides) -> Payment:
    values = {"user_id": "u-1", "purpose": "float", "payment_method": "pinless", "payment_type": "debit",
              "payment_provider": "usio", "amount": Decimal("12.50"), "masked_card_number": "4242",
              "submit_date": _SUBMITTED, "client_id": "key:1", "idempotency_key": "k"}
    return Payment(**{**values, **overrides})


def _columns(instance, skip=()) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields if f.attname not in skip}


def test_insert_row_stores_and_leaves_the_instance_as_save_does_with_a_uuid_key_and_auto_dates():
    by_save, by_insert = _payment(), _payment(confirmation_id="c-2")
    by_save.save(force_insert=True)
    assert insert_row(by_insert) is by_insert
    for instance in (by_save, by_insert):
        stored = Payment.objects.get(pk=instance.pk)
        assert _columns(stored) == _columns(instance)  # auto_now(_add) dates set on the instance as stored
        assert instance._state.adding is False and instance._state.db == "default"
    assert _columns(Payment.objects.get(pk=by_insert.pk), skip=_SET_BY_THE_INSERT | {"confirmation_id"}) \
        == _columns(Payment.objects.get(pk=by_save.pk), skip=_SET_BY_THE_INSERT | {"confirmation_id"})


def test_insert_row_fills_in_a_default_key_left_empty():
    payment = insert_row(_payment(id=None))
    assert payment.pk is not None and Payment.objects.get(pk=payment.pk).user_id == "u-1"


def test_insert_row_reads_back_a_generated_key():
    payment = _payment()
    payment.save()
    change = insert_row(PaymentStatusChange(payment=payment, from_status=None, to_status="PROCESSING",
                                            source="api", actor="service:t"))
    created = PaymentStatusChange.objects.create(payment=payment, from_status=None, to_status="PROCESSING",
                                                 source="api", actor="service:t")
    assert change.pk is not None and created.pk == change.pk + 1
    assert _columns(PaymentStatusChange.objects.get(pk=change.pk), skip={"id", "at"}) \
        == _columns(created, skip={"id", "at"}) == _columns(change, skip={"id", "at"})


def test_insert_row_errors_are_djangos_and_change_nothing():
    payment = _payment(confirmation_id="taken")
    payment.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_row(_payment(confirmation_id="taken"))
    assert Payment.objects.count() == 1


def _key(name: str) -> IdempotencyKey:
    return IdempotencyKey.objects.create(client_id="c", key=name, fingerprint="f" * 64, lease_expires_at=_SUBMITTED)


def test_update_where_writes_what_the_orms_update_writes_and_only_where_every_condition_holds():
    by_orm, by_hand, completed = _key("a"), _key("b"), _key("c")
    now = timezone.now()
    IdempotencyKey.objects.filter(pk=completed.pk).update(status=IdempotencyKeyStatus.COMPLETED, completed_at=now,
                                                          response_status_code=200, response_body={})
    values = {"status": IdempotencyKeyStatus.COMPLETED, "response_status_code": 201,
              "response_body": {"id": str(uuid.uuid4()), "amount": "12.50", "nested": [1, None, {"a": True}]},
              "completed_at": now, "updated_at": now, "resource_id": None}
    assert IdempotencyKey.objects.filter(pk=by_orm.pk, status=IdempotencyKeyStatus.IN_PROGRESS).update(**values) == 1
    assert update_where(IdempotencyKey, where={"pk": by_hand.pk, "status": IdempotencyKeyStatus.IN_PROGRESS},
                        values=values) == 1
    skip = {"id", "key", "created_at"}
    assert _columns(IdempotencyKey.objects.get(pk=by_hand.pk), skip) \
        == _columns(IdempotencyKey.objects.get(pk=by_orm.pk), skip)
    before = _columns(IdempotencyKey.objects.get(pk=completed.pk))
    assert update_where(IdempotencyKey, where={"pk": completed.pk, "status": IdempotencyKeyStatus.IN_PROGRESS},
                        values=values) == 0
    assert _columns(IdempotencyKey.objects.get(pk=completed.pk)) == before
