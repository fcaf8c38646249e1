"""Abuse controls through the real routes (docs/architecture.md §7): limits shared by REST and the
WebSocket with `Retry-After`, operator overrides, bans and the operator log in the admin, and
rate-limit challenges (428)."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User

from accounts.models import Account, RateLimitPushChallenge
from messaging.models import SpamReport
from signalserver.apps import MODERATOR_GROUP
from signalserver.models import LimitOverride, OperatorAction
from tests.factories import DeviceFactory, override_limit
from tests.messaging.helpers import all_devices, message_list, next_request, socket_for
from tests.messaging.test_websocket import tunnel

LINK_CODE = "/v1/devices/provisioning/code"


@pytest.fixture
def operator(client, db):
    user = User.objects.create_superuser("operator", "op@example.org", "operator-password")
    client.force_login(user)
    return user


def admin_action(client, model_path: str, action: str, *pks):
    return client.post(f"/admin/{model_path}/", {"action": action, "_selected_action": [str(pk) for pk in pks]})


def refusals_until_limited(api, path, attempts):
    for attempt in range(1, attempts + 1):
        response = api.get(path)
        if response.status_code == 429:
            return attempt, response
        assert response.status_code == 200, response.content
    raise AssertionError(f"not limited after {attempts} requests")


# --- Limits on REST and the WebSocket -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_rest_and_the_websocket_share_a_limit_and_both_say_when_to_retry(client_for):
    device = await sync_to_async(DeviceFactory)()
    api = client_for(device)
    for _ in range(5):  # allocateDevice: 6 per account, one back every 2 minutes
        assert (await sync_to_async(api.get)(LINK_CODE)).status_code == 200

    ws = socket_for(device)
    assert (await ws.connect())[0]
    await next_request(ws)  # queue empty
    last_permit = await tunnel(ws, "GET", LINK_CODE, request_id=1)
    refused = await tunnel(ws, "GET", LINK_CODE, request_id=2)
    rest_refused = await sync_to_async(api.get)(LINK_CODE)
    await ws.disconnect()

    assert last_permit.status == 200
    assert refused.status == 429 and "Retry-After:120" in [h.replace(" ", "") for h in refused.headers]
    assert rest_refused.status_code == 429 and rest_refused["Retry-After"] == "120"


def test_an_override_made_in_the_admin_holds_from_the_next_request(client, client_for, operator):
    device = DeviceFactory()
    api = client_for(device)
    attempt, refused = refusals_until_limited(api, LINK_CODE, 7)
    assert attempt == 7 and refused["Retry-After"] == "120"

    # Raised for this account: its very next request goes through.
    added = client.post(
        "/admin/signalserver/limitoverride/add/",
        {"limiter": "allocateDevice", "account": str(device.account.aci), "bucket_size": 100, "permit_seconds": 0.001},
    )
    assert added.status_code == 302, added.content
    assert api.get(LINK_CODE).status_code == 200

    # Lowered for everyone: another account gets one request an hour.
    added = client.post(
        "/admin/signalserver/limitoverride/add/",
        {"limiter": "allocateDevice", "account": "", "bucket_size": 1, "permit_seconds": 3600},
    )
    assert added.status_code == 302, added.content
    other = client_for(DeviceFactory())
    attempt, refused = refusals_until_limited(other, LINK_CODE, 3)
    assert attempt == 2 and refused["Retry-After"] == "3600"

    # Removing the overrides brings the defaults back.
    deleted = client.post(
        "/admin/signalserver/limitoverride/",
        {"action": "delete_selected", "_selected_action": list(LimitOverride.objects.values_list("pk", flat=True)), "post": "yes"},
    )
    assert deleted.status_code == 302
    assert refusals_until_limited(client_for(DeviceFactory()), LINK_CODE, 7)[0] == 7

    logged = list(OperatorAction.objects.order_by("at").values_list("operator__username", "action", "detail"))
    assert logged[:2] == [("operator", "set limit", "100 per 0.001 s"), ("operator", "set limit", "1 per 3600 s")]
    assert [action for _, action, _ in logged[2:]] == ["remove limit override"] * 2


def test_resetting_an_accounts_buckets_in_the_admin_lets_it_through_again(client, client_for, operator):
    device = DeviceFactory()
    api = client_for(device)
    refusals_until_limited(api, LINK_CODE, 7)

    admin_action(client, "accounts/account", "reset_rate_limits", device.account.aci)

    assert api.get(LINK_CODE).status_code == 200
    assert OperatorAction.objects.filter(action="reset rate limits", target=str(device.account.aci)).exists()


@pytest.mark.django_db
def test_wrong_totp_codes_run_out_after_five(client_for):
    device = DeviceFactory()
    api = client_for(device)
    assert api.post("/v1/accounts/totp").status_code == 200
    statuses = [api.put("/v1/accounts/totp", {"code": "000000"}, format="json").status_code for _ in range(6)]
    assert statuses[:5] == [403] * 5 and statuses[5] == 429


# --- Bans ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_banned_account_is_refused_everywhere_and_its_sockets_close_with_4401(client, client_for):
    device, other = await sync_to_async(DeviceFactory.create_batch)(2)
    user = await sync_to_async(User.objects.create_superuser)("operator", "op@example.org", "pw")
    await sync_to_async(client.force_login)(user)
    ws = socket_for(device)
    assert (await ws.connect())[0]
    await next_request(ws)

    response = await sync_to_async(admin_action)(client, "accounts/account", "ban", device.account.aci)
    assert response.status_code == 302

    closed = await ws.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 4401}
    assert (await sync_to_async(client_for(device).get)("/v1/accounts/whoami")).status_code == 403
    assert not (await socket_for(device).connect())[0]  # the upgrade is refused
    assert (await sync_to_async(client_for(other).get)("/v1/accounts/whoami")).status_code == 200

    await sync_to_async(admin_action)(client, "accounts/account", "unban", device.account.aci)
    assert (await sync_to_async(client_for(device).get)("/v1/accounts/whoami")).status_code == 200
    actions = await sync_to_async(list)(OperatorAction.objects.order_by("at").values_list("action", "target"))
    assert actions == [("ban account", str(device.account.aci)), ("unban account", str(device.account.aci))]


@pytest.mark.django_db
def test_moderators_review_spam_reports_and_ban_senders_with_nothing_else_allowed(client, client_for):
    spammer, reporter = DeviceFactory.create_batch(2)
    report = SpamReport.objects.create(source_aci=spammer.account.aci, reporter_aci=reporter.account.aci, message_guid="00000000-0000-0000-0000-000000000001")
    moderator = User.objects.create_user("moderator", password="pw", is_staff=True)
    moderator.groups.add(Group.objects.get(name=MODERATOR_GROUP))
    client.force_login(moderator)

    assert client.get("/admin/messaging/spamreport/").status_code == 200
    assert client.get("/admin/signalserver/operatoraction/").status_code == 200
    for forbidden in ("/admin/signalserver/limitoverride/", "/admin/signalserver/ipban/", "/admin/auth/user/"):
        assert client.get(forbidden).status_code == 403, forbidden

    admin_action(client, "messaging/spamreport", "ban_senders", report.pk)

    assert Account.objects.get(pk=spammer.account.aci).banned
    assert SpamReport.objects.get(pk=report.pk).status == SpamReport.Status.ACTIONED
    assert client_for(spammer).get("/v1/accounts/whoami").status_code == 403
    assert OperatorAction.objects.get().operator == moderator


# --- Challenges (428) -------------------------------------------------------------------------


def send_to(api, recipient):
    return api.put(f"/v1/messages/{recipient.account.aci}", message_list(all_devices(recipient.account)), format="json")


@pytest.mark.django_db
def test_a_send_over_the_limit_asks_for_a_push_challenge_and_answering_it_lifts_the_limit(client_for):
    sender = DeviceFactory(gcm_id="fcm-token-of-the-primary")
    recipient = DeviceFactory()
    api = client_for(sender)
    override_limit("messages", 1, 3600, account=sender.account)
    assert send_to(api, recipient).status_code == 200

    challenged = send_to(api, recipient)
    assert challenged.status_code == 428
    assert challenged.json()["options"] == ["pushChallenge"] and challenged.json()["token"]
    assert challenged["Retry-After"] == "3600"

    assert api.post("/v1/challenge/push").status_code == 200
    wrong = api.put("/v1/challenge", {"type": "rateLimitPushChallenge", "challenge": "00" * 16}, format="json")
    assert wrong.status_code == 428
    challenge = RateLimitPushChallenge.objects.get(account=sender.account).challenge
    answered = api.put("/v1/challenge", {"type": "rateLimitPushChallenge", "challenge": challenge}, format="json")
    assert answered.status_code == 200

    assert send_to(api, recipient).status_code == 200
    again = api.put("/v1/challenge", {"type": "rateLimitPushChallenge", "challenge": challenge}, format="json")
    assert again.status_code == 428  # a challenge works once


@pytest.mark.django_db
def test_without_any_challenge_to_offer_the_limit_is_a_plain_429(client_for):
    sender, recipient = DeviceFactory(), DeviceFactory()  # no push token, no captcha provider
    override_limit("messages", 1, 60, account=sender.account)
    api = client_for(sender)
    assert send_to(api, recipient).status_code == 200
    refused = send_to(api, recipient)
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert api.post("/v1/challenge/push").status_code == 404


@pytest.mark.django_db
def test_challenge_answers_are_validated(client_for):
    api = client_for(DeviceFactory())
    assert api.put("/v1/challenge", {"type": "other"}, format="json").status_code == 422
    assert api.put("/v1/challenge", {"type": "captcha", "token": "x"}, format="json").status_code == 400
    bad_token = api.put("/v1/challenge", {"type": "recaptcha", "token": "forged", "captcha": "c"}, format="json")
    assert bad_token.status_code == 400
    assert client_for(DeviceFactory()).put("/v1/challenge", {"type": "rateLimitPushChallenge"}, format="json").status_code == 400


@pytest.mark.django_db
def test_inbound_bytes_are_counted_per_recipient(client_for):
    recipient = DeviceFactory()
    override_limit("inboundMessageBytes", 15, 3600)
    first, second = client_for(DeviceFactory()), client_for(DeviceFactory())
    assert send_to(first, recipient).status_code == 200  # 10 bytes of "ciphertext"
    assert send_to(second, recipient).status_code == 429  # another sender, the same recipient's budget


def test_the_challenge_endpoints_are_documented(client, db):
    schema = client.get("/v1/openapi.json").content.decode()
    assert "/v1/challenge" in schema and "/v1/challenge/push" in schema


@pytest.mark.django_db
def test_the_ratelimit_command_sets_lists_and_clears_overrides(client_for):
    from io import StringIO

    from django.core.management import call_command

    device = DeviceFactory()
    call_command("ratelimit", "set", "allocateDevice", "1", "3600", "--account", str(device.account.aci), stdout=StringIO())
    api = client_for(device)
    assert api.get(LINK_CODE).status_code == 200
    assert api.get(LINK_CODE)["Retry-After"] == "3600"

    listing = StringIO()
    call_command("ratelimit", "list", stdout=listing)
    assert f"override for {device.account.aci}: 1 per 3600 s" in listing.getvalue()

    call_command("ratelimit", "clear", "allocateDevice", "--account", str(device.account.aci), stdout=StringIO())
    assert not LimitOverride.objects.exists()
    actions = list(OperatorAction.objects.order_by("at").values_list("operator", "action"))
    assert actions == [(None, "set limit"), (None, "remove limit override")]


@pytest.mark.django_db
def test_a_solved_captcha_lifts_the_send_limit_and_a_wrong_one_is_asked_again(client_for, settings):
    settings.CAPTCHA_PROVIDER, settings.DEV_CAPTCHA_TOKEN = "development", "solved-captcha"
    sender, recipient = DeviceFactory(), DeviceFactory()
    api = client_for(sender)
    override_limit("messages", 1, 3600, account=sender.account)
    assert send_to(api, recipient).status_code == 200
    challenged = send_to(api, recipient)
    assert challenged.status_code == 428 and challenged.json()["options"] == ["captcha"]
    token = challenged.json()["token"]

    wrong = api.put("/v1/challenge", {"type": "captcha", "token": token, "captcha": "guess"}, format="json")
    assert wrong.status_code == 428
    other_accounts_token = client_for(DeviceFactory()).put(
        "/v1/challenge", {"type": "captcha", "token": token, "captcha": "solved-captcha"}, format="json"
    )
    assert other_accounts_token.status_code == 400  # the token was issued to the sender only
    solved = api.put("/v1/challenge", {"type": "recaptcha", "token": token, "captcha": "solved-captcha"}, format="json")
    assert solved.status_code == 200

    assert send_to(api, recipient).status_code == 200
    assert send_to(api, recipient).status_code == 428  # the limit itself stays: lifted once


@pytest.mark.django_db
def test_lifting_limits_is_itself_limited(client_for, settings):
    settings.CAPTCHA_PROVIDER, settings.DEV_CAPTCHA_TOKEN = "development", "solved-captcha"
    sender, recipient = DeviceFactory(), DeviceFactory()
    api = client_for(sender)
    override_limit("messages", 1, 3600, account=sender.account)
    for _ in range(2):  # captchaChallengeSuccess and rateLimitReset: 2 per 12 hours
        send_to(api, recipient)
        token = send_to(api, recipient).json()["token"]
        answer = {"type": "captcha", "token": token, "captcha": "solved-captcha"}
        assert api.put("/v1/challenge", answer, format="json").status_code == 200

    send_to(api, recipient)
    exhausted = send_to(api, recipient)
    assert exhausted.status_code == 429  # no challenge can be answered now: a plain limit
    answer = {"type": "captcha", "token": token, "captcha": "solved-captcha"}
    assert api.put("/v1/challenge", answer, format="json").status_code == 429
