"""The operator dashboard (signalserver/dashboard.py) in real Chromium against the Procfile's web
process: an operator opens it from the admin's index, every chart draws, and while a scripted load
runs (two accounts registered, messages queued and then delivered over sockets, a limiter
refusing) the charts follow it. uPlot comes from the server itself: the page makes no request
elsewhere. Screenshots are kept under test-artifacts/browser/."""

import asyncio
import threading

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.test_admin_login import PASSWORD, USERNAME, log_in
from tests.browser.test_static_pages import (  # noqa: F401 (procfile_server: a fixture)
    assert_assets_loaded,
    procfile_server,
    same_origin_responses,
)
from tests.live_clients import ChatSocket, register_account
from tests.messaging.helpers import message_list

pytestmark = pytest.mark.django_db(transaction=True)

CHARTS = ("messages", "deliveries", "sockets", "queue", "registrations", "refusals", "pushes")
POLL_SECONDS = 0.25  # registrations every 30 polls: 7.5 s
QUEUED = 20  # messages sent while the recipient is offline
LIVE = 30  # messages sent while it holds its socket
WAIT_MS = 20_000
SENT_COLOUR = (0x41, 0x76, 0x90)  # the "sent" line of the messages chart (dashboard.js, COLOURS[0])


class BackgroundLoop:
    """An event loop in a thread of its own for the async clients (tests/live_clients.py):
    Playwright's sync API keeps this thread's loop running."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def operator():
    """A superuser whose password the server process can check: the tests' settings hash with MD5
    (fast), the server's with PBKDF2 only."""
    hasher = PBKDF2PasswordHasher()
    user = User.objects.create_superuser(USERNAME, "operator@example.org")
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    return user


@pytest.fixture
def background():
    loop = BackgroundLoop()
    yield loop
    loop.close()


def wait_for(page, condition: str) -> None:
    """Wait until `condition` (JavaScript over `d`, the page's window.signalserverDashboard) holds."""
    script = f"(() => {{ const d = window.signalserverDashboard; return !!d && ({condition}); }})()"
    try:
        page.wait_for_function(script, timeout=WAIT_MS)
    except PlaywrightTimeoutError:
        state = dashboard(page) or {}
        raise AssertionError(
            f"not within {WAIT_MS} ms: {condition}; the page has {state.get('latest')}, "
            f"registrations {state.get('registrations')}, {state.get('failures')} failures"
        ) from None


def dashboard(page) -> dict:
    """What the page has drawn: the last figures, every chart's columns, the days, its failures."""
    return page.evaluate(
        """(() => {
            const d = window.signalserverDashboard;
            return d && { latest: d.latest, data: d.data, registrations: d.registrations, failures: d.failures };
        })()"""
    )


def peak(state: dict, chart: str, series: int = 1) -> float:
    """The highest point the page drew in one series of a chart (gaps count as 0)."""
    return max(value or 0 for value in state["data"][chart][series])


def topmost_row_of_colour(page, chart: str, colour: tuple[int, int, int]) -> tuple[int | None, int]:
    """(the first canvas row with a pixel of `colour`, or None; the canvas's height)."""
    return tuple(
        page.evaluate(
            """([chart, colour]) => {
                const canvas = document.querySelector(`[data-chart="${chart}"] canvas`);
                const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
                for (let i = 0; i < pixels.length; i += 4) {
                    if (pixels[i + 3] > 200 && [0, 1, 2].every((c) => Math.abs(pixels[i + c] - colour[c]) <= 6)) {
                        return [Math.floor(i / 4 / canvas.width), canvas.height];
                    }
                }
                return [null, canvas.height];
            }""",
            [chart, list(colour)],
        )
    )


