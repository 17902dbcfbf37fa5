"""One logical connection to a hubbub server that survives reconnects.

It owns the socket, the pending requests (frame id -> future), the outbox of unacked
chats, the rooms to rejoin and the last seq seen per room. When the socket drops it
reconnects with full-jitter exponential backoff, authenticates again, restores the
presence status, rejoins every room with `since` = the last seq it saw (missed events are
delivered to the handlers in order, once) and re-sends the unacked chats with their
`clientMsgId` (the server answers a retry with the original ack, so nothing is posted
twice).
"""

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from hubbub.client.calls import CALL_FRAMES, CallFrame, CallTracker
from hubbub.protocol.frames import EVENT_TYPES, StoredFrame

log = logging.getLogger("hubbub.client")

# PROTOCOL §Close codes: after these the client must not come back on its own.
NO_RECONNECT = {4001, 4002, 1008}
# An `error` answering `auth` with one of these refuses the credentials themselves: trying
# again cannot help. Any other code (`internal` while the directory's Redis is down,
# `rate_limited`, ...) is the server's trouble of the moment, retried like a lost connection.
AUTH_REFUSED = frozenset({"unauthorized", "forbidden", "bad_request"})
# PROTOCOL §Running the server: the default --max-frame, which holds until a welcome.
DEFAULT_MAX_FRAME = 65536
# The persisted room events: they carry a seq, which recovery resumes from.
ROOM_EVENTS = frozenset(EVENT_TYPES.values())


class Envelope(msgspec.Struct):
    type: str
    id: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"{}")


