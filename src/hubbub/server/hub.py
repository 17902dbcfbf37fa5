"""Local delivery: the connections of this node, their outbound buffers, slow readers.

Every frame to a connection (ack, error, broadcast) goes through its one outbound
buffer. Buffers are flushed once per event-loop turn (under fan-out load, paced over a
25 ms period) with a single write each, and an event is encoded once per broadcast
(JSON and WebSocket header) whatever the number of recipients (DESIGN.md §4). A reader
whose unsent bytes pass `--max-queue` is dropped with 1013 so that nobody else slows
down.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

import msgspec

from hubbub import logs
from hubbub.core.effects import (
    CatchUp,
    Close,
    Effect,
    Forward,
    Later,
    LogCall,
    Reply,
    ToAll,
    ToConns,
    ToRoom,
    ToRooms,
    ToUser,
)
from hubbub.core.session import Session
from hubbub.features import calls
from hubbub.features.node import Node
from hubbub.features.system import close_session
from hubbub.ids import ConnId, RoomId, UserId, node_of
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import WebRTC, encode
from hubbub.server import framing
from hubbub.server.fanout import Fanout, Held, member_event

log = logging.getLogger("hubbub.conn")

# How long a connection we closed may take to finish the close handshake.
CLOSE_GRACE_S = 2.0

# Fan-out under load (docs/decisions/0018-fan-out-flush-waits-under-load.md): a socket
# write costs ~5-10 us whatever its size, so when a flush wrote several frames per
# connection and took a while, the next one starts FLUSH_PERIOD_S after it began and the
# frames that arrive meanwhile share its writes. Its chunks are spread over that period,
# so readers get an even stream rather than bursts
# (docs/decisions/0036-paced-flushes.md). One frame per write (a relay) or a quick
# flush: no wait.
FLUSH_COALESCING = 1.5  # frames per write from which waiting pays
FLUSH_SLOW_S = 0.0005  # a flush shorter than this never delays the next one
FLUSH_PERIOD_S = 0.025
# Connections written per callback: a flush of thousands would hold the loop for
# milliseconds, and every read and store completion behind it would wait.
FLUSH_CHUNK = 100
# Closes that are goodbyes, from either side (ADR 0037).
_GOODBYES = frozenset((CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.NO_STATUS))


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


CloseFn = Callable[[int, str], Coroutine[Any, Any, object]]


class Run:
    """One room's broadcasts since the current flush began, as one list. A member that was
    sent nothing else in between reads a stretch of it, so a broadcast costs one append
    however big the room is, and a stretch is joined into bytes once for all the members
    that read it whole (docs/decisions/0020-room-runs.md)."""

    __slots__ = ("_joined", "_joined_n", "_part", "_part_at", "frames", "members", "stamp",
                 "strays")

    def __init__(self, members: "list[Conn]", stamp: int) -> None:
        self.frames: list[bytes] = []
        self.members = members  # the room's local connections when the run began
        self.stamp = stamp  # the room's membership stamp then (RoomRegistry.stamp)
        # Members not reading the run now: the next broadcast attaches them. The others
        # read it on, so a broadcast costs nothing per member that stayed.
        self.strays = list(members)
        self._joined = b""
        self._joined_n = 0
        self._part = b""
        self._part_at = (0, 0)

    def read(self, start: int, end: int) -> bytes:
        if start:
            # The members a broadcast re-attached (written in the same flush chunk) start
            # at the same frame, and are cut or written one after another: they share it.
            if self._part_at != (start, end):
                self._part = b"".join(self.frames[start:end])
                self._part_at = (start, end)
            return self._part
        if self._joined_n != end:  # most readers read from the start to the same end
            self._joined = b"".join(self.frames[:end])
            self._joined_n = end
        return self._joined


class Conn:
    """A live connection as the hub sees it: where its bytes go, and nothing else."""

    __slots__ = ("close_code", "closed", "closer", "id", "lane", "last_ping", "last_rx", "out",
                 "queued", "session", "tail_run", "tail_start", "transport", "user")

    def __init__(self, session: Session, transport: Transport, closer: CloseFn) -> None:
        self.id: ConnId = session.conn
        self.session = session
        self.transport = transport
        self.closer = closer
        # What to write next, in order. The last item may be a room's Run, standing for its
        # frames from `tail_start` on: the room's next broadcasts extend it at no cost. It
        # becomes bytes when anything else is queued, or at the write.
        self.out: list[bytes | Run] = []
        self.tail_run: Run | None = None
        self.tail_start = 0
        self.queued = 0  # frames in `out`
        self.closed = False
        self.user: UserId | None = None
        self.last_rx = time.monotonic()
        self.last_ping = 0.0
        # The code *we* closed with; the peer's echo of it may differ (aiohttp answers 1000).
        self.close_code: int | None = None
        # The call this connection relayed to last through the settled relay (`Hub.relay`):
        # its next candidates take the lane (`Hub.lane_relay`) while the call stays settled.
        self.lane: Lane | None = None


class Lane:
    """What the settled relay worked out for a connection's last candidate, kept for the
    next ones of the same call: who sends, the peer's connection, and the relayed frame's
    JSON up to its candidate, which is the same for every candidate of the call. It
    decides nothing: each frame is checked again against the call rules
    (`Calls.settled_peer`) before it goes (docs/decisions/0032-the-call-lane.md)."""

    __slots__ = ("call_id", "me", "peer", "prefix", "to")

    def __init__(self, call_id: str, me: UserId, to: UserId, peer: ConnId,
                 prefix: bytes) -> None:
        self.call_id = call_id
        self.me = me
        self.to = to
        self.peer = peer  # an id, not the Conn: a lane left idle keeps no closed connection
        self.prefix = prefix


# A call lane decodes a frame straight into `WebRTC`: the same checks as the general
# parse (envelope.py), and any other frame fails it and takes the general path.
_lane_decoder = msgspec.json.Decoder(WebRTC)
_candidate_encoder = msgspec.json.Encoder()
_LANE_DECODE_ERRORS = (msgspec.MsgspecError, RecursionError, UnicodeError, ValueError)


# What a joining connection must not miss (`Hub._hold`): the room's membership and
# presence. Persisted events are covered by the join's `lastSeq`; typing is ephemeral.
_HELD_TYPES = frozenset(("join_room", "leave_room", "presence"))
_MEMBERSHIP = frozenset(("join_room", "leave_room"))


def news(listed: frozenset[str], held: list[tuple[str, bytes, str | None]]
         ) -> list[tuple[str, bytes]]:
    """The held events a joiner still needs after an ack that listed `listed`: a member
    whose join completed after the list was read is in it and announced as well, and one
    whose leave did is in neither; such a `join_room` or `leave_room` says nothing new."""
    present: set[str | None] = set(listed)
    out = []
    for type_, frame, subject in held:
        if type_ == "join_room":
            if subject in present:
                continue
            present.add(subject)
        elif type_ == "leave_room":
            if subject not in present:
                continue
            present.discard(subject)
        out.append((type_, frame))
    return out


class Hub:
    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.node = node
        self.loop = loop or asyncio.get_event_loop()
        self.conns: dict[ConnId, Conn] = {}
        self._dirty: list[Conn] = []
        self._runs: dict[RoomId, Run] = {}  # the rooms broadcast to since the flush began
        self._last_runs: dict[RoomId, Run] = {}  # those of the flush cycle before
        self._flush_scheduled = False
        # Under fan-out load, the loop time at which the next flush starts (it may be past
        # when a flush overran the period); 0.0 when not under load.
        self._flush_at = 0.0
        self._answers: list[Conn] = []  # connections with an answer queued under load
        # The flush in progress: its connections, how far it got, what it wrote and cost.
        self._pass: list[Conn] = []
        self._pass_pos = 0
        self._pass_frames = 0
        self._pass_cost = 0.0
        self._pass_start = 0.0
        self._close_tasks: set[asyncio.Task[object]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        # Set when this node is one of several (hubbub.server.fanout); None alone.
        self.fanout: Fanout | None = None
        self.max_queue = node.settings.max_queue

    # ---- connections ------------------------------------------------------------
    def add(self, conn: Conn) -> None:
        self.conns[conn.id] = conn

    def remove(self, conn: Conn, code: int | None, reason: str) -> None:
        """The socket is gone: forget it and run the rules for a closed connection."""
        conn.closed = True
        self._drop_queued(conn)
        self.conns.pop(conn.id, None)
        s = conn.session
        # A join storm or a mass reconnect is thousands of these: only the closes an
        # operator would look into are logged at INFO (docs/reference/config.md).
        log.log(logging.DEBUG if code in _GOODBYES else logging.INFO,
                "close conn=%s user=%s code=%s reason=%s", conn.id,
                s.identity.user_id if s.identity else "-", code, reason or "-")
        if code is not None:
            self.node.metrics.closes[code] += 1
        self.run(close_session(self.node, conn.id))

    # ---- effects ------------------------------------------------------------------
    def run(self, effects: Iterable[Effect]) -> None:
        """Carry out effects: local delivery, and with several nodes a publish as well."""
        fan = self.fanout
        for e in effects:
            t = type(e)
            if t is Reply:
                self._reply(e)  # type: ignore[arg-type]
            elif t is Close:
                self.close(e.conn, e.code, e.reason)  # type: ignore[union-attr]
            elif t is LogCall:
                self._log_call(e)  # type: ignore[arg-type]
            elif t is Later:
                self._later(e)  # type: ignore[arg-type]
            elif t is Forward:
                if fan is not None:
                    fan.forward(e)  # type: ignore[arg-type]
            elif t is CatchUp:
                self._catch_up(e)  # type: ignore[arg-type]
            else:
                self._broadcast(e, fan)

    def _broadcast(self, e: Effect, fan: "Fanout | None") -> None:
        frame = framing.text_frame(encode(e.type, e.payload))  # type: ignore[union-attr]
        # `type(e) is`, not isinstance: effects are final classes, and this runs per event.
        if type(e) is ToConns:
            if fan is None:  # alone, every connection is this node's
                self.deliver_conns(e.conns, e.type, frame)
                return
            mine = self.node.number
            local = [c for c in e.conns if node_of(c) == mine]
            self.deliver_conns(local, e.type, frame)
            if len(local) < len(e.conns):
                fan.conns([c for c in e.conns if node_of(c) != mine], e.type, frame)
        elif type(e) is ToRoom:
            self.deliver_room(e.room, e.type, frame, e.exclude_user, e.seq)
            if fan is not None:
                fan.room(e.room, e.type, frame, e.exclude_user, e.seq)
        elif type(e) is ToRooms:
            self.deliver_rooms(e.rooms, e.type, frame)
            if fan is not None:
                fan.rooms(e.rooms, e.type, frame)
        elif type(e) is ToUser:
            self.deliver_user(e.user, e.type, frame, e.exclude_conn)
            if fan is not None:
                fan.user(e.user, e.type, frame, e.exclude_conn)
        elif type(e) is ToAll:
            self.deliver_all(e.type, frame)
            if fan is not None:
                fan.everyone(e.type, frame)

    def _reply(self, e: Reply) -> None:
        if e.type == "ack" and e.id is None:
            return  # PROTOCOL §Transport: a client frame without `id` gets no ack
        conn = self.conns.get(e.conn)
        if conn is None:
            # The answer to a call frame another node forwarded here goes back to it.
            if self.fanout is not None and node_of(e.conn) != self.node.number:
                self.fanout.conns([e.conn], e.type,
                                  framing.text_frame(encode(e.type, e.payload, e.id)), e.id)
            return
        if e.type == "welcome":
            assert conn.session.identity is not None
            conn.user = conn.session.identity.user_id
        self.node.metrics.frames_out[e.type] += 1
        self.queue(conn, framing.text_frame(encode(e.type, e.payload, e.id)))
        if self._flush_at and not conn.closed:
            # A flush is waiting out fan-out load: an answer to the client's own frame (an
            # ack the client may be waiting on) does not wait with it. Its connection is
            # written at the end of this turn, with everything queued before the answer.
            if not self._answers:
                self.loop.call_soon(self._write_answers)
            self._answers.append(conn)

    # ---- local delivery: the same frame bytes for every recipient ------------------------
    def deliver_room(self, room: RoomId, type_: str, frame: bytes, exclude: UserId | None,
                     seq: int | None) -> None:
        """A room event for this node's members. With several nodes, persisted events go
        through the room's sequencer, so they leave in seq order whatever node sent them."""
        fan = self.fanout
        if seq is None or fan is None:
            self.deliver_room_now(room, type_, frame, exclude)
            return
        for held in fan.sequencer.offer(room, seq, (frame, exclude, type_, seq),
                                        self.node.clock.mono_ms()):
            self.deliver_ordered(room, held)

    def deliver_ordered(self, room: RoomId, held: Held) -> None:
        """A persisted room event in its seq order. A connection that joined at a lastSeq
        at or above its seq already has it (docs/topics/delivery.md §Joining)."""
        frame, exclude, type_, seq = held
        fan = self.fanout
        floors = fan.floors.get(room) if fan is not None else None
        if fan is not None and floors:
            skip = {c for c, floor in floors.items() if floor >= seq}
            for c in [c for c, floor in floors.items() if floor <= seq]:
                del floors[c]  # the events from here on are above its lastSeq
            if not floors:
                del fan.floors[room]
            if skip:
                self.deliver_conns([c for c in self.node.rooms.conns(room) if c not in skip],
                                   type_, frame, exclude)
                return
        self.deliver_room_now(room, type_, frame, exclude)

    def _hold(self, room: RoomId, type_: str, frame: bytes, exclude: UserId | None) -> None:
        """A join, leave or presence event of a room that connections are joining: each
        of them gets it after its ack (core.effects.CatchUp), or it would miss it for good
        (its `members` were read before, and it is not in the room yet)."""
        waiting = self.node.prejoin.get(room)
        if not waiting:
            return
        subject = (member_event(frame).user_id
                   if type_ in _MEMBERSHIP else None)
        for conn_id, items in waiting.items():
            conn = self.conns.get(conn_id)
            if conn is not None and (exclude is None or conn.user != exclude):
                items.append((type_, frame, subject))

    def _catch_up(self, e: CatchUp) -> None:
        conn = self.conns.get(e.conn)
        if conn is None:
            return
        for type_, frame in news(e.members, e.items):
            self.node.metrics.frames_out[type_] += 1
            self.queue(conn, frame)

    def deliver_room_now(self, room: RoomId, type_: str, frame: bytes,
                         exclude: UserId | None) -> None:
        if type_ in _HELD_TYPES:
            self._hold(room, type_, frame, exclude)
            if self.fanout is not None:
                self.fanout.views_heard((room,), type_, frame)
        if exclude is not None:  # not every member: each gets the frame on its own
            self.deliver_conns(self.node.rooms.conns(room), type_, frame, exclude)
            return
        stamp = self.node.rooms.stamp(room)
        run = self._runs.get(room)
        if run is None or run.stamp != stamp:
            run = self._new_run(room, stamp)
        if not run.members:
            return
        frames = run.frames
        frames.append(frame)
        start = len(frames) - 1
        strays = run.strays
        if strays:
            run.strays = []
            dirty = self._dirty
            # The members that stopped reading this run (or never did) start reading it
            # here, after what they have queued (`queue`, inlined).
            for conn in strays:
                if conn.closed:
                    continue
                out = conn.out
                if conn.tail_run is not None:
                    self._close_tail(conn)
                elif not out:
                    dirty.append(conn)
                conn.tail_run = run
                conn.tail_start = start
                out.append(run)
        if not self._flush_scheduled:
            self._schedule_flush()
        self.node.metrics.frames_out[type_] += len(run.members)

    def _new_run(self, room: RoomId, stamp: int) -> Run:
        """A room's run since the flush began, or since its connections changed. An old
        run gets no more frames, so the stretches still open on it end where it ends."""
        last = self._last_runs.get(room)
        if last is not None and last.stamp == stamp:  # the same connections as last cycle
            members = last.members
        else:
            conns = self.conns
            members = [conns[c] for c in self.node.rooms.conns(room)
                       if c in conns and not conns[c].closed]
        run = self._runs[room] = Run(members, stamp)
        return run

    @staticmethod
    def _close_tail(conn: Conn) -> None:
        """The open stretch ends at the run's present end: what comes next follows it."""
        run = conn.tail_run
        assert run is not None
        end = len(run.frames)
        conn.out[-1] = run.read(conn.tail_start, end)
        conn.queued += end - conn.tail_start
        conn.tail_run = None
        run.strays.append(conn)

    def deliver_rooms(self, rooms: tuple[RoomId, ...], type_: str, frame: bytes) -> None:
        """To every local connection in any of `rooms`, each once."""
        ids: set[ConnId] = set()
        for room in rooms:
            ids |= self.node.rooms.conns(room)
            if type_ in _HELD_TYPES:
                self._hold(room, type_, frame, None)
        if type_ in _HELD_TYPES and self.fanout is not None:
            self.fanout.views_heard(rooms, type_, frame)
        self.deliver_conns(ids, type_, frame)

    def deliver_conns(self, ids: Iterable[ConnId], type_: str, frame: bytes,
                      exclude: UserId | None = None) -> None:
        # `isTyping: true` is shed for a reader that is behind: the kernel did not take all
        # of what it was last written. The typist's next refresh says it again, and the
        # backlog is not made longer by it. A `false` always goes, so no reader is left
        # showing a typist who stopped (docs/topics/backpressure.md).
        shed_if_behind = type_ == "typing" and frame.endswith(framing.TYPING_TRUE)
        n = shed = 0
        for cid in ids:
            conn = self.conns.get(cid)
            if conn is None or (exclude is not None and conn.user == exclude):
                continue
            if shed_if_behind and conn.transport.get_write_buffer_size():
                shed += 1
                continue
            self.queue(conn, frame)
            n += 1
        metrics = self.node.metrics
        metrics.frames_out[type_] += n
        metrics.typing_shed += shed

    def deliver_user(self, user: UserId, type_: str, frame: bytes,
                     exclude: ConnId | None) -> None:
        conns = self.node.user_conns.get(user, ())
        self.deliver_conns([c for c in conns if c != exclude] if exclude else conns, type_,
                           frame)

    def deliver_all(self, type_: str, frame: bytes) -> None:
        self.deliver_conns([c for c, s in self.node.sessions.items() if s.identity], type_,
                           frame)

    def relay(self, sender: Conn, frame: WebRTC) -> bool:
        """Most frames of a call take no effect list (`calls.settled_relay`): the event
        goes to the peer's connection, the ack (if asked for) to the sender. False, having
        done nothing: the frame takes the general path (`handle_read`)."""
        settled = calls.settled_relay(self.node, sender.session, frame)
        if settled is None:
            return False
        peer, event, ack = settled
        if ack is not None:
            self._reply(ack)
        self.deliver_conns((peer,), "webrtc", framing.text_frame(encode("webrtc", event)))
        # The relayed frame without its candidate (the last field, omitted when None) ends
        # in "}}": what comes before is the lane's prefix.
        bare = encode("webrtc", msgspec.structs.replace(event, candidate=None))
        sender.lane = Lane(event.call_id, event.from_, event.to,  # type: ignore[arg-type]
                           peer, bare[:-2] + b',"candidate":')
        return True

    def lane_relay(self, sender: Conn, lane: Lane, data: bytes) -> bool:
        """A text frame from a connection with a lane: relayed, with the settled relay's
        checks, counts and ack (`calls.settled_relay`), when it is a candidate of the
        lane's call and the call is still settled. False, having changed nothing: the frame
        takes the general path (`Client.inbound`)."""
        # Maybe U+0000, which the general parse refuses, and says why. A backslash first:
        # one memchr, where the six-byte search costs 0.4 µs on a 1 KB candidate.
        if b"\\" in data and b"\\u0000" in data:
            return False
        try:
            frame = _lane_decoder.decode(data)
        except _LANE_DECODE_ERRORS:
            return False
        p = frame.payload
        candidate = p.candidate
        if (p.kind != "ice_candidate" or candidate is None or p.call_id != lane.call_id
                or p.to != lane.to):
            return False
        peer = self.conns.get(lane.peer)
        node = self.node
        if (peer is None or peer.closed
                or node.calls.settled_peer(lane.call_id, lane.me, sender.id, p.to) != lane.peer
                or not calls.admit_settled(node, sender.session, frame, lane.me)):
            return False
        ack = calls.settled_ack(sender.session, frame)
        if ack is not None:
            self._reply(ack)
        # `deliver_conns((lane.peer,), ...)` less its second lookup of the peer, which
        # costs 0.3 µs of the lane's 7.7 (bench/relay_path.py).
        node.metrics.frames_out["webrtc"] += 1
        self.queue(peer, framing.text_frame(
            lane.prefix + _candidate_encoder.encode(candidate) + b"}}"))
        return True

    def forwarded(self, conn: ConnId, user: UserId, username: str, frame: bytes) -> None:
        """A call frame from another node: this node is the call's home."""
        result = calls.forwarded(self.node, conn, user, username, frame)
        self.run(result if isinstance(result, list) else [Later(result)])

    def _later(self, e: Later) -> None:
        self._spawn(e.work, "directory work", self.run)

    def _log_call(self, e: LogCall) -> None:
        self._spawn(self.node.store.record_call(e.record), "call log write")

    def _spawn(self, work: Coroutine[Any, Any, Any], what: str,
               then: Callable[[Any], None] | None = None) -> None:
        """Run `work` in the background (held until done); `then` gets its result."""
        task = self.loop.create_task(work)
        self._background.add(task)

        def done(task: "asyncio.Task[Any]") -> None:
            self._background.discard(task)
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                suffix = logs.failures.admit(what)
                if suffix is not None:
                    log.error("%s failed: %r%s", what, exc, suffix)
            elif then is not None:
                then(task.result())

        task.add_done_callback(done)

    # ---- the outbound path -----------------------------------------------------------
    def queue(self, conn: Conn, data: bytes) -> None:
        if conn.closed:
            return
        if conn.tail_run is not None:
            self._close_tail(conn)
        if not conn.out:
            self._dirty.append(conn)
            if not self._flush_scheduled:
                self._schedule_flush()
        conn.out.append(data)
        conn.queued += 1

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        if self._flush_at and self._flush_at > self.loop.time():
            self.loop.call_at(self._flush_at, self.flush)
        else:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every dirty connection's buffer with one write each, FLUSH_CHUNK
        connections per callback: in the next loop turns, or under fan-out load spread over
        FLUSH_PERIOD_S."""
        self._pass, self._dirty = self._dirty, []
        # Broadcasts from now on start new runs; the old ones live on in the stretches
        # queued before, and go when the last of those is written.
        self._last_runs, self._runs = self._runs, {}
        self._pass_pos = 0
        self._pass_frames = 0
        self._pass_cost = 0.0
        self._pass_start = self.loop.time()
        self._flush_chunk()

    def _flush_chunk(self) -> None:
        todo, pos = self._pass, self._pass_pos
        end = min(pos + FLUSH_CHUNK, len(todo))
        start = time.perf_counter()  # not loop.time(): uvloop's is cached per loop turn
        frames = 0
        for i in range(pos, end):
            frames += self.write_out(todo[i])
        self._pass_cost += time.perf_counter() - start
        self._pass_frames += frames
        if end < len(todo):
            # Reads and store completions get a turn before the next chunk. Paced, the
            # chunk from the i-th of n connections on leaves i/n of a period after the
            # flush began: each is written once a period, and the readers get an even
            # stream, not a thousand sockets' worth at once.
            self._pass_pos = end
            if self._flush_at:  # under load (it changes only when the flush ends)
                self.loop.call_at(self._pass_start + FLUSH_PERIOD_S * end / len(todo),
                                  self._flush_chunk)
            else:
                self.loop.call_soon(self._flush_chunk)
            return
        self._pass = []
        if self._pass_cost > FLUSH_SLOW_S and self._pass_frames >= FLUSH_COALESCING * len(todo):
            self._flush_at = self._pass_start + FLUSH_PERIOD_S
        else:
            self._flush_at = 0.0
        self._flush_scheduled = False
        if self._dirty:
            self._schedule_flush()

    def _write_answers(self) -> None:
        answers, self._answers = self._answers, []
        for conn in answers:
            self.write_out(conn)

    def write_out(self, conn: Conn) -> int:
        """Write what is queued for `conn` in one write; returns how many frames."""
        out = conn.out
        if conn.closed or not out:
            return 0
        if conn.tail_run is not None:
            self._close_tail(conn)
        # Only bytes are left in `out` now.
        data: bytes = out[0] if len(out) == 1 else b"".join(out)  # type: ignore[assignment,arg-type]
        frames, conn.queued = conn.queued, 0
        out.clear()
        transport = conn.transport
        if transport.is_closing():
            return frames
        transport.write(data)
        self.node.metrics.flush_bytes.observe(len(data))
        if transport.get_write_buffer_size() > self.max_queue:
            self._drop_slow_reader(conn)
        return frames

    @staticmethod
    def _drop_queued(conn: Conn) -> None:
        conn.out.clear()
        conn.tail_run = None
        conn.queued = 0

    def _drop_slow_reader(self, conn: Conn) -> None:
        """PROTOCOL §Close codes 1013: the reader fell too far behind. Its socket is not
        draining, so a close handshake cannot be waited for: send 1013, then abort."""
        self.node.metrics.slow_readers_dropped += 1
        log.warning("slow reader conn=%s dropped: more than %d bytes unsent", conn.id,
                    self.max_queue)
        conn.closed = True
        conn.close_code = CloseCode.OVERLOADED
        self._drop_queued(conn)
        conn.session.closing = True
        transport = conn.transport
        transport.write(framing.close_frame(CloseCode.OVERLOADED, "too slow a reader"))
        self.loop.call_later(CLOSE_GRACE_S, transport.abort)

    def close(self, conn_id: ConnId, code: int, reason: str) -> None:
        """Close one connection with a close code, after what is already queued for it."""
        conn = self.conns.get(conn_id)
        if conn is None or not self.begin_close(conn):
            return
        conn.close_code = code
        task = self.loop.create_task(conn.closer(code, reason))
        self._close_tasks.add(task)
        task.add_done_callback(self._close_tasks.discard)
        # A peer that never answers the close frame is cut off.
        self.loop.call_later(CLOSE_GRACE_S + 1.0, conn.transport.abort)

    def begin_close(self, conn: Conn) -> bool:
        """Write what is queued for `conn`, then nothing more goes out but its close frame.
        False if it is closed already, or was dropped as a slow reader by that write."""
        if conn.closed:
            return False
        conn.session.closing = True
        self.write_out(conn)
        if conn.closed:
            return False
        conn.closed = True
        return True

    async def close_all(self, code: int, reason: str) -> None:
        for conn_id in list(self.conns):
            self.close(conn_id, code, reason)
        if self._close_tasks:
            await asyncio.wait(list(self._close_tasks), timeout=CLOSE_GRACE_S + 0.5)

    async def settle(self, timeout: float) -> None:
        """Let background work finish (the directory and call bookkeeping of the
        connections just closed), for up to `timeout` s, before the backends close."""
        for _ in range(3):  # work done may start more work (its effects)
            if not self._background:
                return
            await asyncio.wait(list(self._background), timeout=timeout)

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
