"""Browser tests of the back office: Debian's Chromium (``/usr/bin/chromium``, installed by
``scripts/ensure-chromium.sh``) driven by Playwright's sync API against pytest-django's ``live_server``, with the
real processor sandbox (``sandbox`` fixture) behind the service.

Each test logs in through the real login form as a staff user in one of the real groups (``core/groups.py``).
Screenshots of the main pages are taken on every run; with ``UPDATE_SCREENSHOTS=1`` they overwrite
``docs/screenshots/<name>.png`` (shown in ``docs/back-office.md``: ``make screenshots``), otherwise they go to
``var/screenshots/`` so that a test run leaves the work tree clean.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from tests.refunds import conftest as refund_fixtures

CHROMIUM = "/usr/bin/chromium"
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "var") / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
PASSWORD = "browser-test-password-1"
TIMEOUT_MS = 15_000

# The refund tests' fixtures: Usio card and ACH payments made through the payments API against the sandbox.
card_payment = refund_fixtures.card_payment
ach_payment = refund_fixtures.ach_payment
debit_card = refund_fixtures.debit_card
bank_account = refund_fixtures.bank_account
caller = refund_fixtures.caller
service = refund_fixtures.service


@pytest.fixture(scope="package")
def browser():
    """One headless Chromium for the browser tests (this package), closed after the last one.

    Playwright's sync API runs an event loop in the test thread, and Django's ORM refuses to run where an event loop
    runs: ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set while the browser is open, and removed after it (it would otherwise
    leak into the rest of the session and its subprocesses, e.g. ``manage.py check --deploy`` refuses it).
    """
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) at 1280x800; ``page.base_url`` is the live server's URL."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    # The admin's navigation sidebar starts collapsed (a per-browser preference) so screenshots show the page.
    context.add_init_script("window.localStorage.setItem('django.admin.navSidebarIsOpen', 'false');")
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def staff_user(transactional_db):
    """``staff_user("support")``: a staff user in that real group (``None``: in no group); password PASSWORD."""

    def _make(group: str | None, username: str | None = None):
        username = username or f"{group or 'nogroup'}-staff"
        user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
        if group:
            user.groups.add(Group.objects.get(name=group))
        return user

    return _make


@pytest.fixture
def login(page, staff_user):
    """``login("support")``: create a staff user of that group and log in through /admin/login/; the user."""

    def _login(group: str | None, username: str | None = None):
        user = staff_user(group, username)
        page.goto("/admin/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_load_state()
        assert "/admin/login/" not in page.url, page.content()
        return user

    return _login


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG of the current page as <SCREENSHOTS>/<name>.png (see the module)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, type="png")
    return path
