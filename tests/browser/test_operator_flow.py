"""The operator flow of issue 7 in a real browser: log in, lower a limit, ban an account, and see
both take effect on the API's next request; the screenshots are kept under test-artifacts/."""

import httpx
import pytest

from tests.browser.test_admin_login import PASSWORD, log_in, operator  # noqa: F401 (a fixture)
from tests.factories import DeviceFactory, device_auth

pytestmark = pytest.mark.django_db(transaction=True)

LINK_CODE = "/v1/devices/provisioning/code"


def test_an_operator_lowers_a_limit_and_bans_an_account(operator, live_server, page, screenshot):  # noqa: F811
    device, other = DeviceFactory(), DeviceFactory()
    api = httpx.Client(base_url=live_server.url, timeout=10)
    as_device = {"Authorization": device_auth(device)}
    as_other = {"Authorization": device_auth(other)}
    shots = []

    log_in(page, live_server, PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(live_server.url + "/admin/")
    shots.append(screenshot(page, "logged-in"))

    # Lower allocateDevice (6 per 2 minutes) to one an hour, for everyone.
    page.goto(live_server.url + "/admin/signalserver/limitoverride/add/")
    page.select_option("#id_limiter", "allocateDevice")
    page.fill("#id_bucket_size", "1")
    page.fill("#id_permit_seconds", "3600")
    shots.append(screenshot(page, "lower-a-limit"))
    page.click("input[name=_save]")
    page.wait_for_url(live_server.url + "/admin/signalserver/limitoverride/")
    assert "allocateDevice" in page.locator("#result_list").inner_text()
    shots.append(screenshot(page, "limit-lowered"))

    assert api.get(LINK_CODE, headers=as_other).status_code == 200
    limited = api.get(LINK_CODE, headers=as_other)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3600"

    # Ban the account, found by its ACI.
    assert api.get("/v1/accounts/whoami", headers=as_device).status_code == 200
    page.goto(f"{live_server.url}/admin/accounts/account/?q={device.account.aci}")
    page.check("input.action-select")
    page.select_option("select[name=action]", "ban")
    shots.append(screenshot(page, "ban-an-account"))
    page.click("button[name=index]")
    assert "Banned 1 account(s)." in page.locator(".messagelist").inner_text()
    shots.append(screenshot(page, "account-banned"))

    refused = api.get("/v1/accounts/whoami", headers=as_device)
    assert refused.status_code == 403 and refused.json()["message"] == "Account banned"
    assert api.get("/v1/accounts/whoami", headers=as_other).status_code == 200

    # Both actions are in the operator log.
    page.goto(live_server.url + "/admin/signalserver/operatoraction/")
    log = page.locator("#result_list").inner_text()
    assert "set limit" in log and "ban account" in log
    shots.append(screenshot(page, "operator-log"))

    for path in shots:
        assert path.is_file() and path.stat().st_size > 0
