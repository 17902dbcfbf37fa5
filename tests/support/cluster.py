"""Several Nodes in one process, with no sockets and no broker: what `server/hub.py` and
`server/fanout.py` do with a node's effects, mirrored over the effects themselves, for
model tests of a cluster (tests/unit/properties/test_cluster_model.py).

What is mirrored, and from where:
- local delivery (`Hub.run`, `_reply`, `deliver_room`/`_rooms`/`_user`/`_conns`/`_all`):
  a connection with a socket is one in `node.sessions`;
- the topics a node is subscribed to (`Fanout.room_opened`/`room_closed`/`user_opened`/
  `user_closed`, and `node:N` and `all` while it lives), read when a message is
  published: a node receives a `room:ID`, `user:ID`, `node:N` or `all` message only while
  subscribed, and never its own;
- the per-room `Sequencer` and the floors of `Fanout.room_position`, through which every
  persisted event is delivered, on its own node and on the others;
- `Fanout._received`: the cross-node typing throttle (`TypingTracker.remote_true`), the
  de-duplication of a `ToRooms` arriving on several room topics, a `Forward`ed call frame
  handled by `calls.forwarded` on its home, and its answer routed back with `answers`,
  awaited for `FORWARD_ANSWER_MS` and then answered `internal` by the sender's node
  (`Fanout.unanswered`, `calls.call_frames_unanswered`, run by `server/timers.py`).

Messages and `Later` work go through one FIFO, as `MemoryBroker.publish` and the hub's
tasks both go through the event loop's `call_soon`: `settle()` runs it until nothing is
left. The directory work of a `Later` never waits (MemoryDirectory); store work is driven
to its end by `drive`. A node that dies receives nothing more and publishes nothing.

Not mirrored: the hub's output buffers, runs and flush pacing (they change when bytes
are written, not which or in what order), slow readers and typing shed (no reader is
behind here), the call lane (`Hub.lane_relay`, the settled relay's shortcut for the next
candidates, making the same checks), gap filling from the store and the mending of member
lists after an outage (events are never lost or reordered here, so no hole opens and no
list goes wrong), and `CatchUp` (a join is driven to its end before
anything else happens, so nothing is held back for it).
"""

