"""The four fraud signals: each fires above its threshold and not at it; the window edges; the verdict."""

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils import timezone

from bank_accounts.services import bank_account_hash, bank_account_save
from blocklist.services import blocklist_block, blocklist_block_for_return, blocklist_unblock
from cards.services import card_hash
from core.hashing import blind_index
from fraud.models import FraudCheck
from fraud.services import fraud_result_save
from tests.fraud.conftest import ACCOUNT, ACCOUNT_2, EXP, INSTALL, LAST4, ROUTING, ROUTING_2, age, check, counts, signal

pytestmark = pytest.mark.django_db

BANK = {"routing_number": ROUTING, "account_number": ACCOUNT}
CARD = {"card_last4": LAST4, "card_exp": EXP}


def _result(user_id: str, verdict: str = "fraudulent"):
    return fraud_result_save(user_id=user_id, verdict=verdict, source="manual-review", actor="svc")


def _save_card(user_id: str, last4: str = LAST4, card_exp: str = EXP):
    from cards.services import card_save

    return card_save(user_id=user_id, masked_card_number=last4, card_exp=card_exp,
                     transaction_reference_id=f"tok_c_{user_id}", debit_transaction_reference_id=f"tok_d_{user_id}",
                     actor="test")


# --- user history ---------------------------------------------------------------------------------------------------

def test_a_user_with_no_history_is_clear():
    result = check()
    assert result.verdict == "clear" and result.fired == []
    assert [s["name"] for s in result.signals] == ["user_history"]  # the only signal without an input
    assert signal(result, "user_history") == {
        "name": "user_history", "fired": False, "threshold": 0,
        "evidence": {"other_user_ids": [], "count": 0, "fraudulent_results": 0, "blocks": 0},
    }


def test_one_fraudulent_result_fires_user_history():
    _result("u-1")
    sig = signal(check(), "user_history")
    assert sig["fired"] is True
    assert sig["evidence"] == {"other_user_ids": [], "count": 1, "fraudulent_results": 1, "blocks": 0}


@pytest.mark.parametrize("verdict", ["suspicious", "legitimate"])
def test_results_that_are_not_fraudulent_do_not_count(verdict):
    _result("u-1", verdict)
    assert signal(check(), "user_history")["evidence"]["count"] == 0


def test_a_block_on_record_fires_user_history_even_after_an_unblock():
    blocklist_block_for_return(user_id="u-1", return_code="R02", payment_id=uuid.uuid4())
    blocklist_unblock(user_id="u-1", reason="new account", actor="system", source="bank_account_update")
    sig = signal(check(), "user_history")
    assert sig["fired"] is True
    assert sig["evidence"] == {"other_user_ids": [], "count": 1, "fraudulent_results": 0, "blocks": 1}


def test_another_users_history_does_not_count():
    _result("u-2")
    blocklist_block(user_id="u-2", reason="fraud", actor="mx")
    assert signal(check(), "user_history")["fired"] is False


@override_settings(FRAUD_MAX_USER_FLAGS=1)
def test_user_history_threshold_edge():
    _result("u-1")
    at = signal(check(), "user_history")
    assert (at["fired"], at["threshold"], at["evidence"]["count"]) == (False, 1, 1)
    blocklist_block(user_id="u-1", reason="fraud", actor="mx")
    above = signal(check(), "user_history")
    assert (above["fired"], above["evidence"]["count"]) == (True, 2)


# --- install id -----------------------------------------------------------------------------------------------------

def test_install_id_fires_above_its_threshold_and_names_the_other_users():
    check("u-2", install_id=INSTALL)
    at = check(install_id=INSTALL)
    assert signal(at, "install_id") == {"name": "install_id", "fired": False, "threshold": 1,
                                        "evidence": {"other_user_ids": ["u-2"], "count": 1}}
    assert at.verdict == "clear"
    check("u-3", install_id=INSTALL)
    above = check(install_id=INSTALL)
    assert signal(above, "install_id")["fired"] is True
    assert signal(above, "install_id")["evidence"] == {"other_user_ids": ["u-2", "u-3"], "count": 2}
    assert (above.verdict, above.fired) == ("review", ["install_id"])


