"""Fraud services: hashes-only storage, refused input, failing closed on a real database error, saved results."""

from decimal import Decimal

import pytest
from django.apps import apps
from django.db import connection

from core.errors import ServiceUnavailableError, ValidationError
from core.hashing import blind_index
from fraud.models import FraudCheck, FraudResult
from fraud.services import fraud_check, fraud_result_save
from tests.fraud.conftest import ACCOUNT, EXP, INSTALL, LAST4, ROUTING, check, counts

pytestmark = pytest.mark.django_db

HASH = "ab" * 32


def _dump(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        return repr(cursor.fetchall())


# --- storage ----------------------------------------------------------------------------------------------------------

def test_the_fraud_tables_hold_hashes_never_the_raw_inputs():
    result = fraud_check(user_id="u-1", install_id=INSTALL, routing_number=ROUTING, account_number=ACCOUNT,
                         card_last4=LAST4, card_exp=EXP, requested_by="float-service")
    fraud_result_save(user_id="u-1", verdict="suspicious", source="manual-review", actor="svc",
                      details={"note": "looked at it"}, fraud_check_id=result.pk)
    raw = _dump(FraudCheck._meta.db_table) + _dump(FraudResult._meta.db_table)
    for secret in (INSTALL, ACCOUNT, ROUTING, EXP):
        assert secret not in raw
    assert ACCOUNT[-8:] not in raw and INSTALL[-8:] not in raw
    assert blind_index("install", INSTALL) in raw
    stored = FraudCheck.objects.get()
    assert stored.install_id_hash == blind_index("install", INSTALL)
    assert stored.account_routing_hash == blind_index("bank", ROUTING, ACCOUNT)
    assert stored.hashed_card_number == blind_index("card", LAST4, EXP)
    assert stored.requested_by == "float-service"


def test_every_check_is_a_new_row():
    check()
    check()
    assert FraudCheck.objects.filter(user_id="u-1").count() == 2


# --- refused input ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ({"user_id": "bad id"}, "invalid_user_id"),
        ({"install_id": ""}, "invalid_install_id"),
        ({"install_id": "   "}, "invalid_install_id"),
        ({"install_id": "i" * 256}, "invalid_install_id"),
        ({"install_id": 12345}, "invalid_install_id"),
        ({"install_id": "4111111111111111"}, "card_data_not_allowed"),
        ({"routing_number": ROUTING}, "incomplete_bank_account"),
        ({"account_number": ACCOUNT}, "incomplete_bank_account"),
        ({"routing_number": "021000022", "account_number": ACCOUNT}, "invalid_routing_number"),
        ({"routing_number": "02100002", "account_number": ACCOUNT}, "invalid_routing_number"),
        ({"routing_number": ROUTING, "account_number": "123"}, "invalid_account_number"),
        ({"routing_number": ROUTING, "account_number": "1" * 18}, "invalid_account_number"),
        ({"routing_number": ROUTING, "account_number": "12a456"}, "invalid_account_number"),
        ({"routing_number": ROUTING, "account_number": ACCOUNT, "account_routing_hash": HASH},
         "ambiguous_bank_account"),
        ({"account_routing_hash": "xyz"}, "invalid_account_routing_hash"),
        ({"account_routing_hash": "a" * 63}, "invalid_account_routing_hash"),
        ({"card_last4": LAST4}, "incomplete_card"),
        ({"card_exp": EXP}, "incomplete_card"),
        ({"card_last4": "424", "card_exp": EXP}, "invalid_card_last4"),
        ({"card_last4": "42a2", "card_exp": EXP}, "invalid_card_last4"),
        ({"card_last4": LAST4, "card_exp": "132030"}, "invalid_card_exp"),
        ({"card_last4": LAST4, "card_exp": "11/31"}, "invalid_card_exp"),
        ({"card_last4": LAST4, "card_exp": EXP, "hashed_card_number": HASH}, "ambiguous_card"),
        ({"hashed_card_number": "g" * 64}, "invalid_hashed_card_number"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(inputs, code):
    values = {"user_id": "u-1", **inputs}
    with pytest.raises(ValidationError) as exc:
        fraud_check(**values)
    assert exc.value.code == code
    for raw in (ACCOUNT, ROUTING, "4111111111111111"):
        assert raw not in exc.value.message and raw not in repr(exc.value.details)
    assert counts() == (0, 0)


def test_an_expired_card_is_still_evidence():
    assert fraud_check(user_id="u-1", card_last4=LAST4, card_exp="012001").hashed_card_number


def test_upper_case_hashes_are_normalised():
    assert fraud_check(user_id="u-1", account_routing_hash=HASH.upper()).account_routing_hash == HASH


# --- fail closed ------------------------------------------------------------------------------------------------------

def _rename(old: str, new: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {connection.ops.quote_name(old)} RENAME TO {connection.ops.quote_name(new)}")


BREAKABLE = [
    ("fraud", "FraudResult", {}),
    ("fraud", "FraudCheck", {}),
    ("blocklist", "BlocklistRecord", {}),
    ("fraud", "FraudCheck", {"install_id": INSTALL}),
    ("bank_accounts", "BankAccount", {"routing_number": ROUTING, "account_number": ACCOUNT}),
    ("bank_accounts", "BankAccountHistory", {"account_routing_hash": HASH}),
    ("cards", "DebitCard", {"card_last4": LAST4, "card_exp": EXP}),
    ("cards", "DebitCardChange", {"hashed_card_number": HASH}),
]


@pytest.mark.parametrize(("app", "model", "inputs"), BREAKABLE,
                         ids=[f"{m}-{'+'.join(i) or 'user'}" for _, m, i in BREAKABLE])
def test_a_database_error_is_an_error_never_a_clear_verdict(app, model, inputs):
    """The table a signal (or the insert) needs is renamed away inside the test transaction, then restored."""
    check("u-0")  # an earlier row, to show nothing else changes
    before = counts()
    table = apps.get_model(app, model)._meta.db_table
    _rename(table, f"{table}_gone")
    try:
        with pytest.raises(ServiceUnavailableError) as exc:
            fraud_check(user_id="u-1", **inputs)
    finally:
        _rename(f"{table}_gone", table)
    assert exc.value.code == "fraud_check_unavailable"
    assert exc.value.status_code == 503
    assert counts() == before
    assert not FraudCheck.objects.filter(user_id="u-1").exists()


# --- results ----------------------------------------------------------------------------------------------------------

def test_a_result_is_saved_as_sent():
    linked = check()
    result = fraud_result_save(
        user_id="u-1", verdict="fraudulent", source="sift", actor="risk-service", score="0.9712",
        flags=["velocity", "device_shared", "velocity"], details={"model": "v3", "reasons": ["a", "b"]},
        fraud_check_id=str(linked.pk),
    )
    stored = FraudResult.objects.get()
    assert stored == result
    assert (stored.user_id, stored.verdict, stored.source, stored.created_by) == (
        "u-1", "fraudulent", "sift", "risk-service")
    assert stored.score == Decimal("0.9712")
    assert stored.flags == ["velocity", "device_shared"]  # duplicates dropped, order kept
    assert stored.details == {"model": "v3", "reasons": ["a", "b"]}
    assert stored.fraud_check_id == linked.pk


def test_a_minimal_result():
    result = fraud_result_save(user_id="u-1", verdict="legitimate", source="manual-review", actor="svc")
    assert (result.score, result.flags, result.details, result.fraud_check) == (None, [], {}, None)


@pytest.mark.parametrize(("score", "ok"), [(0, True), (1, True), ("0.0001", True), (-0.0001, False),
                                           ("1.0001", False), ("0.00001", False), ("NaN", False), ("abc", False)])
def test_score_range(score, ok):
    kwargs = {"user_id": "u-1", "verdict": "suspicious", "source": "s", "actor": "svc", "score": score}
    if ok:
        fraud_result_save(**kwargs)
        assert counts() == (0, 1)
    else:
        with pytest.raises(ValidationError) as exc:
            fraud_result_save(**kwargs)
        assert exc.value.code == "invalid_score"
        assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"user_id": "bad id"}, "invalid_user_id"),
        ({"verdict": "FRAUD"}, "invalid_verdict"),
        ({"verdict": ""}, "invalid_verdict"),
        ({"source": ""}, "invalid_source"),
        ({"source": "has space"}, "invalid_source"),
        ({"source": "s" * 65}, "invalid_source"),
        ({"actor": ""}, "actor_required"),
        ({"flags": "velocity"}, "invalid_flags"),
        ({"flags": ["Upper"]}, "invalid_flags"),
        ({"flags": [1]}, "invalid_flags"),
        ({"flags": [f"f{n}" for n in range(21)]}, "invalid_flags"),
        ({"details": ["not", "an", "object"]}, "invalid_details"),
        ({"details": {"k" * 65: 1}}, "invalid_details"),
        ({"details": {"": 1}}, "invalid_details"),
        ({"details": {"x": float("nan")}}, "invalid_details"),
        ({"details": {"blob": "x" * 4100}}, "details_too_large"),
        ({"details": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, "details_too_deep"),
        ({"details": {"note": "card 4111 1111 1111 1111"}}, "card_data_not_allowed"),
        ({"details": {"cvv": "123"}}, "card_data_not_allowed"),
        ({"flags": ["4111111111111111"]}, "card_data_not_allowed"),
        ({"details": {"note": f"account {ACCOUNT}"}}, "sensitive_data_not_allowed"),
        ({"details": {"account_number": "1234"}}, "sensitive_data_not_allowed"),
        ({"details": {"x": {"api_token": "abc"}}}, "sensitive_data_not_allowed"),
        ({"fraud_check_id": "00000000-0000-0000-0000-000000000001"}, "fraud_check_not_found"),
        ({"fraud_check_id": "nope"}, "fraud_check_not_found"),
    ],
)
def test_bad_results_are_refused_and_nothing_is_stored(overrides, code):
    kwargs = {"user_id": "u-1", "verdict": "suspicious", "source": "sift", "actor": "svc", **overrides}
    with pytest.raises(ValidationError) as exc:
        fraud_result_save(**kwargs)
    assert exc.value.code == code
    assert ACCOUNT not in exc.value.message and "4111" not in repr(exc.value.details)
    assert counts() == (0, 0)


