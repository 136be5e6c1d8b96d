"""The fraud back office is read-only: lists and detail pages, no add, change or delete."""

import pytest
from django.contrib.auth import get_user_model

from fraud.services import fraud_result_save
from tests.fraud.conftest import INSTALL, check, counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_superuser("mx-erin", "erin@example.com", "a-long-password-1"))
    return client


@pytest.mark.parametrize("model", ["fraudcheck", "fraudresult"])
def test_lists_and_details_are_read_only(staff, model):
    made = check("u-find", install_id=INSTALL)
    result = fraud_result_save(user_id="u-find", verdict="suspicious", source="s", actor="svc")
    pk = made.pk if model == "fraudcheck" else result.pk
    base = f"/admin/fraud/{model}/"
    page = staff.get(base, {"q": "u-find"})
    assert page.status_code == 200 and "u-find" in page.content.decode()
    assert INSTALL not in page.content.decode()
    assert staff.get(f"{base}{pk}/change/").status_code == 200
    assert staff.get(f"{base}add/").status_code == 403
    assert staff.post(f"{base}{pk}/change/", {"user_id": "u-x"}).status_code == 403
    assert staff.post(f"{base}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert counts() == (1, 1)
