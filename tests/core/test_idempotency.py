"""Idempotency keys (SPEC §5, IETF draft): claim, replay, 409 in progress, 422 reuse, stale leases, release,
per-client scoping, fingerprints, header validation, the purge job, and 50 concurrent first requests."""

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

import core.idempotency.jobs  # noqa: F401  (registers the job and the task until CoreConfig.ready imports it)
from core.auth.permissions import require_roles
from core.errors import BadRequest, ConflictError, ValidationError
from core.idempotency import (
    Claimed,
    Replay,
    Stale,
    fingerprint,
    idempotency_attach,
    idempotency_begin,
    idempotency_complete,
    idempotency_key_from_request,
    idempotency_purge,
    idempotency_release,
    replay_response,
    request_fingerprint,
    validate_idempotency_key,
)
from core.models import IdempotencyKey
from core.serializers import StrictInputSerializer

PAYMENTS = "/api/v1/payments"
FP = fingerprint(method="POST", path=PAYMENTS, body={"amount": "10.00", "user_id": "u-1"})
FP_OTHER = fingerprint(method="POST", path=PAYMENTS, body={"amount": "11.00", "user_id": "u-1"})


def begin(*, client_id: str = "key:1", key: str = "k-1", fp: str = FP, **kwargs):
    with transaction.atomic():
        return idempotency_begin(client_id=client_id, key=key, fingerprint=fp, **kwargs)


def rows() -> list[dict]:
    return list(IdempotencyKey.objects.order_by("pk").values())


# --- claim, replay, in progress, reuse ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_key_is_claimed_in_progress_with_a_lease():
    before = timezone.now()
    outcome = begin(lease_seconds=90)
    assert isinstance(outcome, Claimed)
    record = IdempotencyKey.objects.get()
    assert record.pk == outcome.record.pk
    assert (record.client_id, record.key, record.fingerprint, record.status) == ("key:1", "k-1", FP, "in_progress")
    assert before + timedelta(seconds=90) <= record.lease_expires_at <= timezone.now() + timedelta(seconds=90)
    assert record.response_status_code is None and record.response_body is None and record.resource_id is None


@pytest.mark.django_db
def test_a_new_key_claimed_with_a_resource_id_is_linked_to_it_at_once():
    outcome = begin(resource_id="pay_1")
    assert isinstance(outcome, Claimed) and outcome.record.resource_id == "pay_1"
    assert IdempotencyKey.objects.get().resource_id == "pay_1"


@pytest.mark.django_db
def test_an_existing_record_keeps_its_own_resource_id_whatever_the_retry_brings():
    begin(resource_id="pay_1")
    IdempotencyKey.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    outcome = begin(resource_id="pay_2")
    assert isinstance(outcome, Stale) and outcome.record.resource_id == "pay_1"
    assert IdempotencyKey.objects.get().resource_id == "pay_1"


@pytest.mark.django_db
def test_completing_with_no_resource_clears_the_claimed_resource_id():
    record = begin(resource_id="pay_1").record
    with pytest.raises(ValueError):
        idempotency_complete(record=record, status_code=422, body={}, resource_id="pay_1", no_resource=True)
    assert idempotency_complete(record=record, status_code=422, body={"error": {}}, no_resource=True) is True
    stored = IdempotencyKey.objects.get()
    assert (stored.status, stored.resource_id, stored.response_status_code) == ("completed", None, 422)
    assert begin() == Replay(status_code=422, body={"error": {}}, resource_id=None)


@pytest.mark.django_db
def test_same_key_and_fingerprint_after_completion_replays_the_stored_response_and_changes_nothing():
    record = begin().record
    body = {"id": "pay_1", "amount": Decimal("10.50"), "at": datetime(2026, 11, 20, 12, 0, tzinfo=UTC)}
    assert idempotency_complete(record=record, status_code=201, body=body, resource_id="pay_1") is True
    before = rows()

    outcome = begin()
    assert isinstance(outcome, Replay)
    assert outcome.status_code == 201
    # Exactly the JSON document DRF rendered for the first response.
    assert outcome.body == json.loads(JSONRenderer().render(body))
    assert outcome.body == {"id": "pay_1", "amount": 10.5, "at": "2026-11-20T12:00:00Z"}
    assert outcome.resource_id == "pay_1"
    assert rows() == before


