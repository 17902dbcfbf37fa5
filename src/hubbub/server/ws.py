"""The `/ws` endpoint: the only module that speaks to the WebSocket library (picows).

picows parses frames in C and calls back per frame, with no task and no queue per
connection. hubbub keeps three things to itself: the RFC 6455 header checks (framegate.py,
so that a bad frame fails the connection in order), the outbound path (the hub writes
pre-built frames straight to the socket), and the close handshake.
"""

import asyncio
import ipaddress
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine
from time import monotonic
from typing import Any
from urllib.parse import parse_qs, urlsplit

from picows import (
    WSAutoPingStrategy,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from hubbub import logs
from hubbub.core.effects import Effect
from hubbub.errors import ProtocolError
from hubbub.features.auth import authenticate_token
from hubbub.features.dispatch import OVERLAPPING, handle_read, read_frame, refused
from hubbub.features.node import error
from hubbub.features.pending import Pending
from hubbub.features.system import admit, open_session
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.protocol.envelope import BadFrame
from hubbub.protocol.frames import Inbound, WebRTC
from hubbub.server import framing
from hubbub.server.framegate import Fail, FrameGate, PeerClose, Stop
from hubbub.server.hub import CLOSE_GRACE_S, Conn, Hub

log = logging.getLogger("hubbub.conn")
# picows logs every connection at INFO; hubbub logs its own open/close lines.
_picows_log = logging.getLogger("hubbub.picows")
_picows_log.setLevel(logging.WARNING)
# An adapter, not a Logger: picows would otherwise make a child Logger per connection.
_PICOWS_LOGGER = logging.LoggerAdapter(_picows_log, {})

_TEXT, _BINARY, _CONT = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
_PING, _PONG = WSMsgType.PING, WSMsgType.PONG

# Frames that wait behind a frame still being handled (a chat being stored). Past this
# many the socket stops being read until they are done: a client cannot make the server
# buffer without bound.
PAUSE_READING_AT = 64
# picows's read buffer starts here and grows only for a connection that needs more.
READ_BUFFER_BYTES = 2048


def origin_allowed(origin: str | None, host: str | None, allowed: list[str],
                   bound_host: str) -> bool:
    """Cross-site WebSocket hijacking guard (checked before the upgrade).

    No Origin header = not a browser: allowed. Same origin as the Host header: allowed.
    `--allowed-origin` set: those as well. Unset: any origin while bound to loopback.
    """
    if origin is None or urlsplit(origin).netloc == host:
        return True
    if allowed:
        return origin in allowed or "*" in allowed
    return is_loopback(bound_host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class _Binary:
    """A complete binary message: refused, in its turn."""


class _Auth:
    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


class _Parsed:
    """A text frame parsed ahead of its turn (it came right behind a chat and is not one):
    it waits for its turn as it was read, and is not parsed again."""

    __slots__ = ("frame",)

    def __init__(self, frame: Inbound | BadFrame) -> None:
        self.frame = frame


_A_BINARY = _Binary()
_Item = bytes | _Parsed | _Binary | _Auth | Fail | PeerClose
# A handled frame: its effects, or an awaitable of them.
_Work = list[Effect] | Awaitable[list[Effect]]


class Client(WSListener):
    """One WebSocket connection. Its frames take effect one after another in arrival
    order: a frame that waits on the store (an edit) holds the ones behind it, so a
    client's chat, edit and leave take effect in the order it sent them. Chats right behind
    a chat are started at once (dispatch.OVERLAPPING): their writes join the same group
    commit, and their effects still run in order."""

    __slots__ = ("conn", "draining", "fragments", "gone", "hub", "overlaps", "paused",
                 "peer_code", "pending", "protocol", "reason", "token", "waiting", "ws")

    def __init__(self, hub: Hub, protocol: "GatedProtocol", token: str | None) -> None:
        self.hub = hub
        self.protocol = protocol
        self.token = token
        self.ws: WSTransport | None = None
        self.conn: Conn | None = None
        self.pending: deque[_Item] | None = None  # made when a frame has to wait
        # Handled frames whose effects are not applied yet, in order (the first is waited
        # for by `_advance` or `_drain`); `overlaps`: all of them are OVERLAPPING frames.
        self.waiting: deque[_Work] | None = None  # while draining
        self.overlaps = False
        # What the first waiting frame waits on: a chat's write, or the task that works
        # through the frames (held here: the event loop keeps only a weak reference to a
        # task). None: frames are handled as they come.
        self.draining: asyncio.Task[None] | Pending[Any] | None = None
        self.paused = False
        self.gone = False
        self.fragments: list[bytes] | None = None
        self.peer_code: int | None = None
        self.reason = ""

    # ---- picows callbacks ----------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        # The upgrade's request and response stay referenced by picows for the connection's
        # life; their headers are read by now (about 1 KiB per idle connection).
        transport.request.headers.clear()
        transport.response.headers.clear()
        raw = transport.underlying_transport
        peer = raw.get_extra_info("peername")
        node = self.hub.node
        session = open_session(node, f"{peer[0]}:{peer[1]}" if peer else "?",
                               peer[0] if peer else "")
        conn = self.conn = Conn(session, raw, self.close)
        self.protocol.start(self, node.settings.max_frame)
        self.hub.add(conn)
        log.debug("open conn=%s remote=%s", conn.id, session.remote)
        self.hub.run(admit(node, session))
        token, self.token = self.token, None
        if token and not session.closing:
            self.inbound(_Auth(token))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT and frame.fin:
            data = frame.get_payload_as_bytes()
            conn = self.conn
            if conn is not None and conn.lane is not None:
                # A candidate of the call this connection relays to, in its turn (nothing
                # waits before it), takes the call lane (hub.py).
                if self.draining is None and not conn.closed and data.isascii():
                    try:
                        if self.hub.lane_relay(conn, conn.lane, data):
                            return
                    except Exception:  # the general path handles the frame, and answers
                        log.exception("call lane failed conn=%s", conn.id)
                conn.lane = None
            self.inbound(data)
        elif kind is _PING:
            assert self.conn is not None
            self.hub.queue(self.conn, framing.pong(frame.get_payload_as_bytes()))
        elif kind is _PONG:
            pass
        elif kind is _CONT:
            # The gate let it through, so a message is open.
            assert self.fragments is not None
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                parts, self.fragments = self.fragments, None
                self.inbound(b"".join(parts[1:]) if parts[0] == b"T" else _A_BINARY)
        elif kind is _TEXT:
            self.fragments = [b"T", frame.get_payload_as_bytes()]
        elif kind is _BINARY:
            if frame.fin:
                self.inbound(_A_BINARY)
            else:
                self.fragments = [b"B"]

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone = True
        if self.draining is None:
            self._finish()

    # ---- the inbound pipeline --------------------------------------------------------------
    def inbound(self, item: _Item) -> None:
        if self.draining is not None:
            waiting = self.waiting
            if (self.overlaps and waiting is not None and not self.pending
                    and type(item) is bytes and len(waiting) < PAUSE_READING_AT):
                rest = self._overlap(waiting, item)
                if rest is None:
                    return
                item = rest
            pending = self.pending
            if pending is None:
                pending = self.pending = deque()
            pending.append(item)
            if len(pending) >= PAUSE_READING_AT and not self.paused:
                self.paused = True
                assert self.conn is not None
                self.conn.transport.pause_reading()
            return
        work = self._step(item)
        if work is not None:
            self.waiting = deque((work,))
            self._advance()

    def stopped(self, stop: Stop) -> None:
        """The gate stopped the stream: a bad frame, or the client's close frame."""
        self.inbound(stop)

    def _step(self, item: _Item) -> Awaitable[list[Effect]] | None:
        """Handle one item now; an awaitable if it waits on the store or the directory."""
        conn = self.conn
        assert conn is not None
        hub = self.hub
        node = hub.node
        self.overlaps = False
        if type(item) is bytes:
            if conn.closed:
                # We closed this connection (4001, 4008, 1001, 1013): frames still in flight
                # are void, or an expired or abusive session would go on acting.
                return None
            if not item.isascii() and not _utf8(item):
                # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection.
                self.reason = "text frame is not UTF-8"
                hub.close(conn.id, CloseCode.INVALID_DATA, self.reason)
                return None
            return self._frame(read_frame(item, utf8_checked=True))
        elif type(item) is _Parsed:
            return None if conn.closed else self._frame(item.frame)
        elif type(item) is _Binary:
            if not conn.closed:
                hub.run(refused(node, conn.session, ProtocolError(
                    ErrorCode.BAD_REQUEST, "binary frames are not supported; send JSON text"),
                    None))
        elif type(item) is _Auth:
            return self._authenticate(item.token)
        elif type(item) is Fail:
            self.reason = item.reason
            hub.close(conn.id, item.code, item.reason)
        elif type(item) is PeerClose:
            self._peer_closed(item)
        return None

    def _frame(self, frame: Inbound | BadFrame) -> Awaitable[list[Effect]] | None:
        """A parsed frame in its turn: most frames of a call go the hub's short way."""
        conn = self.conn
        assert conn is not None
        if type(frame) is WebRTC:
            try:
                if self.hub.relay(conn, frame):
                    return None
            except Exception:
                self.hub.run(self._internal_error())
                return None
        return self._handle(frame)

    def _dispatch(self, frame: Inbound | BadFrame) -> list[Effect] | Awaitable[list[Effect]]:
        """The frame's effects, or an awaitable of them; a bug below answers `internal`."""
        assert self.conn is not None
        try:
            return handle_read(self.hub.node, self.conn.session, frame)
        except Exception:
            return self._internal_error()

    def _handle(self, frame: Inbound | BadFrame) -> Awaitable[list[Effect]] | None:
        result = self._dispatch(frame)
        if type(result) is list:
            self.hub.run(result)
            return None
        # An awaitable: the frame waits on the store or the directory.
        self.overlaps = type(frame) in OVERLAPPING
        return result  # type: ignore[return-value]

    def _overlap(self, waiting: "deque[_Work]", item: bytes) -> "bytes | _Parsed | None":
        """While only OVERLAPPING frames wait, handle `item` now if it is one of them: its
        handler queues its store write behind the earlier ones, and its effects are applied
        after theirs (`_applied`). None when it was started; else what waits for its turn (the
        frame as parsed, if it was)."""
        conn = self.conn
        assert conn is not None
        if conn.closed or conn.session.closing or (not item.isascii() and not _utf8(item)):
            return item  # handled in its turn
        frame = read_frame(item, utf8_checked=True)
        if isinstance(frame, BadFrame) or type(frame) not in OVERLAPPING:
            return _Parsed(frame)
        waiting.append(self._dispatch(frame))
        return None

    def _internal_error(self) -> list[Effect]:
        """A bug below us (called from an `except`): log it, answer `internal`."""
        assert self.conn is not None
        suffix = logs.failures.admit_exception()
        if suffix is not None:
            log.exception("internal error conn=%s%s", self.conn.id, suffix)
        return error(self.conn.id, ProtocolError(ErrorCode.INTERNAL, "internal error"), None)

    async def _authenticate(self, token: str) -> list[Effect]:
        assert self.conn is not None
        node, session = self.hub.node, self.conn.session
        try:
            return await authenticate_token(node, session, token, None)
        except ProtocolError as exc:  # dev identity mode: say so instead of waiting 10 s
            return refused(node, session, exc, None)

    def _advance(self, _written: object = None) -> None:
        """Work through `waiting` while its first item is ready. A chat's write is waited
        for with a callback on its future (`Pending`); a coroutine gets a task that takes
        over the rest (`_drain`)."""
        waiting = self.waiting
        assert waiting is not None
        try:
            while waiting:
                work = waiting[0]
                if type(work) is Pending:
                    if not work.written.done():
                        self.draining = work
                        work.written.add_done_callback(self._advance)
                        return
                    effects = work.effects()
                elif type(work) is list:
                    effects = work
                else:
                    self.draining = self.hub.loop.create_task(self._drain(waiting))
                    return
                self._applied(waiting, effects)
        except BaseException:
            self._drained()
            raise
        self._drained()

    async def _drain(self, waiting: "deque[_Work]") -> None:
        try:
            while waiting:
                work = waiting[0]
                if type(work) is not list:
                    try:
                        work = await work  # type: ignore[misc]
                    except Exception:
                        work = self._internal_error()
                self._applied(waiting, work)
        finally:
            self._drained()

    def _applied(self, waiting: "deque[_Work]", effects: list[Effect]) -> None:
        """The first waiting frame's effects are ready: apply them, then start what its
        wait held back."""
        waiting.popleft()
        self.hub.run(effects)
        pending = self.pending
        while pending and not waiting:
            next_work = self._step(pending.popleft())
            if next_work is not None:
                waiting.append(next_work)
        # Chats queued behind a chat start now as well (`inbound` starts the ones that
        # arrive while nothing is queued).
        while (pending and self.overlaps and len(waiting) < PAUSE_READING_AT
               and type(pending[0]) is bytes):
            rest = self._overlap(waiting, pending[0])
            if rest is not None:
                pending[0] = rest
                break
            pending.popleft()

    def _drained(self) -> None:
        """Nothing waits any more (or the wait ended with an error): frames are handled as
        they come again."""
        waiting = self.waiting
        for work in waiting or ():  # only after an error or a cancellation: never start them
            if isinstance(work, Coroutine):
                work.close()
        self.pending = None
        self.overlaps = False
        self.waiting = None
        self.draining = None
        if self.paused:
            self.paused = False
            if not self.gone and self.conn is not None:
                self.conn.transport.resume_reading()
        if self.gone:
            self._finish()

    # ---- closing -----------------------------------------------------------------------------
    def _peer_closed(self, close: PeerClose) -> None:
        """RFC 6455 §5.5.1: answer a close frame with one, after what is already queued,
        then end the TCP connection (the server closes first, §7.1.1)."""
        conn, ws = self.conn, self.ws
        assert conn is not None and ws is not None
        self.peer_code = CloseCode.NO_STATUS if close.code is None else close.code
        if self.hub.begin_close(conn):  # else it answers our close (or a 1013 went out)
            conn.transport.write(framing.close_frame(CloseCode.NORMAL, ""))
        self.reason = self.reason or close.reason
        ws.disconnect(graceful=True)

    async def close(self, code: int, reason: str) -> None:
        """The hub's closer: our close frame, then wait for the answer (or give up)."""
        ws, conn = self.ws, self.conn
        assert ws is not None and conn is not None
        if ws.is_disconnected:
            return
        conn.transport.write(framing.close_frame(code, reason))
        if self.protocol.gate_stopped():
            # A bad frame failed the connection (§7.1.7): nothing more is read, so no
            # answer to our close can come. End the TCP connection now.
            ws.disconnect(graceful=True)
            return
        try:
            await asyncio.wait_for(ws.wait_disconnected(), CLOSE_GRACE_S)
        except TimeoutError:
            ws.disconnect(graceful=False)

    def _finish(self) -> None:
        conn = self.conn
        if conn is None or conn.id not in self.hub.conns:
            return
        code = conn.close_code or self.peer_code or CloseCode.ABNORMAL
        reason = self.reason or ("connection lost" if code == CloseCode.ABNORMAL else "")
        self.hub.remove(conn, code, reason)


# Called per read: a plain function call costs 50 ns where `super().` costs 120.
_PICOWS_GET_BUFFER = WSProtocol.get_buffer
_PICOWS_BUFFER_UPDATED = WSProtocol.buffer_updated


class GatedProtocol(WSProtocol):  # type: ignore[misc]
    """picows's protocol with FrameGate in front of its parser. Until the upgrade is done
    the bytes go to picows as they are (it reads the request); after it, each read is
    walked by the gate and only the bytes of good frames reach the parser."""

    __slots__ = ("_client", "_gate")

    def __init__(self, hub: Hub) -> None:
        st = hub.node.settings
        self._client: Client | None = None
        self._gate: FrameGate | None = None

        def listener(request: WSUpgradeRequest) -> Any:
            return accept(hub, self, request)

        super().__init__(
            None, None, False, listener, _PICOWS_LOGGER,
            False,  # disconnect_on_exception: hubbub answers its own errors
            None,  # the handshake deadline is the port router's (server/port.py)
            False, 20.0, 20.0, WSAutoPingStrategy.PING_WHEN_IDLE,  # the hub pings
            False,  # pings are answered through the hub, in order
            st.max_frame, None, READ_BUFFER_BYTES)

    def start(self, client: Client, max_frame: int) -> None:
        self._client = client
        self._gate = FrameGate(max_frame)

    def gate_stopped(self) -> bool:
        return self._gate is not None and self._gate.stopped

    def buffer_updated(self, nbytes: int) -> None:
        gate = self._gate
        if gate is None:
            _PICOWS_BUFFER_UPDATED(self, nbytes)
            return
        client = self._client
        assert client is not None
        conn = client.conn
        if conn is not None:
            conn.last_rx = monotonic()
        # picows's get_buffer is pure: until buffer_updated it gives the same free space
        # again, which now starts with the bytes just read. Asking here, rather than
        # overriding get_buffer, spares a Python call per read.
        passed, stop = gate.feed(_PICOWS_GET_BUFFER(self, -1)[:nbytes])
        if passed:
            _PICOWS_BUFFER_UPDATED(self, passed)
        if stop is not None:
            client.stopped(stop)

    def feed(self, data: bytes) -> None:
        """Bytes already read off the socket (by the port router), as if read now."""
        pos = 0
        while pos < len(data):
            view = self.get_buffer(-1)
            n = min(len(view), len(data) - pos)
            view[:n] = data[pos:pos + n]
            self.buffer_updated(n)
            pos += n

    def upgrade(self, head: bytes, tail: bytes) -> None:
        """The request head the router read, then what came right behind it (frames a
        client sent without waiting for the 101)."""
        self.feed(head)
        if tail and self._gate is not None:
            self.feed(tail)


class _Refused(WSListener):
    """An upgrade from a foreign Origin, accepted only to say why: close 1008 (PROTOCOL's
    close codes name this case), then the end of the TCP connection. No session is
    opened and no frame is read, so nothing the page sends is ever acted on."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.underlying_transport.write(
            framing.close_frame(CloseCode.POLICY, "origin not allowed"))
        transport.disconnect(graceful=True)


def accept(hub: Hub, protocol: GatedProtocol, request: WSUpgradeRequest) -> Any:
    """picows's listener factory: a foreign Origin gets a listener that closes with 1008."""
    st = hub.node.settings
    headers = request.headers
    origin = headers.get("Origin")
    if not origin_allowed(origin, headers.get("Host"), st.allowed_origin, st.host):
        log.info("refused upgrade from origin %r", origin)
        return _Refused()
    query = urlsplit(request.path.decode("latin-1")).query
    token = parse_qs(query).get("token", [None])[0] if "token=" in query else None
    return Client(hub, protocol, token)
