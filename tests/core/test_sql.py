"""core.sql: the hand-written statements give what the ORM's ``save`` / ``create`` / ``update`` / ``get`` /
``first`` give: the same SQL text and parameters, the same rows and instances."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from bank_accounts.models import BankAccount
from blocklist.models import BlocklistRecord
from cards.models import DebitCard
from core.models import IdempotencyKey, IdempotencyKeyStatus
from core.sql import AnyOf, insert_row, select_first, select_one, update_where
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


# --- select_one / select_first / update_where: the ORM's statement, parameters and result --------------------------
def _statements(call) -> tuple[object, list[tuple[str, tuple]]]:
    """``call()``'s result (or the exception it raised) and the (SQL, parameters) it sent, as the cursor got them (a
    psycopg ``Jsonb`` wrapper, equal only to itself, as its type and content)."""
    sent = []

    def record(execute, sql, params, many, context):
        sent.append((sql, tuple((type(p), p.obj) if hasattr(p, "obj") else p for p in params or ())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        try:
            result = call()
        except Exception as exc:  # compared with what the ORM raises
            result = exc
    return result, sent


def _same_instance(a, b) -> None:
    """Equal as the ORM's own instances are: same class, same loaded values, same ``_state``, same deferred set."""
    assert type(a) is type(b)
    assert {k: v for k, v in a.__dict__.items() if k != "_state"} \
        == {k: v for k, v in b.__dict__.items() if k != "_state"}
    assert (a._state.adding, a._state.db, a._state.fields_cache) \
        == (b._state.adding, b._state.db, b._state.fields_cache)
    assert a.get_deferred_fields() == b.get_deferred_fields()


def _same_as_the_orm(orm_call, hand_call):
    """Run both; assert the same statements and the same outcome (instances, None, or exception type and message)."""
    by_orm, orm_sent = _statements(orm_call)
    by_hand, hand_sent = _statements(hand_call)
    assert hand_sent == orm_sent
    if isinstance(by_orm, Exception):
        assert type(by_hand) is type(by_orm) and str(by_hand) == str(by_orm)
    elif by_orm is None:
        assert by_hand is None
    else:
        _same_instance(by_hand, by_orm)
    return by_hand, hand_sent


def test_select_one_for_update_is_the_orms_locking_get():
    payment = _payment(return_date=timezone.now(), return_code="R01", version=3)
    payment.save()
    with transaction.atomic():
        found, sent = _same_as_the_orm(lambda: Payment.objects.select_for_update().get(pk=payment.pk),
                                       lambda: select_one(Payment, where={"pk": payment.pk}, for_update=True))
    assert found.amount == Decimal("12.50") and found.version == 3 and found.return_code == "R01"
    if connection.features.has_select_for_update:
        assert sent[0][0].endswith(" LIMIT 21 FOR UPDATE")
    else:  # SQLite: no row locks, the ORM leaves the clause out
        assert "FOR UPDATE" not in sent[0][0]


def test_select_one_raises_what_get_raises():
    missing = uuid.uuid4()
    with transaction.atomic():
        error, _ = _same_as_the_orm(lambda: Payment.objects.select_for_update().get(pk=missing),
                                    lambda: select_one(Payment, where={"pk": missing}, for_update=True))
    assert isinstance(error, Payment.DoesNotExist)
    Payment.objects.bulk_create([_payment(user_id="many", idempotency_key=f"k{i}") for i in range(2)])
    error, _ = _same_as_the_orm(lambda: Payment.objects.get(user_id="many"),
                                lambda: select_one(Payment, where={"user_id": "many"}))
    assert isinstance(error, Payment.MultipleObjectsReturned) and "it returned 2!" in str(error)
    Payment.objects.bulk_create([_payment(user_id="many", idempotency_key=f"m{i}") for i in range(20)])
    error, _ = _same_as_the_orm(lambda: Payment.objects.get(user_id="many"),
                                lambda: select_one(Payment, where={"user_id": "many"}))
    assert "more than 20" in str(error)


def _card(user_id: str) -> DebitCard:
    return DebitCard.objects.create(user_id=user_id, masked_card_number="4242", hashed_card_number="a" * 64,
                                    transaction_reference_id="tok_c", debit_transaction_reference_id="tok_d",
                                    card_exp="122030", invalid_reason="")


def test_select_first_is_first_on_a_model_without_ordering():
    _same_as_the_orm(lambda: DebitCard.objects.filter(user_id="u-none").first(),
                     lambda: select_first(DebitCard, where={"user_id": "u-none"}, order_by=("pk",)))
    _, sent = _same_as_the_orm(lambda: DebitCard.objects.filter(user_id=None).first(),  # None: IS NULL, as the ORM
                               lambda: select_first(DebitCard, where={"user_id": None}, order_by=("pk",)))
    assert '"user_id" IS NULL ORDER BY' in sent[0][0]
    _card("u-2")
    card = _card("u-1")
    found, sent = _same_as_the_orm(lambda: DebitCard.objects.filter(user_id="u-1").first(),
                                   lambda: select_first(DebitCard, where={"user_id": "u-1"}, order_by=("pk",)))
    assert found.pk == card.pk and found.is_valid is True and sent[0][0].endswith(" ASC LIMIT 1")