@pytest.mark.django_db
def test_same_key_while_the_first_request_runs_is_409_and_changes_nothing():
    begin(lease_seconds=60)
    before = rows()
    with pytest.raises(ConflictError) as exc:
        begin()
    assert exc.value.status_code == 409
    assert exc.value.code == "idempotency_in_progress"
    assert 1 <= exc.value.details["retry_after_seconds"] <= 60
    assert rows() == before


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["in_progress", "completed", "stale"])
def test_same_key_with_a_different_body_is_422_whatever_the_state(state):
    record = begin().record
    if state == "completed":
        idempotency_complete(record=record, status_code=201, body={"id": "pay_1"})
    elif state == "stale":
        IdempotencyKey.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    before = rows()
    with pytest.raises(ValidationError) as exc:
        begin(fp=FP_OTHER)
    assert exc.value.status_code == 422
    assert exc.value.code == "idempotency_key_reused"
    assert rows() == before


@pytest.mark.django_db
def test_an_expired_lease_is_stale_and_the_retry_takes_the_record_over():
    record = begin(lease_seconds=60).record
    assert idempotency_attach(record=record, resource_id="pay_7") is True
    IdempotencyKey.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    outcome = begin(lease_seconds=30)
    assert isinstance(outcome, Stale)
    assert outcome.record.pk == record.pk
    assert outcome.record.resource_id == "pay_7"
    stored = IdempotencyKey.objects.get()
    assert stored.status == "in_progress"
    assert stored.lease_expires_at > timezone.now() + timedelta(seconds=25)  # renewed for the new holder

    # A concurrent retry now waits for the new holder ...
    with pytest.raises(ConflictError):
        begin()
    # ... who recovers and completes; later retries replay that.
    assert idempotency_complete(record=outcome.record, status_code=200, body={"id": "pay_7"}) is True
    assert begin() == Replay(status_code=200, body={"id": "pay_7"}, resource_id="pay_7")
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.django_db
def test_a_live_lease_is_not_stale_shortly_before_expiry():
    begin()
    IdempotencyKey.objects.update(lease_expires_at=timezone.now() + timedelta(seconds=2))
    with pytest.raises(ConflictError):
        begin()


# --- complete, attach, release ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_complete_stores_the_response_once_the_first_completion_wins():
    record = begin().record
    assert idempotency_complete(record=record, status_code=201, body={"id": "pay_1"}, resource_id="pay_1") is True
    stored = IdempotencyKey.objects.get()
    assert (stored.status, stored.response_status_code, stored.response_body, stored.resource_id) == (
        "completed", 201, {"id": "pay_1"}, "pay_1"
    )
    assert stored.completed_at is not None
    before = rows()
    assert idempotency_complete(record=stored, status_code=500, body={"other": True}) is False
    assert rows() == before


@pytest.mark.django_db
@pytest.mark.parametrize("status_code", [99, 600, "201"])
def test_complete_refuses_a_non_http_status_and_changes_nothing(status_code):
    record = begin().record
    before = rows()
    with pytest.raises(ValueError):
        idempotency_complete(record=record, status_code=status_code, body={})
    assert rows() == before


@pytest.mark.django_db
def test_complete_refuses_a_body_that_is_not_json_and_changes_nothing():
    record = begin().record
    before = rows()
    with pytest.raises(TypeError):
        idempotency_complete(record=record, status_code=201, body={"x": object()})
    assert rows() == before


@pytest.mark.django_db
def test_attach_links_the_resource_only_while_in_progress():
    record = begin().record
    assert idempotency_attach(record=record, resource_id="pay_1") is True
    assert IdempotencyKey.objects.get().resource_id == "pay_1"
    idempotency_complete(record=record, status_code=201, body={})
    before = rows()
    assert idempotency_attach(record=record, resource_id="pay_2") is False
    assert rows() == before


@pytest.mark.django_db
def test_release_forgets_the_claim_so_a_corrected_retry_with_the_same_key_is_new():
    record = begin().record
    assert idempotency_release(record=record) is True
    assert IdempotencyKey.objects.count() == 0
    outcome = begin(fp=FP_OTHER)  # the corrected request, same key
    assert isinstance(outcome, Claimed)
    assert IdempotencyKey.objects.get().fingerprint == FP_OTHER


