"""Lists use cursor pagination (newest first) and django-filter by default."""

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings

from core.auth.api_keys import api_key_create

pytestmark = pytest.mark.django_db


@override_settings(ROOT_URLCONF="tests.core.urls")
def test_cursor_pages_walk_every_row_once_newest_first_and_filter(client_as):
    client = client_as("service")  # creates one key itself
    for i in range(7):
        api_key_create(name=f"k{i}", role="support" if i % 2 else "admin")
    seen, url = [], "/test/keys?page_size=3"
    while url:
        body = client.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= 3
        seen += [row["name"] for row in body["results"]]
        url = body["next"]
    assert len(seen) == 8 and len(set(seen)) == 8
    assert seen[:7] == [f"k{i}" for i in reversed(range(7))]
    supports = client.get("/test/keys?role=support&page_size=50").json()["results"]
    assert sorted(row["name"] for row in supports) == ["k1", "k3", "k5"]
    bad = client.get("/test/keys?role=root")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"


def test_back_office_groups_exist_after_migrations():
    assert set(Group.objects.filter(name__in=["support", "admin"]).values_list("name", flat=True)) == {
        "support", "admin"}
