"""The back office is branded and reachable by the support user."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

pytestmark = pytest.mark.django_db


def test_support_user_logs_in_to_the_branded_admin(client):
    user = get_user_model().objects.create_user("mx", "mx@example.com", "mx-password-12345", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    assert client.login(username="mx", password="mx-password-12345")
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "Payments Service — back office" in response.content.decode()


def test_non_staff_user_cannot_use_the_admin(client):
    get_user_model().objects.create_user("app", "app@example.com", "app-password-12345")
    client.login(username="app", password="app-password-12345")
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
