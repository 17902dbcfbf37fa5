"""Model-based test of a cluster: 2 or 3 Nodes in one process sharing one
MemoryDirectoryState (the directory) and one store, joined by `tests/support/cluster.py`,
which carries effects across nodes as server/hub.py and server/fanout.py do.

Each node has its own FakeClock; the wall clocks are skewed by a fixed random amount
(liveness does not depend on them agreeing: ADR 0091), and all advance together. Each node
ticks every 100 ms and keeps house every 2.5 s at its own phase (server/timers.py).

Random sequences of: connections opening on a chosen node (several per user, on different
nodes) and closing, auth, joins and leaves, chats with and without `clientMsgId` (retries
from any device of the sender, on any node), presence changes, typing, call offers /
answers / candidates / rejects / hang-ups between users on any nodes (busy, glare,
self-calls, wrong callIds, frames forwarded to the call's home), time passing across the
typing timeout, the presence grace, the node TTL and the ring timeout, a node dying:
it stops, and its connections vanish without a close, and the directory forgetting
everything (a Redis restarted without persistence), after which each live node tells it
again at its next housekeeping round (ADR 0071), and Redis away for up to 2.5 s and back
with its data: every directory call fails meanwhile (housekeeping rounds do nothing, as
their heartbeat fails first), and what a node could not tell it then (departures, calls
that ended) it tells at its next round (ADR 0011, calls.md). The directory forgets only
once every dead node has been reaped, and no node dies until every live node has told it
again: a node that dies unreaped, or before it told the directory again, is never reaped
(nothing lists it to watch; scale-out.md says so).

Checked after every step, once its effects have settled (each check cites its doc):
- nothing raises, and no frame is answered `internal` except a call frame forwarded to a
  home that died, which its sender's node answers so after 5 s (docs/topics/calls.md);
- each frame with an `id` gets exactly one answer (README, PROTOCOL §Transport);
- a user is in at most one live call cluster-wide, and the directory's call records are
  the live calls of the live homes plus those of dead homes not reaped yet;
- what each connection believes about a room's members and their status (join ack, and
  the join/leave/presence events it received) is what the directory says;
- each connection receives each persisted event of its rooms once, in seq order;
- a call that ends is told to each party (calls.md §The call session, §Across nodes);
- after the directory forgot everything, only what the docs exempt, for as long as they
  say (each exemption cites its doc); once every live node has told it again, and a node
  TTL more for orphaned calls, the checks above hold as before;
- a live node is never reaped (ADR 0091), and after the presence grace and the reaping
  of a dead node (10-15 s after its last heartbeat), a user with no connection left is
  offline and in no room, for everyone (presence.md §On one node and on many);
- after Redis was away, once every live node has kept house, the checks above hold as
  before; until then the directory may still hold what they could not tell it.
"""

import asyncio
import inspect
import itertools
import os
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hubbub.core.calls import CallState
from hubbub.core.effects import Effects, ToConns
from hubbub.directory.base import ENDED_CALL_RETENTION_MS
from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.features.calls import settled_relay
from hubbub.features.dispatch import handle_read, read_frame
from hubbub.features.system import open_session
from hubbub.ids import ConnId, RoomId, UserId
from hubbub.protocol.frames import WebRTC
from hubbub.store.sqlite import SqliteStore
from tests.support.clock import FakeClock
from tests.support.cluster import Cluster, Member
from tests.support.directory import forget_all
from tests.support.node import frame, make_node

USERS = ("ann", "bob", "cy")
ROOMS = ("r1", "r2")
GRACE_MS, TYPING_MS, RING_MS = 5_000, 3_000, 30_000
TTL_MS = 10_000  # the directory's node TTL (directory/base.py)
TICK_MS, HOUSEKEEPING_MS = 100, 2_500  # server/timers.py
# scale-out.md §What each part guarantees: a dead node is reaped 10-15 s after its last
# heartbeat; calls.md §Across nodes: a home then ends a call whose party has no connection
# left at its next housekeeping round.
REAPED_MS = 15_000
ORPHANS_ENDED_MS = REAPED_MS + HOUSEKEEPING_MS
PERSISTED = ("chat",)
END_REASONS = {"hangup", "rejected", "timeout", "busy", "disconnected", "answered_elsewhere"}
ANSWERS = ("ack", "error", "welcome", "pong")
SDP = {"type": "offer", "sdp": "v=0"}
MAX_CONNS = 7
WALL_START, MONO_START = 1_700_000_000_000, 5_000_000

class Redis:
    """Whether Redis is reachable; while `away`, every directory call fails."""

    away = False


class BlinkingDirectory(MemoryDirectory):
    """A MemoryDirectory on a Redis that may be away (and comes back with its data)."""

    def __init__(self, state: MemoryDirectoryState, node_id: str, redis: Redis) -> None:
        super().__init__(state, node_id=node_id)
        self.redis = redis

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if (not name.startswith("_") and inspect.iscoroutinefunction(attr)
                and super().__getattribute__("redis").away):
            async def away(*args: Any, **kwargs: Any) -> Any:
                raise ConnectionError("Redis is away")
            return away
        return attr


users = st.sampled_from(USERS)
rooms = st.sampled_from(ROOMS)
steps = st.sampled_from([1, 300, 1_000, HOUSEKEEPING_MS, TYPING_MS, GRACE_MS, TTL_MS, RING_MS])


@dataclass
class View:
    """What one connection was told, as its client would keep it."""

    user: UserId | None = None
    pos: dict[str, int] = field(default_factory=dict)  # room -> last seq received
    members: dict[str, dict[str, str]] = field(default_factory=dict)  # room -> user -> status
    typing: dict[tuple[str, str], tuple[bool, int]] = field(default_factory=dict)  # -> origin
    last_presence: dict[str, str] = field(default_factory=dict)
    call_ends: Counter[str] = field(default_factory=Counter)
    rang: set[str] = field(default_factory=set)  # calls whose offer rang here