def test_install_id_ignores_the_user_themself_and_other_install_ids():
    for _ in range(3):
        check("u-1", install_id=INSTALL)
    check("u-2", install_id="another-install")
    check("u-3", install_id="another-install")
    assert signal(check(install_id=INSTALL), "install_id")["evidence"] == {"other_user_ids": [], "count": 0}


@override_settings(FRAUD_MAX_OTHER_USERS_PER_INSTALL=0)
def test_install_id_threshold_is_a_setting():
    check("u-2", install_id=INSTALL)
    sig = signal(check(install_id=INSTALL), "install_id")
    assert (sig["fired"], sig["threshold"]) == (True, 0)


def test_a_user_seen_twice_counts_once():
    check("u-2", install_id=INSTALL)
    check("u-2", install_id=INSTALL)
    assert signal(check(install_id=INSTALL), "install_id")["evidence"]["count"] == 1


# --- the window -----------------------------------------------------------------------------------------------------

@override_settings(FRAUD_MAX_OTHER_USERS_PER_INSTALL=0)
def test_the_window_edges_default_24_hours():
    inside = check("u-2", install_id=INSTALL)
    outside = check("u-3", install_id=INSTALL)
    age(inside, hours=24, seconds=-5)  # 5 s inside the window
    age(outside, hours=24, seconds=5)  # 5 s outside
    result = check(install_id=INSTALL)
    assert result.window_hours == 24
    assert signal(result, "install_id")["evidence"] == {"other_user_ids": ["u-2"], "count": 1}


@override_settings(FRAUD_WINDOW_HOURS=1, FRAUD_MAX_OTHER_USERS_PER_INSTALL=0)
def test_the_window_is_a_setting():
    inside = check("u-2", install_id=INSTALL)
    outside = check("u-3", install_id=INSTALL)
    age(inside, hours=1, seconds=-5)
    age(outside, hours=1, seconds=5)
    result = check(install_id=INSTALL)
    assert result.window_hours == 1
    assert signal(result, "install_id")["evidence"]["other_user_ids"] == ["u-2"]


@override_settings(FRAUD_MAX_OTHER_USERS_PER_INSTALL=0)
def test_everything_aged_out_of_the_window_clears_the_signal():
    age(check("u-2", install_id=INSTALL), hours=25)
    assert signal(check(install_id=INSTALL), "install_id")["fired"] is False


# --- bank account ---------------------------------------------------------------------------------------------------

def test_bank_account_held_by_nobody_else_is_clear():
    bank_account_save(user_id="u-1", account_id="acc-1", actor="t", **BANK)  # the user's own account
    sig = signal(check(**BANK), "bank_account")
    assert sig == {"name": "bank_account", "fired": False, "threshold": 0,
                   "evidence": {"other_user_ids": [], "count": 0}}


def test_bank_account_held_by_another_user_fires():
    bank_account_save(user_id="u-2", account_id="acc-9", actor="t", **BANK)
    result = check(**BANK)
    assert signal(result, "bank_account")["fired"] is True
    assert signal(result, "bank_account")["evidence"] == {"other_user_ids": ["u-2"], "count": 1}
    assert result.fired == ["bank_account"]


def test_bank_account_once_held_by_another_user_still_fires():
    from bank_accounts.services import bank_account_delete

    bank_account_save(user_id="u-2", account_id="acc-9", actor="t", **BANK)
    bank_account_delete(user_id="u-2", account_id="acc-9", actor="t")
    assert signal(check(**BANK), "bank_account")["evidence"]["other_user_ids"] == ["u-2"]


def test_bank_account_seen_in_another_users_check_fires_within_the_window_only():
    earlier = check("u-2", **BANK)
    assert signal(check(**BANK), "bank_account")["evidence"]["other_user_ids"] == ["u-2"]
    age(earlier, hours=24, seconds=5)
    assert signal(check(**BANK), "bank_account")["fired"] is False


def test_the_hash_and_the_numbers_are_the_same_account():
    check("u-2", account_routing_hash=bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT))
    result = check(**BANK)
    assert result.account_routing_hash == bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT)
    assert signal(result, "bank_account")["evidence"]["other_user_ids"] == ["u-2"]
    other = check(routing_number=ROUTING_2, account_number=ACCOUNT_2)
    assert signal(other, "bank_account")["fired"] is False


