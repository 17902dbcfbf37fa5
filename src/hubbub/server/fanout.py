"""Fan-out across nodes: what the hub publishes through the Broker and how a node
delivers what other nodes published. With the in-process broker of a single node all
of this is a no-op and the hub delivers locally only.

Topics: `room:ID` (room events; subscribed while this node has a connection in the
room), `user:ID` (a user's events; while the user has a connection here), `node:N` (to
given connections of node N: call owners), `all` (announcements).
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub import logs
from hubbub.broker.base import Broker
from hubbub.core.effects import Forward
from hubbub.core.sequencer import Sequencer
from hubbub.core.views import Listed, RoomViews, Shown
from hubbub.directory.base import PresenceInfo
from hubbub.features.rooms import member_list
from hubbub.ids import ConnId, RoomId, UserId, node_of
from hubbub.protocol.frames import (
    JoinRoomEvent,
    LeaveRoomEvent,
    Member,
    PresenceEvent,
    encode,
    encode_stored,
)
from hubbub.server import framing

if TYPE_CHECKING:
    from hubbub.server.hub import Hub

log = logging.getLogger("hubbub.fanout")


class Message(msgspec.Struct, array_like=True, omit_defaults=True):
    """One event for the other nodes: who gets it, and its WebSocket frame bytes."""

    kind: str  # "room" | "rooms" | "user" | "conns" | "all" | "positions"
    origin: int
    type: str
    frame: bytes
    room: str | None = None
    rooms: list[str] | None = None
    user: str | None = None
    conns: list[int] | None = None
    exclude: str | None = None
    seq: int | None = None
    id: int | None = None  # dedupes a "rooms" message arriving on several room topics
    exclude_conn: int | None = None
    # A forwarded call frame: who sent it (conn, user, username).
    sender: tuple[int, str, str] | None = None
    answers: str | None = None  # "conns": the id of the forwarded frame this answers
    # "positions": how far the sender delivered each room it orders (after its outage)
    positions: dict[str, int] | None = None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Message).decode

# How long a forwarded call frame's answer may take before this node answers `internal`.
FORWARD_ANSWER_MS = 5000
# Rooms per store read of a position check, and per `positions` message.
POSITIONS_PER_READ = 500
# How long after the broker lost events (its own outage, or another node's publishes) this
# node compares its member lists with the directory's: two housekeeping rounds, by which
# every node has told the directory what it missed meanwhile (departures owed, and a
# write-back if Redis came back empty), so that its lists are whole again.
MEND_VIEWS_AFTER_S = 5.0

# A persisted room event held for ordering: (frame, excluded user, type, seq).
Held = tuple[bytes, UserId | None, str, int]

class Fanout:
    """This node's side of the shared broker; made only when the broker is clustered (one
    node alone uses features.node.LocalOnly)."""

    def __init__(self, hub: "Hub", broker: Broker, node_number: int) -> None:
        self.hub = hub
        self.broker = broker
        self.node_number = node_number
        self.sequencer: Sequencer[Held] = Sequencer()
        # Connections that joined a room at a lastSeq above what this node had delivered
        # there: room -> conn -> that lastSeq. Events up to it are still on their way to
        # the members already in the room, and skip these (Hub.deliver_ordered).
        self.floors: dict[RoomId, dict[ConnId, int]] = {}
        self._seen_rooms_msgs: deque[tuple[int, int]] = deque(maxlen=4096)
        self._seen_set: set[tuple[int, int]] = set()
        self._next_id = 0
        self._fill_tasks: set[asyncio.Task[None]] = set()
        # Forwarded frames with an `id`, until their answer comes back: (conn, id) ->
        # deadline (ms). Pub/sub may lose the frame or its answer, and PROTOCOL wants
        # exactly one answer; past the deadline this node gives it (`internal`).
        self._awaiting: dict[tuple[int, str], int] = {}
        # Those answered so: their real answer, if it comes after all, is dropped.
        self._gave_up: deque[tuple[int, str]] = deque(maxlen=1024)
        self._position_check = _OneAtATime(self._check_positions, self._spawn)
        self._dropped_seen = 0  # the broker's count of lost publishes, at the last resume
        self.views = RoomViews()
        # Other nodes' typists shown typing here: (room, user) -> (their node, the frame).
        self._typists: dict[tuple[RoomId, UserId], tuple[int, bytes]] = {}
        self._mend_timer: asyncio.TimerHandle | None = None
        self._mend = _OneAtATime(self._mend_views, self._spawn)

    async def start(self) -> None:
        await self.broker.start(self._received, self._resumed)
        await self.broker.subscribe("all")
        await self.broker.subscribe(f"node:{self.node_number}")

    async def close(self) -> None:
        if self._mend_timer is not None:
            self._mend_timer.cancel()
        for task in list(self._fill_tasks):
            task.cancel()
        await self.broker.close()

    # ---- subscriptions, driven by the features (Node.fanout) -----------------------------
    async def room_opened(self, room: RoomId, members: list[Member]) -> None:
        """The first local connection is joining `room`, and read its `members`: receive
        its events from now on."""
        self.views.listed(room, _listed(members))
        await self.broker.subscribe(f"room:{room}")

    def room_position(self, room: RoomId, last_seq: int, conn: ConnId) -> None:
        """Local connection `conn` joined at `last_seq`: order the room's events after it."""
        # Only the room's first local connection sets it (Sequencer.start keeps a tracked
        # room's position). Moving a tracked room forward would drop the events up to
        # `last_seq` that the connections already in it have not received yet (in flight
        # from another node, or held for a gap). The newcomer has those (in its ack's
        # lastSeq or `missed`): they skip it.
        self.sequencer.start(room, last_seq)
        delivered = self.sequencer.last(room)
        if delivered is not None and delivered < last_seq:
            self.floors.setdefault(room, {})[conn] = last_seq

    def room_closed(self, room: RoomId) -> None:
        self.broker.unsubscribe(f"room:{room}")
        self.sequencer.stop(room)
        self.floors.pop(room, None)
        if room not in self.hub.node.prejoin:  # else a join under way keeps the view
            self.views.closed(room)
        for typist in [t for t in self._typists if t[0] == room]:
            del self._typists[typist]

    async def user_opened(self, user: UserId) -> None:
        await self.broker.subscribe(f"user:{user}")

    def delivered(self, room: RoomId) -> int | None:
        return self.sequencer.last(room)

    def user_closed(self, user: UserId) -> None:
        self.broker.unsubscribe(f"user:{user}")

    # ---- publishing (the hub calls these after delivering locally) --------------------------
    def room(self, room: RoomId, type_: str, frame: bytes, exclude: UserId | None,
             seq: int | None) -> None:
        self.broker.publish(f"room:{room}", _encode(Message(
            kind="room", origin=self.node_number, type=type_, frame=frame, room=room,
            exclude=exclude, seq=seq)))

    def rooms(self, rooms: tuple[RoomId, ...], type_: str, frame: bytes) -> None:
        self._next_id += 1
        data = _encode(Message(kind="rooms", origin=self.node_number, type=type_, frame=frame,
                               rooms=list(rooms), id=self._next_id))
        for room in rooms:
            self.broker.publish(f"room:{room}", data)

    def user(self, user: UserId, type_: str, frame: bytes, exclude: ConnId | None) -> None:
        self.broker.publish(f"user:{user}", _encode(Message(
            kind="user", origin=self.node_number, type=type_, frame=frame, user=user,
            exclude_conn=exclude)))

    def forward(self, e: Forward) -> None:
        """A call frame for the node whose rules own the call."""
        if e.frame_id is not None:
            self._awaiting[(e.conn, e.frame_id)] = (self.hub.node.clock.mono_ms()
                                                    + FORWARD_ANSWER_MS)
        self.broker.publish(f"node:{e.home}", _encode(Message(
            kind="call", origin=self.node_number, type="call", frame=e.frame,
            sender=(e.conn, e.user, e.username))))

    def conns(self, conns: list[ConnId], type_: str, frame: bytes,
              answers: str | None = None) -> None:
        """`answers`: the frame is the answer to the forwarded frame with that id."""
        by_node: dict[int, list[int]] = {}
        for conn in conns:
            by_node.setdefault(node_of(conn), []).append(conn)
        for number, ids in by_node.items():
            self.broker.publish(f"node:{number}", _encode(Message(
                kind="conns", origin=self.node_number, type=type_, frame=frame, conns=ids,
                answers=answers)))

    def unanswered(self, mono_ms: int) -> list[tuple[ConnId, str]]:
        """Forwarded frames whose answer is overdue: the caller answers them itself."""
        due = [key for key, deadline in self._awaiting.items() if deadline <= mono_ms]
        for key in due:
            del self._awaiting[key]
            self._gave_up.append(key)
        return [(ConnId(conn), frame_id) for conn, frame_id in due]

    def everyone(self, type_: str, frame: bytes) -> None:
        self.broker.publish("all", _encode(Message(kind="all", origin=self.node_number,
                                                   type=type_, frame=frame)))

    # ---- receiving ------------------------------------------------------------------------
    def _received(self, topic: str, data: bytes) -> None:
        try:
            msg = _decode(data)
        except msgspec.DecodeError:
            log.warning("undecodable message on %s dropped", topic)
            return
        hub = self.hub
        kind = msg.kind
        if kind == "room" and msg.room is not None:
            if msg.type == "typing" and msg.exclude is not None:
                typist = (RoomId(msg.room), UserId(msg.exclude))
                if not msg.frame.endswith(framing.TYPING_TRUE):
                    self._typists.pop(typist, None)
                elif hub.node.typing.remote_true(typist[0], typist[1], hub.node.clock.mono_ms()):
                    self._typists[typist] = (msg.origin, msg.frame)
                else:
                    return  # the user's other device, on another node, typed within a second
            hub.deliver_room(RoomId(msg.room), msg.type, msg.frame,
                             UserId(msg.exclude) if msg.exclude else None, msg.seq)
        elif kind == "rooms" and msg.rooms is not None and msg.id is not None:
            key = (msg.origin, msg.id)
            if key in self._seen_set:
                return  # the same message through another room topic
            self._remember(key)
            hub.deliver_rooms(tuple(RoomId(r) for r in msg.rooms), msg.type, msg.frame)
        elif kind == "user" and msg.user is not None:
            hub.deliver_user(UserId(msg.user), msg.type, msg.frame,
                             ConnId(msg.exclude_conn) if msg.exclude_conn else None)
        elif kind == "call" and msg.sender is not None:
            conn, user, username = msg.sender
            hub.forwarded(ConnId(conn), UserId(user), username, msg.frame)
        elif kind == "conns" and msg.conns is not None:
            if msg.answers is not None:
                answer = (msg.conns[0], msg.answers)
                if self._awaiting.pop(answer, None) is None and answer in self._gave_up:
                    return  # answered already, with `internal`, when it was overdue
            hub.deliver_conns([ConnId(c) for c in msg.conns], msg.type, msg.frame)
        elif kind == "all":
            hub.deliver_all(msg.type, msg.frame)
        elif kind == "positions" and msg.positions is not None:
            # The sender lost publishes: its joins, leaves, status changes and typing too.
            self._hint(msg.positions)
            self._typing_ended(msg.origin)
            self.mend_views_later()

    def _remember(self, key: tuple[int, int]) -> None:
        if len(self._seen_rooms_msgs) == self._seen_rooms_msgs.maxlen:
            self._seen_set.discard(self._seen_rooms_msgs[0])
        self._seen_rooms_msgs.append(key)
        self._seen_set.add(key)

    # ---- gaps -----------------------------------------------------------------------------
    def fill_gaps(self, mono_ms: int) -> None:
        """Called by the timers: rooms whose seq gap waited too long are read from the store."""
        for room, after in self.sequencer.overdue(mono_ms):
            self._spawn(self._fill(room, after))

    def _resumed(self) -> None:
        """The broker is back after an outage: what it lost either way is looked for. This
        node checks its rooms against the store and, a little later, its member lists
        against the directory; and tells the others if its own publishes were lost
        (`check_positions`)."""
        self.hub.node.metrics.broker_resumes += 1
        self.check_positions()
        self._typing_ended(None)
        self.mend_views_later()

    def check_positions(self) -> None:
        """Compare every room this node orders with the store's position for it. A room
        event lost by the broker shows as a hole only when a later one arrives; when the
        lost ones were the room's last, this finds them (Sequencer.hint), and they are
        filled like any hole. Run by the timers and when the broker is back from an
        outage; one at a time, and one more if asked meanwhile.

        And if some of this node's own publishes were lost since the last check, it tells
        the others how far it delivered each room it orders (a `positions` message), so
        that a node whose link never broke finds the hole at once rather than at its own
        next check, and mends its member lists too. A publishing link that broke alone,
        with no outage of the listening one to resume from, is told of so as well."""
        self._tell_lost_publishes()
        self._position_check()

    def _tell_lost_publishes(self) -> None:
        dropped = self.broker.dropped
        if dropped == self._dropped_seen:
            return
        # If this message is lost too, `dropped` grows again and the next check says it.
        self._dropped_seen = dropped
        rooms = self.sequencer.rooms()
        # One message at least, if empty: the joins, leaves and status changes it lost
        # need telling as well (mend_views_later), whatever rooms it still orders.
        for i in range(0, max(len(rooms), 1), POSITIONS_PER_READ):
            positions: dict[str, int] = {room: self.sequencer.last(room) or 0
                                         for room in rooms[i:i + POSITIONS_PER_READ]}
            self.broker.publish("all", _encode(Message(
                kind="positions", origin=self.node_number, type="positions", frame=b"",
                positions=positions)))

    async def _check_positions(self) -> bool:
        node = self.hub.node
        rooms = self.sequencer.rooms()
        for i in range(0, len(rooms), POSITIONS_PER_READ):
            try:
                positions = await node.store.last_seqs(list(rooms[i:i + POSITIONS_PER_READ]))
            except Exception as exc:
                suffix = logs.failures.admit("position check")
                if suffix is not None:
                    log.warning("reading room positions from the store failed (%r); "
                                "the next check tries again%s", exc, suffix)
                return False
            self._hint(positions)
        return True

    def _hint(self, positions: dict[str, int]) -> None:
        """Rooms known to be at these seqs somewhere (the store, another node): a room
        this node delivered less of has a hole up to there."""
        node = self.hub.node
        mono = node.clock.mono_ms()
        for room, seq in positions.items():
            if self.sequencer.hint(RoomId(room), seq, mono):
                node.metrics.position_holes += 1

    async def _fill(self, room: RoomId, after: int) -> None:
        node = self.hub.node
        try:
            # A page at a time: a hole longer than a page (a long outage in a busy room)
            # is read on, a page per gap wait, rather than skipped.
            recovery = await node.store.events_since(room, after, node.settings.recovery_limit,
                                                     page=True)
        except Exception as exc:
            # Every room with a hole fails alike while the store is away: one line per 10 s.
            suffix = logs.failures.admit("gap fill")
            if suffix is not None:
                log.warning("filling a seq gap in room %s failed (%r); will retry%s",
                            room, exc, suffix)
            self.sequencer.fill_failed(room, node.clock.mono_ms())
            return
        node.metrics.gap_fills += 1
        node.metrics.events_filled += len(recovery.events)
        events: list[tuple[int, Held]] = []
        for ev in recovery.events:
            seq = msgspec.json.decode(ev.payload, type=_Seq).seq
            frame = framing.text_frame(encode_stored(ev))
            events.append((seq, (frame, None, ev.type, seq)))
        log.info("filled a seq gap in room %s after %d from the store (%d events)",
                 room, after, len(events))
        for held in self.sequencer.filled(room, events, recovery.last_seq,
                                          node.clock.mono_ms()):
            self.hub.deliver_ordered(room, held)

    # ---- member lists ---------------------------------------------------------------------
    def views_heard(self, rooms: tuple[RoomId, ...], type_: str, frame: bytes) -> None:
        """A `join_room`, `leave_room` or `presence` event delivered to `rooms` here."""
        p = member_event(frame)
        user = UserId(p.user_id)
        if type_ == "join_room":
            self.views.joined(rooms[0], user, p.username, p.status)
        elif type_ == "leave_room":
            self.views.left(rooms[0], user)
        else:
            self.views.status(rooms, user, p.username, p.status)

    def _typing_ended(self, origin: int | None) -> None:
        """The `isTyping: false` of another node's typist (of node `origin`, or any) may
        have been lost: they are shown as stopped now. One still typing is shown again
        by their next refresh (every 2 s from the shipped clients)."""
        for typist, (node, frame) in list(self._typists.items()):
            if origin is None or node == origin:
                del self._typists[typist]
                stopped = framing.text_payload(frame)[:-len(framing.TYPING_TRUE)]
                self.hub.deliver_room_now(typist[0], "typing", framing.text_frame(
                    stopped + framing.TYPING_FALSE), typist[1])

    def mend_views_later(self) -> None:
        """Pub/sub may have lost member events: compare the member lists this node showed
        with the directory's once it is whole again (MEND_VIEWS_AFTER_S from the last
        such loss), and tell the connections the difference."""
        if self._mend_timer is not None:
            self._mend_timer.cancel()
        self._mend_timer = asyncio.get_running_loop().call_later(MEND_VIEWS_AFTER_S,
                                                                 self._mend_views_now)

    def _mend_views_now(self) -> None:
        self._mend_timer = None
        self._mend()

    async def _mend_views(self) -> bool:
        node = self.hub.node
        for room in self.views.rooms():
            before = self.views.view(room)
            try:
                members, infos = await member_list(node, room)
                listed = {m.user_id for m in members}
                gone = [u for u in before if u not in listed]
                if gone:
                    infos |= await node.directory.presence(gone)
            except Exception as exc:
                suffix = logs.failures.admit("member list mend")
                if suffix is not None:
                    log.warning("reading room %s's members from the directory failed (%r); "
                                "the mend starts again in %.0f s%s",
                                room, exc, MEND_VIEWS_AFTER_S, suffix)
                self.mend_views_later()
                return False
            self._mend_room(room, before, members, infos)
        return True

    def _mend_room(self, room: RoomId, before: dict[UserId, Shown], members: list[Member],
                   infos: dict[UserId, PresenceInfo]) -> None:
        """Tell `room`'s connections here what makes their list the directory's: the
        events that went missing, as the rules would have sent them (a departure that
        went offline is told as `presence` offline, then the leave). Delivered here only:
        every node mends its own connections."""
        diff = self.views.differences(room, _listed(members), before)
        if not diff:
            return
        hub, metrics = self.hub, self.hub.node.metrics
        for m in diff.changed:
            info = infos.get(m.user)
            hub.deliver_rooms((room,), "presence", framing.text_frame(encode(
                "presence", PresenceEvent(user_id=m.user, username=m.username,
                                          status=m.status,  # type: ignore[arg-type]
                                          last_seen=0 if info is None else info.last_seen_ms))))
        for user, shown in diff.left:
            info = infos.get(user)
            if info is not None and info.status == "offline" and shown.status != "offline":
                hub.deliver_rooms((room,), "presence", framing.text_frame(encode(
                    "presence", PresenceEvent(user_id=user, username=shown.username,
                                              status="offline", last_seen=info.last_seen_ms))))
            hub.deliver_room_now(room, "leave_room", framing.text_frame(encode(
                "leave_room", LeaveRoomEvent(room_id=room, user_id=user,
                                             username=shown.username))), None)
        for m in diff.joined:
            hub.deliver_room_now(room, "join_room", framing.text_frame(encode(
                "join_room", JoinRoomEvent(room_id=room, user_id=m.user, username=m.username,
                                           status=m.status))),  # type: ignore[arg-type]
                                 m.user)
        metrics.member_events_mended += len(diff.joined) + len(diff.left) + len(diff.changed)
        log.info("room %s: member list mended after lost events (%d joined, %d left, "
                 "%d changed)", room, len(diff.joined), len(diff.left), len(diff.changed))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._fill_tasks.add(task)
        task.add_done_callback(self._fill_tasks.discard)


class _OneAtATime:
    """Background work run one at a time: asked for while it runs, it runs once more after,
    unless that run failed (`work` returned False: its own retry is left to it)."""

    def __init__(self, work: Callable[[], Coroutine[Any, Any, bool]],
                 spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self._work = work
        self._spawn = spawn
        self._running = False
        self._again = False

    def __call__(self) -> None:
        if self._running:
            self._again = True
            return
        self._running = True
        self._spawn(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                if not await self._work() or not self._again:
                    return
        finally:
            self._running = False


def _listed(members: list[Member]) -> list[Listed]:
    return [Listed(UserId(m.user_id), m.username, m.status) for m in members]


class _Seq(msgspec.Struct):
    seq: int


class MemberPayload(msgspec.Struct, rename="camel"):
    """Who a `join_room`, `leave_room` or `presence` event is about."""

    user_id: str
    username: str = ""
    status: str = "online"


class _MemberEvent(msgspec.Struct):
    payload: MemberPayload


_member_event = msgspec.json.Decoder(_MemberEvent).decode


def member_event(frame: bytes) -> MemberPayload:
    """The subject of a `join_room`, `leave_room` or `presence` frame built here."""
    return _member_event(framing.text_payload(frame)).payload