@pytest.mark.django_db
def test_a_completed_record_is_never_released():
    record = begin().record
    idempotency_complete(record=record, status_code=201, body={"id": "pay_1"})
    before = rows()
    assert idempotency_release(record=record) is False
    assert rows() == before


@pytest.mark.django_db
def test_a_claim_rolls_back_with_the_callers_transaction():
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        assert isinstance(idempotency_begin(client_id="key:1", key="k-1", fingerprint=FP), Claimed)
        raise Boom
    assert IdempotencyKey.objects.count() == 0
    assert isinstance(begin(), Claimed)


@pytest.mark.django_db(transaction=True)
def test_begin_outside_a_transaction_is_refused_and_writes_nothing():
    with pytest.raises(RuntimeError):
        idempotency_begin(client_id="key:1", key="k-1", fingerprint=FP)
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"client_id": ""}, ValueError),
        ({"fp": "not-a-sha256"}, ValueError),
        ({"fp": FP.upper()}, ValueError),
        ({"lease_seconds": 0}, ValueError),
        ({"key": ""}, BadRequest),
        ({"key": "x" * 256}, BadRequest),
        ({"key": "bad\nkey"}, BadRequest),
    ],
)
def test_begin_refuses_bad_arguments_and_writes_nothing(kwargs, error):
    with pytest.raises(error):
        begin(**kwargs)
    assert IdempotencyKey.objects.count() == 0


# --- scoping and the database constraints ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_keys_are_scoped_per_client():
    assert isinstance(begin(client_id="key:1"), Claimed)
    assert isinstance(begin(client_id="key:2"), Claimed)
    assert isinstance(begin(client_id="user:u-1"), Claimed)
    assert IdempotencyKey.objects.count() == 3
    # Completing one client's request leaves the others' claims alone.
    idempotency_complete(record=IdempotencyKey.objects.get(client_id="key:1"), status_code=201, body={"c": 1})
    assert isinstance(begin(client_id="key:1"), Replay)
    with pytest.raises(ConflictError):
        begin(client_id="key:2")


@pytest.mark.django_db
def test_the_database_enforces_one_record_per_client_and_key():
    begin()
    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyKey.objects.create(client_id="key:1", key="k-1", fingerprint=FP, lease_expires_at=timezone.now())
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.django_db
def test_the_database_refuses_a_completed_record_without_a_response():
    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyKey.objects.create(
            client_id="key:1", key="k-1", fingerprint=FP, status="completed", lease_expires_at=timezone.now()
        )
    assert IdempotencyKey.objects.count() == 0


# --- fingerprints ------------------------------------------------------------------------------------------------


def _request(method: str, url: str, raw: str | None = None, **headers) -> Request:
    factory = APIRequestFactory()
    if raw is None:
        django_request = getattr(factory, method.lower())(url, **headers)
    else:
        django_request = getattr(factory, method.lower())(url, data=raw, content_type="application/json", **headers)
    return Request(django_request, parsers=[JSONParser()])


def test_fingerprint_ignores_key_order_and_whitespace():
    compact = '{"amount":"10.00","user_id":"u-1","meta":{"a":1,"b":[1,2]}}'
    spaced = '{\n  "meta": { "b": [1, 2], "a": 1 },\n  "user_id" : "u-1",   "amount": "10.00"\n}'
    assert request_fingerprint(_request("POST", PAYMENTS, compact)) == request_fingerprint(
        _request("POST", PAYMENTS, spaced)
    )
    assert request_fingerprint(_request("POST", PAYMENTS, compact)) == fingerprint(
        method="post", path=PAYMENTS, body={"meta": {"b": [1, 2], "a": 1}, "amount": "10.00", "user_id": "u-1"}
    )


