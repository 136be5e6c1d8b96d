"""Logging in, and what each group may open: a support user is refused the admin-only pages (403), an admin is not."""

import pytest

from core.models import DeadLetter
from tests.browser.conftest import PASSWORD, screenshot

pytestmark = pytest.mark.browser
ADMIN_ONLY_PAGES = ("/admin/core/apikey/", "/admin/core/pushsubscription/", "/admin/django_celery_beat/periodictask/")


def test_support_user_logs_in_and_sees_the_back_office(page, login):
    login("support", "mx-support")
    page.goto("/admin/")
    assert "Payments Service — back office" in page.content()
    # support sees what it works with, and not the admin-only models
    assert page.locator("#content-main a[href='/admin/payments/payment/']").count() >= 1
    assert page.locator("a[href='/admin/core/apikey/']").count() == 0
    assert page.locator("a[href='/admin/django_celery_beat/periodictask/']").count() == 0
    screenshot(page, "admin-index")


def test_wrong_password_is_refused(page, staff_user):
    user = staff_user("support")
    page.goto("/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD + "-wrong")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    assert "/admin/login/" in page.url
    assert page.locator(".errornote").count() == 1


@pytest.mark.parametrize("path", ADMIN_ONLY_PAGES)
def test_support_user_is_refused_admin_only_pages(page, login, path):
    login("support")
    response = page.goto(path)
    assert response.status == 403
    assert page.locator("#result_list").count() == 0


@pytest.mark.parametrize("path", ADMIN_ONLY_PAGES)
def test_admin_user_opens_admin_only_pages(page, login, path):
    login("admin")
    response = page.goto(path)
    assert response.status == 200
    assert page.locator("#changelist").count() == 1


def test_staff_user_in_no_group_is_refused_the_payments(page, login):
    login(None)
    assert page.goto("/admin/payments/payment/").status == 403


def test_dead_letters_list(page, login):
    DeadLetter.objects.create(
        task_name="payments.check_ach", task_id="5b1c0e7e-demo", queue="payments", args=[], kwargs={"chunk": 3},
        last_error="UsioUnavailable: Usio did not answer in 1.5 s", attempts=5,
    )
    DeadLetter.objects.create(
        task_name="syncing.process_jpm_webhook", task_id="9f4d2a10-demo", queue="syncing", args=["evt-1"],
        kwargs={}, last_error="ProcessorProtocolError: unexpected status 'SETTLING'", attempts=3,
    )
    login("support")
    response = page.goto("/admin/core/deadletter/")
    assert response.status == 200
    assert page.locator("#result_list tbody tr").count() == 2
    screenshot(page, "dead-letters")