def test_the_dashboard_charts_follow_a_scripted_load(operator, procfile_server, page, background, screenshot):  # noqa: F811
    url = procfile_server.url
    responses = same_origin_responses(page, url)
    elsewhere, errors = [], []
    page.on("request", lambda request: request.url.startswith(url) or elsewhere.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    shots = []

    # The admin's index links the dashboard.
    log_in(page, procfile_server, PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(url + "/admin/")
    shots.append(screenshot(page, "admin-index"))
    page.click("#operations-module a:text('Dashboard')")
    page.wait_for_url(url + "/admin/dashboard/")
    assert page.locator("#dashboard").get_attribute("data-interval-seconds") == "2"

    page.goto(f"{url}/admin/dashboard/?interval={POLL_SECONDS}")
    wait_for(page, "d.polls >= 3 && d.registrations !== null")
    for chart in CHARTS:
        box = page.locator(f'[data-chart="{chart}"] canvas').bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, (chart, box)
    idle = dashboard(page)
    assert idle["registrations"][-1]["accounts"] == 0  # today: nobody registered yet
    assert idle["latest"]["open_sockets"] == 0 and idle["latest"]["queue_depth"] == 0
    assert peak(idle, "messages") == 0
    idle_top, height = topmost_row_of_colour(page, "messages", SENT_COLOUR)
    assert idle_top is not None  # the line at zero, at the bottom of the plot
    shots.append(screenshot(page, "idle"))

    # The load: two accounts; messages queued for Bob while he is offline.
    alice = background.run(register_account(url))
    bob = background.run(register_account(url))
    send = message_list([(1, bob.registration_id)])
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": alice.authorization}) as api:
        for _ in range(QUEUED):
            assert api.put(f"/v1/messages/{bob.aci}", json=send).status_code == 200
        wait_for(page, f"d.latest.queue_depth >= {QUEUED}")
        shots.append(screenshot(page, "queued"))

        # Alice asks for device-link codes until allocateDevice refuses her.
        statuses = [api.get("/v1/devices/provisioning/code").status_code for _ in range(8)]
        assert 429 in statuses, statuses

        # Bob connects, takes his backlog and acknowledges it, then receives a live stream.
        bob_socket = background.run(ChatSocket.connect(procfile_server.ws_url, bob.authorization))
        try:
            backlog = background.run(bob_socket.backlog())
            assert len(backlog) == QUEUED
            for request in backlog:
                background.run(bob_socket.ack(request))
            wait_for(page, "d.latest.open_sockets === 1")
            for _ in range(LIVE):
                assert api.put(f"/v1/messages/{bob.aci}", json=send).status_code == 200
                background.run(bob_socket.ack(background.run(bob_socket.next_message())))

            # Alice connects too and takes the server's delivery receipts queued for her.
            alice_socket = background.run(ChatSocket.connect(procfile_server.ws_url, alice.authorization))
            try:
                receipts = background.run(alice_socket.backlog())
                assert len(receipts) == QUEUED + LIVE
                for request in receipts:
                    background.run(alice_socket.ack(request))
                wait_for(page, "d.latest.queue_depth === 0 && d.latest.open_sockets === 2")
                wait_for(page, "d.registrations[d.registrations.length - 1].accounts >= 2")
                loaded = dashboard(page)
                shots.append(screenshot(page, "under-load"))
            finally:
                background.run(alice_socket.close())
        finally:
            background.run(bob_socket.close())

    sent_total = sum(loaded["latest"]["messages_sent"].values())
    assert sent_total - sum(idle["latest"]["messages_sent"].values()) >= QUEUED + LIVE
    assert peak(loaded, "messages") > 0  # messages per second
    assert peak(loaded, "deliveries") > 0 and peak(loaded, "deliveries", 2) > 0  # delivered, acknowledged
    assert peak(loaded, "sockets") == 2
    assert peak(loaded, "queue") >= QUEUED
    assert peak(loaded, "refusals") > 0
    assert loaded["registrations"][-1]["accounts"] == 2
    assert sum(loaded["latest"]["rate_limit_refusals"].values()) >= 1
    # The drawn line rose: its topmost pixel is now well above the idle line at the bottom.
    loaded_top, _ = topmost_row_of_colour(page, "messages", SENT_COLOUR)
    assert loaded_top is not None and loaded_top < idle_top - height // 3, (loaded_top, idle_top, height)

    wait_for(page, "d.latest.open_sockets === 0")
    shots.append(screenshot(page, "after"))

    assert dashboard(page)["failures"] == 0
    assert errors == [] and elsewhere == []
    assert_assets_loaded(responses)
    assert {r.url.rsplit("/", 1)[1] for r in responses if "/static/" in r.url} >= {
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "dashboard.js",
    }
    for path in shots:
        assert path.is_file() and path.stat().st_size > 0