def test_details_at_the_limits_are_accepted():
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}  # 5 levels
    fraud_result_save(user_id="u-1", verdict="suspicious", source="s", actor="svc", details=deep)
    big = {"blob": "x" * (4096 - len('{"blob":""}'))}  # exactly 4096 bytes of JSON
    fraud_result_save(user_id="u-1", verdict="suspicious", source="s", actor="svc", details=big)
    assert counts() == (0, 2)


def test_a_result_cannot_conclude_another_users_check():
    other = check("u-2")
    with pytest.raises(ValidationError) as exc:
        fraud_result_save(user_id="u-1", verdict="fraudulent", source="s", actor="svc", fraud_check_id=other.pk)
    assert exc.value.code == "fraud_check_user_mismatch"
    assert counts() == (1, 0)


@pytest.mark.parametrize("field", ["install_id_hash", "account_routing_hash", "hashed_card_number"])
def test_the_database_refuses_anything_but_a_hash_in_the_hash_columns(field):
    """Even code that bypasses the services cannot store a raw number there."""
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    with pytest.raises(IntegrityError), transaction.atomic():
        FraudCheck.objects.create(user_id="u-1", window_hours=24, verdict="clear", created_at=timezone.now(),
                                  **{field: ACCOUNT})
    assert counts() == (0, 0)
