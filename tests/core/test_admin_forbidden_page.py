"""A back-office page the role may not see answers 403 with an HTML page, not the API's JSON."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

pytestmark = pytest.mark.django_db


def test_support_gets_a_branded_403_page_on_an_admin_only_page(client):
    user = get_user_model().objects.create_user("mx-403", "mx@example.com", "mx-password-12345", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    client.force_login(user)

    response = client.get("/admin/core/apikey/")

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    assert 'id="permission-denied"' in response.content.decode()
