"""The chat WebSocket `/v1/websocket/`.

With device credentials on the upgrade the socket is authenticated: it carries tunnelled requests
as that device and delivers the device's queue. Without credentials it only carries anonymous
tunnelled requests. Wrong credentials refuse the upgrade (403).

Delivery on one connection: the backlog is streamed oldest first, then `PUT /api/v1/queue/empty`,
then live messages arrive inline from `deliver_envelopes` (no read-back). At most
MAX_UNACKNOWLEDGED deliveries are outstanding; when the window is full, or inline rows would
overtake rows not yet read, the consumer re-reads the table after the last row it fetched. A 2xx
ack deletes the row and queues the receipt, batched with the acks of the process's other sockets
(`messaging.batches`); a non-2xx leaves it for the next connection.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from urllib.parse import parse_qs

from signalserver import metrics, purges
from signalserver.db import in_db_thread

from accounts.services import device_group
from messaging.batches import submit_ack
from messaging.envelopes import parse_envelope
from messaging.notify import local_sockets
from messaging.presence import PRESENCE_REFRESH_SECONDS, get_presence
from messaging.sealing import UnreadableEnvelope, unseal
from messaging.services import EPHEMERAL_MAX_AGE_MS, Acknowledgement, acknowledgement, list_queued, now_ms
from messaging.tasks import push_if_still_away_task
from push.services import request_push_later
from signalserver.auth import AccountBanned, InvalidCredentials, authenticate_authorization
from signalserver.errors import log_unavailable, unavailable_dependency
from signalserver.tunnel import dispatch, merge_headers
from signalserver.websocket import CLOSE_NORMAL, CLOSE_SERVER_ERROR, FramedConsumer

logger = logging.getLogger(__name__)

MAX_UNACKNOWLEDGED = 256
FETCH_BATCH = 100
MAX_INLINE_BUFFER = 1024  # inline rows held while the window is full; beyond that, re-read
MAX_REMEMBERED_IDS = 10_000  # rows sent on this connection, so none is sent twice
IDLE_TIMEOUT_SECONDS = 90
# While PostgreSQL is down the queue is read again after these many seconds, doubling up to the last.
REREAD_FIRST_SECONDS, REREAD_MAX_SECONDS = 0.25, 1.0
# A keepalive checks that this socket still owns the device's presence (a takeover whose notice
# was lost) at most this often: a client sending keepalives in a loop costs no Redis round trips.
KEEPALIVE_PRESENCE_CHECK_SECONDS = 5.0

CLOSE_CONNECTED_ELSEWHERE = 4409

MESSAGE_PATH = "/api/v1/message"
QUEUE_EMPTY_PATH = "/api/v1/queue/empty"
KEEPALIVE_PATH = "/v1/keepalive"


class ChatConsumer(FramedConsumer):
    principal = None
    delivering = False  # this socket delivers the device's queue
    owns_presence = False  # and is the device's registered delivery socket
    last_ack: asyncio.Future | None = None  # resolves once the latest ack of this socket is deleted
    presence_refreshed = 0.0  # monotonic time this socket last refreshed the device's presence

    async def connect(self):
        client = self.scope.get("client") or ("", 0)
        self.client_address = client[0] or ""
        try:
            self.principal = await in_db_thread(authenticate_authorization)(self._authorization())
        except (InvalidCredentials, AccountBanned):
            await self.close()  # before accept: the upgrade is refused with 403
            return
        if self.principal is None:
            await self.accept_with_timestamp()
            self.spawn(self.close_after_idle(IDLE_TIMEOUT_SECONDS, PRESENCE_REFRESH_SECONDS))
            return

        self.device = self.principal.device
        self.aci = self.principal.account.aci
        self.receive_stories = self.upgrade_headers.get("x-signal-receive-stories", "").lower() == "true"
        self.delivering = self.upgrade_headers.get("x-signal-disable-messages", "").lower() != "true"
        # Removal or a credential change of the device closes its sockets through this group.
        await self.channel_layer.group_add(device_group(self.aci, self.device.device_id), self.channel_name)
        self.groups.append(device_group(self.aci, self.device.device_id))
        await self.accept_with_timestamp()
        self.spawn(self._watch_idle())
        if not self.delivering:
            return
        # request id → the delivered row, with what its acknowledgement owes (None: ephemeral)
        self.pending: dict[int, Acknowledgement | None] = {}
        self.sent: dict[int, None] = {}  # row ids sent on this connection, oldest first
        self.cursor = 0  # highest row id read from the table on this connection
        self.inline: list[list] = []  # live rows waiting for room in the window
        self.reread = True  # the table may hold rows we have not read (backlog, overflow)
        # Counts notices of such rows: a read that began before the latest one may have missed it.
        self.unread_notices = 0
        self.backlog_done = False
        self.wake = asyncio.Event()
        local_sockets[self.channel_name] = (asyncio.get_running_loop(), self.queue_messages)
        previous = await get_presence().claim(self.aci, self.device.device_id, self.channel_name)
        self.owns_presence = True
        self.presence_refreshed = time.monotonic()
        if previous and previous != self.channel_name:
            await self.channel_layer.send(previous, {"type": "device.displaced"})
        self.spawn(self._pump())
        self.wake.set()
        await in_db_thread(purges.run_if_due)()

    def _authorization(self) -> str | None:
        header = self.upgrade_headers.get("authorization")
        if header is not None:
            return header
        # Very old clients put the credentials in the query string.
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if "login" in query and "password" in query:
            token = f"{query['login'][0]}:{query['password'][0]}".encode()
            return "Basic " + base64.b64encode(token).decode()
        return None

    async def disconnect(self, code):
        local_sockets.pop(self.channel_name, None)
        if self.owns_presence:
            await get_presence().release(self.aci, self.device.device_id, self.channel_name)
            if self.pending or self.inline or self.reread:
                # Closed with messages not acknowledged or not read: push the device in a minute,
                # unless it connects again meanwhile.
                await in_db_thread(request_push_later)(device_pk=self.device.pk, task=push_if_still_away_task)
        if self.last_ack is not None:
            await asyncio.shield(self.last_ack)

    # --- Frames from the client -----------------------------------------------------------------

    async def handle_request(self, request):
        if request.verb == "GET" and request.path.split("?")[0] == KEEPALIVE_PATH:
            if self.delivering and not await self._still_present(KEEPALIVE_PRESENCE_CHECK_SECONDS):
                # Another socket took the device over (its displacement notice was lost, e.g.
                # with a node that died): the same close as a displacement, no zombie.
                self.closed = True
                await self.close(code=CLOSE_CONNECTED_ELSEWHERE)
            return 200, b"", ()
        reply = await dispatch(
            principal=self.principal,
            verb=request.verb,
            path=request.path,
            headers=merge_headers(self.inherited_headers, request.headers),
            body=request.body,
            client=self.client_address,
            secure=self.scope.get("scheme") == "wss",
        )
        return reply.status, reply.body, reply.headers

    async def _still_present(self, unless_checked_within: float) -> bool:
        """Refresh the device's presence key; False when another socket owns it. Skipped (True)
        when it was refreshed less than `unless_checked_within` seconds ago."""
        now = time.monotonic()
        if now - self.presence_refreshed < unless_checked_within:
            return True
        self.presence_refreshed = now
        return await get_presence().refresh(self.aci, self.device.device_id, self.channel_name)

    async def handle_response(self, response):
        return self._acknowledged(response.id, response.status)

    # --- Delivery -------------------------------------------------------------------------------

    async def queue_messages(self, event):
        """Rows committed for this device, inline: [row id, envelope, story, ephemeral, accepted
        at (ms since the epoch, for the delivery latency; None: not known)]."""
        if not self.delivering:
            return
        for row in event["messages"]:
            if row[3]:
                await self._send_ephemeral(row[1], row[4])
            elif len(self.inline) >= MAX_INLINE_BUFFER:
                self.reread = True  # the table has it; read it in order when there is room
                self.unread_notices += 1
            else:
                # Kept even while the table is being read: a row committed after that read's
                # snapshot is not in what it returns.
                self.inline.append(row)
        self.wake.set()

    async def queue_sealed(self, event):
        """Rows from a socket of another process, sealed: [row id, key id, sealed, ephemeral,
        accepted at] (a node of the previous version sends no time)."""
        rows = []
        for row_id, key_id, sealed, ephemeral, *accepted in event["messages"]:
            try:
                envelope, story = unseal(key_id, sealed, device_pk=self.device.pk)
            except UnreadableEnvelope:
                logger.error("a notified message does not open: is a queue key missing on this process?")
                continue
            rows.append([row_id, envelope, story, ephemeral, accepted[0] if accepted else None])
        await self.queue_messages({"messages": rows})

    async def queue_available(self, event):
        if self.delivering:
            self.reread = True
            self.unread_notices += 1
            self.wake.set()

    async def resubscribe(self):
        """After a Redis outage: the device group, then the device's presence again (unless a
        newer socket took the device meanwhile: this one is then the displaced one), then a read
        of the queue, which holds what was sent meanwhile (its notifications reached nobody)."""
        await super().resubscribe()
        if not self.owns_presence:
            return
        if not await get_presence().reclaim(self.aci, self.device.device_id, self.channel_name):
            await self.device_displaced({})
            return
        await self.queue_available({})

    async def _pump(self) -> None:
        retry_in = REREAD_FIRST_SECONDS
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                try:
                    await self._fill_window()
                    retry_in = REREAD_FIRST_SECONDS
                except Exception as error:
                    dependency = unavailable_dependency(error)
                    if dependency is None:
                        raise
                    # The rows wait in the table: the socket stays, and reads again later.
                    log_unavailable(dependency)
                    await asyncio.sleep(retry_in)
                    retry_in = min(2 * retry_in, REREAD_MAX_SECONDS)
                    self.wake.set()
        except asyncio.CancelledError:
            raise
        except OSError:
            return  # the client closed the socket while we wrote to it (uvicorn's ClientDisconnected)
        except Exception:
            logger.exception("delivery failed")
            await self.close(code=CLOSE_SERVER_ERROR)

    async def _fill_window(self) -> None:
        # Counted once per fill (signalserver.metrics): deliveries by kind, and the acceptance
        # times of live ones for the delivery latency.
        tally, accepted = [0, 0, 0], []
        try:
            await self._fill(tally, accepted)
        finally:
            metrics.count_delivered(tally)
            if accepted:
                metrics.observe_deliveries(accepted)

    async def _fill(self, tally: list[int], accepted: list[int]) -> None:
        while (room := MAX_UNACKNOWLEDGED - len(self.pending)) > 0:
            if self.reread:
                notices = self.unread_notices
                rows = await in_db_thread(list_queued)(
                    device_pk=self.device.pk, after_id=self.cursor, limit=min(room, FETCH_BATCH)
                )
                for row_id, envelope, story in rows:
                    self.cursor = max(self.cursor, row_id)
                    await self._deliver(row_id, envelope, story, tally)
                if len(rows) < min(room, FETCH_BATCH) and notices == self.unread_notices:
                    self.reread = False
                    # Inline rows that arrived meanwhile are either read just now or newer.
                    self.inline = [row for row in self.inline if row[0] not in self.sent]
                    if not self.backlog_done:
                        self.backlog_done = True
                        await self.send_request(QUEUE_EMPTY_PATH, None)
            elif self.inline:
                batch, self.inline = self.inline[:room], self.inline[room:]
                for row_id, envelope, story, _, accepted_at in batch:
                    if row_id not in self.sent:
                        self.cursor = max(self.cursor, row_id)
                        if await self._deliver(row_id, envelope, story, tally) and accepted_at is not None:
                            accepted.append(accepted_at)
            else:
                return

    async def _deliver(self, row_id: int, envelope: bytes, story: bool, tally: list[int]) -> bool:
        """Send one row (tallied by kind, `metrics.envelope_kind`); False when it is not sent."""
        if row_id in self.sent:
            return False
        self._remember(row_id)
        ack = acknowledgement(row_id, envelope)
        if story and not self.receive_stories:
            # Not for this connection: dropped silently.
            self.last_ack = submit_ack(self.device, ack)
            return False
        request_id = await self.send_request(MESSAGE_PATH, envelope)
        self.pending[request_id] = ack
        tally[ack.kind] += 1
        return True

    async def _send_ephemeral(self, envelope: bytes, accepted_at: int | None) -> None:
        if now_ms() - parse_envelope(envelope).client_timestamp > EPHEMERAL_MAX_AGE_MS:
            return
        request_id = await self.send_request(MESSAGE_PATH, envelope)
        self.pending[request_id] = None
        metrics.count_delivered_envelopes([envelope])
        if accepted_at is not None:
            metrics.observe_deliveries([accepted_at])

    def _remember(self, row_id: int) -> None:
        self.sent[row_id] = None
        if len(self.sent) > MAX_REMEMBERED_IDS:
            del self.sent[next(iter(self.sent))]

    def _acknowledged(self, request_id: int, status: int) -> bool:
        if not self.delivering or request_id not in self.pending:
            return False  # a response to nothing we asked is ignored
        ack = self.pending.pop(request_id)
        if ack is not None and 200 <= status < 300:
            self.last_ack = submit_ack(self.device, ack)
        self.wake.set()
        return True

    # --- Events from the rest of the server -----------------------------------------------------

    async def device_displaced(self, event):
        self.delivering = self.owns_presence = False  # the newer socket owns presence now
        await self.close(code=CLOSE_CONNECTED_ELSEWHERE)

    async def device_disconnect(self, event):
        await self.close(code=event.get("code", 4401))

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_REFRESH_SECONDS)
            if time.monotonic() - self.last_frame > IDLE_TIMEOUT_SECONDS:
                await self.close(code=CLOSE_NORMAL)
                return
            if self.delivering and not await self._still_present(0):
                await self.close(code=CLOSE_CONNECTED_ELSEWHERE)
                return