def test_select_first_with_deferred_encrypted_numbers_is_the_orms():
    account = BankAccount.objects.create(user_id="u-1", account_id="acct-1", account_number="123456781234",
                                         routing_number="021000021", account_routing_hash="h" * 64, last4="1234",
                                         entry_timestamp=timezone.now())
    BankAccount.objects.create(user_id="u-1", account_id="acct-2", account_number="99", routing_number="021000021",
                               account_routing_hash="g" * 64, last4="0099", entry_timestamp=timezone.now())
    where = {"user_id": "u-1", "account_id": "acct-1"}
    numbers = ("account_number", "routing_number")
    deferred, _ = _same_as_the_orm(
        lambda: BankAccount.objects.filter(**where).defer(*numbers).first(),
        lambda: select_first(BankAccount, where=where, order_by=("pk",), defer=numbers))
    assert deferred.get_deferred_fields() == set(numbers) and deferred.pk == account.pk
    assert deferred.account_number == "123456781234"  # loaded (and decrypted) on first use, as the ORM's
    loaded, _ = _same_as_the_orm(lambda: BankAccount.objects.filter(**where).first(),
                                 lambda: select_first(BankAccount, where=where, order_by=("pk",)))
    assert loaded.account_number == "123456781234" and loaded.routing_number == "021000021"


def test_select_first_orders_as_the_orm_does():
    at = timezone.now()
    for status, seconds in (("BLOCKED", 0), ("NOTBLOCKED", 5), ("BLOCKED", 5)):
        BlocklistRecord.objects.create(user_id="u-1", status=status, reason="r", source="manual", actor="a",
                                       created_at=at + timedelta(seconds=seconds))
    found, _ = _same_as_the_orm(
        lambda: BlocklistRecord.objects.filter(user_id="u-1").order_by("-created_at", "-id").first(),
        lambda: select_first(BlocklistRecord, where={"user_id": "u-1"}, order_by=("-created_at", "-id")))
    assert found.status == "BLOCKED" and found.created_at == at + timedelta(seconds=5)


def test_select_first_for_update_is_the_orms_locking_first():
    _key("taken")
    where = {"client_id": "c", "key": "taken"}
    with transaction.atomic():
        found, sent = _same_as_the_orm(
            lambda: IdempotencyKey.objects.select_for_update().filter(**where).first(),
            lambda: select_first(IdempotencyKey, where=where, order_by=("pk",), for_update=True))
        _same_as_the_orm(lambda: IdempotencyKey.objects.select_for_update().filter(client_id="nobody", key="x").first(),
                         lambda: select_first(IdempotencyKey, where={"client_id": "nobody", "key": "x"},
                                              order_by=("pk",), for_update=True))
    assert found.key == "taken"
    if connection.features.has_select_for_update:
        assert sent[0][0].endswith(" ASC LIMIT 1 FOR UPDATE")


def test_update_where_with_a_counter_and_an_in_condition_is_the_orms_update():
    by_orm, by_hand = _payment(idempotency_key="a"), _payment(idempotency_key="b")
    Payment.objects.bulk_create([by_orm, by_hand])
    sources = frozenset({"PROCESSING", "ACHSENT", "CLEARED"})
    now = timezone.now()

    def updates():
        return {"payment_status": "COMPLETED", "version": F("version") + 1, "updated_at": now,
                "completion_date": now, "confirmation_id": None}

    orm_count, orm_sent = _statements(
        lambda: Payment.objects.filter(pk=by_orm.pk, payment_status__in=sources).update(**updates()))
    hand_count, hand_sent = _statements(
        lambda: update_where(Payment, where={"pk": by_hand.pk, "payment_status__in": sources}, values=updates()))
    assert orm_count == hand_count == 1
    assert [sql for sql, _ in hand_sent] == [sql for sql, _ in orm_sent]
    assert [params[:-1] for _, params in hand_sent] == [params[:-1] for _, params in orm_sent]  # all but the id
    skip = {"id", "idempotency_key", "created_at"}
    assert _columns(Payment.objects.get(pk=by_hand.pk), skip) == _columns(Payment.objects.get(pk=by_orm.pk), skip)
    assert Payment.objects.get(pk=by_hand.pk).version == 1
    # the condition holds no more: nothing changes, as with the ORM
    assert update_where(Payment, where={"pk": by_hand.pk, "payment_status__in": sources}, values=updates()) == 0
    assert Payment.objects.get(pk=by_hand.pk).version == 1


