"""Model-based test of one whole Node (features + core + in-process directory + SQLite in
memory), driven frame by frame as the hub would, with what every connection receives
checked against PROTOCOL.md and docs/topics/{presence,calls,delivery}.md.

Random sequences of: connections opening (several per user) and closing, auth, joins and
leaves (with and without `since`), chats with and without `clientMsgId` (retries too),
edits, deletes, reactions, typing, presence, call offers / answers / candidates /
rejects / hang-ups between random users (busy, glare, self-calls, wrong callIds), and the
clock moving across the typing timeout, the presence grace and the ring timeout, and the
system clock stepping (an hour or a ring timeout, back or forward), which no deadline
follows (ADR 0090).

Checked after every step:
- no frame is answered `internal`, and nothing raises;
- each frame with an `id` gets exactly one answer with that `id`;
- a room's persisted events take seq 1..n, and every connection in the room receives
  each of them once, in seq order, from the `lastSeq` of its join (missed events
  included); a retried `clientMsgId` gets the original ack and no second broadcast;
- what a connection believes about a room (members, their status, from the join ack and
  the join/leave/presence events it received) is what the directory says;
- no connection is left believing someone types when nobody does (`false` follows
  every `true`), and `false` never comes twice in a row;
- `offline` is not sent twice in a row for the same user to a connection;
- a user is in at most one live call; a live call's parties are connected and its owning
  connections are theirs; the directory's calls match the node's;
- a call that ends is told to each party's owning connection, to every device that
  rang, and to the caller, each connection at most once, with a documented reason;
  nothing about it is relayed afterwards;
- after the grace a user with no connection is in no room and not present;
- the node's structures (sessions, user_conns, rooms, presence, typing, calls) agree with
  each other and the directory, and are empty once everyone is gone and time has passed.
"""

