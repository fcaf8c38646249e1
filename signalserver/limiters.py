"""The named rate limiters and their default buckets (docs/architecture.md §7): what
`signalserver.ratelimit` checks, the operator settings override and the admin lists. Apart from
them so that each of those imports this table without importing the others."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    bucket_size: int
    permit_seconds: float  # time for one permit to come back


@dataclass(frozen=True, slots=True)
class Limiter:
    name: str
    default: Limit
    fail_open: bool
    keyed_by: str  # what the key is: "account", "number", "ip", "session", "sender→recipient", ...


def _limiters(*rows: tuple[str, int, float, bool, str]) -> dict[str, Limiter]:
    return {name: Limiter(name, Limit(size, seconds), fail_open, keyed_by) for name, size, seconds, fail_open, keyed_by in rows}


MINUTE, HOUR, DAY = 60, 3600, 86400
# Signal's defaults; the ones whose features we do not serve are left out.
LIMITERS: dict[str, Limiter] = _limiters(
    ("registration", 6, 30, False, "number"),
    ("verificationPushChallenge", 5, 30, False, "session"),
    ("verificationCaptcha", 10, 30, False, "session"),
    ("pin", 10, DAY, False, "number"),
    ("checkTotp", 5, 6, False, "account"),
    ("allocateDevice", 6, 2 * MINUTE, False, "account"),
    ("verifyDevice", 6, 2 * MINUTE, False, "account"),
    ("waitForLinkedDevice", 10, 30, False, "account"),
    ("prekeys", 6, 10 * MINUTE, False, "source device→target device"),
    ("messages", 60, 1, True, "sender→recipient account"),
    ("stories", 5000, 8, True, "recipient account"),
    ("inboundMessageBytes", 128 * 1024 * 1024, 0.0005, True, "recipient account (bytes)"),
    ("profile", 4320, 20, True, "account"),
    ("attachmentCreate", 50, 1.2, True, "account"),
    ("attachmentCreateBytes", 1_000_000_000, 0.000001, True, "account (bytes)"),
    ("usernameLookup", 100, 15 * MINUTE, True, "ip"),
    ("usernameSet", 100, 15 * MINUTE, False, "account"),
    ("usernameReserve", 100, 15 * MINUTE, False, "account"),
    ("usernameLinkOperation", 10, MINUTE, False, "account"),
    ("usernameLinkLookupPerIp", 100, 15, True, "ip"),
    ("checkAccountExistence", 1000, 4, True, "ip"),
    ("batchIdentityCheck", 100, MINUTE, True, "ip"),
    ("rateLimitReset", 2, 12 * HOUR, False, "account"),
    ("captchaChallengeAttempt", 10, 144 * MINUTE, False, "account"),
    ("captchaChallengeSuccess", 2, 12 * HOUR, False, "account"),
    ("pushChallengeAttempt", 10, 144 * MINUTE, False, "account"),
    ("pushChallengeSuccess", 2, 12 * HOUR, False, "account"),
    ("stickerPack", 50, 72 * MINUTE, False, "account"),
    ("getCallingRelays", 100, 10 * MINUTE, True, "account"),
    # Ours: Signal's registration service paces verification, and every code we send costs the
    # operator money (SMS pumping). A code takes one permit from each of the number's two buckets:
    # the first holds one session's full allowance (4 SMS and 3 calls, which the session spaces out
    # itself), then one every 10 minutes; the second, once drained, spaces codes 2 hours apart. So
    # however many sessions are opened, a number's waits grow from none to minutes to hours. The
    # per-number buckets fail closed; the per-address ones fail open, so an unknown address passes
    # (the number's buckets, taken in the same call, still count it, and refuse when Redis is down).
    ("verificationSession", 10, 6 * MINUTE, False, "number"),
    ("verificationSessionPerIp", 50, 72, True, "ip"),
    ("verificationCode", 7, 10 * MINUTE, False, "number"),
    ("verificationCodeDaily", 12, 2 * HOUR, False, "number"),
    ("verificationCodePerIp", 20, 3 * MINUTE, True, "ip"),
    # Numbers looked up, as Signal's discovery service: 50,000 at first, then 6 more an hour.
    ("directoryLookup", 50_000, 10 * MINUTE, False, "account"),  # numbers, see accounts.discovery
    ("directoryLookupPerIp", 100, 6, True, "ip"),
    # Ours (Signal's group server has none): groups created and changes made per account. A new
    # group costs a row per version for ever; a change of a 1,000-member group stores its state.
    ("groupCreate", 20, 3 * MINUTE, False, "account"),
    ("groupChange", 300, 2, True, "account"),
)