@pytest.mark.parametrize(
    ("method", "url", "raw"),
    [
        ("POST", PAYMENTS, '{"amount":"10.01","user_id":"u-1"}'),  # another value
        ("POST", PAYMENTS, '{"amount":"10.00","user_id":"u-1","x":null}'),  # an extra field
        ("POST", PAYMENTS, '{"amount":10.00,"user_id":"u-1"}'),  # a number, not a string
        ("POST", PAYMENTS, '[{"amount":"10.00","user_id":"u-1"}]'),  # another shape
        ("POST", "/api/v1/prenotes", '{"amount":"10.00","user_id":"u-1"}'),  # another path
        ("PUT", PAYMENTS, '{"amount":"10.00","user_id":"u-1"}'),  # another method
    ],
)
def test_fingerprint_differs_for_different_bodies_paths_and_methods(method, url, raw):
    reference = request_fingerprint(_request("POST", PAYMENTS, '{"amount":"10.00","user_id":"u-1"}'))
    assert request_fingerprint(_request(method, url, raw)) != reference


def test_fingerprint_of_an_empty_body_is_that_of_an_empty_object():
    assert request_fingerprint(_request("POST", PAYMENTS)) == fingerprint(method="POST", path=PAYMENTS, body={})
    assert request_fingerprint(_request("POST", PAYMENTS)) != fingerprint(method="POST", path=PAYMENTS, body=[])


def test_fingerprint_is_a_lowercase_sha256():
    value = request_fingerprint(_request("POST", PAYMENTS, "{}"))
    assert len(value) == 64 and value == value.lower() and int(value, 16) >= 0


# --- the Idempotency-Key header ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("a", "a"),
        ("x" * 255, "x" * 255),
        ("550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
        ("with space ~!@#", "with space ~!@#"),
        ('"8e03978e-40d5"', "8e03978e-40d5"),  # the draft's RFC 8941 string form
        ('"a\\"b\\\\c"', 'a"b\\c'),
        ('"' + "x" * 255 + '"', "x" * 255),
    ],
)
def test_valid_header_values_give_the_key(header, key):
    assert idempotency_key_from_request(_request("POST", PAYMENTS, "{}", HTTP_IDEMPOTENCY_KEY=header)) == key


@pytest.mark.parametrize(
    "header",
    ["", "x" * 256, '"' + "x" * 256 + '"', '""', "a\x00b", "a\tb", "a\x1bb", "a\x7fb", "caf\xe9", "k\u2603"],
)
def test_invalid_header_values_are_400_idempotency_key_invalid(header):
    with pytest.raises(BadRequest) as exc:
        idempotency_key_from_request(_request("POST", PAYMENTS, "{}", HTTP_IDEMPOTENCY_KEY=header))
    assert exc.value.status_code == 400
    assert exc.value.code == "idempotency_key_invalid"


def test_a_missing_header_is_400_idempotency_key_missing():
    with pytest.raises(BadRequest) as exc:
        idempotency_key_from_request(_request("POST", PAYMENTS, "{}"))
    assert exc.value.status_code == 400
    assert exc.value.code == "idempotency_key_missing"


def test_validate_idempotency_key_refuses_non_strings():
    with pytest.raises(BadRequest):
        validate_idempotency_key(None)


# --- through a real API view (auth, client scoping, the error format, replay) -----------------------------------------


class _ThingInput(StrictInputSerializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)