import asyncio
import itertools
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hubbub.core.calls import CallState
from hubbub.core.effects import (
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
from hubbub.core.session import Session
from hubbub.directory.memory import MemoryDirectory
from hubbub.features.calls import settled_relay
from hubbub.features.dispatch import handle_read, read_frame
from hubbub.features.node import Node
from hubbub.features.system import close_session, housekeeping, open_session, tick
from hubbub.ids import ConnId, RoomId, UserId
from hubbub.protocol.frames import WebRTC, encode
from tests.support.clock import FakeClock
from tests.support.node import frame, make_node

USERS = ("ann", "bob", "cy")
ROOMS = ("r1", "r2")
GRACE_MS, TYPING_MS, RING_MS = 5_000, 3_000, 30_000
PERSISTED = ("chat", "message_edit", "message_delete", "reaction")
END_REASONS = {"hangup", "rejected", "timeout", "busy", "disconnected", "answered_elsewhere"}
ANSWERS = ("ack", "error", "welcome", "pong")
SDP = {"type": "offer", "sdp": "v=0"}
MAX_CONNS = 6
# Joins held by the store while other connections act. Off by default: this machine
# drives the rules only, while the events of the wait are held back by the hub
# (core.effects.CatchUp, tested in tests/integration/test_rooms_presence.py and
# tests/unit/server/test_catch_up.py), which this machine does not model. The race
# where the joiner's own membership was released meanwhile is fixed and has its tests
# (tests/unit/features/test_rooms.py).
RACES = os.environ.get("HUBBUB_MODEL_RACES") == "1"

users = st.sampled_from(USERS)
rooms = st.sampled_from(ROOMS)
steps = st.sampled_from([1, 300, 999, 1_000, 2_500, TYPING_MS, GRACE_MS, RING_MS])


@dataclass
class View:
    """What one connection was told, as its client would keep it."""

    user: UserId | None = None
    pos: dict[str, int] = field(default_factory=dict)  # room -> last seq received
    members: dict[str, dict[str, str]] = field(default_factory=dict)  # room -> user -> status
    typing: dict[tuple[str, str], bool] = field(default_factory=dict)
    last_presence: dict[str, str] = field(default_factory=dict)
    call_ends: Counter[str] = field(default_factory=Counter)
    rang: set[str] = field(default_factory=set)  # calls whose offer rang here
    elsewhere: set[str] = field(default_factory=set)  # calls answered on another device


@dataclass
class CallModel:
    caller: str
    callee: str
    told: set[ConnId] = field(default_factory=set)  # connections told that it ended
    ended: bool = False


class NodeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.node: Node = make_node(self.clock, rate_limit=0, presence_grace=GRACE_MS / 1000,
                                    typing_timeout=TYPING_MS / 1000,
                                    ring_timeout=RING_MS / 1000)
        self.loop.run_until_complete(self.node.store.open())
        self.loop.run_until_complete(self.node.directory.heartbeat(self.clock.now))
        # A join can be held before its position read (a slow store), so that frames of
        # other connections and time run while it waits, as they do on a server.
        self.gates: list[asyncio.Future[None]] = []
        self.hold_next = False
        self.pending: dict[ConnId, tuple[asyncio.Task[Effects], str, int | None, str, str]] = {}
        self.done: list[ConnId] = []
        store = self.node.store
        for name in ("last_seq", "events_since"):
            setattr(store, name, self._gated(getattr(store, name)))
        self.views: dict[ConnId, View] = {}
        self.ids = itertools.count(1)
        self.answers: Counter[tuple[ConnId, str]] = Counter()
        self.asked: list[tuple[ConnId, str]] = []
        self.last_seq: dict[str, int] = dict.fromkeys(ROOMS, 0)
        self.step_broadcast_seqs: list[tuple[str, int]] = []
        self.msgs: dict[str, tuple[str, str]] = {}  # messageId -> (room, author)
        self.deleted: set[str] = set()
        self.reactions: set[tuple[str, str, str]] = set()  # (messageId, user, emoji)
        self.cmids: dict[tuple[str, str], tuple[str, int]] = {}
        self.cmid_counter = itertools.count(1)
        self.calls: dict[str, CallModel] = {}
        # user -> when their last connection closed, and the last tick (monotonic clock)
        self.last_close: dict[str, int] = {}
        self.last_tick = self.clock.mono
        self.resume: dict[tuple[str, str], int] = {}  # (user, room) -> a seq they saw

    def _gated(self, read: Any) -> Any:
        async def gated(*args: Any) -> Any:
            if self.hold_next:
                self.hold_next = False
                gate: asyncio.Future[None] = self.loop.create_future()
                self.gates.append(gate)
                await gate
            return await read(*args)
        return gated

    def teardown(self) -> None:
        for task, *_ in self.pending.values():
            task.cancel()
        self.loop.run_until_complete(self.node.store.close())
        self.loop.close()

    # ---- driving the node like the hub ----------------------------------------------------
    def _sessions(self) -> dict[ConnId, Session]:
        return self.node.sessions

    def _user_of(self, conn: ConnId) -> UserId | None:
        s = self.node.sessions.get(conn)
        return s.identity.user_id if s is not None and s.identity is not None else None

    def _recipients(self, e: Effect) -> list[ConnId]:
        node = self.node
        if isinstance(e, Reply):
            if e.type == "ack" and e.id is None:
                return []
            return [e.conn] if e.conn in node.sessions else []
        if isinstance(e, ToRoom):
            return [c for c in node.rooms.conns(e.room)
                    if e.exclude_user is None or self._user_of(c) != e.exclude_user]
        if isinstance(e, ToRooms):
            out: set[ConnId] = set()
            for room in e.rooms:
                out |= node.rooms.conns(room)
            return sorted(out)
        if isinstance(e, ToUser):
            return [c for c in node.user_conns.get(e.user, ()) if c != e.exclude_conn]
        if isinstance(e, ToConns):
            return [c for c in e.conns if c in node.sessions]
        if isinstance(e, ToAll):
            return [c for c, s in node.sessions.items() if s.identity is not None]
        raise AssertionError(f"unexpected effect {e!r}")

    def _joins_done(self) -> None:
        """Joins that finished while the loop ran: their effects go out first, as the
        hub runs a task's effects when it ends."""
        while self.done:
            conn = self.done.pop(0)
            task, room, after, fid, _ = self.pending.pop(conn)
            self.asked.append((conn, fid))
            got_before = len(self.inbox_of(conn))
            self.run(task.result())
            if conn in self.views:
                got = [m for m in self.inbox_of(conn)[got_before:] if m["type"] == "ack"]
                self._joined_ack(conn, room, after, got)

    def run(self, effects: Effects) -> None:
        self._joins_done()
        later: list[Later] = []
        for e in effects:
            if isinstance(e, Later):
                later.append(e)
            elif isinstance(e, Close):
                self._close(e.conn)
            elif isinstance(e, LogCall):
                continue
            elif isinstance(e, Forward):
                raise AssertionError(f"a lone node forwarded {e!r}")
            else:
                fid = e.id if isinstance(e, Reply) else None
                msg = json.loads(encode(e.type, e.payload, fid))
                for conn in self._recipients(e):
                    self.receive(conn, msg)
        for e in later:
            self.run(self.loop.run_until_complete(e.work))

    def _close(self, conn: ConnId) -> None:
        user = self._user_of(conn)
        self.run(close_session(self.node, conn))
        self.views.pop(conn, None)
        if user is not None and user not in self.node.user_conns:
            self.last_close[user] = self.clock.mono

    def send(self, conn: ConnId, type_: str, payload: dict[str, Any] | None,
             with_id: bool = True) -> list[dict[str, Any]]:
        """One frame from `conn`, handled to its end; returns the answers it got."""
        fid = f"f{next(self.ids)}" if with_id else None
        s = self.node.sessions[conn]
        data = frame(type_, payload, fid)
        before = len(self.inbox_of(conn))
        parsed = read_frame(data)
        relayed = settled_relay(self.node, s, parsed) if isinstance(parsed, WebRTC) else None
        if relayed is not None:  # the hub's settled relay (ADR 0029)
            peer, event, ack = relayed
            self.run(([ack] if ack else []) + [ToConns((peer,), "webrtc", event)])
        else:
            result = handle_read(self.node, s, parsed)
            if not isinstance(result, list):
                result = self.loop.run_until_complete(self._await(result))
                self._joins_done()
            self.run(result)
        if fid is not None:
            self.asked.append((conn, fid))
        got = self.inbox_of(conn)[before:]
        return [m for m in got if m.get("id") == fid] if fid else got

    @staticmethod
    async def _await(result: Any) -> Effects:
        out: Effects = await result
        return out

    def inbox_of(self, conn: ConnId) -> list[dict[str, Any]]:
        return self.inboxes.setdefault(conn, [])

    inboxes: dict[ConnId, list[dict[str, Any]]]

    # ---- what a connection receives ------------------------------------------------------
    def receive(self, conn: ConnId, msg: dict[str, Any]) -> None:
        self.inbox_of(conn).append(msg)
        v = self.views.get(conn)
        assert v is not None, f"a frame for a closed connection: {msg}"
        t, p = msg["type"], msg.get("payload") or {}
        if t in ANSWERS and msg.get("id") is not None:
            self.answers[(conn, msg["id"])] += 1
        if t == "error":
            assert p["code"] != "internal", msg
        elif t in PERSISTED:
            room = p["roomId"]
            assert room in v.pos, f"{t} for room {room} that {conn} did not join: {msg}"
            assert p["seq"] == v.pos[room] + 1, (conn, v.pos[room], msg)
            v.pos[room] = p["seq"]
            self.step_broadcast_seqs.append((room, p["seq"]))
            if v.user is not None:
                self.resume[(v.user, room)] = p["seq"]
        elif t == "join_room":
            room, who = p["roomId"], p["userId"]
            assert who != v.user, f"own join echoed: {msg}"
            assert who not in v.members[room], f"{who} joined {room} twice for {conn}"
            v.members[room][who] = p.get("status", "online")
        elif t == "leave_room":
            room, who = p["roomId"], p["userId"]
            assert who in v.members[room], f"{who} left {room} without being in it: {conn}"
            del v.members[room][who]
            v.typing.pop((room, who), None)
        elif t == "presence":
            who, status = p["userId"], p["status"]
            assert not (status == "offline" and v.last_presence.get(who) == "offline"), \
                f"offline twice for {who} to {conn}"
            v.last_presence[who] = status
            for members in v.members.values():
                if who in members:
                    members[who] = status
        elif t == "typing":
            key = (p["roomId"], p["userId"])
            assert p["userId"] != v.user
            assert p["roomId"] in v.members
            if not p["isTyping"]:
                assert v.typing.get(key) is not False, f"false twice for {key} to {conn}"
            v.typing[key] = p["isTyping"]
        elif t == "webrtc":
            call = self.calls.get(p["callId"])  # None: an offer whose id the server chose
            assert call is None or not call.ended, f"relay of an ended call: {msg}"
            # `answered_elsewhere` stops a device ringing; frames of an unbound side still
            # reach it later (calls.md §Ownership)
            assert v.call_ends[p["callId"]] == 0, f"relay after call_end: {msg}"
            if call is not None and p["kind"] == "offer" and v.user == call.callee:
                v.rang.add(p["callId"])
        elif t in ("call_end", "call_reject"):
            cid = p["callId"]
            if p["reason"] == "answered_elsewhere":
                v.elsewhere.add(cid)
                return
            v.call_ends[cid] += 1
            assert v.call_ends[cid] == 1, f"{conn} told twice that {cid} ended"
            assert p["reason"] in END_REASONS, msg
            if cid in self.calls:
                self.calls[cid].told.add(conn)

    # ---- rules: connections -----------------------------------------------------------------
    @initialize()
    def setup(self) -> None:
        self.inboxes = {}

    def _conns(self, user: str | None = None) -> list[ConnId]:
        return sorted(c for c, v in self.views.items()
                      if v.user is not None and (user is None or v.user == user)
                      and c not in self.pending)

    @precondition(lambda self: len(self.views) < MAX_CONNS)
    @rule(user=users)
    def connect(self, user: str) -> None:
        s = open_session(self.node)
        self.views[s.conn] = View()
        got = self.send(s.conn, "auth", {"userId": user, "username": user.title()})
        assert [m["type"] for m in got] == ["welcome"], got
        self.views[s.conn].user = UserId(user)
        self.last_close.pop(user, None)

    @precondition(lambda self: len(self.views) < MAX_CONNS)
    @rule(user=users, status=st.sampled_from(["online", "away", "busy"]))
    def connect_with_presence(self, user: str, status: str) -> None:
        """Dev identity mode: a first `presence` frame authenticates."""
        s = open_session(self.node)
        self.views[s.conn] = View()
        got = self.send(s.conn, "presence", {"userId": user, "username": user.title(),
                                             "status": status})
        assert [m["type"] for m in got] == ["welcome"], got
        self.views[s.conn].user = UserId(user)
        self.last_close.pop(user, None)

    @precondition(lambda self: len(self.views) < MAX_CONNS)
    @rule()
    def unauthenticated_frame(self) -> None:
        s = open_session(self.node)
        self.views[s.conn] = View()
        got = self.send(s.conn, "chat", {"roomId": "r1", "content": "hi"})
        assert [m["payload"]["code"] for m in got] == ["unauthorized"], got
        self._close(s.conn)

    def _pick(self, data: st.DataObject) -> ConnId:
        return data.draw(st.sampled_from(self._conns()))

    @precondition(lambda self: any(v.user for v in self.views.values()))
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        self._close(data.draw(st.sampled_from(sorted(c for c, v in self.views.items()
                                                     if v.user is not None))))

    # ---- rooms ------------------------------------------------------------------------------
    @precondition(lambda self: self._conns())
    @rule(data=st.data(), room=rooms, since=st.sampled_from(["none", "resume", "zero", "far"]))
    def join(self, data: st.DataObject, room: str, since: str) -> None:
        conn = self._pick(data)
        v = self.views[conn]
        assert v.user is not None
        payload: dict[str, Any] = {"roomId": room}
        after = {"none": None, "zero": 0, "far": 10_000,
                 "resume": self.resume.get((v.user, room))}[since]
        if after is not None:
            payload["since"] = after
        got = self.send(conn, "join_room", payload)
        self._joined_ack(conn, room, after, got)

    def _joined_ack(self, conn: ConnId, room: str, after: int | None,
                    got: list[dict[str, Any]]) -> None:
        v = self.views[conn]
        assert len(got) == 1 and got[0]["type"] == "ack", got
        ack = got[0]["payload"]
        assert ack["lastSeq"] == self.last_seq[room], (ack, self.last_seq)
        pos = ack["lastSeq"]
        if after is not None:
            # A `since` beyond the room's end is not recoverable (docs/reference/protocol.md).
            assert ack["recovered"] is (after <= pos), ack
            seqs = [m["payload"]["seq"] for m in ack.get("missed") or []]
            assert seqs == list(range(after + 1, pos + 1)), (after, seqs, pos)
        v.pos[room] = pos
        v.members[room] = {m["userId"]: m["status"] for m in ack["members"]}
        assert v.user in v.members[room]
        for key in [k for k in v.typing if k[0] == room]:
            del v.typing[key]

    @precondition(lambda self: RACES and self._conns())
    @rule(data=st.data(), room=rooms, since=st.sampled_from([None, 0]))
    def join_held_by_the_store(self, data: st.DataObject, room: str, since: int | None) -> None:
        """A join that waits for its position read while other things happen."""
        conn = self._pick(data)
        payload: dict[str, Any] = {"roomId": room}
        if since is not None:
            payload["since"] = since
        fid = f"f{next(self.ids)}"
        self.hold_next = True
        result = handle_read(self.node, self.node.sessions[conn],
                             read_frame(frame("join_room", payload, fid)))
        assert not isinstance(result, list)
        task = self.loop.create_task(self._await(result))
        task.add_done_callback(lambda _: self.done.append(conn))
        self.pending[conn] = (task, room, since, fid, self.views[conn].user or "")
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))
        assert self.gates and not task.done() and not self.hold_next

    @precondition(lambda self: self.gates)
    @rule()
    def the_store_answers_a_held_join(self) -> None:
        gate = self.gates.pop(0)
        gate.set_result(None)
        tasks = [t for t, *_ in self.pending.values()]
        self.loop.run_until_complete(asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED))
        self.loop.run_until_complete(asyncio.sleep(0))
        self._joins_done()

    @precondition(lambda self: self._conns())
    @rule(data=st.data(), room=rooms)
    def leave(self, data: st.DataObject, room: str) -> None:
        conn = self._pick(data)
        v = self.views[conn]
        joined = room in self.node.sessions[conn].rooms
        got = self.send(conn, "leave_room", {"roomId": room})
        assert [m["type"] for m in got] == ["ack" if joined else "error"], got
        v.pos.pop(room, None)
        v.members.pop(room, None)
        for key in [k for k in v.typing if k[0] == room]:
            del v.typing[key]

    # ---- persisted events ----------------------------------------------------------------
    def _joined(self) -> list[tuple[ConnId, str]]:
        return [(c, r) for c in self._conns() for r in sorted(self.node.sessions[c].rooms)]

    @precondition(lambda self: self._joined())
    @rule(data=st.data(), cmid=st.sampled_from(["none", "new", "retry"]),
          with_id=st.booleans())
    def chat(self, data: st.DataObject, cmid: str, with_id: bool) -> None:
        conn, room = data.draw(st.sampled_from(self._joined()))
        user = self.views[conn].user
        assert user is not None
        payload: dict[str, Any] = {"roomId": room, "content": "hello"}
        mine = sorted(k for k in self.cmids if k[0] == user)
        key: tuple[str, str] | None = None
        if cmid == "new" or (cmid == "retry" and not mine):
            key = (user, f"m{next(self.cmid_counter)}")
        elif cmid == "retry":
            key = data.draw(st.sampled_from(mine))
        if key is not None:
            payload["clientMsgId"] = key[1]
        self.step_broadcast_seqs = []
        seen_before = len(self.inbox_of(conn))
        got = self.send(conn, "chat", payload, with_id)
        if key is not None and key in self.cmids:
            assert self.step_broadcast_seqs == [], "a retried clientMsgId was broadcast again"
            if with_id:
                ack = got[0]["payload"]
                assert (ack["messageId"], ack["seq"]) == self.cmids[key]
                assert ack["duplicate"] is True
            return
        self.last_seq[room] += 1
        seq = self.last_seq[room]
        assert set(self.step_broadcast_seqs) == {(room, seq)}, self.step_broadcast_seqs
        mine_chat = [m for m in self.inbox_of(conn)[seen_before:] if m["type"] == "chat"]
        assert len(mine_chat) == 1 and mine_chat[0]["payload"]["seq"] == seq
        mid = mine_chat[0]["payload"]["messageId"]
        if with_id:
            assert len(got) == 1 and got[0]["type"] == "ack", got
            assert (got[0]["payload"]["messageId"], got[0]["payload"]["seq"]) == (mid, seq)
        self.msgs[mid] = (room, user)
        if key is not None:
            self.cmids[key] = (mid, seq)

    def _message(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from([*sorted(self.msgs), "nope"]))

    @precondition(lambda self: self._joined())
    @rule(data=st.data(), op=st.sampled_from(["edit", "delete", "add", "remove"]),
          emoji=st.sampled_from(["+1", "ok"]))
    def change_message(self, data: st.DataObject, op: str, emoji: str) -> None:
        conn, room = data.draw(st.sampled_from(self._joined()))
        user = self.views[conn].user
        assert user is not None
        mid = self._message(data)
        where, author = self.msgs.get(mid, (None, None))
        if op == "edit":
            type_, payload = "message_edit", {"roomId": room, "messageId": mid, "content": "x"}
            ok = where == room and author == user and mid not in self.deleted
        elif op == "delete":
            type_, payload = "message_delete", {"roomId": room, "messageId": mid}
            ok = where == room and author == user and mid not in self.deleted
        else:
            type_ = "reaction"
            payload = {"roomId": room, "messageId": mid, "emoji": emoji, "op": op}
            ok = where == room and mid not in self.deleted
        self.step_broadcast_seqs = []
        got = self.send(conn, type_, payload)
        assert len(got) == 1, got
        if not ok:
            assert got[0]["type"] == "error", (op, got)
            assert self.step_broadcast_seqs == []
            return
        assert got[0]["type"] == "ack", (op, got)
        r = (mid, user, emoji)
        noop = (op == "add" and r in self.reactions) or (op == "remove" and r not in self.reactions)
        if noop:
            assert got[0]["payload"].get("seq") is None and self.step_broadcast_seqs == []
            return
        self.last_seq[room] += 1
        assert got[0]["payload"]["seq"] == self.last_seq[room]
        assert set(self.step_broadcast_seqs) == {(room, self.last_seq[room])}
        if op == "delete":
            self.deleted.add(mid)
        elif op == "add":
            self.reactions.add(r)
        elif op == "remove":
            self.reactions.discard(r)

    # ---- typing and presence ----------------------------------------------------------------
    @precondition(lambda self: self._conns())
    @rule(data=st.data(), room=rooms, on=st.booleans())
    def typing(self, data: st.DataObject, room: str, on: bool) -> None:
        conn = self._pick(data)
        got = self.send(conn, "typing", {"roomId": room, "isTyping": on})
        joined = room in self.node.sessions[conn].rooms
        assert [m["type"] for m in got] == ["ack" if joined else "error"], got

    @precondition(lambda self: self._conns())
    @rule(data=st.data(), status=st.sampled_from(["online", "away", "busy"]))
    def presence(self, data: st.DataObject, status: str) -> None:
        got = self.send(self._pick(data), "presence", {"status": status})
        assert [m["type"] for m in got] == ["ack"], got

    # ---- calls ----------------------------------------------------------------------------
    def _call_id(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from([*sorted(self.calls), "ghost"]))

    @precondition(lambda self: self._conns())
    @rule(data=st.data(), to=users, new_id=st.sampled_from(["new", "none", "old"]),
          room=st.sampled_from([None, *ROOMS]))
    def offer(self, data: st.DataObject, to: str, new_id: str, room: str | None) -> None:
        conn = self._pick(data)
        me = self.views[conn].user
        assert me is not None
        payload: dict[str, Any] = {"kind": "offer", "to": to, "sdp": SDP}
        if room is not None:
            payload["roomId"] = room
        known = sorted(c for c in self.calls if c in self.node.calls.calls)
        if new_id == "new" or (new_id == "old" and not known):
            payload["callId"] = f"c{next(self.ids)}"
        elif new_id == "old":
            payload["callId"] = data.draw(st.sampled_from(known))
        fresh = payload.get("callId") not in self.calls
        if fresh and "callId" in payload:  # the model learns of it before it rings
            self.calls[payload["callId"]] = CallModel(me, to)
        got = self.send(conn, "webrtc", payload)
        assert len(got) == 1, got
        if got[0]["type"] == "ack" and "callId" not in payload:
            call_id = got[0]["payload"]["callId"]
            self.calls[call_id] = CallModel(me, to)
            # the offer went out before the model knew the id: replay the views' checks
            for c, v in self.views.items():
                for m in self.inbox_of(c):
                    p = m.get("payload") or {}
                    if m["type"] == "webrtc" and p.get("callId") == call_id and v.user == to:
                        v.rang.add(call_id)
                    if m["type"] in ("call_end", "call_reject") and p.get("callId") == call_id:
                        self.calls[call_id].told.add(c)
        if to == me and fresh:
            assert got[0]["type"] == "error" and got[0]["payload"]["code"] == "bad_request"
        if fresh and got[0]["type"] == "error" and "callId" in payload:
            del self.calls[payload["callId"]]

    def _party_conn(self, data: st.DataObject) -> ConnId:
        return self._pick(data)

    @precondition(lambda self: self._conns() and self.calls)
    @rule(data=st.data(), kind=st.sampled_from(["answer", "ice_candidate"]),
          to=st.sampled_from(["peer", "other"]))
    def signal(self, data: st.DataObject, kind: str, to: str) -> None:
        conn = self._party_conn(data)
        me = self.views[conn].user
        call_id = self._call_id(data)
        call = self.calls.get(call_id)
        if call is not None and to == "peer":
            target = call.callee if me == call.caller else call.caller
        else:
            target = data.draw(users)
        payload: dict[str, Any] = {"kind": kind, "to": target, "callId": call_id}
        if kind == "answer":
            payload["sdp"] = {"type": "answer", "sdp": "v=0"}
        else:
            payload["candidate"] = {"candidate": "c"}
        got = self.send(conn, "webrtc", payload)
        assert len(got) == 1, got

    @precondition(lambda self: self._conns() and self.calls)
    @rule(data=st.data(), type_=st.sampled_from(["call_reject", "call_end"]),
          reason=st.sampled_from([None, "hangup", "rejected"]))
    def control(self, data: st.DataObject, type_: str, reason: str | None) -> None:
        conn = self._party_conn(data)
        payload: dict[str, Any] = {"callId": self._call_id(data)}
        if reason is not None:
            payload["reason"] = reason
        got = self.send(conn, type_, payload)
        assert len(got) == 1, got
        if got[0]["type"] == "ack" and got[0]["payload"]["state"] == "ended":
            call = self.calls.get(payload["callId"])
            if call is not None:
                call.told.add(conn)

    # ---- time -------------------------------------------------------------------------------
    @rule(ms=steps, housekeep=st.booleans())
    def time_passes(self, ms: int, housekeep: bool) -> None:
        now = self.clock.advance(ms)
        self.run(tick(self.node, now, self.clock.mono_ms()))
        if housekeep:
            self.run(self.loop.run_until_complete(housekeeping(self.node, now,
                                                               self.clock.mono_ms())))
        self.last_tick = self.clock.mono

    @rule(ms=st.sampled_from([-3_600_000, -RING_MS, RING_MS, 3_600_000]))
    def the_system_clock_steps(self, ms: int) -> None:
        self.clock.step(ms)
        self.run(tick(self.node, self.clock.now_ms(), self.clock.mono_ms()))

    @rule()
    def everyone_leaves_and_time_passes(self) -> None:
        for conn in sorted(self.views):
            self._close(conn)
        while self.gates:
            self.the_store_answers_a_held_join()
        for _ in range(4):
            self.time_passes(RING_MS, True)
        self._assert_empty()

    # ---- invariants -------------------------------------------------------------------------
    @invariant()
    def each_frame_with_an_id_got_one_answer(self) -> None:
        for key in self.asked:
            conn = key[0]
            if conn in self.views or self.answers[key]:
                assert self.answers[key] == 1, (key, self.inbox_of(conn)[-5:])
        self.asked = []

    @invariant()
    def calls_told_and_consistent(self) -> None:
        calls = self.node.calls
        for cid, model in self.calls.items():
            call = calls.calls.get(cid)
            if call is None or call.state is not CallState.ENDED or model.ended:
                continue
            model.ended = True
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
        live = {u: c for u, c in ((u, calls.live_call_of(u)) for u in USERS) if c is not None}
        for u, call in live.items():
            assert call.state is not CallState.ENDED and call.is_party(u)
            assert u in self.node.user_conns, f"{u} has no connection, still in {call.call_id}"
            for side, owner in ((call.caller, call.caller_conn), (call.callee, call.callee_conn)):
                if owner is not None:
                    assert self._user_of(owner) == side, (call, side, owner)
        directory = self.node.directory
        assert isinstance(directory, MemoryDirectory)
        assert dict(directory.state.user_call) == {u: c.call_id for u, c in live.items()}

    @invariant()
    def views_match_the_node(self) -> None:
        node = self.node
        directory = node.directory
        assert isinstance(directory, MemoryDirectory)
        state = directory.state
        for conn, v in self.views.items():
            if v.user is None:
                continue
            s = node.sessions[conn]
            assert set(v.pos) == set(s.rooms), (conn, v.pos, s.rooms)
            for room in s.rooms:
                assert v.pos[room] == self.last_seq[room], (conn, room, v.pos, self.last_seq)
                want = {u: state.info[u].status for u in state.room_members.get(room, ())
                        if (u, room) not in self._joining()}
                have = {u: st for u, st in v.members[room].items()
                        if (u, room) not in self._joining()}
                assert have == want, (conn, room, v.members[room], want)
            for (room, who), on in v.typing.items():
                if on:
                    assert node.typing.is_typing(RoomId(room), UserId(who)), \
                        f"{conn} still sees {who} typing in {room}"

    @invariant()
    def structures_agree(self) -> None:
        node = self.node
        directory = node.directory
        assert isinstance(directory, MemoryDirectory)
        state = directory.state
        authed = {c: s for c, s in node.sessions.items() if s.identity is not None}
        by_user: dict[UserId, set[ConnId]] = {}
        for c, s in authed.items():
            assert s.identity is not None
            by_user.setdefault(s.identity.user_id, set()).add(c)
        assert node.user_conns == by_user
        for room in ROOMS:
            rid = RoomId(room)
            assert node.rooms.conns(rid) == {c for c, s in authed.items() if rid in s.rooms}
            members = node.rooms.members(rid)
            joining = {u for u, r in self._joining() if r == room}
            assert set(members) - joining == set(state.room_members.get(rid, ())) - joining, \
                (room, members, state.room_members.get(rid))
            for uid, conns in members.items():
                assert conns <= by_user.get(uid, set())
        for uid in USERS:
            p = node.presence.get(UserId(uid))
            conns = len(by_user.get(UserId(uid), ()))
            if p is not None:
                assert p.connections == conns, (uid, p, conns)
            else:
                assert conns == 0
                assert not node.rooms.rooms_of(UserId(uid))
            assert (uid in state.user_nodes) == (p is not None), (uid, p)
            assert bool(state.connected.get(UserId(uid))) == bool(conns)
            gone = self.last_close.get(uid)
            if gone is not None and uid not in node.user_conns and \
                    self.last_tick >= gone + GRACE_MS:
                assert p is None, f"{uid} still present after the grace"
                assert not state.user_rooms.get(UserId(uid)), f"{uid} still in rooms"

    def _joining(self) -> set[tuple[str, str]]:
        """(user, room) of the joins held by the store: the directory may know of them
        before the room does."""
        return {(user, room) for _, room, _, _, user in self.pending.values()}

    def _assert_empty(self) -> None:
        node = self.node
        directory = node.directory
        assert isinstance(directory, MemoryDirectory)
        state = directory.state
        assert not node.sessions and not node.user_conns
        assert not list(node.rooms) and node.presence.online_count() == 0
        assert not node.typing._active
        assert not node.calls.live_parties() and node.calls.live_count() == 0
        assert not node.opening
        assert not state.user_nodes and not state.connected
        assert not state.member_nodes and not state.room_members and not state.user_rooms
        assert not state.calls and not state.user_call


TestNodeModel = NodeMachine.TestCase
# A longer run: HUBBUB_MODEL_EXAMPLES=2000 HUBBUB_MODEL_STEPS=80 pytest this file.
TestNodeModel.settings = settings(max_examples=int(os.environ.get("HUBBUB_MODEL_EXAMPLES", 200)),
                                  stateful_step_count=int(os.environ.get("HUBBUB_MODEL_STEPS",
                                                                         50)),
                                  deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
