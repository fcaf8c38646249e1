"""Contact discovery by phone number (our extension): what Signal's enclave service (CDSI) answers,
served in the clear.

CDSI runs the lookup inside an SGX enclave, so not even Signal's operators see which numbers a
client asks about. Without an enclave, this server sees them, at the moment of the lookup; it keeps
none of them: nothing is written, nothing is logged (neither the numbers nor anything derived from
them), and no rate-limit key holds one. What bounds enumeration is CDSI's quota: every number an
account asks about for the first time takes a permit from its `directoryLookup` bucket.

The token replaces the state CDSI keeps for each token: it is an HMAC over the account's ACI and a
digest of every number asked so far. A client that sends it back with that same set as
`prevE164s` pays only for the numbers it adds; the server stores nothing to know that.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from accounts.models import Account
from signalserver import ratelimit
from signalserver.crypto import server_key
from signalserver.errors import DomainError, UnprocessableEntity

# Distinct numbers a request may name, `prevE164s` and `newE164s` together.
MAX_NUMBERS_PER_LOOKUP = 5000
# Entries before duplicates are removed: bounds the work done on a request that will be refused.
MAX_ENTRIES_PER_LOOKUP = 2 * MAX_NUMBERS_PER_LOOKUP
# E.164: a `+`, then 8 to 15 ASCII digits, the first (of the country code) never 0.
E164 = re.compile(r"\+[1-9][0-9]{7,14}")
TOKEN_BYTES = 32


class TooManyNumbers(DomainError):
    status = 413
    message = f"at most {MAX_NUMBERS_PER_LOOKUP} distinct numbers per lookup"


@dataclass(frozen=True, slots=True)
class Discovered:
    e164: str
    aci: object  # uuid.UUID
    pni: object  # uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Lookup:
    results: list[Discovered]
    token: bytes  # for the next lookup, over every number this one named


def lookup_numbers(
    *, account: Account, new_e164s: list[str], prev_e164s: list[str], token: bytes | None, client_ip: str | None
) -> Lookup:
    """The discoverable accounts among the numbers asked, charging the account's quota for the
    ones not already paid for (those of `prev_e164s` when `token` vouches for them)."""
    # Every request that reaches the lookup counts against its address, a refused one too.
    ratelimit.check("directoryLookupPerIp", ratelimit.hashed(client_ip) if client_ip else None)
    new, prev = _numbers("newE164s", new_e164s), _numbers("prevE164s", prev_e164s)
    asked = new | prev
    if len(asked) > MAX_NUMBERS_PER_LOOKUP:
        raise TooManyNumbers()
    paid = prev if token is not None and hmac.compare_digest(token, _token(account, prev)) else set()
    # A charge of 0 (a re-query under its token) takes nothing; more than the bucket holds is refused.
    ratelimit.check("directoryLookup", str(account.aci), permits=len(asked - paid), aci=account.aci)
    return Lookup(results=_discoverable(asked), token=_token(account, asked))


def _numbers(field: str, values: list[str]) -> set[str]:
    # The lengths before anything else, so a huge request costs no more than a refusal. Errors name
    # the position, never the value: a number must not reach a log through an error body.
    if len(values) > MAX_ENTRIES_PER_LOOKUP:
        raise TooManyNumbers()
    for index, value in enumerate(values):
        if not E164.fullmatch(value):
            raise UnprocessableEntity(f"{field}[{index}] is not an E.164 number")
    return set(values)


def _discoverable(numbers: set[str]) -> list[Discovered]:
    # One query for the whole batch.
    rows = (
        Account.objects.filter(number__in=numbers, discoverable_by_phone_number=True)
        .order_by("number")
        .values_list("number", "aci", "pni")
    )
    return [Discovered(e164=number, aci=aci, pni=pni) for number, aci, pni in rows]


def _token(account: Account, numbers: set[str]) -> bytes:
    """HMAC(key, ACI ‖ SHA-256 of the sorted numbers): binds the set to the account, so another
    account's token pays for nothing, and reveals nothing of the numbers without the key."""
    digest = hashlib.sha256("\n".join(sorted(numbers)).encode()).digest()
    return hmac.new(server_key("directory lookup token"), account.aci.bytes + digest, hashlib.sha256).digest()
