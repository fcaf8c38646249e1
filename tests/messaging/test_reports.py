"""Spam reports: accepted always, counted only with the envelope's report token."""

import base64
import uuid

import pytest

from messaging.models import SpamReport
from tests.factories import DeviceFactory
from tests.messaging.helpers import message_list

pytestmark = pytest.mark.django_db


@pytest.fixture
def received(client_for):
    """(reporter device, sender device, the reporter's copy of the message as listed by REST)."""
    sender, reporter = DeviceFactory(), DeviceFactory()
    body = message_list([(1, reporter.registration_id)])
    assert client_for(sender).put(f"/v1/messages/{reporter.account_id}", body, format="json").status_code == 200
    [message] = client_for(reporter).get("/v1/messages").json()["messages"]
    return reporter, sender, message


def report(client, source, guid, token=None):
    body = {"token": token} if token is not None else {}
    return client.post(f"/v1/messages/report/{source}/{guid}", body, format="json")


def test_a_report_with_the_envelopes_token_is_recorded_once(client_for, received):
    reporter, sender, message = received
    assert message["reportSpamToken"]

    first = report(client_for(reporter), sender.account_id, message["guid"], message["reportSpamToken"])
    again = report(client_for(reporter), sender.account_id, message["guid"], message["reportSpamToken"])

    assert (first.status_code, again.status_code) == (202, 202)
    assert not first.content
    [row] = SpamReport.objects.all()
    assert (row.source_aci, row.reporter_aci, str(row.message_guid)) == (
        sender.account_id,
        reporter.account_id,
        message["guid"],
    )
    assert row.status == SpamReport.Status.OPEN


def test_a_report_by_the_senders_number_is_recorded(client_for, received):
    reporter, sender, message = received

    report(client_for(reporter), sender.account.number, message["guid"], message["reportSpamToken"])

    assert SpamReport.objects.count() == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda sender, message: (sender.account_id, message["guid"], None),
        lambda sender, message: (sender.account_id, message["guid"], ""),
        lambda sender, message: (sender.account_id, message["guid"], base64.b64encode(b"x" * 16).decode()),
        lambda sender, message: (uuid.uuid4(), message["guid"], message["reportSpamToken"]),
        lambda sender, message: (sender.account_id, uuid.uuid4(), message["reportSpamToken"]),
        lambda sender, message: ("+15550000000", message["guid"], message["reportSpamToken"]),
        lambda sender, message: ("nobody", "not-a-guid", message["reportSpamToken"]),
    ],
)
def test_reports_that_do_not_check_out_are_accepted_but_not_recorded(client_for, received, tamper):
    reporter, sender, message = received

    response = report(client_for(reporter), *tamper(sender, message))

    assert response.status_code == 202
    assert not SpamReport.objects.exists()


def test_sealed_sender_messages_carry_no_report_token(client, client_for):
    recipient = DeviceFactory()
    body = message_list([(1, recipient.registration_id)], type=6)
    key = base64.b64encode(bytes(recipient.account.unidentified_access_key)).decode()
    client.put(f"/v1/messages/{recipient.account_id}", body, format="json", HTTP_UNIDENTIFIED_ACCESS_KEY=key)

    [message] = client_for(recipient).get("/v1/messages").json()["messages"]

    assert message["reportSpamToken"] is None


def test_reporting_needs_credentials_and_a_well_formed_token(client, client_for, received):
    reporter, sender, message = received
    assert report(client, sender.account_id, message["guid"], message["reportSpamToken"]).status_code == 401
    assert report(client_for(reporter), sender.account_id, message["guid"], "***").status_code == 422


def test_moderators_see_reports_and_can_dismiss_them(client, client_for, received):
    from django.contrib.auth.models import User

    reporter, sender, message = received
    report(client_for(reporter), sender.account_id, message["guid"], message["reportSpamToken"])
    User.objects.create_superuser("moderator", "m@example.org", "moderator-password")
    client.login(username="moderator", password="moderator-password")

    listing = client.get("/admin/messaging/spamreport/", {"q": str(sender.account_id)})
    assert str(sender.account_id) in listing.content.decode()
    row = SpamReport.objects.get()
    client.post("/admin/messaging/spamreport/", {"action": "dismiss", "_selected_action": [row.pk]})

    row.refresh_from_db()
    assert row.status == SpamReport.Status.DISMISSED
