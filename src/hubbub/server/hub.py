"""Local delivery: the connections of this node, their outbound buffers, slow readers.

Every frame to a connection (ack, error, broadcast) goes through its one outbound
buffer. Buffers are flushed once per event-loop turn with a single write each, and an
event is encoded once per broadcast (JSON and WebSocket header) whatever the number
of recipients (DESIGN.md §4). A reader whose unsent bytes pass `--max-queue` is
dropped with 1013 so that nobody else slows down.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from hubbub.core.effects import (
    Close,
    Effect,
    LogCall,
    Reply,
    ToAll,
    ToConns,
    ToRoom,
    ToRooms,
    ToUser,
)
from hubbub.core.session import Session
from hubbub.features.node import Node
from hubbub.features.system import close_session
from hubbub.ids import ConnId, UserId
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import encode
from hubbub.server import framing

log = logging.getLogger("hubbub.conn")

# How long a connection we closed may take to finish the close handshake.
CLOSE_GRACE_S = 2.0


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...


CloseFn = Callable[[int, str], Coroutine[Any, Any, object]]


class Conn:
    """A live connection as the hub sees it: where its bytes go, and nothing else."""

    __slots__ = ("close_code", "close_task", "closed", "closer", "id", "last_ping", "last_rx",
                 "out", "out_bytes", "session", "transport", "user")

    def __init__(self, session: Session, transport: Transport, closer: CloseFn) -> None:
        self.id: ConnId = session.conn
        self.session = session
        self.transport = transport
        self.closer = closer
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.closed = False
        self.user: UserId | None = None
        self.last_rx = time.monotonic()
        self.last_ping = 0.0
        self.close_task: asyncio.Task[object] | None = None
        # The code *we* closed with; the peer's echo of it may differ (aiohttp answers 1000).
        self.close_code: int | None = None


class Hub:
    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.node = node
        self.loop = loop or asyncio.get_event_loop()
        self.conns: dict[ConnId, Conn] = {}
        self._dirty: list[Conn] = []
        self._flush_scheduled = False
        self._close_tasks: set[asyncio.Task[object]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.max_queue = node.settings.max_queue

    # ---- connections ------------------------------------------------------------
    def add(self, conn: Conn) -> None:
        self.conns[conn.id] = conn

    def remove(self, conn: Conn, code: int | None, reason: str) -> None:
        """The socket is gone: forget it and run the rules for a closed connection."""
        conn.closed = True
        conn.out.clear()
        self.conns.pop(conn.id, None)
        s = conn.session
        log.info("close conn=%s user=%s code=%s reason=%s", conn.id,
                 s.identity.user_id if s.identity else "-", code, reason or "-")
        if code is not None:
            self.node.metrics.closes[code] += 1
        self.run(close_session(self.node, conn.id))

    # ---- effects ------------------------------------------------------------------
    def run(self, effects: Iterable[Effect]) -> None:
        for e in effects:
            t = type(e)
            if t is Reply:
                self._reply(e)  # type: ignore[arg-type]
            elif t is ToRoom:
                self._to_room(e)  # type: ignore[arg-type]
            elif t is ToRooms:
                self._to_rooms(e)  # type: ignore[arg-type]
            elif t is ToUser:
                self._to_conns(e.type, e.payload,  # type: ignore[union-attr]
                               self.node.user_conns.get(e.user, ()))  # type: ignore[union-attr]
            elif t is ToConns:
                self._to_conns(e.type, e.payload, e.conns)  # type: ignore[union-attr]
            elif t is ToAll:
                self._to_conns(e.type, e.payload,  # type: ignore[union-attr]
                               [c for c, s in self.node.sessions.items() if s.identity])
            elif t is Close:
                self.close(e.conn, e.code, e.reason)  # type: ignore[union-attr]
            elif t is LogCall:
                self._log_call(e)  # type: ignore[arg-type]

    def _reply(self, e: Reply) -> None:
        conn = self.conns.get(e.conn)
        if conn is None:
            return
        if e.type == "ack" and e.id is None:
            return  # PROTOCOL §Transport: a client frame without `id` gets no ack
        if e.type == "welcome":
            assert conn.session.identity is not None
            conn.user = conn.session.identity.user_id
        self.node.metrics.frames_out[e.type] += 1
        self.queue(conn, framing.text_frame(encode(e.type, e.payload, e.id)))

    def _to_room(self, e: ToRoom) -> None:
        ids = self.node.rooms.conns(e.room)
        if not ids:
            return
        data = framing.text_frame(encode(e.type, e.payload))
        conns, ex, n = self.conns, e.exclude_user, 0
        for cid in ids:
            conn = conns.get(cid)
            if conn is not None and (ex is None or conn.user != ex):
                self.queue(conn, data)
                n += 1
        self.node.metrics.frames_out[e.type] += n

    def _to_rooms(self, e: ToRooms) -> None:
        ids: set[ConnId] = set()
        for room in e.rooms:
            ids |= self.node.rooms.conns(room)
        self._to_conns(e.type, e.payload, ids)

    def _to_conns(self, type_: str, payload: object, ids: Iterable[ConnId]) -> None:
        data: bytes | None = None
        n = 0
        for cid in ids:
            conn = self.conns.get(cid)
            if conn is None:
                continue
            if data is None:
                data = framing.text_frame(encode(type_, payload))  # type: ignore[arg-type]
            self.queue(conn, data)
            n += 1
        self.node.metrics.frames_out[type_] += n

    def _log_call(self, e: LogCall) -> None:
        task = self.loop.create_task(self.node.store.record_call(e.record))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: "asyncio.Task[None]") -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call log write failed: %r", task.exception())

    # ---- the outbound path -----------------------------------------------------------
    def queue(self, conn: Conn, data: bytes) -> None:
        if conn.closed:
            return
        if not conn.out:
            self._dirty.append(conn)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self.flush)
        conn.out.append(data)
        conn.out_bytes += len(data)

    def flush(self) -> None:
        """Write every dirty connection's buffer with one write each (once per loop turn)."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            self._write_out(conn)

    def _write_out(self, conn: Conn) -> None:
        if conn.closed or not conn.out:
            return
        data = conn.out[0] if len(conn.out) == 1 else b"".join(conn.out)
        conn.out.clear()
        conn.out_bytes = 0
        transport = conn.transport
        if transport.is_closing():
            return
        transport.write(data)
        self.node.metrics.observe_flush(len(data))
        if transport.get_write_buffer_size() > self.max_queue:
            self._drop_slow_reader(conn)

    def _drop_slow_reader(self, conn: Conn) -> None:
        """PROTOCOL §Close codes 1013: the reader fell too far behind. Its socket is not
        draining, so a close handshake cannot be waited for: send 1013, then abort."""
        self.node.metrics.slow_readers_dropped += 1
        log.warning("slow reader conn=%s dropped: more than %d bytes unsent", conn.id,
                    self.max_queue)
        conn.closed = True
        conn.close_code = CloseCode.OVERLOADED
        conn.out.clear()
        conn.session.closing = True
        transport = conn.transport
        transport.write(framing.control_frame(0x8, int(CloseCode.OVERLOADED).to_bytes(2, "big")
                                              + b"too slow a reader"))
        self.loop.call_later(CLOSE_GRACE_S, transport.abort)

    def close(self, conn_id: ConnId, code: int, reason: str) -> None:
        """Close one connection with a close code, after what is already queued for it."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.closed:
            return
        conn.session.closing = True
        self._write_out(conn)
        if conn.closed:  # dropped as a slow reader by that very write
            return
        conn.closed = True
        conn.close_code = code
        task = conn.close_task = self.loop.create_task(conn.closer(code, reason))
        self._close_tasks.add(task)
        task.add_done_callback(self._close_tasks.discard)
        # A peer that never answers the close frame is cut off.
        self.loop.call_later(CLOSE_GRACE_S + 1.0, conn.transport.abort)

    async def close_all(self, code: int, reason: str) -> None:
        for conn_id in list(self.conns):
            self.close(conn_id, code, reason)
        if self._close_tasks:
            await asyncio.wait(list(self._close_tasks), timeout=CLOSE_GRACE_S + 0.5)

    # ---- heartbeat ------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """PROTOCOL §Heartbeat: ping everyone; a peer silent since the previous ping is dead."""
        now = time.monotonic()
        for conn in list(self.conns.values()):
            if conn.closed:
                continue
            if conn.last_ping and conn.last_rx < conn.last_ping:
                log.info("heartbeat timeout conn=%s", conn.id)
                conn.closed = True
                conn.transport.abort()
                continue
            conn.last_ping = now
            self.queue(conn, framing.PING)