@dataclass
class CallModel:
    caller: str
    callee: str
    home: int  # the index of the member where the offer arrived
    told: set[ConnId] = field(default_factory=set)  # connections told that it ended
    ended: bool = False
    ended_by: int | None = None  # model time by which it had ended, when known


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.state = MemoryDirectoryState()
        self.store = SqliteStore(":memory:")
        self.loop.run_until_complete(self.store.open())
        self.members: list[Member] = []
        self.views: dict[ConnId, View] = {}
        self.where: dict[ConnId, Member] = {}  # every connection ever opened -> its node
        self.conn_user: dict[ConnId, UserId] = {}
        self.inboxes: dict[ConnId, list[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.answers: Counter[tuple[ConnId, str]] = Counter()
        self.asked: list[tuple[ConnId, str]] = []
        self.last_seq: dict[str, int] = dict.fromkeys(ROOMS, 0)
        self.step_seqs: list[tuple[str, int]] = []
        self.cmids: dict[tuple[str, str], tuple[str, int]] = {}
        self.cmid_counter = itertools.count(1)
        self.calls: dict[str, CallModel] = {}
        self.t = 0  # shared time since the start (ms); every clock moves with it
        self.next_hk: dict[int, int] = {}  # member index -> its next housekeeping (t)
        self.last_hb: dict[int, int] = {}  # member index -> t of its last heartbeat
        self.died: dict[int, int] = {}  # dead member index -> its last heartbeat (t)
        self.held_at_death: dict[int, set[UserId]] = {}
        self.live_at_death: set[str] = set()  # calls live on their home when it died
        self.last_close: dict[str, int] = {}  # user -> t their last connection closed
        # The directory forgot everything (a Redis restarted without persistence):
        self.forgot_at: int | None = None  # t of the last forget
        self.owed: set[int] = set()  # live members that have not kept house since
        self.told_at: int | None = None  # t when the last of them had
        self.old_calls: set[str] = set()  # calls live when the directory forgot them
        self.window_calls: set[str] = set()  # calls claimed before every node told again
        self.telling_again = False  # a member's first housekeeping round since the forget
        self.redis = Redis()
        # Redis was away (and came back with its data): the live members that have not
        # kept house since. Until they have, the directory may hold what they owe it.
        self.blink_owed: set[int] = set()

    def teardown(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()

    # ---- the cluster -----------------------------------------------------------------------
    @initialize(n=st.integers(2, 3), skews=st.lists(st.integers(-60_000, 60_000), min_size=3,
                                                     max_size=3),
                phases=st.lists(st.integers(1, HOUSEKEEPING_MS // TICK_MS), min_size=3,
                                max_size=3),
                homes=st.lists(st.integers(0, 2), min_size=len(USERS), max_size=len(USERS)))
    def start(self, n: int, skews: list[int], phases: list[int], homes: list[int]) -> None:
        """The nodes, and each user's first device on one of them, in room r1."""
        for i in range(n):
            clock = FakeClock(WALL_START + skews[i], MONO_START * (i + 1))
            node = make_node(clock, rate_limit=0, presence_grace=GRACE_MS / 1000,
                             typing_timeout=TYPING_MS / 1000, ring_timeout=RING_MS / 1000)
            node.store = self.store
            node.number = 101 + i
            node.directory = BlinkingDirectory(self.state, f"node{i}", self.redis)
            node.directory.number = node.number
            self.members.append(Member(i, node, clock))
            self.loop.run_until_complete(node.directory.heartbeat(clock.now_ms()))
            self.next_hk[i] = phases[i] * TICK_MS
            self.last_hb[i] = 0
        self.cluster = Cluster(self.members, self._deliver, self._drive, self._closed)
        for user, home in zip(USERS, homes, strict=True):
            self._join(self._connect(self.members[home % n], user), "r1", None)

    def _drive(self, work: Awaitable[Effects]) -> Effects:
        async def wait() -> Effects:
            return await work
        return self.loop.run_until_complete(wait())

    def _alive(self) -> list[Member]:
        return [m for m in self.members if m.alive]

    def _closed(self, m: Member, conn: ConnId) -> None:
        user = self.conn_user.get(conn)
        self.views.pop(conn, None)
        if user is not None:
            self.last_close[user] = self.t

    # ---- driving a node like its hub -----------------------------------------------------
    def send(self, conn: ConnId, type_: str, payload: dict[str, Any] | None,
             with_id: bool = True) -> list[dict[str, Any]]:
        """One frame from `conn`, handled and settled cluster-wide; returns its answers."""
        m = self.where[conn]
        fid = f"f{next(self.ids)}" if with_id else None
        s = m.node.sessions[conn]
        before = len(self.inboxes[conn])
        parsed = read_frame(frame(type_, payload, fid))
        relayed = settled_relay(m.node, s, parsed) if isinstance(parsed, WebRTC) else None
        if relayed is not None:  # Hub.relay (ADR 0029)
            peer, event, ack = relayed
            self.cluster.run(m, ([ack] if ack else []) + [ToConns((peer,), "webrtc", event)])
        else:
            result = handle_read(m.node, s, parsed)
            if not isinstance(result, list):
                result = self._drive(result)
            self.cluster.run(m, result)
        self.cluster.settle()
        if fid is not None:
            self.asked.append((conn, fid))
        got = self.inboxes[conn][before:]
        return [f for f in got if f.get("id") == fid] if fid else got

    # ---- what a connection receives ------------------------------------------------------
    def _deliver(self, m: Member, conn: ConnId, msg: dict[str, Any], origin: Member) -> None:
        self.inboxes[conn].append(msg)
        v = self.views.get(conn)
        assert v is not None, f"a frame for a closed connection: {msg}"
        t, p = msg["type"], msg.get("payload") or {}
        if t in ANSWERS and msg.get("id") is not None:
            self.answers[(conn, msg["id"])] += 1
        if t == "error" and p["code"] == "internal":
            # calls.md §Across nodes: a forwarded frame whose answer has not come back
            # within 5 s (the home died) is answered `internal` by the sender's own node.
            assert (conn, msg["id"]) in m.gave_up, msg
        elif t in PERSISTED:
            room = p["roomId"]
            assert room in v.pos, f"{t} for room {room} that {conn} did not join: {msg}"
            assert p["seq"] == v.pos[room] + 1, (conn, v.pos[room], msg)
            v.pos[room] = p["seq"]
            self.step_seqs.append((room, p["seq"]))
        elif t == "join_room":
            room, who = p["roomId"], p["userId"]
            assert who != v.user, f"own join echoed: {msg}"
            # scale-out.md ("Redis holds the only copy of the directory"): a node the
            # directory forgot writes its users' rooms back "and announces them online and
            # joined again", to clients that had not seen them leave.
            # Before it has, the directory holds nobody: a join from another device of a
            # member is announced as new in the same way.
            assert who not in v.members[room] or self.telling_again or self.owed, \
                f"{who} joined {room} twice for {conn}"
            v.members[room][who] = v.last_presence[who] = p.get("status", "online")
        elif t == "leave_room":
            room, who = p["roomId"], p["userId"]
            # Before every node told the directory again, a join's member list lacks the
            # members their node has not written back yet (scale-out.md), and a leave of
            # such a member is announced all the same (ADR 0071, added 2026-11-27).
            assert who in v.members[room] or self.owed, \
                f"{who} left {room} without being in it: {conn}"
            v.members[room].pop(who, None)
            v.typing.pop((room, who), None)
        elif t == "presence":
            who, status = p["userId"], p["status"]
            # presence.md: one `offline` when the last device anywhere is gone.
            assert not (status == "offline" and v.last_presence.get(who) == "offline"), \
                f"offline twice for {who} to {conn}"
            v.last_presence[who] = status
            for members in v.members.values():
                if who in members:
                    members[who] = status
        elif t == "typing":
            assert p["userId"] != v.user and p["roomId"] in v.members, (conn, msg)
            v.typing[(p["roomId"], p["userId"])] = (p["isTyping"], origin.index)
        elif t == "webrtc":
            call = self.calls.get(p["callId"])
            assert call is None or not call.ended, f"relay of an ended call: {msg}"
            assert v.call_ends[p["callId"]] == 0, f"relay after call_end: {msg}"
            if call is not None and p["kind"] == "offer" and v.user == call.callee:
                v.rang.add(p["callId"])
        elif t in ("call_end", "call_reject"):
            cid = p["callId"]
            if p["reason"] == "answered_elsewhere":
                return
            v.call_ends[cid] += 1
            assert v.call_ends[cid] == 1, f"{conn} told twice that {cid} ended"
            assert p["reason"] in END_REASONS, msg
            if cid in self.calls:
                self.calls[cid].told.add(conn)

    # ---- connections ---------------------------------------------------------------------
    def _conns(self, user: str | None = None) -> list[ConnId]:
        return sorted(c for c, v in self.views.items()
                      if v.user is not None and (user is None or v.user == user))

    def _pick(self, data: st.DataObject) -> ConnId:
        return data.draw(st.sampled_from(self._conns()))

    def _member(self, data: st.DataObject) -> Member:
        return self.members[data.draw(st.sampled_from([m.index for m in self._alive()]))]

    def _connect(self, m: Member, user: str) -> ConnId:
        s = open_session(m.node)
        self.views[s.conn], self.where[s.conn], self.inboxes[s.conn] = View(), m, []
        got = self.send(s.conn, "auth", {"userId": user, "username": user.title()})
        assert [f["type"] for f in got] == ["welcome"], got
        self.views[s.conn].user = self.conn_user[s.conn] = UserId(user)
        return s.conn

    @precondition(lambda self: len(self.views) < MAX_CONNS)
    @rule(data=st.data(), user=users)
    def connect(self, data: st.DataObject, user: str) -> None:
        self._connect(self._member(data), user)

    @precondition(lambda self: self._conns())
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        conn = self._pick(data)
        self.cluster.close(self.where[conn], conn)
        self.cluster.settle()

    @precondition(lambda self: len([m for m in self.members if m.alive]) > 1 and not self.owed)
    @rule(data=st.data())
    def a_node_dies(self, data: st.DataObject) -> None:
        """The process is gone: no more housekeeping, its connections vanish unclosed."""
        self.a_node_dies_now(self._member(data))

    def a_node_dies_now(self, m: Member) -> None:
        m.alive = False
        self.blink_owed.discard(m.index)
        self.died[m.index] = self.last_hb[m.index]
        self.live_at_death |= {c.call_id for c in m.node.calls.live_calls()}
        self.held_at_death[m.index] = set(m.node.user_conns) | set(
            u for u, nodes in self.state.user_nodes.items() if m.node.directory.node_id in nodes)
        for conn in [c for c in self.views if self.where[c] is m]:
            del self.views[conn]
            self.last_close[self.conn_user[conn]] = self.t

    @precondition(lambda self: not self.owed and all(
        self.t >= hb + ORPHANS_ENDED_MS for hb in self.died.values()))
    @rule()
    def the_directory_forgets_everything(self) -> None:
        """Redis restarted without persistence: the directory comes back empty, and each
        live node tells it again at its next housekeeping round."""
        forget_all(self.state)
        self.forgot_at, self.told_at = self.t, None
        self.owed = {m.index for m in self._alive()}
        self.old_calls |= {c.call_id for m in self._alive() for c in m.node.calls.live_calls()}

    @precondition(lambda self: not self.blink_owed)
    @rule(ms=st.sampled_from([300, 1_000, HOUSEKEEPING_MS]))
    def redis_is_away_for_a_while(self, ms: int) -> None:
        """Redis is unreachable for `ms`, then back with its data (persistence on): time
        passes meanwhile, grace periods and rings end, and the directory hears none of it.
        Short of the node TTL: a longer outage gets live nodes reaped (scale-out.md)."""
        self.redis.away = True
        try:
            self.time_passes(ms)
        finally:
            self.redis.away = False
        self.blink_owed = {m.index for m in self._alive()}

    # ---- rooms -----------------------------------------------------------------------------
    @precondition(lambda self: self._conns())
    @rule(data=st.data(), room=rooms, since=st.sampled_from([None, 0]))
    def join(self, data: st.DataObject, room: str, since: int | None) -> None:
        self._join(self._pick(data), room, since)

    def _join(self, conn: ConnId, room: str, since: int | None) -> None:
        v = self.views[conn]
        payload: dict[str, Any] = {"roomId": room}
        if since is not None:
            payload["since"] = since
        got = self.send(conn, "join_room", payload)
        assert len(got) == 1 and got[0]["type"] == "ack", got
        ack = got[0]["payload"]
        assert ack["lastSeq"] == self.last_seq[room], (ack, self.last_seq)
        if since is not None:
            seqs = [e["payload"]["seq"] for e in ack.get("missed") or []]
            assert seqs == list(range(since + 1, ack["lastSeq"] + 1)), seqs
        v.pos[room] = ack["lastSeq"]
        v.members[room] = {mm["userId"]: mm["status"] for mm in ack["members"]}
        if self.owed and v.user not in v.members[room]:
            # The members come from the directory, which may not have been told again yet
            # whom this node holds, the joiner included (scale-out.md, "Redis holds the only
            # copy": a node writes its users' rooms back at its next heartbeat, and
            # announces them joined to the others, not to the joiner). A client knows it
            # is in the room it joined: keep it so, with its status to come.
            v.members[room][v.user] = "online"  # what the write-back says (user_up)
        v.last_presence.update(v.members[room])
        assert v.user in v.members[room]
        for key in [k for k in v.typing if k[0] == room]:
            del v.typing[key]

    @precondition(lambda self: self._conns())
    @rule(data=st.data(), room=rooms)
    def leave(self, data: st.DataObject, room: str) -> None:
        conn = self._pick(data)
        v = self.views[conn]
        joined = room in self.where[conn].node.sessions[conn].rooms
        got = self.send(conn, "leave_room", {"roomId": room})
        assert [f["type"] for f in got] == ["ack" if joined else "error"], got
        v.pos.pop(room, None)
        v.members.pop(room, None)
        for key in [k for k in v.typing if k[0] == room]:
            del v.typing[key]

    def _joined(self) -> list[tuple[ConnId, str]]:
        return [(c, r) for c in self._conns()
                for r in sorted(self.where[c].node.sessions[c].rooms)]

    @precondition(lambda self: self._joined())
    @rule(data=st.data(), cmid=st.sampled_from(["none", "new", "retry"]))
    def chat(self, data: st.DataObject, cmid: str) -> None:
        conn, room = data.draw(st.sampled_from(self._joined()))
        user = self.views[conn].user
        assert user is not None
        payload: dict[str, Any] = {"roomId": room, "content": "hello"}
        mine = sorted(k for k in self.cmids if k[0] == user and self.cmids[k][0] == room)
        key: tuple[str, str] | None = None
        if cmid == "new" or (cmid == "retry" and not mine):
            key = (user, f"m{next(self.cmid_counter)}")
        elif cmid == "retry":
            key = data.draw(st.sampled_from(mine))
        if key is not None:
            payload["clientMsgId"] = key[1]
        self.step_seqs = []
        got = self.send(conn, "chat", payload)
        assert len(got) == 1 and got[0]["type"] == "ack", got
        ack = got[0]["payload"]
        if key is not None and key in self.cmids:
            # delivery.md: a retry of the same clientMsgId, on any node, gets the original
            # ack with `duplicate: true` and publishes nothing.
            assert self.step_seqs == [], "a retried clientMsgId was broadcast again"
            assert (room, ack["seq"]) == self.cmids[key] and ack["duplicate"] is True
            return
        self.last_seq[room] += 1
        assert ack["seq"] == self.last_seq[room]
        assert set(self.step_seqs) == {(room, ack["seq"])}, self.step_seqs
        if key is not None:
            self.cmids[key] = (room, ack["seq"])

    # ---- typing and presence ---------------------------------------------------------------
    @precondition(lambda self: self._conns())
    @rule(data=st.data(), room=rooms, on=st.booleans())
    def typing(self, data: st.DataObject, room: str, on: bool) -> None:
        conn = self._pick(data)
        joined = room in self.where[conn].node.sessions[conn].rooms
        got = self.send(conn, "typing", {"roomId": room, "isTyping": on})
        assert [f["type"] for f in got] == ["ack" if joined else "error"], got

    @precondition(lambda self: self._conns())
    @rule(data=st.data(), status=st.sampled_from(["online", "away", "busy"]))
    def presence(self, data: st.DataObject, status: str) -> None:
        got = self.send(self._pick(data), "presence", {"status": status})
        assert [f["type"] for f in got] == ["ack"], got

    # ---- calls ---------------------------------------------------------------------------
    def _known_calls(self) -> list[str]:
        """Calls not ended whose home lives."""
        # In the order the model learnt of them: a callId the server picks is random.
        return [c for c, model in self.calls.items()
                if self.members[model.home].alive and not model.ended
                and c in self.members[model.home].node.calls.calls]

    def _call_id(self, data: st.DataObject) -> str:
        live = [c for c, model in self.calls.items() if not model.ended]
        return data.draw(st.sampled_from([*live, *self.calls, "ghost"]))

    def _party_conn(self, data: st.DataObject, call_id: str) -> ConnId:
        """Mostly a connection of one of the call's parties; sometimes anyone's."""
        model = self.calls.get(call_id)
        parties = self._conns(model.caller) + self._conns(model.callee) if model else []
        return data.draw(st.sampled_from(parties or self._conns()) | st.sampled_from(
            self._conns()))

    @precondition(lambda self: self._conns())
    @rule(data=st.data(), new_id=st.sampled_from(["new", "none", "old"]),
          room=st.sampled_from([None, None, *ROOMS]))
    def offer(self, data: st.DataObject, new_id: str, room: str | None) -> None:
        conn = self._pick(data)
        me = self.views[conn].user
        assert me is not None
        to = data.draw(st.sampled_from([u for u in USERS if u != me]) | users)
        home = self.where[conn].index
        payload: dict[str, Any] = {"kind": "offer", "to": to, "sdp": SDP}
        if room is not None:
            payload["roomId"] = room
        # Not in the window before every node told the directory again: a live call's id
        # may then be taken by another call, which ADR 0071 §Consequences allows ("A
        # callId another call took meanwhile is not written back").
        known = self._known_calls() if not self.owed else []
        if new_id == "new" or (new_id == "old" and not known):
            payload["callId"] = f"c{next(self.ids)}"
        elif new_id == "old":
            payload["callId"] = data.draw(st.sampled_from(known))
        fresh = payload.get("callId") not in self.calls
        if fresh and "callId" in payload:  # the model learns of it before it rings
            self.calls[payload["callId"]] = CallModel(me, to, home)
        got = self.send(conn, "webrtc", payload)
        assert len(got) == 1, got
        if got[0]["type"] == "ack" and "callId" not in payload:
            call_id = got[0]["payload"]["callId"]
            self.calls[call_id] = model = CallModel(me, to, home)
            # the offer went out before the model knew its id: replay the views' checks
            for c, v in self.views.items():
                for f in self.inboxes[c]:
                    p = f.get("payload") or {}
                    if f["type"] == "webrtc" and p.get("callId") == call_id and v.user == to:
                        v.rang.add(call_id)
                    if f["type"] in ("call_end", "call_reject") and p.get("callId") == call_id:
                        model.told.add(c)
        if fresh and got[0]["type"] == "ack" and self.owed:
            self.window_calls.add(got[0]["payload"]["callId"])
        if to == me and fresh:
            assert got[0]["type"] == "error" and got[0]["payload"]["code"] == "bad_request"
        if fresh and got[0]["type"] == "error" and "callId" in payload:
            del self.calls[payload["callId"]]

    @precondition(lambda self: self._conns() and self.calls)
    @rule(data=st.data(), kind=st.sampled_from(["answer", "ice_candidate", "offer"]),
          to=st.sampled_from(["peer", "other"]))
    def signal(self, data: st.DataObject, kind: str, to: str) -> None:
        call_id = self._call_id(data)
        conn = self._party_conn(data, call_id)
        me = self.views[conn].user
        call = self.calls.get(call_id)
        # calls.md §The call session: an offer naming a call that ended lately is refused,
        # on any node (the directory remembers it for ENDED_CALL_RETENTION_MS, the home as
        # long); the end may lie up to one step (RING_MS) before the model saw it.
        late = (kind == "offer" and call is not None and call.ended_by is not None
                and self.t - call.ended_by <= ENDED_CALL_RETENTION_MS - RING_MS - 5_000
                # Forgotten with the directory, until the home wrote it back (ADR 0072,
                # test_an_ended_calls_id_is_refused_after_the_directory_forgot_it).
                and (self.forgot_at is None or call.ended_by > self.forgot_at
                     or call.home not in self.owed))
        if (call is None or call.ended) and kind == "offer" and not late:
            kind = "ice_candidate"  # an offer with a callId nobody knows starts a call
        if call is not None and to == "peer":
            target = call.callee if me == call.caller else call.caller
        else:
            target = data.draw(users)
        payload: dict[str, Any] = {"kind": kind, "to": target, "callId": call_id}
        if kind == "answer":
            payload["sdp"] = {"type": "answer", "sdp": "v=0"}
        elif kind == "offer":
            payload["sdp"] = SDP
        else:
            payload["candidate"] = {"candidate": "c"}
        got = self.send(conn, "webrtc", payload)
        assert len(got) <= 1, got
        if late:  # refused, by whichever check comes first (a wrong `to`, the callee gone
            # offline, ...): no new call under the old id
            assert got and got[0]["type"] == "error", (call_id, got)
            assert got[0]["payload"]["code"] != "internal", got

    @precondition(lambda self: self._conns() and self.calls)
    @rule(data=st.data(), type_=st.sampled_from(["call_reject", "call_end"]),
          reason=st.sampled_from([None, "hangup", "rejected"]))
    def control(self, data: st.DataObject, type_: str, reason: str | None) -> None:
        call_id = self._call_id(data)
        conn = self._party_conn(data, call_id)
        payload: dict[str, Any] = {"callId": call_id}
        if reason is not None:
            payload["reason"] = reason
        got = self.send(conn, type_, payload)
        assert len(got) <= 1, got
        if got and got[0]["type"] == "ack" and got[0]["payload"]["state"] == "ended":
            call = self.calls.get(payload["callId"])
            if call is not None:
                call.told.add(conn)

    # ---- time ------------------------------------------------------------------------------
    @rule(ms=steps)
    def time_passes(self, ms: int) -> None:
        """Every node ticks each 100 ms and keeps house each 2.5 s (server/timers.py)."""
        end = self.t + ms
        while self.t < end:
            nxt = min(end, (self.t // TICK_MS + 1) * TICK_MS)
            for m in self.members:
                m.clock.advance(nxt - self.t)
            self.t = nxt
            for m in self._alive():
                self.cluster.tick(m)
                self.cluster.settle()
            for m in self._alive():
                if self.next_hk[m.index] <= self.t:
                    self.next_hk[m.index] += HOUSEKEEPING_MS
                    if self.redis.away:
                        continue  # its heartbeat fails first: the round does nothing
                    self.last_hb[m.index] = self.t
                    self.blink_owed.discard(m.index)
                    self.telling_again = m.index in self.owed
                    self.cluster.housekeeping(m)
                    self.cluster.settle()
                    self.telling_again = False
                    if m.index in self.owed:
                        self.owed.discard(m.index)
                        if not self.owed:
                            self.told_at = self.t

    @rule()
    def everyone_leaves_and_time_passes(self) -> None:
        for conn in sorted(self.views):
            self.cluster.close(self.where[conn], conn)
            self.cluster.settle()
        self.time_passes(RING_MS)
        self.time_passes(RING_MS)
        state = self.state
        assert not state.user_nodes and not state.connected, dict(state.user_nodes)
        assert not state.member_nodes and not state.room_members and not state.user_rooms
        assert not state.calls and not state.user_call, state.calls
        for m in self._alive():
            node = m.node
            assert not node.sessions and not node.user_conns and not list(node.rooms)
            assert node.presence.online_count() == 0 and not node.calls.live_count()
            assert not m.awaiting

    # ---- invariants ------------------------------------------------------------------------
    def _reaped(self) -> bool:
        """Every dead node has been reaped, and the homes have looked for orphaned calls
        since (see ORPHANS_ENDED_MS)."""
        # ADR 0071: "For a node TTL after the directory forgot the node, `orphaned` does
        # not end a call for want of a party"; "a home that dies in the 10 s after the
        # directory forgot it leaves its calls' orphans up to 10 s longer".
        told = self.told_at if self.told_at is not None else self.t - TTL_MS - HOUSEKEEPING_MS
        return not self.owed and self.t >= told + TTL_MS + HOUSEKEEPING_MS and all(
            self.t >= hb + ORPHANS_ENDED_MS for hb in self.died.values())

    @invariant()
    def each_frame_with_an_id_got_one_answer(self) -> None:
        if not self.members:
            return
        waiting = []
        for conn, fid in self.asked:
            if conn not in self.views:
                continue  # closed, or its node died: its client hears nothing more
            m = self.where[conn]
            if (conn, fid) in m.awaiting:  # forwarded to a home that died: 5 s to answer
                assert self.answers[(conn, fid)] == 0
                waiting.append((conn, fid))
                continue
            assert self.answers[(conn, fid)] == 1, ((conn, fid), self.inboxes[conn][-5:])
        self.asked = waiting

    @invariant()
    def live_nodes_are_never_reaped(self) -> None:
        # ADR 0091: a node is dead when a live node has seen its heartbeat unchanged for
        # the node TTL; a live node's clock skew does not get it reaped.
        for m in self._alive():
            if m.index in self.owed:
                continue  # the directory forgot it: it tells it again at its next round
            assert m.node.directory.node_id in self.state.heartbeats, f"node{m.index} reaped"

    @invariant()
    def one_live_call_per_user_and_the_directory_agrees(self) -> None:
        if not self.members:
            return
        state = self.state
        want_calls: dict[str, tuple[str, str]] = {}
        for m in self._alive():
            for call in m.node.calls.live_calls():
                want_calls[call.call_id] = (call.caller, call.callee)
        for cid, info in state.calls.items():
            home = next(m for m in self.members if m.node.directory.node_id == info.home_node)
            if not home.alive:  # not reaped yet
                want_calls[cid] = (info.caller, info.callee)
        # ADR 0013: one live call per user, cluster-wide.
        per_user = Counter(u for parties in want_calls.values() for u in parties)
        # ADR 0071 §Consequences: within one heartbeat of Redis coming back empty "a party
        # may still ring, and a user called in it is recorded in the newer call until that
        # ends"; the home writes its own call back again each housekeeping round until each
        # party is recorded in it. So a user may be in two live calls: one live when the
        # directory forgot (old_calls), one claimed before every node told it again
        # (window_calls); the directory records them in the newer, or, once that ended, in
        # none until the older call's home is back at it (`unrestored_calls`).
        recorded = dict(state.calls)
        recorded_user_call = dict(state.user_call)
        if self.blink_owed:
            # calls.md: a call that ended while Redis was away is released again once it
            # is back, at its home's next round; until then the directory still has it.
            unreleased = {c for m in self._alive() for c in m.node.unreleased_calls}
            recorded = {c: i for c, i in recorded.items()
                        if c not in unreleased or c in want_calls}
            recorded_user_call = {u: c for u, c in recorded_user_call.items()
                                  if c not in unreleased or c in want_calls}
        doubled = {u for u, n in per_user.items() if n > 1}
        for u in doubled:
            theirs = {c for c, parties in want_calls.items() if u in parties}
            assert len(theirs) == 2 and theirs & self.old_calls and theirs & self.window_calls \
                and not theirs <= self.old_calls & self.window_calls, (u, want_calls)
        if self.owed:
            # scale-out.md: until a home's next heartbeat (2.5 s at most) the directory is
            # missing its calls; what it records is still live calls only.
            assert {c: (i.caller, i.callee) for c, i in recorded.items()}.items() \
                <= want_calls.items(), (recorded, want_calls)
            assert all(want_calls.get(c, ()) and u in want_calls[c]
                       for u, c in recorded_user_call.items()), (recorded_user_call, want_calls)
            return
        assert {c: (i.caller, i.callee) for c, i in recorded.items()} == want_calls
        want_user_call = {u: c for c, parties in want_calls.items() for u in parties}
        unrestored = {c for m in self._alive() for c in m.node.unrestored_calls}
        for u in doubled:  # recorded in the newer call, until it ends
            want_user_call[u] = next(c for c in self.window_calls
                                     if c in want_calls and u in want_calls[c])
        for u, c in list(want_user_call.items()):
            if u not in state.user_call and c in unrestored and c in self.old_calls:
                del want_user_call[u]  # its newer call ended: filled in at the next round
        assert recorded_user_call == want_user_call, (want_calls, unrestored)

    @invariant()
    def calls_told(self) -> None:
        if not self.members:
            return
        state = self.state
        for cid, model in self.calls.items():
            if model.ended:
                continue
            home = self.members[model.home]
            if not home.alive:
                if cid in state.calls:
                    continue
                if cid not in self.live_at_death:
                    model.ended = True  # it had ended, and was forgotten, before
                    continue
                # calls.md §Across nodes: if the home node dies, both parties get
                # `call_end` {disconnected} on every connection when it is reaped.
                model.ended, model.ended_by = True, self.t
                must = {c for c, v in self.views.items()
                        if v.user in (model.caller, model.callee)}
                assert must <= model.told, (cid, "reaped", must - model.told)
                continue
            call = home.node.calls.calls.get(cid)
            if call is None or call.state is not CallState.ENDED:
                continue
            model.ended, model.ended_by = True, self.t
            # calls.md §The call session: what each side receives when the call ends.
            must: set[ConnId] = set()
            if call.end_reason != "busy":
                must |= {c for c in (call.caller_conn, call.callee_conn) if c is not None}
                must |= {c for c, v in self.views.items() if cid in v.rang}
            else:
                must.add(call.caller_conn)  # type: ignore[arg-type]
            must &= set(self.views)
            assert must <= model.told, (cid, call.end_reason, must - model.told)
            for party in (call.caller, call.callee):
                conns = {c for c, v in self.views.items() if v.user == party}
                if conns and not (call.end_reason == "busy" and party == call.callee):
                    assert conns & model.told, (cid, call.end_reason, party)
        if not self._reaped():
            return
        # calls.md §Ownership and §Across nodes: a live call's parties are connected
        # somewhere, and its owning connections are open connections of theirs.
        for m in self._alive():
            for call in m.node.calls.live_calls():
                for side, owner in ((call.caller, call.caller_conn),
                                    (call.callee, call.callee_conn)):
                    assert self._conns(side), f"{side} has no connection, in {call}"
                    if owner is None:
                        continue
                    assert self.conn_user[owner] == side, (call, side, owner)
                    assert owner in self.views, (call, side, owner)

    @invariant()
    def views_match_the_directory(self) -> None:
        state = self.state
        # scale-out.md §What each part guarantees ("Redis holds the only copy"): a node
        # whose heartbeat finds that the directory forgot it writes its users and their
        # rooms back at once; until then the directory is missing them.
        directory_told = not self.owed
        for conn, v in self.views.items():
            if v.user is None:
                continue
            s = self.where[conn].node.sessions[conn]
            assert set(v.pos) == set(s.rooms), (conn, v.pos, s.rooms)
            for room in s.rooms:
                # delivery.md: every persisted event of the room, once, in seq order.
                assert v.pos[room] == self.last_seq[room], (conn, room, v.pos, self.last_seq)
                if not directory_told:
                    continue
                # presence.md §Who receives what, §On one node and on many.
                want = {u: state.info[u].status if u in state.info else None
                        for u in state.room_members.get(room, ())}
                seen = dict(v.members[room])
                if self.forgot_at is not None and v.user in want:
                    # Reported, not promised (scale-out.md): a node telling the directory
                    # again announces its users online before it writes their rooms back,
                    # so that announcement reaches no room and their own devices keep the
                    # status they had (the others hear it in the join). And a user who
                    # leaves on one node before another node of theirs has told it again
                    # is announced leaving, then joined again, which their own devices do
                    # not hear (a join is not sent to the joiner's own devices).
                    seen[v.user] = want[v.user]
                assert seen == want, (conn, room, v.members[room], want)
            # presence.md §Typing: no refresh for the typing timeout, and the typist's
            # node sends `false` itself. (A typist whose node died sends nothing more:
            # docs promise nothing then.)
            for (room, who), (on, origin) in v.typing.items():
                if on and self.members[origin].alive:
                    assert any(m.node.typing.is_typing(RoomId(room), UserId(who))
                               for m in self._alive()), f"{conn} still sees {who} typing"

    @invariant()
    def the_departed_are_offline_for_everyone(self) -> None:
        """presence.md §Grace period, §On one node and on many: a user with no connection
        left goes offline and leaves their rooms once the grace ends where their last
        connection closed, or once the dead node that held them is reaped."""
        state = self.state
        if self.blink_owed:
            return  # ADR 0011: told once Redis is back, at the holder's next round
        for user in USERS:
            uid = UserId(user)
            if self._conns(user):
                continue
            due = [self.last_close[user] + GRACE_MS] if user in self.last_close else []
            due += [hb + REAPED_MS for i, hb in self.died.items()
                    if uid in self.held_at_death[i]]
            if not due or self.t < max(due):
                continue
            assert uid not in state.user_nodes, f"{user} still online"
            assert not state.user_rooms.get(uid), f"{user} still in rooms"
            for conn, v in self.views.items():
                for room, members in v.members.items():
                    assert user not in members, f"{conn} still sees {user} in {room}"

    @invariant()
    def nodes_agree_with_themselves(self) -> None:
        for m in self._alive():
            node = m.node
            by_user: dict[UserId, set[ConnId]] = {}
            for c, s in node.sessions.items():
                if s.identity is not None:
                    by_user.setdefault(s.identity.user_id, set()).add(c)
            assert node.user_conns == by_user
            if m.index in self.owed:
                continue  # the directory forgot whom it holds; it tells it at its next round
            for u in set(self.state.connected) | set(by_user):
                nodes = self.state.connected.get(u, set())
                assert (node.directory.node_id in nodes) == (u in by_user), (u, m.index)


TestClusterModel = ClusterMachine.TestCase
# A longer run: HUBBUB_CLUSTER_EXAMPLES=1000 HUBBUB_CLUSTER_STEPS=80 pytest this file.
TestClusterModel.settings = settings(
    max_examples=int(os.environ.get("HUBBUB_CLUSTER_EXAMPLES", 200)),
    stateful_step_count=int(os.environ.get("HUBBUB_CLUSTER_STEPS", 40)),
    deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_an_owner_lost_with_its_node_is_unbound_once_the_node_is_reaped() -> None:
    """calls.md §Ownership: when an owning connection closes while its user has other
    connections open, the side is unbound and another device may take the call over. A
    dead node reports no close: bob calls ann, ann answers on her device on node 2, node 2
    dies and is reaped. The home's housekeeping (`calls.orphaned`) sees that the owning
    connection's node is gone (`Directory.live_numbers`), and unbinds ann's side, so her
    device on node 0 takes the call over (it used to be refused, `forbidden`, and bob's
    candidates went to the vanished connection)."""
    m = ClusterMachine()
    try:
        m.start(n=3, skews=[0, 0, 0], phases=[1, 2, 3], homes=[0, 1, 2])
        ann, bob = m._conns("ann")[0], m._conns("bob")[0]
        ann_elsewhere = m._connect(m.members[2], "ann")
        m.send(bob, "webrtc", {"kind": "offer", "to": "ann", "callId": "k1", "sdp": SDP})
        got = m.send(ann_elsewhere, "webrtc", {"kind": "answer", "to": "bob", "callId": "k1",
                                               "sdp": {"type": "answer", "sdp": "v=0"}})
        assert got[0]["payload"]["state"] == "active", got
        m.a_node_dies_now(m.members[2])
        m.time_passes(RING_MS)  # node 2 is reaped, and every home has kept house since
        got = m.send(ann, "webrtc", {"kind": "ice_candidate", "to": "bob", "callId": "k1",
                                     "candidate": {"candidate": "c"}})
        assert got[0]["type"] == "ack", got  # ann's other device takes the call over
    finally:
        m.teardown()


def bob_rejected_k1(m: ClusterMachine) -> ConnId:
    """Two nodes: ann (node 0) called bob (node 1) with callId k1, and bob rejected it.
    Returns bob's connection."""
    m.start(n=2, skews=[0, 0, 0], phases=[1, 2, 3], homes=[0, 1, 0])
    ann, bob = m._conns("ann")[0], m._conns("bob")[0]
    m.send(ann, "webrtc", {"kind": "offer", "to": "bob", "callId": "k1", "sdp": SDP})
    m.send(bob, "call_reject", {"callId": "k1"})
    return bob


def test_an_ended_calls_id_is_not_a_new_call_from_another_node() -> None:
    """calls.md §The call session: anything about an ended call gets `conflict`. Ann
    (node 0) calls bob (node 1), bob rejects, then bob's device sends a late offer for the
    same callId (an ICE restart racing the end). Node 1 finds no live call of that id in
    the directory; the directory remembers that it ended, so the offer is refused there
    as on its home, rather than start a new call from bob that rings ann again."""
    m = ClusterMachine()
    try:
        bob = bob_rejected_k1(m)
        got = m.send(bob, "webrtc", {"kind": "offer", "to": "ann", "callId": "k1", "sdp": SDP})
        assert (got[0]["type"], got[0]["payload"]["code"]) == ("error", "conflict"), got
    finally:
        m.teardown()


def test_a_busy_calls_id_is_not_a_new_call_from_another_node() -> None:
    """calls.md §The call session: anything about an ended call gets `conflict`, a call
    that ended `busy` included. Ann (node 0) calls cy; bob (node 1) calls ann with callId
    k2, which ends `busy` on its home at once, its claim refused by the directory. Ann's
    call ends, and she sends an offer naming k2 from node 0. The directory held nothing for
    k2 and its release kept nothing, so node 0 started a new call that rang bob. The
    release of a call the directory does not hold now keeps its id all the same. (Found by
    the cluster model test, where bob's node had died before the late offer.)"""
    m = ClusterMachine()
    try:
        m.start(n=2, skews=[0, 0, 0], phases=[1, 1, 1], homes=[0, 1, 1])
        ann, bob = m._conns("ann")[0], m._conns("bob")[0]
        got = m.send(ann, "webrtc", {"kind": "offer", "to": "cy", "callId": "k1", "sdp": SDP})
        assert got[0]["type"] == "ack", got
        got = m.send(bob, "webrtc", {"kind": "offer", "to": "ann", "callId": "k2", "sdp": SDP})
        assert got[0]["payload"] == {"callId": "k2", "state": "ended"}, got  # busy
        assert m.send(ann, "call_end", {"callId": "k1"})[0]["type"] == "ack"
        got = m.send(ann, "webrtc", {"kind": "offer", "to": "bob", "callId": "k2", "sdp": SDP})
        assert (got[0]["type"], got[0]["payload"]["code"]) == ("error", "conflict"), got
    finally:
        m.teardown()


def test_a_leave_before_the_directory_is_told_again_is_announced() -> None:
    """docs/topics/presence.md: leaving a room is announced to its members. Ann and bob are
    in r1 (node 0). Redis restarts empty, and before node 0's next heartbeat (which writes
    its users' rooms back) ann leaves r1. `remove_member` found nothing to remove, so the
    leave was not announced, and the heartbeat then wrote back only the rooms ann was still
    in: bob went on seeing ann in r1 for good. Now nobody holding ann there is "the last",
    and the leave is announced (ADR 0071, added 2026-11-27). (Found by the cluster model
    test's forget action.)"""
    m = ClusterMachine()
    try:
        m.start(n=2, skews=[0, 0, 0], phases=[1, 2, 3], homes=[0, 0, 1])
        ann, bob = m._conns("ann")[0], m._conns("bob")[0]
        m.the_directory_forgets_everything()
        got = m.send(ann, "leave_room", {"roomId": "r1"})
        assert got[0]["type"] == "ack", got
        m.time_passes(HOUSEKEEPING_MS)  # every node has told the directory again
        assert not m.owed
        assert "ann" not in m.state.room_members.get(RoomId("r1"), ())
        assert "ann" not in m.views[bob].members["r1"], m.views[bob].members
    finally:
        m.teardown()


def test_a_user_in_grace_is_written_back_whole() -> None:
    """presence.md §Grace period: a user whose last connection closed stays online and in
    their rooms for the grace period. Ann and bob are in r1 (node 0); ann disconnects, and
    Redis restarts empty during her grace. Node 0's heartbeat writes back its connected
    users, every room member it holds, ann's lingering membership included, and ann
    herself, held but not reachable (`user_up`, `user_idle`): before, it left her out, so
    the directory listed her in r1 with no status (a join showed her offline, and her
    going offline when the grace ended was never announced). (Found by the cluster model
    test.)"""
    m = ClusterMachine()
    try:
        m.start(n=2, skews=[0, 0, 0], phases=[1, 2, 3], homes=[0, 0, 1])
        ann = m._conns("ann")[0]
        m.cluster.close(m.where[ann], ann)
        m.cluster.settle()
        m.the_directory_forgets_everything()
        m.time_passes(HOUSEKEEPING_MS)  # every node has told the directory again
        r1 = m.state.room_members.get(RoomId("r1"), set())
        assert "ann" in r1 and m.state.info[UserId("ann")].status == "online", m.state.info
        assert not m.state.connected.get(UserId("ann")), m.state.connected  # not reachable
    finally:
        m.teardown()


def test_a_grace_ending_before_the_directory_is_told_again_is_announced() -> None:
    """presence.md §Grace period: when the grace ends, the user goes offline and leaves
    their rooms, for everyone. Ann and bob are in r1 (node 0); ann disconnects, Redis
    restarts empty, and ann's grace ends before node 0's next heartbeat. The directory
    knows nothing of her, so the `offline` goes to the rooms node 0 held her in, and the
    leave is announced as any leave (ADR 0071, added 2026-11-27): before, neither was, and
    bob saw ann online in r1 for good."""
    m = ClusterMachine()
    try:
        m.start(n=2, skews=[0, 0, 0], phases=[1, 2, 3], homes=[0, 0, 1])
        ann, bob = m._conns("ann")[0], m._conns("bob")[0]
        beat = m.next_hk[0] + 3 * HOUSEKEEPING_MS  # a heartbeat of node 0 in the future
        m.time_passes(beat - 300 - GRACE_MS - m.t)
        m.cluster.close(m.where[ann], ann)  # her grace ends 300 ms before that heartbeat
        m.cluster.settle()
        m.time_passes(beat - 400 - m.t)
        m.the_directory_forgets_everything()
        m.time_passes(200)
        assert m.owed == {0, 1} or m.owed == {0}, m.owed  # node 0 has not told it again
        assert m.views[bob].last_presence["ann"] == "offline", m.views[bob].last_presence
        assert "ann" not in m.views[bob].members["r1"], m.views[bob].members
        m.time_passes(HOUSEKEEPING_MS)
        assert "ann" not in m.state.room_members.get(RoomId("r1"), set())
        assert m.state.info[UserId("ann")].status == "offline", m.state.info
    finally:
        m.teardown()


def test_a_device_closing_before_the_directory_is_told_again_does_not_end_the_call() -> None:
    """calls.md §Ownership: a call ends `disconnected` when a party has no connection left
    anywhere. Bob has a device on node 0 and one on node 1, where ann's call to him rings
    (its home). Redis restarts empty, and before node 0 has told it again, bob's device on
    node 1 closes. The directory listed no other device of bob's, so the home ended the
    call, and bob's device on node 0, which was ringing, was never told. Now the home
    does not take the directory's word for a party gone while the directory may not have
    heard from every node again; `orphaned` ends the call after a node TTL if bob really
    is gone. (Found by the cluster model test.)"""
    m = ClusterMachine()
    try:
        m.start(n=2, skews=[0, 0, 0], phases=[1, 1, 1], homes=[1, 0, 1])
        ann, bob = m._conns("ann")[0], m._conns("bob")[0]
        bob_on_home = m._connect(m.members[1], "bob")
        got = m.send(ann, "webrtc", {"kind": "offer", "to": "bob", "callId": "k1", "sdp": SDP})
        assert got[0]["type"] == "ack", got
        m.the_directory_forgets_everything()
        m.cluster.close(m.where[bob_on_home], bob_on_home)
        m.cluster.settle()
        m.time_passes(HOUSEKEEPING_MS)  # every node has told the directory again
        got = m.send(bob, "webrtc", {"kind": "answer", "to": "ann", "callId": "k1",
                                     "sdp": {"type": "answer", "sdp": "v=0"}})
        assert got[0]["type"] == "ack", got
        call = m.members[1].node.calls.calls["k1"]
        assert call.state.value == "active", call
    finally:
        m.teardown()


def test_a_member_told_again_is_announced_with_the_status_the_directory_has() -> None:
    """presence.md §Who receives what: a member's status, as the directory has it. Ann, bob
    and cy are in r1 on node 0. Redis restarts empty; before node 0's next heartbeat cy
    connects a second device on node 1 (written to the directory as online, in no room
    yet) and sets it away: the change goes to the rooms the directory knows for cy, none.
    Node 0's heartbeat then writes cy's membership of r1 back and announces her joined
    again: with status `online` (it was hard-coded in `_tell_again`) while the directory
    said `away`, ann and bob saw cy online for good. It now says the directory's status.
    (Found by the cluster model test.)"""
    m = ClusterMachine()
    try:
        m.start(n=2, skews=[0, 0, 0], phases=[1, 1, 1], homes=[0, 0, 0])
        ann = m._conns("ann")[0]
        m.the_directory_forgets_everything()
        cy = m._connect(m.members[1], "cy")
        assert m.send(cy, "presence", {"status": "away"})[0]["type"] == "ack"
        m.time_passes(HOUSEKEEPING_MS)  # every node has told the directory again
        assert m.state.info[UserId("cy")].status == "away"
        assert m.views[ann].members["r1"]["cy"] == "away", m.views[ann].members
    finally:
        m.teardown()


def test_an_ended_calls_id_is_refused_after_the_directory_forgot_it() -> None:
    """calls.md §The call session and ADR 0072: a late offer naming a call that ended
    within 60 s is refused (`conflict`) on any node. Ann (node 0) calls bob (node 1), bob
    rejects; Redis restarts empty and every node tells it again. The home still remembers
    the ended call, but the directory's `ended-call:` record was gone and nobody wrote it
    back, so bob's late offer for the same callId, on node 1, started a new call that rang
    ann again. The home now writes back the ids it remembers (ADR 0072, added 2026-11-27).
    (Found by the cluster model test.)"""
    m = ClusterMachine()
    try:
        bob = bob_rejected_k1(m)
        m.the_directory_forgets_everything()
        m.time_passes(HOUSEKEEPING_MS)  # every node has told the directory again
        got = m.send(bob, "webrtc", {"kind": "offer", "to": "ann", "callId": "k1", "sdp": SDP})
        assert (got[0]["type"], got[0]["payload"]["code"]) == ("error", "conflict"), got
    finally:
        m.teardown()


def test_a_user_called_before_the_directory_is_told_again_is_in_two_calls_until_one_ends(
) -> None:
    """The window ADR 0071 §Consequences allows, driven through the model's own checks
    (random runs rarely forget while a call is live): ann and bob are in a call homed on
    node 0 (ann on node 1); Redis restarts empty, node 1 tells it again about ann and cy,
    and before node 0's next heartbeat cy calls ann, who rings. Node 0 writes its call
    back, ann stays recorded in cy's newer call; once that ends, node 0's next round
    records ann in her own call again, and every invariant holds as before the restart."""
    m = ClusterMachine()

    def check() -> None:
        for name in ("each_frame_with_an_id_got_one_answer", "live_nodes_are_never_reaped",
                     "one_live_call_per_user_and_the_directory_agrees", "calls_told",
                     "views_match_the_directory", "the_departed_are_offline_for_everyone",
                     "nodes_agree_with_themselves"):
            getattr(m, name)()

    try:
        m.start(n=2, skews=[0, 0, 0], phases=[3, 1, 1], homes=[1, 0, 1])
        ann, bob, cy = m._conns("ann")[0], m._conns("bob")[0], m._conns("cy")[0]
        m.calls["k1"] = CallModel("bob", "ann", 0)
        m.send(bob, "webrtc", {"kind": "offer", "to": "ann", "callId": "k1", "sdp": SDP})
        m.send(ann, "webrtc", {"kind": "answer", "to": "bob", "callId": "k1",
                               "sdp": {"type": "answer", "sdp": "v=0"}})
        check()
        m.the_directory_forgets_everything()
        check()
        m.time_passes(TICK_MS)  # node 1 has told the directory again, node 0 not yet
        assert m.owed == {0}
        check()
        m.calls["k2"] = CallModel("cy", "ann", 1)
        got = m.send(cy, "webrtc", {"kind": "offer", "to": "ann", "callId": "k2", "sdp": SDP})
        assert got[0]["type"] == "ack", got  # the directory knew of no call of ann's
        m.window_calls.add("k2")
        assert "k2" in m.views[ann].rang
        check()
        m.time_passes(HOUSEKEEPING_MS)  # every node has told the directory again
        assert not m.owed and m.state.user_call[UserId("ann")] == "k2"
        check()
        got = m.send(cy, "call_end", {"callId": "k2"})
        assert got[0]["payload"]["state"] == "ended", got
        m.calls["k2"].told.add(cy)  # as the `control` rule does: the ack says it ended
        check()
        m.time_passes(HOUSEKEEPING_MS)
        assert m.state.user_call[UserId("ann")] == "k1"
        check()
        m.time_passes(TTL_MS)
        assert m._reaped()
        check()
    finally:
        m.teardown()
