"""Idempotency of POST /api/v1/payments (SPEC §5, IETF draft): replay, conflict, mismatch, scoping; and the three
steps run separately (a crash between them)."""

import pytest

from core.models import IdempotencyKey
from payments.models import Payment, PaymentStatusChange
from payments.services import ProcessorOutcome, payment_apply_outcome, payment_call_processor, payment_claim
from tests.payments.conftest import (
    USER,
    card_body,
    new_key,
    payment_body,
    post_payment,
    processor_calls,
    snapshot,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["ach", "pinless"])
def test_same_key_same_body_replays_the_answer(sandbox, service, bank_account, debit_card, kind):
    bank_account()
    debit_card()
    body = payment_body() if kind == "ach" else card_body()
    key = new_key()
    first = post_payment(service, body, key=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    for _ in range(3):
        again = post_payment(service, body, key=key)
        # The same document (object key order is not part of JSON's meaning; PostgreSQL's jsonb reorders keys).
        assert (again.status_code, again.json()) == (201, first.json())
        assert again["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1
    assert len(processor_calls(sandbox)) == 1
    assert PaymentStatusChange.objects.count() == 2


def test_key_order_and_spacing_do_not_matter_but_values_do(sandbox, service, bank_account):
    bank_account()
    key = new_key()
    body = payment_body()
    first = post_payment(service, body, key=key)
    reordered = dict(reversed(list(body.items())))
    assert post_payment(service, reordered, key=key).json() == first.json()
    mismatch = post_payment(service, payment_body(amount="25.01"), key=key)
    assert (mismatch.status_code, mismatch.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert Payment.objects.count() == 1 and len(processor_calls(sandbox)) == 1


def test_a_replay_does_not_re_check_state(sandbox, service, bank_account):
    """A completed request's answer is replayed even if the state changed since (e.g. the user got blocked)."""
    from blocklist.services import blocklist_block

    bank_account()
    key = new_key()
    first = post_payment(service, payment_body(), key=key)
    blocklist_block(user_id=USER, reason="R02", actor="support:test")
    assert post_payment(service, payment_body(), key=key).json() == first.json()


def test_a_replay_is_answered_from_the_stored_response_before_the_body_is_checked_again(sandbox, service,
                                                                                        bank_account, settings):
    """A retry of a completed request gets its stored answer even when the body would no longer pass today's rules
    (here a lower amount limit): one read of the key, nothing written (``payments.services.payment_replay``)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    bank_account()
    key = new_key()
    body = payment_body(amount="25.00")
    first = post_payment(service, body, key=key)
    settings.MAX_PAYMENT_AMOUNT = "10.00"
    before = {**snapshot(), "keys": list(IdempotencyKey.objects.order_by("pk").values())}
    with CaptureQueriesContext(connection) as queries:
        again = post_payment(service, body, key=key)
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (201, first.json(), "true")
    key_reads = [q["sql"] for q in queries.captured_queries if "idempotencykey" in q["sql"].lower()]
    assert len(key_reads) == 1 and key_reads[0].lstrip().upper().startswith("SELECT")
    assert not any(q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
                   for q in queries.captured_queries)
    assert {**snapshot(), "keys": list(IdempotencyKey.objects.order_by("pk").values())} == before
    # A new key with the same body is checked: the new limit refuses it, and stores nothing.
    refused = post_payment(service, body, key=new_key())
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "amount_over_limit")
    assert {**snapshot(), "keys": list(IdempotencyKey.objects.order_by("pk").values())} == before


def test_keys_are_scoped_per_api_client(sandbox, caller, bank_account):
    bank_account()
    key = new_key()
    one = post_payment(caller("service"), payment_body(), key=key)
    two = post_payment(caller("service"), payment_body(), key=key)
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] != two.json()["id"]
    assert Payment.objects.count() == 2 and len(processor_calls(sandbox)) == 2


def test_the_payment_records_its_key_and_client(sandbox, service, bank_account):
    bank_account()
    key = new_key()
    data = post_payment(service, payment_body(), key=key).json()
    payment = Payment.objects.get(pk=data["id"])
    record = IdempotencyKey.objects.get(key=key)
    assert (payment.idempotency_key, payment.client_id) == (key, record.client_id)
    assert record.resource_id == str(payment.pk) and record.response_status_code == 201
    assert record.response_body == data


def _claim(principal, body, key, fingerprint=None):
    from core.idempotency import fingerprint as make_fingerprint

    return payment_claim(principal=principal, idempotency_key=key,
                         fingerprint=fingerprint or make_fingerprint(method="POST", path="/api/v1/payments",
                                                                     body=body),
                         data=body)


@pytest.fixture
def service_principal(make_api_key):
    """A service Principal and an APIClient authenticated as the same API client (same idempotency scope)."""
    from rest_framework.test import APIClient

    from core.auth.api_keys import api_key_verify
    from core.auth.principal import Principal

    raw = make_api_key("service")
    key = api_key_verify(raw)
    principal = Principal(role=key.role, name=key.name, client_id=f"key:{key.pk}")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return principal, client


def test_crash_after_step_1_leaves_a_processing_payment_and_a_409(sandbox, service_principal, bank_account):
    principal, client = service_principal
    bank_account()
    body = payment_body()
    key = new_key()
    claim = _claim(principal, body, key)
    assert claim.response is None and claim.payment.payment_status == "PROCESSING"
    assert processor_calls(sandbox) == []
    # The "crashed" request holds the key: a retry is told to wait, and nothing is sent.
    response = post_payment(client, body, key=key)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "idempotency_in_progress")
    assert response.json()["error"]["details"]["retry_after_seconds"] >= 1
    assert Payment.objects.count() == 1 and processor_calls(sandbox) == []
    # A different body with that key is a reuse, even while in progress.
    other = post_payment(client, payment_body(amount="1.00"), key=key)
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")


def test_crash_between_step_2_and_3_then_a_retry_after_the_lease(sandbox, service_principal, bank_account):
    principal, client = service_principal
    bank_account()
    body = payment_body()
    key = new_key()
    claim = _claim(principal, body, key)
    outcome = payment_call_processor(claim=claim)
    assert outcome.kind == "sent" and outcome.confirmation_id
    # The process dies here. The money moved (one call); the payment is PROCESSING until the reconciler acts.
    IdempotencyKey.objects.filter(key=key).update(lease_expires_at="2000-01-01T00:00:00Z")
    response = post_payment(client, body, key=key)
    assert response.status_code == 202 and response.json()["payment_status"] == "PROCESSING"
    assert len(processor_calls(sandbox)) == 1  # never re-sent
    assert Payment.objects.count() == 1


def test_a_failing_step_3_keeps_nothing_of_it_and_leaves_the_payment_to_the_reconciler(sandbox, service_principal,
                                                                                      bank_account):
    """Step 3 changes the status without a savepoint of its own: an error in it (a database one here: the
    processor's id already belongs to another payment) must still roll ALL of step 3 back — no status change, no
    history row, no event, no stored answer — and leave step 1's state (PROCESSING, key in progress)."""
    from django.db import IntegrityError

    from core.models import OutboxEvent

    principal, _ = service_principal
    bank_account()
    key = new_key()
    claim = _claim(principal, payment_body(), key)
    outcome = payment_call_processor(claim=claim)
    assert outcome.kind == "sent" and outcome.confirmation_id
    other = _claim(principal, payment_body(), new_key()).payment
    Payment.objects.filter(pk=other.pk).update(confirmation_id=outcome.confirmation_id)
    before = snapshot()
    with pytest.raises(IntegrityError):
        payment_apply_outcome(claim=claim, outcome=outcome)
    assert snapshot() == before
    assert Payment.objects.get(pk=claim.payment.pk).payment_status == "PROCESSING"
    assert OutboxEvent.objects.count() == 0
    record = IdempotencyKey.objects.get(key=key)
    assert (record.status, record.response_status_code, record.resource_id) == ("in_progress", None,
                                                                               str(claim.payment.pk))


def test_steps_run_separately_give_the_same_result(sandbox, service_principal, bank_account):
    principal, client = service_principal
    bank_account()
    body = payment_body()
    key = new_key()
    claim = _claim(principal, body, key)
    result = payment_apply_outcome(claim=claim, outcome=payment_call_processor(claim=claim))
    assert result.status_code == 201 and result.body["payment_status"] == "ACHSENT"
    replay = post_payment(client, body, key=key)
    assert (replay.status_code, replay.json()) == (201, result.body)


def test_step_2_refuses_to_run_inside_a_transaction(sandbox, service_principal, bank_account):
    from django.db import transaction

    principal, _ = service_principal
    bank_account()
    claim = _claim(principal, payment_body(), new_key())
    with transaction.atomic(), pytest.raises(RuntimeError):
        payment_call_processor(claim=claim)
    assert processor_calls(sandbox) == []


def test_steps_2_and_3_refuse_an_answered_claim(sandbox, service_principal, bank_account):
    principal, _ = service_principal
    bank_account()
    body = payment_body()
    key = new_key()
    claim = _claim(principal, body, key)
    payment_apply_outcome(claim=claim, outcome=payment_call_processor(claim=claim))
    replayed = _claim(principal, body, key)
    assert replayed.response is not None and replayed.response.replayed and replayed.payment is None
    with pytest.raises(ValueError):
        payment_call_processor(claim=replayed)
    with pytest.raises(ValueError):
        payment_apply_outcome(claim=replayed, outcome=ProcessorOutcome("approved"))
    assert len(processor_calls(sandbox)) == 1


def test_a_stale_key_without_a_payment_is_claimed_afresh(sandbox, service_principal, bank_account):
    """A key whose first request refused nothing and created nothing (the transaction never committed a payment)
    cannot exist in our flow, but a stale in-progress record without a resource is simply claimed again."""
    from django.utils import timezone

    from core.idempotency import fingerprint

    principal, client = service_principal
    bank_account()
    body = payment_body()
    key = new_key()
    IdempotencyKey.objects.create(client_id=principal.client_id, key=key, status="in_progress",
                                  fingerprint=fingerprint(method="POST", path="/api/v1/payments", body=body),
                                  lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
    response = post_payment(client, body, key=key)
    assert response.status_code == 201
    assert Payment.objects.count() == 1 and len(processor_calls(sandbox)) == 1


def test_step_1_links_the_key_to_the_payment_it_creates(sandbox, service_principal, bank_account):
    """A crash right after step 1 must leave the key pointing at its payment (``Stale`` recovery reads it): a new
    key, and a stale key without a payment claimed afresh."""
    from django.utils import timezone

    from core.idempotency import fingerprint

    principal, _ = service_principal
    bank_account()
    body = payment_body()
    claim = _claim(principal, body, new_key())
    assert IdempotencyKey.objects.get(pk=claim.record.pk).resource_id == str(claim.payment.pk)

    key = new_key()
    IdempotencyKey.objects.create(client_id=principal.client_id, key=key, status="in_progress",
                                  fingerprint=fingerprint(method="POST", path="/api/v1/payments", body=body),
                                  lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
    claim = _claim(principal, body, key)
    assert IdempotencyKey.objects.get(key=key).resource_id == str(claim.payment.pk)
    assert Payment.objects.count() == 2 and processor_calls(sandbox) == []


def test_conflict_and_mismatch_change_nothing(sandbox, service_principal, bank_account):
    principal, client = service_principal
    bank_account()
    body = payment_body()
    key = new_key()
    _claim(principal, body, key)
    before = snapshot()
    post_payment(client, body, key=key)
    post_payment(client, payment_body(amount="3.00"), key=key)
    assert snapshot() == before