class _CreateThingView(APIView):
    """The three-step shape payments uses, with an in-memory 'side effect'."""

    permission_classes = [require_roles("service", "user")]

    def post(self, request):
        key = idempotency_key_from_request(request)
        request_hash = request_fingerprint(request)
        data = _ThingInput(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            outcome = idempotency_begin(client_id=request.user.client_id, key=key, fingerprint=request_hash)
            if isinstance(outcome, Replay):
                return replay_response(outcome)
            record = outcome.record
            thing_id = f"thing-{record.pk}"
            idempotency_attach(record=record, resource_id=thing_id)
        body = {"id": thing_id, "amount": data.validated_data["amount"], "client": request.user.client_id}
        with transaction.atomic():
            idempotency_complete(record=record, status_code=201, body=body, resource_id=thing_id)
        return Response(body, status=201)


urlpatterns = [path("things", _CreateThingView.as_view())]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_api_first_request_creates_a_retry_replays_and_a_changed_body_is_422(client_as):
    client = client_as("service")
    first = client.post("/things", data='{"amount": "10.50"}', content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    # Same request, keys respaced: the same response, marked as replayed.
    again = client.post("/things", data='{ "amount" : "10.50" }', content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY='"order-1"')
    assert again.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.count() == 1

    before = rows()
    changed = client.post("/things", data={"amount": "99.00"}, HTTP_IDEMPOTENCY_KEY="order-1")
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert rows() == before


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_api_keys_are_scoped_per_api_client_and_per_user(client_as, api_client, make_jwt):
    bodies = []
    for client in (client_as("service"), client_as("service")):
        response = client.post("/things", data={"amount": "1.00"}, HTTP_IDEMPOTENCY_KEY="same")
        assert response.status_code == 201
        bodies.append(response.json())
    for sub in ("u-1", "u-2"):
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(sub)}")
        response = api_client.post("/things", data={"amount": "1.00"}, HTTP_IDEMPOTENCY_KEY="same")
        assert response.status_code == 201
        bodies.append(response.json())
    assert len({body["id"] for body in bodies}) == 4
    assert sorted(IdempotencyKey.objects.values_list("client_id", flat=True)) == sorted(b["client"] for b in bodies)
    assert {b["client"] for b in bodies[2:]} == {"user:u-1", "user:u-2"}


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_api_in_progress_is_409_with_the_error_format(client_as):
    client = client_as("service")
    client.post("/things", data={"amount": "1.00"}, HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyKey.objects.update(
        status="in_progress", response_status_code=None, response_body=None, completed_at=None,
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    before = rows()
    response = client.post("/things", data={"amount": "1.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "idempotency_in_progress"
    assert 1 <= error["details"]["retry_after_seconds"] <= 60
    assert rows() == before


@pytest.mark.django_db
@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("headers", "raw", "status", "code"),
    [
        ({}, '{"amount": "1.00"}', 400, "idempotency_key_missing"),
        ({"HTTP_IDEMPOTENCY_KEY": "x" * 256}, '{"amount": "1.00"}', 400, "idempotency_key_invalid"),
        ({"HTTP_IDEMPOTENCY_KEY": "bad\x01key"}, '{"amount": "1.00"}', 400, "idempotency_key_invalid"),
        ({"HTTP_IDEMPOTENCY_KEY": "k"}, '{"amount": ', 400, "malformed_request"),
    ],
)
def test_api_bad_idempotency_input_is_a_precise_400_and_writes_nothing(client_as, headers, raw, status, code):
    response = client_as("service").post("/things", data=raw, content_type="application/json", **headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert IdempotencyKey.objects.count() == 0


# --- purge ---------------------------------------------------------------------------------------------------------


def _aged(*, key: str, created_hours_ago: float, state: str, lease_hours: float = -1.0,
          completed_hours_ago: float | None = None) -> int:
    """A record created ``created_hours_ago``; ``state`` in_progress (lease relative to now) or completed."""
    record = begin(key=key).record
    if state == "completed":
        idempotency_complete(record=record, status_code=201, body={"key": key})
    now = timezone.now()
    updates = {
        "created_at": now - timedelta(hours=created_hours_ago),
        "lease_expires_at": now + timedelta(hours=lease_hours),
    }
    if state == "completed":
        updates["completed_at"] = now - timedelta(hours=completed_hours_ago or created_hours_ago)
    IdempotencyKey.objects.filter(pk=record.pk).update(**updates)
    return record.pk


@pytest.fixture
def aged_records(db):
    return {
        "old_completed": _aged(key="old_completed", created_hours_ago=25, state="completed"),
        "old_stale": _aged(key="old_stale", created_hours_ago=25, state="in_progress", lease_hours=-24.9),
        # Kept: completed less than 24 h ago (after a long run), still running, stale but young.
        "recently_completed": _aged(key="recently_completed", created_hours_ago=25, state="completed",
                                    completed_hours_ago=23),
        "young_completed": _aged(key="young_completed", created_hours_ago=23.9, state="completed"),
        "old_running": _aged(key="old_running", created_hours_ago=25, state="in_progress", lease_hours=1),
        "young_stale": _aged(key="young_stale", created_hours_ago=1, state="in_progress", lease_hours=-0.5),
    }


def test_purge_job_deletes_old_completed_and_stale_records_and_keeps_the_rest(aged_records, capsys):
    call_command("run_job", "purge_idempotency_keys")
    out = json.loads(capsys.readouterr().out)
    assert out["result"] == {"deleted": 2, "older_than_hours": 24}
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {
        "recently_completed", "young_completed", "old_running", "young_stale"
    }
    # A second run has nothing left to do.
    call_command("run_job", "purge_idempotency_keys")
    assert json.loads(capsys.readouterr().out)["result"]["deleted"] == 0
    assert IdempotencyKey.objects.count() == 4


def test_purge_job_refuses_a_retention_below_24_hours_and_deletes_nothing(aged_records):
    before = rows()
    with pytest.raises(CommandError, match="idempotency_retention_too_short"):
        call_command("run_job", "purge_idempotency_keys", "--older-than-hours", "23")
    assert rows() == before


def test_purge_uses_the_retention_setting(aged_records, settings):
    settings.IDEMPOTENCY_RETENTION_HOURS = 48
    _aged(key="ancient", created_hours_ago=49, state="completed")
    assert idempotency_purge() == 1
    assert not IdempotencyKey.objects.filter(key="ancient").exists()
    assert IdempotencyKey.objects.count() == len(aged_records)

    settings.IDEMPOTENCY_RETENTION_HOURS = 12
    before = rows()
    with pytest.raises(ValidationError) as exc:
        idempotency_purge()
    assert exc.value.code == "idempotency_retention_too_short"
    assert rows() == before


@pytest.mark.django_db
def test_purge_deletes_in_batches():
    for n in range(7):
        _aged(key=f"old-{n}", created_hours_ago=30, state="completed")
    _aged(key="young", created_hours_ago=1, state="completed")
    with CaptureQueriesContext(connection) as queries:
        assert idempotency_purge(batch_size=3) == 7
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 3  # 3 + 3 + 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["young"]


@pytest.mark.django_db
def test_purge_task_is_declared_on_the_default_queue_and_purges():
    from config.celery import app

    task = app.tasks["core.purge_idempotency_keys"]
    assert task.job_queue == "default"
    _aged(key="old", created_hours_ago=30, state="completed")
    _aged(key="young", created_hours_ago=1, state="completed")
    assert task() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["young"]


# --- concurrency: 50 first requests at once ---------------------------------------------------------------------------

THREADS = 50


class _Rollback(Exception):
    pass


def _race(after_claim) -> Counter:
    """THREADS threads, each with its own connection, begin the same key at the same instant.

    ``after_claim(record)`` runs inside the claimant's transaction (holding the claim uncommitted for a moment,
    so that the others really pile up on the unique insert)."""
    barrier = threading.Barrier(THREADS)
    results: list[str] = []
    lock = threading.Lock()

    def worker():
        try:
            barrier.wait(timeout=60)
            try:
                with transaction.atomic():
                    outcome = idempotency_begin(client_id="key:race", key="race-1", fingerprint=FP)
                    result = type(outcome).__name__
                    if isinstance(outcome, Claimed):
                        after_claim(outcome.record)
            except _Rollback:
                pass
        except (ConflictError, ValidationError) as exc:
            result = exc.code
        except Exception as exc:  # report anything else as a distinct result
            result = f"error: {exc!r}"
        finally:
            connections.close_all()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return Counter(results)


@pytest.mark.django_db(transaction=True)
def test_concurrent_begins_one_claims_the_others_get_409():
    def hold(record):
        time.sleep(0.3)  # commit the claim (never completed) while others wait on the unique insert

    assert _race(hold) == Counter({"Claimed": 1, "idempotency_in_progress": THREADS - 1})
    assert IdempotencyKey.objects.filter(client_id="key:race", key="race-1", status="in_progress").count() == 1
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_begins_one_claims_and_completes_the_others_replay():
    def complete(record):
        time.sleep(0.3)
        idempotency_complete(record=record, status_code=201, body={"id": "pay_race"})

    assert _race(complete) == Counter({"Claimed": 1, "Replay": THREADS - 1})
    assert IdempotencyKey.objects.get().response_body == {"id": "pay_race"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_begins_whose_claims_roll_back_never_block_the_next():
    def fail(record):
        time.sleep(0.02)
        raise _Rollback  # the request failed: its transaction (and claim) rolls back

    assert _race(fail) == Counter({"Claimed": THREADS})
    assert IdempotencyKey.objects.count() == 0