class HubbubRequestError(Exception):
    """The server answered a request with `error`."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class _ErrorPayload(msgspec.Struct, rename="camel"):
    code: str
    message: str = ""
    retry_after_ms: int | None = None


@dataclass
class Backoff:
    """Full jitter: sleep uniform(0, min(cap, base * 2**attempt)) seconds."""

    base: float = 0.5
    cap: float = 20.0
    attempt: int = 0

    def next_delay(self) -> float:
        try:
            ceiling = min(self.cap, self.base * 2**self.attempt)
        except OverflowError:  # 2**attempt outgrows a float after ~1024 failed attempts
            ceiling = self.cap
        delay = random.uniform(0, ceiling)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class _Limits(msgspec.Struct, rename="camel"):
    max_frame_bytes: int = DEFAULT_MAX_FRAME
    chats_per_second: float = 0.0
    chat_burst: int = 0


class _WelcomeInfo(msgspec.Struct, rename="camel"):
    """What the connection itself needs of a `welcome`."""

    user_id: str = ""
    limits: _Limits = msgspec.field(default_factory=_Limits)


@dataclass
class _Outgoing:
    """A chat waiting for its ack; re-sent after a reconnect."""

    text: str  # the encoded frame
    size: int  # its length in UTF-8 bytes, what the server's --max-frame counts
    future: "asyncio.Future[msgspec.Raw]"
    sent_on: int = 0  # the connection (generation) it was last written to


FrameHandler = Callable[[Envelope], Awaitable[None] | None]
StateHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


@dataclass
class Connection:
    url: str
    auth_payload: dict[str, Any]
    on_frame: FrameHandler
    on_state: StateHandler
    reconnect: bool = True
    backoff: Backoff = field(default_factory=Backoff)
    request_timeout: float = 10.0
    heartbeat: float = 20.0
    welcome: msgspec.Raw | None = None
    _info: _WelcomeInfo = field(default_factory=_WelcomeInfo)  # from the last welcome
    rooms: dict[str, int] = field(default_factory=dict)  # room -> last seq seen
    status: str | None = None  # the last presence status set; restored on reconnect
    _http: aiohttp.ClientSession | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _pending: dict[str, "asyncio.Future[msgspec.Raw]"] = field(default_factory=dict)
    _outbox: dict[str, _Outgoing] = field(default_factory=dict)
    # join request id -> room, until its ack (however late) or the end of its connection
    _joins: dict[str, str] = field(default_factory=dict)
    _ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))
    _calls: CallTracker = field(default_factory=CallTracker)
    _hang_ups: dict[str, None] = field(default_factory=dict)  # calls a drop ended, in order
    _quiet: set[str] = field(default_factory=set)  # ids of frames whose answer nobody awaits
    _reader: "asyncio.Task[None] | None" = None
    _closing: bool = False
    _ended: bool = False  # the final `close` event went out
    _generation: int = 0  # connections established so far
    _dropping: bool = False  # _resume is closing a connection whose re-join went unanswered
    _rejoin_patience: int = 1  # times request_timeout; doubled by each unanswered re-join
    _bucket: "_ChatBucket | None" = None  # this connection's chat pace (see _pump)
    _hold_until: float = 0.0  # loop time before which no chat is written (rate_limited)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # the outbox has news
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _can_send: bool = False  # authenticated, and the rejoin frames are on the wire
    close_code: int | None = None

    # ---- lifecycle ------------------------------------------------------------------
    async def open(self) -> msgspec.Raw:
        self._http = aiohttp.ClientSession()
        try:
            welcome = await self._establish()
        except BaseException:
            await self._http.close()
            raise
        self._connected.set()
        self._can_send = True
        self._reader = asyncio.get_running_loop().create_task(self._run())
        return welcome

    async def close(self) -> None:
        self._closing = True
        self._connected.clear()
        self._can_send = False
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        # A handler may call this from the reader itself: that task then ends on its own.
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail_pending(ConnectionError("client closed"), include_outbox=True)
        if self._reader is not None and not self._ended:
            await self._end(1000)
        if self._http is not None:
            await self._http.close()

    async def _end(self, code: int | None) -> None:
        """No more reconnects: fail what waits (the outbox too), then the final `close`."""
        self._closing = self._ended = True
        self._connected.clear()
        self._can_send = False
        self._fail_pending(ConnectionError(f"connection closed ({code})"), include_outbox=True)
        await self._state("close", {"code": code, "final": True})
        await self._drop_calls()

    async def _state(self, state: str, info: dict[str, Any]) -> None:
        result = self.on_state(state, info)
        if result is not None:
            await result

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _establish(self) -> msgspec.Raw:
        """Open the socket and authenticate (rooms and the outbox: see _resume)."""
        assert self._http is not None
        self._ws = await self._http.ws_connect(self.url, heartbeat=self.heartbeat,
                                               max_msg_size=0)
        await self._send({"type": "auth", "id": "auth", "payload": self.auth_payload})
        while True:
            msg = await self._ws.receive(timeout=self.request_timeout)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                code = self._ws.close_code
                if code in NO_RECONNECT:  # e.g. 4001: a bad or expired token
                    self.close_code = int(code)
                    raise HubbubRequestError(
                        "unauthorized", f"the server closed the connection ({code} {msg.extra})")
                raise ConnectionError(f"server closed during authentication ({code})")
            env = msgspec.json.decode(msg.data, type=Envelope)
            if env.type == "welcome":
                self.welcome = env.payload
                self._info = msgspec.json.decode(env.payload, type=_WelcomeInfo)
                self._fail_too_large()
                break
            if env.type == "error":
                err = msgspec.json.decode(env.payload, type=_ErrorPayload)
                await self._ws.close()
                if err.code in AUTH_REFUSED:  # reported as the server's 4001 would be
                    self.close_code = 4001
                raise HubbubRequestError(err.code, err.message, err.retry_after_ms)
        self._generation += 1
        return self.welcome

    # ---- the reader -------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._read_until_closed()
            self._connected.clear()
            self._can_send = False
            code = self.close_code
            self._fail_pending(ConnectionError(f"connection lost ({code})"))
            if self._closing:  # close() was called: it sends the final `close` itself
                return
            if not self.reconnect or code in NO_RECONNECT:
                await self._end(code)
                return
            await self._state("close", {"code": code, "final": False})
            await self._drop_calls()
            if not await self._reconnect():
                if not self._closing:  # re-authentication refused
                    await self._end(self.close_code)
                return

    async def _read_until_closed(self) -> None:
        ws = self._ws
        assert ws is not None
        resume = asyncio.get_running_loop().create_task(self._resume(self._generation > 1))
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    await self._dispatch(msgspec.json.decode(msg.data, type=Envelope))
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        except (aiohttp.ClientError, ConnectionError, msgspec.DecodeError) as exc:
            log.info("connection error: %s", exc)
        finally:
            if not self._dropping:  # else it is in ws.close(): cancelled, it would leak the socket
                resume.cancel()
            await asyncio.wait([resume])  # its close code is read below
            if not resume.cancelled() and resume.exception() is not None:
                log.error("resuming failed", exc_info=resume.exception())
            self._dropping = False
            code = ws.close_code  # a plain int in the events, not aiohttp's WSCloseCode
            self.close_code = None if code is None else int(code)

    async def _resume(self, reconnected: bool) -> None:
        """On every (re)connection: rejoin each room with `since` = the last seq seen and
        replay the missed events to the handlers; then the client is `connected` and this
        task goes on writing the outbox (_pump), where new chats queue behind the older
        ones. Requests may go out as soon as the rejoin frames are written: the server
        handles a connection's frames in order, so they find the rooms joined. So does
        `open`: a handler that joins a room then cannot overtake its re-join."""
        await self._hang_up()
        if self.status is not None:
            with contextlib.suppress(ConnectionError):  # before the rejoins: they carry it
                await self._send({"type": "presence", "payload": {"status": self.status}})
        rejoins = []
        for room, last in list(self.rooms.items()):
            try:
                rejoins.append((room, *await self._send_join(room, last)))
            except ConnectionError as exc:
                log.warning("rejoining %s failed: %s", room, exc)
        self._can_send = True
        if reconnected:
            await self._state("open", {"reconnected": True})
        if not await self._rejoined(rejoins):
            # Forgetting the re-join would lose its missed events for good; a connection
            # that does not answer it is dropped, and the next one asks again (same since).
            self._dropping = True
            if self._ws is not None:
                await self._ws.close()
            return
        self._connected.set()
        await self._pump()

    async def _rejoined(self, rejoins: list[tuple[str, str, "asyncio.Future[msgspec.Raw]"]],
                        ) -> bool:
        """Wait for each re-join's ack (the reader has replayed its missed events by then)
        and emit `rejoined`. False if one went unanswered for `request_timeout` (twice that
        after one such drop, four times after two, ...: a link merely slower than the
        timeout must not be dropped for ever)."""
        timeout = self.request_timeout * self._rejoin_patience
        for room, frame_id, fut in rejoins:
            try:
                raw = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                log.warning("no answer to rejoining %s within %s s: reconnecting", room,
                            timeout)
                self._rejoin_patience = min(2 * self._rejoin_patience, 64)
                return False
            except (HubbubRequestError, ConnectionError) as exc:
                log.warning("rejoining %s failed: %s", room, exc)
                continue
            finally:
                self._pending.pop(frame_id, None)
            ack = msgspec.json.decode(raw, type=_JoinAck)
            await self._state("rejoined", {"roomId": room, "recovered": bool(ack.recovered),
                                           "lastSeq": ack.last_seq})
        self._rejoin_patience = 1
        return True

    async def _reconnect(self) -> bool:
        """Retry until a connection is authenticated (True), or until the server refuses
        the credentials or close() is called (False). The backoff goes on growing through
        attempts the server answers with a transient error: it is not a welcome."""
        while not self._closing:
            delay = self.backoff.next_delay()
            await self._state("reconnect", {"attempt": self.backoff.attempt, "delay": delay})
            await asyncio.sleep(delay)
            try:
                await self._establish()
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError) as exc:
                log.info("reconnect attempt %d failed: %s", self.backoff.attempt, exc)
                continue
            except HubbubRequestError as exc:
                if exc.code not in AUTH_REFUSED:
                    log.info("reconnect attempt %d failed: %s", self.backoff.attempt, exc)
                    continue
                log.warning("re-authentication refused: %s", exc)
                return False
            self.backoff.reset()  # `open` follows once the re-join frames are written
            return True
        return False

    async def _dispatch(self, env: Envelope) -> None:
        if env.id is not None and env.id in self._quiet:
            self._quiet.discard(env.id)
            return
        if env.type == "error" and env.id in self._outbox:
            err = msgspec.json.decode(env.payload, type=_ErrorPayload)
            if err.code == "rate_limited":  # not an answer: the chat goes out again later
                self._hold(self._outbox[env.id], err.retry_after_ms or 1000)
                return
        if env.id is not None and env.type in ("ack", "error", "pong", "welcome"):
            fut = self._pending.pop(env.id, None)
            out = self._outbox.pop(env.id, None)
            fut = fut or (out.future if out else None)
            room = self._joins.pop(env.id, None)
            if env.type == "ack" and room is not None:
                # Replay what the join recovered right here, in the reader, so the missed
                # events reach the handlers before any live event that follows the ack.
                await self._joined(room, env.payload)
            if fut is not None and not fut.done():
                if env.type == "error":
                    err = msgspec.json.decode(env.payload, type=_ErrorPayload)
                    fut.set_exception(HubbubRequestError(err.code, err.message,
                                                         err.retry_after_ms))
                else:
                    fut.set_result(env.payload)
            if env.type != "error":
                return
        if env.type in ROOM_EVENTS:
            seq = msgspec.json.decode(env.payload, type=_Seq)
            last = self.rooms.get(seq.room_id)
            if last is not None:
                if seq.seq <= last:
                    return  # already seen (live and in a replay): deliver once
                self.rooms[seq.room_id] = seq.seq
        elif env.type in CALL_FRAMES:
            with contextlib.suppress(msgspec.ValidationError):  # the app gets it anyway
                self._calls.heard(env.type, msgspec.json.decode(env.payload, type=CallFrame))
        await self._deliver(env)

    async def _deliver(self, env: Envelope) -> None:
        result = self.on_frame(env)
        if result is not None:
            await result

    # ---- calls ----------------------------------------------------------------------------
    async def _drop_calls(self) -> None:
        """The connection is gone: the server ends its calls (when it was the user's last)
        and tells only the peer. Tell the app here, as the server would have: a `call_end`
        marked `local`. Each whose side this connection owned is hung up on the next
        connection (_hang_up); one that only rang here may still be answered elsewhere."""
        for call_id, owned in self._calls.drop_all():
            if owned:
                self._hang_ups[call_id] = None
            payload = {"callId": call_id, "by": self._info.user_id, "reason": "disconnected",
                       "local": True}
            await self._deliver(Envelope("call_end", payload=msgspec.Raw(
                msgspec.json.encode(payload))))

    async def _hang_up(self) -> None:
        """End on the server the calls the last drop ended here. Usually the server did so
        already (the answer is `conflict` or `not_found`, and nobody needs it); but when
        another connection of this user kept a call alive, this ends it for the peer too,
        so both sides agree it is over."""
        for call_id in list(self._hang_ups):
            frame_id = f"r{next(self._ids)}"
            self._quiet.add(frame_id)
            try:
                await self._send({"type": "call_end", "id": frame_id,
                                  "payload": {"callId": call_id, "reason": "disconnected"}})
            except ConnectionError:
                self._quiet.discard(frame_id)
                return  # the next connection tries again
            del self._hang_ups[call_id]

    async def _joined(self, room: str, raw: msgspec.Raw) -> None:
        ack = msgspec.json.decode(raw, type=_JoinAck)
        if ack.missed is None or not ack.recovered:
            # A fresh join, or more was missed than the server replays (or the server has
            # fewer events than we saw: its data was reset): live events start after
            # lastSeq; older ones are for `history`.
            self.rooms[room] = ack.last_seq
            return
        self.rooms.setdefault(room, ack.last_seq - len(ack.missed))
        for frame in ack.missed:
            await self._dispatch(Envelope(type=frame.type, payload=frame.payload))
        self.rooms[room] = max(self.rooms[room], ack.last_seq)

    async def join(self, room: str, since: int | None = None) -> msgspec.Raw:
        """Join (or rejoin) a room; remembered for rejoining after reconnects. For a room
        already tracked, `since` defaults to the last seq seen: a plain join would move
        the room to the server's lastSeq, over the missed events a re-join in flight is
        about to deliver."""
        if not self._can_send:
            raise ConnectionError("not connected")
        if since is None:
            since = self.rooms.get(room)
        frame_id, fut = await self._send_join(room, since)
        try:
            return await asyncio.wait_for(fut, self.request_timeout)
        finally:
            self._pending.pop(frame_id, None)  # not _joins: a late ack is still applied

    async def _send_join(self, room: str,
                         since: int | None) -> tuple[str, "asyncio.Future[msgspec.Raw]"]:
        payload: dict[str, Any] = {"roomId": room}
        if since is not None:
            payload["since"] = since
        fut = self._request_future()
        frame_id: str = fut.frame_id  # type: ignore[attr-defined]
        self._joins[frame_id] = str(room)
        try:
            await self._send({"type": "join_room", "id": frame_id, "payload": payload})
        except BaseException:
            self._pending.pop(frame_id, None)
            self._joins.pop(frame_id, None)
            raise
        return frame_id, fut

    # ---- requests -----------------------------------------------------------------------
    def _request_future(self) -> "asyncio.Future[msgspec.Raw]":
        fut: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        frame_id = f"r{next(self._ids)}"
        fut.frame_id = frame_id  # type: ignore[attr-defined]
        self._pending[frame_id] = fut
        return fut

    async def _send(self, frame: dict[str, Any]) -> None:
        await self._write(self._encode(frame))

    async def _write(self, text: str) -> None:
        if self._ws is None or self._ws.closed:
            raise ConnectionError("not connected")
        await self._ws.send_str(text)

    def _encode(self, frame: dict[str, Any]) -> str:
        """The frame as sent; HubbubRequestError `too_large` if the server would refuse it.
        A frame over the server's --max-frame is not answered: the server closes with 1009,
        so it must never be written (a chat re-sent after each reconnect would loop)."""
        data = msgspec.json.encode(frame)
        if len(data) > self._max_frame:
            raise HubbubRequestError("too_large", self._too_large(frame["type"], len(data)))
        return data.decode()

    @property
    def _max_frame(self) -> int:
        return self._info.limits.max_frame_bytes

    def _too_large(self, type_: str, size: int) -> str:
        return (f"a {type_} frame of {size} bytes is over the server's limit of "
                f"{self._max_frame} bytes (welcome.limits.maxFrameBytes)")

    def _fail_too_large(self) -> None:
        """After a welcome: this server may take less than the one the chats were queued
        for (another node, a new configuration)."""
        for frame_id, out in list(self._outbox.items()):
            if out.size > self._max_frame:
                del self._outbox[frame_id]
                if not out.future.done():
                    out.future.set_exception(
                        HubbubRequestError("too_large", self._too_large("chat", out.size)))

    async def request(self, type_: str, payload: dict[str, Any]) -> msgspec.Raw:
        """Send a frame with an id and wait for its ack (or raise HubbubRequestError).
        Raises ConnectionError at once while there is no authenticated connection."""
        if not self._can_send:
            raise ConnectionError("not connected")
        fut = self._request_future()
        frame_id: str = fut.frame_id  # type: ignore[attr-defined]
        self._calls.sending(type_, payload)
        try:
            await self._send({"type": type_, "id": frame_id, "payload": payload})
            answer = await asyncio.wait_for(fut, self.request_timeout)
        except HubbubRequestError as exc:
            self._calls.refused(type_, payload, exc.code)
            raise
        finally:
            self._pending.pop(frame_id, None)
        self._calls.acked(type_, payload)
        return answer

    async def send(self, type_: str, payload: dict[str, Any]) -> None:
        """Fire and forget (typing): dropped while disconnected."""
        if self._can_send:
            with contextlib.suppress(ConnectionError):
                await self._send({"type": type_, "payload": payload})

    async def send_chat(self, payload: dict[str, Any]) -> msgspec.Raw:
        """A chat survives reconnects: it stays in the outbox, keyed by clientMsgId, until
        acked, and is re-sent with the same clientMsgId after each reconnect. Raises
        ConnectionError once the client is closed for good, HubbubRequestError `too_large`
        at once for a chat the server would not take (it never enters the outbox)."""
        if self._closing:
            raise ConnectionError("client closed")
        frame_id = f"c{next(self._ids)}"
        text = self._encode({"type": "chat", "id": frame_id, "payload": payload})
        fut: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        out = _Outgoing(text, len(text.encode()), fut)
        self._outbox[frame_id] = out
        self._wake.set()  # for _pump, once the rooms are rejoined
        return await fut

    # ---- the chat pace -----------------------------------------------------------------------
    async def _pump(self) -> None:
        """Write the outbox, oldest chat first, for as long as this connection lasts: the
        chats waiting since an earlier connection, then the new ones, each when the chat
        bucket has a token. The bucket mirrors the server's (welcome.limits), fresh and
        full per connection as the server's is, so a long outbox goes out at the pace the
        server takes instead of collecting refusals, each a strike towards a 4008."""
        loop = asyncio.get_running_loop()
        limits = self._info.limits
        # One token of the burst is held back: frames bunched in transit can reach the
        # server a little closer together than they were written (the browser client
        # does the same).
        self._bucket = _ChatBucket(limits.chats_per_second, max(1.0, limits.chat_burst - 1))
        self._hold_until = 0.0
        while True:
            out = next((o for o in self._outbox.values() if o.sent_on != self._generation),
                       None)
            if out is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._hold_until - loop.time()
            if wait <= 0:
                wait = self._bucket.take(loop.time())
            if wait > 0:  # the one timer: refusals only move _hold_until
                await asyncio.sleep(wait)
                continue
            out.sent_on = self._generation
            with contextlib.suppress(ConnectionError):
                await self._write(out.text)

    def _hold(self, out: _Outgoing, retry_after_ms: int) -> None:
        """The server refused a chat for its rate all the same (its bucket started a little
        later than ours, when the first chat reached it). The chat goes back to its place
        (the outbox keeps the order they were sent in), nothing is written for
        `retryAfterMs`, and our bucket starts again empty, as the server's is."""
        loop = asyncio.get_running_loop()
        out.sent_on = 0  # unsent
        self._hold_until = max(self._hold_until, loop.time() + retry_after_ms / 1000)
        if self._bucket is not None:
            self._bucket.empty(loop.time())
        self._wake.set()

    def _fail_pending(self, exc: Exception, include_outbox: bool = False) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        self._joins.clear()  # their acks died with the connection
        self._quiet.clear()
        if include_outbox:
            for out in self._outbox.values():
                if not out.future.done():
                    out.future.set_exception(exc)
            self._outbox.clear()


@dataclass
class _ChatBucket:
    """A token bucket like the server's (hubbub.core.ratelimit): `rate` tokens a second, at
    most `burst`, full until first used. `rate <= 0`: unlimited. Times are loop seconds."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float | None = None  # when `tokens` was counted; None: never used, full

    def take(self, now: float) -> float:
        """Spend a token: 0.0, or else the seconds until there is one (nothing spent)."""
        if self.rate <= 0:
            return 0.0
        if self.at is None:
            self.tokens, self.at = self.burst, now
        elif now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.tokens >= 1 - 1e-9:  # the refill is float arithmetic
            self.tokens = max(0.0, self.tokens - 1)
            return 0.0
        return (1 - self.tokens) / self.rate

    def empty(self, now: float) -> None:
        self.tokens, self.at = 0.0, now


class _Seq(msgspec.Struct, rename="camel"):
    room_id: str
    seq: int


class _JoinAck(msgspec.Struct, rename="camel"):
    room_id: str
    last_seq: int = 0
    missed: list[StoredFrame] | None = None
    recovered: bool | None = None
