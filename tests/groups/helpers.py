"""Groups through the real routes: a client per account that names the group in `X-Group-Id`."""

from __future__ import annotations

import base64
import json
import os

from rest_framework.test import APIClient

from tests.factories import DeviceFactory, device_auth

GROUPS, LOGS, JOIN, JOINED, AVATAR, PUBLIC_KEY = (
    "/v2/groups",
    "/v2/groups/logs",
    "/v2/groups/join",
    "/v2/groups/joined_at_version",
    "/v2/groups/avatar/form",
    "/v2/groups/public_key",
)


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def b64url(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


def profile_key() -> str:
    return b64(os.urandom(65))


class Person:
    """An account with a device, and requests to one group as that account."""

    def __init__(self, device=None):
        self.device = device or DeviceFactory()
        self.account = self.device.account
        self.aci = str(self.account.aci)
        self.pni = f"PNI:{self.account.pni}"
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=device_auth(self.device))

    def _headers(self, group_id: bytes | None) -> dict:
        return {} if group_id is None else {"HTTP_X_GROUP_ID": b64(group_id)}

    def get(self, group_id, path=GROUPS, **query):
        return self.client.get(path, query, **self._headers(group_id))

    def put(self, group_id, body):
        return self.client.put(GROUPS, json.dumps(body), content_type="application/json", **self._headers(group_id))

    def patch(self, group_id, actions, password: bytes | None = None):
        path = GROUPS if password is None else f"{GROUPS}?inviteLinkPassword={b64url(password)}"
        return self.client.patch(path, json.dumps(actions), content_type="application/json", **self._headers(group_id))

    def state(self, group_id) -> dict:
        response = self.get(group_id)
        assert response.status_code == 200, response.content
        return response.json()["group"]

    def member(self, role="DEFAULT") -> dict:
        return {"userId": self.aci, "role": role, "profileKey": profile_key()}


def new_group_body(creator: Person, *, members=(), admins=(), invited=(), **fields) -> dict:
    body = {
        "publicKey": b64(os.urandom(97)),
        "version": 0,
        "title": b64(os.urandom(40)),
        "accessControl": {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": "UNSATISFIABLE"},
        "members": [creator.member("ADMINISTRATOR")]
        + [person.member("ADMINISTRATOR") for person in admins]
        + [person.member() for person in members],
        "membersPendingProfileKey": [{"member": {"userId": user_id, "role": "DEFAULT"}} for user_id in invited],
    }
    body.update(fields)
    return body


def create_group(creator: Person, **kwargs) -> bytes:
    group_id = os.urandom(32)
    response = creator.put(group_id, new_group_body(creator, **kwargs))
    assert response.status_code == 200, response.content
    return group_id


def change(person: Person, group_id: bytes, password: bytes | None = None, **actions):
    """PATCH with version = the current one + 1 (read as the group's first member could)."""
    version = actions.pop("version", None)
    if version is None:
        version = current_version(group_id) + 1
    return person.patch(group_id, {"version": version, **actions}, password=password)


def current_version(group_id: bytes) -> int:
    from groups.models import Group

    return Group.objects.get(group_id=group_id).version


def stored_state(group_id: bytes) -> dict:
    from groups.selectors import current

    return current(group_id).state


def member_roles(group_id: bytes) -> dict[str, str]:
    return {m["userId"]: m["role"] for m in stored_state(group_id)["members"]}
