"""Staff users of the back-office tests, in the real groups of ``core/groups.py``."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client


def login(client, username: str, group: str | None = None, *perms: str):
    """Log ``client`` in as a new staff user ``username`` in ``group`` (or none), with extra permission codenames."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw-123456789", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


@pytest.fixture
def staff(db):
    """``staff("support" | "admin" | None)`` → (logged-in Client, user): a staff user in that group (or none)."""
    made = iter(range(1000))

    def _make(group: str | None):
        number = next(made)
        user = get_user_model().objects.create_user(
            username=f"{group or 'nogroup'}-{number}", password="pw", email=f"staff{number}@example.com",
            first_name="Sam", last_name=f"Staff{number}", is_staff=True)
        if group:
            user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        return client, user

    return _make