import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hubbub.core.effects import (
    CatchUp,
    Close,
    Effect,
    Effects,
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
from hubbub.core.sequencer import Sequencer
from hubbub.features.calls import call_frames_unanswered, forwarded
from hubbub.features.node import Node
from hubbub.features.system import close_session, housekeeping, tick
from hubbub.ids import ConnId, RoomId, UserId, node_of
from hubbub.protocol.frames import Member as MemberFrame
from hubbub.protocol.frames import encode
from hubbub.server import framing
from hubbub.server.fanout import FORWARD_ANSWER_MS
from tests.support.clock import FakeClock

# A persisted room event held for ordering, as the fan-out holds it.
Held = tuple[dict[str, Any], UserId | None, str, int]


@dataclass
class Msg:
    """One published message (server/fanout.py `Message`), its frame already decoded."""

    kind: str  # room | rooms | user | call | conns | all
    origin: int  # the publishing member's index
    type: str
    frame: dict[str, Any]
    data: bytes = b""  # a forwarded call frame, as sent by its client
    room: RoomId | None = None
    rooms: tuple[RoomId, ...] = ()
    user: UserId | None = None
    conns: tuple[ConnId, ...] = ()
    exclude: UserId | None = None
    seq: int | None = None
    id: int | None = None
    exclude_conn: ConnId | None = None
    sender: tuple[ConnId, UserId, str] | None = None
    answers: str | None = None
    typing_true: bool = False


@dataclass
class Member:
    """One node of the cluster and its side of the fan-out."""

    index: int
    node: Node
    clock: FakeClock
    alive: bool = True
    topics: set[str] = field(default_factory=set)
    sequencer: Sequencer[Held] = field(default_factory=Sequencer)
    floors: dict[RoomId, dict[ConnId, int]] = field(default_factory=dict)
    awaiting: dict[tuple[ConnId, str], int] = field(default_factory=dict)
    gave_up: set[tuple[ConnId, str]] = field(default_factory=set)
    seen: set[tuple[int, int]] = field(default_factory=set)
    next_id: int = 0


class ClusterFanout:
    """`features.node.Fanout` for a member: what `server/fanout.Fanout` records."""

    def __init__(self, member: Member) -> None:
        self.m = member

    async def room_opened(self, room: RoomId, members: list[MemberFrame]) -> None:
        self.m.topics.add(f"room:{room}")

    def room_position(self, room: RoomId, last_seq: int, conn: ConnId) -> None:
        m = self.m
        m.sequencer.start(room, last_seq)
        delivered = m.sequencer.last(room)
        if delivered is not None and delivered < last_seq:
            m.floors.setdefault(room, {})[conn] = last_seq

    def delivered(self, room: RoomId) -> int | None:
        return self.m.sequencer.last(room)

    def room_closed(self, room: RoomId) -> None:
        self.m.topics.discard(f"room:{room}")
        self.m.sequencer.stop(room)
        self.m.floors.pop(room, None)

    async def user_opened(self, user: UserId) -> None:
        self.m.topics.add(f"user:{user}")

    def user_closed(self, user: UserId) -> None:
        self.m.topics.discard(f"user:{user}")


# deliver(member, conn, frame, origin member): a frame reaches a local connection.
Deliver = Callable[[Member, ConnId, dict[str, Any], Member], None]


class Cluster:
    def __init__(self, members: list[Member], deliver: Deliver,
                 drive: Callable[[Awaitable[Effects]], Effects],
                 closed: Callable[[Member, ConnId], None]) -> None:
        self.members = members
        self.by_number = {m.node.number: m for m in members}
        self.deliver = deliver
        self.drive = drive
        self.closed = closed  # a connection is gone (a Close effect): forget its view
        self.queue: deque[Callable[[], None]] = deque()
        for m in members:
            m.node.fanout = ClusterFanout(m)

    # ---- Hub.run ----------------------------------------------------------------------
    def run(self, m: Member, effects: Effects) -> None:
        assert m.alive, "a dead node ran effects"
        for e in effects:
            if isinstance(e, Reply):
                self._reply(m, e)
            elif isinstance(e, Close):
                self.close(m, e.conn)
            elif isinstance(e, LogCall):
                continue
            elif isinstance(e, Later):
                self.queue.append(lambda m=m, e=e: self.run(m, self.drive(e.work)))
            elif isinstance(e, Forward):
                if e.frame_id is not None:
                    m.awaiting[(e.conn, e.frame_id)] = m.clock.mono_ms() + FORWARD_ANSWER_MS
                self._publish(m, f"node:{e.home}", Msg(
                    "call", m.index, "call", {}, data=e.frame,
                    sender=(e.conn, e.user, e.username)))
            elif isinstance(e, CatchUp):
                raise AssertionError(f"nothing is held back for a join here: {e!r}")
            else:
                self._broadcast(m, e)

    def close(self, m: Member, conn: ConnId) -> None:
        """The connection is gone (`Hub.remove`): the rules for a closed connection."""
        if conn not in m.node.sessions:
            return
        self.closed(m, conn)
        self.run(m, close_session(m.node, conn))

    def _frame(self, e: Effect, fid: str | None = None) -> tuple[dict[str, Any], bool]:
        data = encode(e.type, e.payload, fid)  # type: ignore[union-attr]
        return json.loads(data), data.endswith(framing.TYPING_TRUE)

    def _reply(self, m: Member, e: Reply) -> None:
        if e.type == "ack" and e.id is None:
            return
        frame, _ = self._frame(e, e.id)
        if e.conn in m.node.sessions:
            self.deliver(m, e.conn, frame, m)
        elif node_of(e.conn) != m.node.number:
            self._publish(m, f"node:{node_of(e.conn)}", Msg(
                "conns", m.index, e.type, frame, conns=(e.conn,), answers=e.id))

    def _broadcast(self, m: Member, e: Effect) -> None:
        frame, typing_true = self._frame(e)
        if isinstance(e, ToConns):
            mine = m.node.number
            self.deliver_conns(m, [c for c in e.conns if node_of(c) == mine], frame, m)
            by_node: dict[int, list[ConnId]] = {}
            for c in e.conns:
                if node_of(c) != mine:
                    by_node.setdefault(node_of(c), []).append(c)
            for number, ids in by_node.items():
                self._publish(m, f"node:{number}", Msg("conns", m.index, e.type, frame,
                                                       conns=tuple(ids)))
        elif isinstance(e, ToRoom):
            self.deliver_room(m, e.room, frame, e.exclude_user, e.seq, m)
            self._publish(m, f"room:{e.room}", Msg("room", m.index, e.type, frame, room=e.room,
                                                   exclude=e.exclude_user, seq=e.seq,
                                                   typing_true=typing_true))
        elif isinstance(e, ToRooms):
            self.deliver_rooms(m, e.rooms, frame, m)
            m.next_id += 1
            msg = Msg("rooms", m.index, e.type, frame, rooms=e.rooms, id=m.next_id)
            for room in e.rooms:
                self._publish(m, f"room:{room}", msg)
        elif isinstance(e, ToUser):
            self.deliver_user(m, e.user, frame, e.exclude_conn, m)
            self._publish(m, f"user:{e.user}", Msg("user", m.index, e.type, frame, user=e.user,
                                                   exclude_conn=e.exclude_conn))
        elif isinstance(e, ToAll):
            self.deliver_all(m, frame, m)
            self._publish(m, "all", Msg("all", m.index, e.type, frame))
        else:
            raise AssertionError(f"unexpected effect {e!r}")

    # ---- the broker -----------------------------------------------------------------------
    def subscribed(self, m: Member, topic: str) -> bool:
        if not m.alive:
            return False
        return topic in m.topics or topic in ("all", f"node:{m.node.number}")

    def _publish(self, m: Member, topic: str, msg: Msg) -> None:
        for other in self.members:
            if other is not m and self.subscribed(other, topic):
                self.queue.append(lambda other=other, msg=msg: self._received(other, msg))

    def settle(self) -> None:
        while self.queue:
            self.queue.popleft()()

    # ---- Fanout._received ---------------------------------------------------------------
    def _received(self, m: Member, msg: Msg) -> None:
        if not m.alive:
            return
        origin = self.members[msg.origin]
        node = m.node
        if msg.kind == "room" and msg.room is not None:
            if (msg.type == "typing" and msg.exclude is not None and msg.typing_true
                    and not node.typing.remote_true(msg.room, msg.exclude,
                                                    m.clock.mono_ms())):
                return
            self.deliver_room(m, msg.room, msg.frame, msg.exclude, msg.seq, origin)
        elif msg.kind == "rooms" and msg.id is not None:
            key = (msg.origin, msg.id)
            if key in m.seen:
                return
            m.seen.add(key)
            self.deliver_rooms(m, msg.rooms, msg.frame, origin)
        elif msg.kind == "user" and msg.user is not None:
            self.deliver_user(m, msg.user, msg.frame, msg.exclude_conn, origin)
        elif msg.kind == "call" and msg.sender is not None:
            conn, user, username = msg.sender
            result = forwarded(node, conn, user, username, msg.data)
            self.run(m, result if isinstance(result, list) else [Later(result)])
        elif msg.kind == "conns":
            if msg.answers is not None:
                answer = (msg.conns[0], msg.answers)
                if m.awaiting.pop(answer, None) is None and answer in m.gave_up:
                    return
            self.deliver_conns(m, msg.conns, msg.frame, origin)
        elif msg.kind == "all":
            self.deliver_all(m, msg.frame, origin)

    # ---- local delivery -------------------------------------------------------------------
    def deliver_room(self, m: Member, room: RoomId, frame: dict[str, Any],
                     exclude: UserId | None, seq: int | None, origin: Member) -> None:
        if seq is None:
            self._room_now(m, room, frame, exclude, origin)
            return
        for held in m.sequencer.offer(room, seq, (frame, exclude, frame["type"], seq),
                                      m.clock.mono_ms()):
            self._ordered(m, room, held, origin)

    def _ordered(self, m: Member, room: RoomId, held: Held, origin: Member) -> None:
        frame, exclude, _, seq = held
        floors = m.floors.get(room)
        if floors:
            skip = {c for c, floor in floors.items() if floor >= seq}
            for c in [c for c, floor in floors.items() if floor <= seq]:
                del floors[c]
            if not floors:
                del m.floors[room]
            if skip:
                self.deliver_conns(m, [c for c in m.node.rooms.conns(room) if c not in skip],
                                   frame, origin, exclude)
                return
        self._room_now(m, room, frame, exclude, origin)

    def _room_now(self, m: Member, room: RoomId, frame: dict[str, Any],
                  exclude: UserId | None, origin: Member) -> None:
        self.deliver_conns(m, sorted(m.node.rooms.conns(room)), frame, origin, exclude)

    def deliver_rooms(self, m: Member, rooms: tuple[RoomId, ...], frame: dict[str, Any],
                      origin: Member) -> None:
        ids: set[ConnId] = set()
        for room in rooms:
            ids |= m.node.rooms.conns(room)
        self.deliver_conns(m, sorted(ids), frame, origin)

    def deliver_user(self, m: Member, user: UserId, frame: dict[str, Any],
                     exclude: ConnId | None, origin: Member) -> None:
        conns = m.node.user_conns.get(user, ())
        self.deliver_conns(m, sorted(c for c in conns if c != exclude), frame, origin)

    def deliver_all(self, m: Member, frame: dict[str, Any], origin: Member) -> None:
        self.deliver_conns(m, sorted(c for c, s in m.node.sessions.items() if s.identity),
                           frame, origin)

    def deliver_conns(self, m: Member, conns: Any, frame: dict[str, Any], origin: Member,
                      exclude: UserId | None = None) -> None:
        for c in conns:
            s = m.node.sessions.get(c)
            if s is None:
                continue
            if exclude is not None and s.identity is not None and s.identity.user_id == exclude:
                continue
            self.deliver(m, c, frame, origin)

    # ---- server/timers.py -----------------------------------------------------------------
    def tick(self, m: Member) -> None:
        node, clock = m.node, m.clock
        mono = clock.mono_ms()
        self.run(m, tick(node, clock.now_ms(), mono))
        due = [key for key, deadline in m.awaiting.items() if deadline <= mono]
        for key in due:
            del m.awaiting[key]
            m.gave_up.add(key)
        self.run(m, call_frames_unanswered(node, due))

    def housekeeping(self, m: Member) -> None:
        self.run(m, [Later(housekeeping(m.node, m.clock.now_ms(), m.clock.mono_ms()))])