def test_update_where_refuses_what_it_would_not_write_as_the_orm():
    payment = _payment()
    payment.save()
    for where, values in (({"pk": payment.pk}, {"version": F("version") * 2}),
                          ({"pk": payment.pk}, {"version": F("amount") + 1}),
                          ({"pk": payment.pk, "payment_status__in": []}, {"version": 2}),
                          ({"pk": payment.pk, "payment_status__in": ["PROCESSING", None]}, {"version": 2}),
                          ({"user_id__startswith": "u"}, {"version": 2}),
                          ({}, {"version": 2})):
        with pytest.raises(ValueError):
            update_where(Payment, where=where, values=values)
    assert Payment.objects.get(pk=payment.pk).version == payment.version


def test_update_where_writes_the_orms_statement_for_the_idempotency_completion():
    by_orm, by_hand = _key("a"), _key("b")
    now = timezone.now()
    values = {"status": IdempotencyKeyStatus.COMPLETED, "response_status_code": 201, "response_body": {"id": "p"},
              "completed_at": now, "updated_at": now, "resource_id": None}
    _, orm_sent = _statements(lambda: IdempotencyKey.objects.filter(
        pk=by_orm.pk, status=IdempotencyKeyStatus.IN_PROGRESS).update(**values))
    _, hand_sent = _statements(lambda: update_where(
        IdempotencyKey, where={"pk": by_hand.pk, "status": IdempotencyKeyStatus.IN_PROGRESS}, values=values))
    assert [sql for sql, _ in hand_sent] == [sql for sql, _ in orm_sent]
    assert [params[:-2] + params[-1:] for _, params in hand_sent] \
        == [params[:-2] + params[-1:] for _, params in orm_sent]  # all but the key's id


@pytest.mark.django_db(transaction=True)
def test_select_one_refuses_a_row_lock_outside_a_transaction_as_the_orm_does():
    payment = _payment()
    payment.save()
    error, _ = _same_as_the_orm(lambda: Payment.objects.select_for_update().get(pk=payment.pk),
                                lambda: select_one(Payment, where={"pk": payment.pk}, for_update=True))
    if connection.features.has_select_for_update:
        assert isinstance(error, TransactionManagementError)
    else:  # SQLite has no row locks: the ORM reads the row, and so does select_one
        assert error.pk == payment.pk



def test_any_of_selects_the_rows_in_selects_with_one_array_on_postgresql():
    payments = [_payment(idempotency_key=f"any-{n}", confirmation_id=f"c-{n}") for n in range(5)]
    Payment.objects.bulk_create(payments)
    stranger = uuid.uuid4()
    wanted = [payments[3].pk, payments[0].pk, None, payments[3].pk, stranger, payments[1].pk]  # None, a twin
    by_in, in_sent = _statements(lambda: list(Payment.objects.filter(pk__in=wanted).order_by("pk")
                                              .values_list("pk", flat=True)))
    by_any, any_sent = _statements(lambda: list(Payment.objects.filter(AnyOf(F("id"), wanted)).order_by("pk")
                                                .values_list("pk", flat=True)))
    assert by_any == by_in == sorted([payments[0].pk, payments[1].pk, payments[3].pk])
    assert len(any_sent) == len(in_sent) == 1
    if connection.vendor == "postgresql":
        (sql, params), = any_sent
        assert '"payments_payment"."id" = ANY(%s::uuid[])' in sql and " IN (" not in sql
        assert params == ([payments[3].pk, payments[0].pk, payments[3].pk, stranger, payments[1].pk],)
    else:
        assert any_sent == in_sent  # elsewhere it is __in itself
    # a text column, inside a larger condition
    codes = ["c-2", "c-4", "c-9"]
    assert (list(Payment.objects.filter(AnyOf(F("confirmation_id"), codes), purpose="float").order_by("pk"))
            == list(Payment.objects.filter(confirmation_id__in=codes, purpose="float").order_by("pk"))
            == sorted([payments[2], payments[4]], key=lambda payment: payment.pk))


def test_any_of_without_values_sends_nothing_as_in_does():
    Payment.objects.bulk_create([_payment(idempotency_key="any-empty")])
    for values in ([], [None]):
        assert _statements(lambda: list(Payment.objects.filter(AnyOf(F("id"), values)))) == ([], [])  # noqa: B023
        assert _statements(lambda: list(Payment.objects.filter(pk__in=values))) == ([], [])  # noqa: B023


def test_any_of_a_subquery_is_in_a_subquery():
    payments = [_payment(idempotency_key=f"sub-{n}", purpose=purpose)
                for n, purpose in enumerate(["float", "subscription"])]
    Payment.objects.bulk_create(payments)
    floats = Payment.objects.filter(purpose="float").values("pk")
    assert list(Payment.objects.filter(AnyOf(F("id"), floats))) == [payments[0]]
