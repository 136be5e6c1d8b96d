"""The payments API: roles (SPEC §10) for the three endpoints, the list's filters, cursor pagination and query
count, and the lookup by confirmation id or payment id."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments.models import Payment
from tests.payments.conftest import (
    OTHER_USER,
    USER,
    card_body,
    payment_body,
    post_payment,
    processor_calls,
)

pytestmark = pytest.mark.django_db

LIST_URL = f"/api/v1/users/{USER}/payments"
BASE = timezone.now().replace(microsecond=0) - timedelta(days=30)


def make_payment(*, user_id: str = USER, minutes: int = 0, **fields) -> Payment:
    """A payment row written directly (the list does not care how it got there), submitted BASE + minutes."""
    values = {"purpose": "float", "payment_method": "ach", "payment_type": "debit", "payment_provider": "usio",
              "amount": Decimal("10.00"), "payment_status": "ACHSENT", "submit_date": BASE + timedelta(minutes=minutes)}
    values.update(fields)
    return Payment.objects.create(user_id=user_id, **values)


def detail_url(identifier: str) -> str:
    return f"/api/v1/payments/{identifier}"


# --- roles ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "status"), [("service", 201), ("user", 201), ("support", 403), ("admin", 403),
                                              ("other_user", 403), ("none", 401)])
def test_submit_roles(sandbox, caller, debit_card, role, status):
    debit_card()
    response = post_payment(caller(role), card_body())
    assert response.status_code == status, response.content
    if status == 201:
        assert response.json()["user_id"] == USER
    else:
        assert Payment.objects.count() == 0 and processor_calls(sandbox) == []
    if role == "other_user":
        assert response.json()["error"]["code"] == "not_your_user"


def test_a_user_key_is_scoped_to_the_user(sandbox, caller, debit_card):
    """A JWT user's idempotency scope is ``user:<sub>``: its key never collides with a service's."""
    debit_card()
    one = post_payment(caller("user"), card_body(), key="same-key")
    two = post_payment(caller("service"), card_body(), key="same-key")
    assert one.status_code == two.status_code == 201 and one.json()["id"] != two.json()["id"]


@pytest.mark.parametrize(("role", "status"), [("service", 200), ("support", 200), ("user", 200), ("admin", 403),
                                              ("other_user", 403), ("none", 401)])
def test_list_roles(caller, role, status):
    make_payment()
    response = caller(role).get(LIST_URL)
    assert response.status_code == status
    if status == 200:
        assert len(response.json()["results"]) == 1
    if role == "other_user":
        assert response.json()["error"]["code"] == "not_your_user"


@pytest.mark.parametrize(("role", "status"), [("service", 200), ("support", 200), ("user", 200), ("admin", 403),
                                              ("other_user", 403), ("none", 401)])
def test_detail_roles(caller, role, status):
    payment = make_payment(confirmation_id="U0000000000000001")
    response = caller(role).get(detail_url("U0000000000000001"))
    assert response.status_code == status
    if status == 200:
        assert response.json()["id"] == str(payment.pk)
    if role == "other_user":
        assert response.json()["error"]["code"] == "not_your_user"


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_are_not_allowed(caller, method):
    payment = make_payment(confirmation_id="U0000000000000001")
    for url in ("/api/v1/payments", LIST_URL, detail_url(payment.confirmation_id)):
        assert getattr(caller("service"), method)(url).status_code == 405


# --- detail --------------------------------------------------------------------------------------------------------
def test_detail_by_confirmation_or_by_payment_id(caller):
    payment = make_payment(confirmation_id="U00000000000000AB")
    pending = make_payment(payment_status="PROCESSING")
    service = caller("service")
    for identifier in ("U00000000000000AB", str(payment.pk), payment.pk.hex):
        assert service.get(detail_url(identifier)).json()["id"] == str(payment.pk)
    # A payment without a confirmation yet (PROCESSING) is found by our id only.
    assert service.get(detail_url(pending.reference)).json()["payment_status"] == "PROCESSING"


@pytest.mark.parametrize("identifier", ["UNOSUCH", "00000000-0000-0000-0000-000000000001", "x" * 300, "%20"])
def test_detail_unknown_is_404(caller, identifier):
    make_payment(confirmation_id="U0000000000000001")
    response = caller("service").get(detail_url(identifier))
    assert (response.status_code, response.json()["error"]["code"]) == (404, "payment_not_found")


def test_a_jpm_payment_is_found_by_its_end_to_end_id(sandbox, caller, bank_account):
    bank_account()
    data = post_payment(caller("service"), payment_body(purpose="subscription")).json()
    found = caller("user").get(detail_url(data["confirmation_id"]))
    assert found.status_code == 200 and found.json() == data


# --- list ----------------------------------------------------------------------------------------------------------
def test_list_is_newest_first_and_only_the_users(caller):
    old = make_payment(minutes=1)
    new = make_payment(minutes=2)
    make_payment(user_id=OTHER_USER, minutes=3)
    response = caller("service").get(LIST_URL)
    assert [p["id"] for p in response.json()["results"]] == [str(new.pk), str(old.pk)]


def test_list_of_a_user_without_payments_is_empty(caller):
    response = caller("service").get("/api/v1/users/nobody/payments")
    assert response.status_code == 200 and response.json()["results"] == []


def test_list_with_a_malformed_user_id(caller):
    response = caller("service").get("/api/v1/users/bad%20id/payments")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_user_id")


def test_cursor_pagination_walks_every_payment_once(caller):
    # Ties on submit_date are broken by created_at and id; pages never skip or repeat.
    made = [make_payment(minutes=i // 3) for i in range(11)]
    service = caller("service")
    seen, url = [], f"{LIST_URL}?page_size=4"
    while url:
        page = service.get(url).json()
        assert len(page["results"]) <= 4
        seen += [p["id"] for p in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(str(p.pk) for p in made) and len(seen) == len(set(seen)) == 11
    dates = [Payment.objects.get(pk=pk).submit_date for pk in seen]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.parametrize(("query", "expected"), [
    ("status=FAILED", {"failed"}),
    ("status=ACHSENT", {"ach", "old", "credit"}),
    ("payment_method=pinless", {"pinless"}),
    ("payment_type=credit", {"credit"}),
    ("purpose=loan", {"credit"}),
    ("purpose=float&payment_method=ach", {"ach", "failed", "old"}),
    ("submitted_after={mid}", {"ach", "pinless", "credit", "failed"}),
    ("submitted_before={mid}", {"old"}),
    ("submitted_after={mid}&submitted_before={late}", {"ach", "pinless"}),
    ("", {"ach", "pinless", "credit", "failed", "old"}),
])
def test_filters(caller, query, expected):
    rows = {
        "old": make_payment(minutes=0),
        "ach": make_payment(minutes=60),
        "pinless": make_payment(minutes=61, payment_method="pinless", payment_status="COMPLETED"),
        "credit": make_payment(minutes=120, purpose="loan", payment_type="credit"),
        "failed": make_payment(minutes=121, payment_status="FAILED"),
    }
    names = {str(p.pk): name for name, p in rows.items()}
    query = query.format(mid=(BASE + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
                         late=(BASE + timedelta(minutes=90)).isoformat().replace("+00:00", "Z"))
    response = caller("service").get(f"{LIST_URL}?{query}")
    assert response.status_code == 200, response.content
    assert {names[p["id"]] for p in response.json()["results"]} == expected


@pytest.mark.parametrize("query", ["status=DONE", "payment_method=wire", "payment_type=x", "purpose=rent",
                                   "submitted_after=yesterday", "submitted_before=2026-13-01"])
def test_invalid_filter_values_are_400(caller, query):
    response = caller("service").get(f"{LIST_URL}?{query}")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "validation_error")
    assert query.split("=")[0] in response.json()["error"]["details"]


def test_a_date_alone_is_accepted(caller):
    make_payment()
    day = BASE.date().isoformat()
    assert caller("service").get(f"{LIST_URL}?submitted_after={day}").status_code == 200


@pytest.mark.parametrize("role", ["service", "user"])
def test_list_query_count_does_not_grow_with_rows(caller, role, django_assert_num_queries):
    client = caller(role)
    client.get(LIST_URL)  # warm-up (first use of a fresh API key)

    def count(rows: int) -> int:
        Payment.objects.all().delete()
        for i in range(rows):
            make_payment(minutes=i)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"{LIST_URL}?page_size=50&status=ACHSENT")
        assert response.status_code == 200 and len(response.json()["results"]) == min(rows, 50)
        return len(queries)

    few, many = count(2), count(60)
    expected = 1 if role == "user" else 2  # the page (no COUNT with a cursor); an API key adds its lookup
    assert few == many == expected
    with django_assert_num_queries(expected):
        client.get(f"{LIST_URL}?page_size=50")


def test_detail_query_count(caller, django_assert_num_queries):
    make_payment(confirmation_id="U0000000000000001")
    client = caller("user")
    with django_assert_num_queries(1):
        assert client.get(detail_url("U0000000000000001")).status_code == 200


# --- schema ----------------------------------------------------------------------------------------------------------
def test_the_schema_documents_the_three_operations(caller):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()
                  if isinstance(op, dict) and "operationId" in op}
    assert {"payment_submit", "user_payments_list", "payment_get"} <= operations
    submit = schema["paths"]["/api/v1/payments"]["post"]
    assert {"201", "202", "400", "401", "403", "409", "422"} <= set(submit["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in submit["parameters"])