@override_settings(FRAUD_MAX_OTHER_USERS_PER_BANK_ACCOUNT=1)
def test_bank_account_threshold_edge():
    bank_account_save(user_id="u-2", account_id="acc-9", actor="t", **BANK)
    assert signal(check(**BANK), "bank_account")["fired"] is False  # 1 other user: at the threshold
    check("u-3", **BANK)
    sig = signal(check(**BANK), "bank_account")
    assert (sig["fired"], sig["evidence"]["other_user_ids"]) == (True, ["u-2", "u-3"])


# --- card -----------------------------------------------------------------------------------------------------------

def test_card_held_by_another_user_fires():
    _save_card("u-2")
    result = check(**CARD)
    assert result.hashed_card_number == card_hash(last4=LAST4, card_exp=EXP)
    assert signal(result, "card") == {"name": "card", "fired": True, "threshold": 0,
                                      "evidence": {"other_user_ids": ["u-2"], "count": 1}}


def test_card_held_only_by_the_user_or_with_another_expiry_is_clear():
    _save_card("u-1")
    _save_card("u-2", card_exp="102032")
    assert signal(check(**CARD), "card")["fired"] is False


def test_card_seen_in_another_users_check_by_hash():
    check("u-2", hashed_card_number=card_hash(last4=LAST4, card_exp=EXP))
    assert signal(check(**CARD), "card")["evidence"]["other_user_ids"] == ["u-2"]


@override_settings(FRAUD_MAX_OTHER_USERS_PER_CARD=1)
def test_card_threshold_edge():
    _save_card("u-2")
    assert signal(check(**CARD), "card")["fired"] is False
    check("u-3", **CARD)
    assert signal(check(**CARD), "card")["fired"] is True


# --- verdict, storage, settings --------------------------------------------------------------------------------------

def test_every_fired_signal_is_listed_and_stored():
    _result("u-1")
    check("u-2", install_id=INSTALL)
    check("u-3", install_id=INSTALL)
    bank_account_save(user_id="u-2", account_id="acc-9", actor="t", **BANK)
    _save_card("u-4")
    result = check(install_id=INSTALL, **BANK, **CARD)
    assert result.verdict == "review"
    assert result.fired == ["user_history", "install_id", "bank_account", "card"]
    stored = FraudCheck.objects.get(pk=result.pk)
    assert stored.fired == result.fired and stored.signals == result.signals
    assert stored.thresholds == {"user_history": 0, "install_id": 1, "bank_account": 0, "card": 0}
    assert stored.window_hours == 24


def test_only_the_signals_whose_input_is_given_are_evaluated():
    assert [s["name"] for s in check(**CARD).signals] == ["user_history", "card"]
    assert [s["name"] for s in check(install_id=INSTALL).signals] == ["user_history", "install_id"]


def test_evidence_lists_at_most_100_user_ids_but_counts_them_all():
    install_hash = blind_index("install", INSTALL)
    FraudCheck.objects.bulk_create([  # test setup: 120 earlier checks of other users
        FraudCheck(user_id=f"u-{n:03d}", install_id_hash=install_hash, window_hours=24, verdict="clear",
                   created_at=timezone.now())
        for n in range(2, 122)
    ])
    sig = signal(check(install_id=INSTALL), "install_id")
    assert sig["evidence"]["count"] == 120
    assert sig["evidence"]["other_user_ids"] == [f"u-{n:03d}" for n in range(2, 102)]


@pytest.mark.parametrize("overrides", [
    {"FRAUD_WINDOW_HOURS": 0}, {"FRAUD_WINDOW_HOURS": "24"}, {"FRAUD_MAX_OTHER_USERS_PER_CARD": -1},
    {"FRAUD_MAX_USER_FLAGS": True},
])
def test_a_misconfigured_setting_refuses_to_evaluate(overrides):
    with override_settings(**overrides), pytest.raises(ImproperlyConfigured):
        check(install_id=INSTALL)
    assert counts() == (0, 0)
