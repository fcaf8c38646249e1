"""Logging in to the Django admin in a real browser."""

import pytest
from django.contrib.auth.models import User

# The live server runs in another thread: the data must be committed, not in a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME, PASSWORD = "operator", "correct horse battery staple"


@pytest.fixture
def operator():
    return User.objects.create_superuser(USERNAME, "operator@example.org", PASSWORD)


def log_in(page, live_server, password):
    page.goto(live_server.url + "/admin/")  # redirects to the login form
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", password)


def test_superuser_logs_in_to_admin(operator, live_server, page, screenshot):
    log_in(page, live_server, PASSWORD)
    before = screenshot(page, "login-form")
    page.click("input[type=submit]")

    page.wait_for_url(live_server.url + "/admin/")
    assert page.locator("h1").inner_text() == "Site administration"  # the default admin site
    after = screenshot(page, "admin-index")

    for path in (before, after):
        assert path.is_file() and path.stat().st_size > 0


def test_wrong_password_shows_error(operator, live_server, page, screenshot):
    log_in(page, live_server, "wrong password")
    page.click("input[type=submit]")

    error = page.locator(".errornote")
    assert "Please enter the correct username and password" in error.inner_text()
    assert "/admin/login/" in page.url
    assert screenshot(page, "login-error").stat().st_size > 0
