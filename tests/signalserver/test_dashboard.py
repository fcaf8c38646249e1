"""The operator dashboard's page and figures (signalserver/dashboard.py): staff only, the figures of
`current_figures()` as the metrics port counts them, new accounts per day from the accounts table.
The charts themselves: tests/browser/test_dashboard.py."""

import json
import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from accounts.models import Account
from tests.factories import AccountFactory, DeviceFactory
from tests.messaging.helpers import message_list
from tests.signalserver.test_tunnel import Tunnel

pytestmark = pytest.mark.django_db

PAGE = "/admin/dashboard/"
FIGURES, REGISTRATIONS = PAGE + "figures.json", PAGE + "registrations.json"
FIGURE_KEYS = {
    "time",
    "requests",
    "request_errors",
    "messages_sent",
    "messages_delivered",
    "messages_acknowledged",
    "open_sockets",
    "queue_depth",
    "queue_oldest_age_seconds",
    "registrations",
    "rate_limit_refusals",
    "push_notifications",
    "celery_tasks",
    "celery_heartbeat",
}


@pytest.fixture
def staff(client):
    """The test client logged in as a staff account that is not a superuser."""
    User.objects.create_user("staff", password="staff-password", is_staff=True)
    client.login(username="staff", password="staff-password")
    return client


@pytest.mark.parametrize("url", [PAGE, FIGURES, REGISTRATIONS])
def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=")

    User.objects.create_user("someone", password="someone-password")
    client.login(username="someone", password="someone-password")
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=")
    assert b"messages_sent" not in response.content


def test_staff_get_the_figures_and_they_count_a_send(staff, client_for):
    alice, bob = DeviceFactory(), DeviceFactory()
    before = staff.get(FIGURES)
    assert before.status_code == 200 and before["Content-Type"] == "application/json"
    assert "no-cache" in before["Cache-Control"]
    assert set(before.json()) == FIGURE_KEYS

    body = message_list([(1, bob.registration_id)])
    assert client_for(alice).put(f"/v1/messages/{bob.account.aci}", body, format="json").status_code == 200

    after = staff.get(FIGURES).json()
    assert after["messages_sent"]["identified"] == before.json()["messages_sent"].get("identified", 0) + 1
    assert after["queue_depth"] == 1
    assert after["time"] >= before.json()["time"]


def test_new_accounts_per_day_cover_the_last_14_days(staff):
    today = timezone.localdate()
    AccountFactory.create_batch(3)
    for age, count in ((1, 2), (13, 1), (14, 5)):  # 14 days ago is outside the window
        for account in AccountFactory.create_batch(count):
            Account.objects.filter(pk=account.pk).update(created=today - timedelta(days=age))

    days = staff.get(REGISTRATIONS).json()["days"]

    assert [day["day"] for day in days] == [(today - timedelta(days=13 - n)).isoformat() for n in range(14)]
    counts = {day["day"]: day["accounts"] for day in days}
    assert counts[today.isoformat()] == 3
    assert counts[(today - timedelta(days=1)).isoformat()] == 2
    assert counts[(today - timedelta(days=13)).isoformat()] == 1
    assert sum(counts.values()) == 6


def test_the_page_polls_at_the_asked_interval_with_local_assets_only(staff):
    page = staff.get(PAGE + "?interval=0.5").content.decode()
    assert 'data-interval-seconds="0.5"' in page
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert "/static/signalserver/vendor/uplot/uPlot.iife.min.js" in assets
    assert "/static/signalserver/dashboard.js" in assets
    assert [asset for asset in assets if not asset.startswith("/static/")] == []
    assert page.count("data-chart=") == 7

    for odd in ("0.01", "3600", "nan", "two"):
        assert 'data-interval-seconds="2"' in staff.get(PAGE + f"?interval={odd}").content.decode(), odd


def test_the_admin_index_links_the_dashboard(staff):
    assert f'href="{PAGE}"' in staff.get("/admin/").content.decode()


@pytest.mark.django_db(transaction=True)
async def test_the_dashboard_is_not_served_over_the_socket():
    """A browser page of the admin, like the others: a tunnelled request gets the API's 404."""
    device = await sync_to_async(DeviceFactory.create)()
    async with Tunnel(device) as tunnel:
        for path in (PAGE, FIGURES, REGISTRATIONS):
            response = await tunnel.request("GET", path)
            assert (response.status, json.loads(response.body)) == (404, {"code": 404, "message": "Not found"}), path
