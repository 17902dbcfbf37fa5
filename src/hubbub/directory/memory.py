"""The in-process Directory: the default for one node, and several nodes in one process
(tests) when they share one `MemoryDirectoryState`."""

import heapq
import secrets
from collections import defaultdict
from dataclasses import dataclass, field, replace

from hubbub.directory.base import (
    DEFAULT_NODE_TTL_MS,
    ENDED_CALL_RETENTION_MS,
    OFFLINE_RETENTION_MS,
    REAPED_CALL_RETENTION_MS,
    CallInfo,
    Claim,
    Departure,
    Directory,
    NodeWatch,
    PresenceInfo,
    Restore,
)
from hubbub.ids import RoomId, UserId


@dataclass
class MemoryDirectoryState:
    """What a Redis server is to RedisDirectory."""

    heartbeats: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)  # node -> its number
    # user -> nodes holding them; (room, user) -> nodes holding them there
    user_nodes: dict[UserId, set[str]] = field(default_factory=lambda: defaultdict(set))
    # user -> nodes with a connection of theirs (not only a grace period)
    connected: dict[UserId, set[str]] = field(default_factory=lambda: defaultdict(set))
    member_nodes: dict[tuple[RoomId, UserId], set[str]] = field(
        default_factory=lambda: defaultdict(set))
    room_members: dict[RoomId, set[UserId]] = field(default_factory=lambda: defaultdict(set))
    user_rooms: dict[UserId, set[RoomId]] = field(default_factory=lambda: defaultdict(set))
    info: dict[UserId, PresenceInfo] = field(default_factory=dict)
    # (when to forget, user) for users who went offline: what Redis's key expiry does.
    forget: list[tuple[int, UserId]] = field(default_factory=list)
    calls: dict[str, CallInfo] = field(default_factory=dict)
    user_call: dict[UserId, str] = field(default_factory=dict)
    # callId -> when it was reaped, for `REAPED_CALL_RETENTION_MS` (what a key's expiry does).
    reaped_calls: dict[str, int] = field(default_factory=dict)
    # callId -> the first heartbeat after it ended (None until then), for
    # `ENDED_CALL_RETENTION_MS`: a key's expiry, give or take one heartbeat.
    ended_calls: dict[str, int | None] = field(default_factory=dict)


class MemoryDirectory(Directory):
    def __init__(self, state: MemoryDirectoryState | None = None, node_id: str | None = None,
                 node_ttl_ms: int = DEFAULT_NODE_TTL_MS,
                 offline_retention_ms: int = OFFLINE_RETENTION_MS) -> None:
        self.node_id = node_id or secrets.token_hex(4)
        self.state = state or MemoryDirectoryState()
        self.node_ttl_ms = node_ttl_ms
        self.offline_retention_ms = offline_retention_ms
        self.watch = NodeWatch(self.node_id)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def heartbeat(self, now_ms: int) -> bool:
        known = self.node_id in self.state.heartbeats
        self.state.heartbeats[self.node_id] = now_ms
        self.state.numbers[self.node_id] = self.number
        self._forget_offline(now_ms)
        reaped = self.state.reaped_calls
        for call_id in [c for c, at in reaped.items() if now_ms - at >= REAPED_CALL_RETENTION_MS]:
            del reaped[call_id]
        ended = self.state.ended_calls
        for call_id, at in list(ended.items()):
            if at is None:
                ended[call_id] = now_ms
            elif now_ms - at >= ENDED_CALL_RETENTION_MS:
                del ended[call_id]
        return not known

    def _forget_offline(self, now_ms: int) -> None:
        forget, info = self.state.forget, self.state.info
        while forget and forget[0][0] <= now_ms:
            _, user = heapq.heappop(forget)
            p = info.get(user)
            # Still offline since then (a user back online, or offline again later, is not).
            if p is not None and p.status == "offline" \
                    and p.last_seen_ms + self.offline_retention_ms <= now_ms:
                del info[user]

    # ---- presence ----------------------------------------------------------------------
    async def live_numbers(self) -> set[int] | None:
        if any(node not in self.state.numbers for node in self.state.heartbeats):
            return None
        return set(self.state.numbers.values())

    async def user_up(self, user: UserId, username: str, now_ms: int) -> bool:
        nodes = self.state.user_nodes[user]
        first = not nodes
        nodes.add(self.node_id)
        self.state.connected[user].add(self.node_id)
        old = self.state.info.get(user)
        status = "online" if first or old is None else old.status
        self.state.info[user] = PresenceInfo(username, status, now_ms)
        return first

    async def user_idle(self, user: UserId) -> None:
        self._disconnected(user, self.node_id)

    def _disconnected(self, user: UserId, node: str) -> None:
        nodes = self.state.connected.get(user)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self.state.connected[user]

    async def user_down(self, user: UserId, now_ms: int) -> bool:
        return self._user_down(user, self.node_id, now_ms, forgotten_counts=True)

    def _user_down(self, user: UserId, node: str, now_ms: int, *,
                   forgotten_counts: bool = False) -> bool:
        self._disconnected(user, node)
        nodes = self.state.user_nodes.get(user)
        if nodes is None or node not in nodes:
            old = self.state.info.get(user)
            # Offline already: told once. No record: the directory forgot the user.
            if nodes or not forgotten_counts or (old is not None and old.status == "offline"):
                return False
        else:
            nodes.discard(node)
            if nodes:
                return False
        self.state.user_nodes.pop(user, None)
        old = self.state.info.get(user)
        self.state.info[user] = PresenceInfo(old.username if old else user, "offline", now_ms)
        heapq.heappush(self.state.forget, (now_ms + self.offline_retention_ms, user))
        return True

    async def set_status(self, user: UserId, status: str, now_ms: int) -> bool:
        old = self.state.info.get(user)
        if old is None or old.status == status:
            return False
        self.state.info[user] = PresenceInfo(old.username, status, now_ms)
        return True

    async def presence(self, users: list[UserId]) -> dict[UserId, PresenceInfo]:
        info = self.state.info
        return {u: info[u] for u in users if u in info}

    async def is_online(self, user: UserId) -> bool:
        return bool(self.state.connected.get(user))

    # ---- membership --------------------------------------------------------------------
    async def add_member(self, room: RoomId, user: UserId) -> bool:
        nodes = self.state.member_nodes[(room, user)]
        first = not nodes
        nodes.add(self.node_id)
        self.state.room_members[room].add(user)
        self.state.user_rooms[user].add(room)
        return first

    async def remove_member(self, room: RoomId, user: UserId) -> bool:
        return self._remove_member(room, user, self.node_id, forgotten_counts=True)

    def _remove_member(self, room: RoomId, user: UserId, node: str, *,
                       forgotten_counts: bool = False) -> bool:
        key = (room, user)
        nodes = self.state.member_nodes.get(key)
        if nodes is None or node not in nodes:
            if nodes or not forgotten_counts:
                return False
        else:
            nodes.discard(node)
            if nodes:
                return False
        st = self.state
        st.member_nodes.pop(key, None)
        members = st.room_members.get(room, set())
        members.discard(user)
        if not members:
            st.room_members.pop(room, None)
        rooms = st.user_rooms.get(user, set())
        rooms.discard(room)
        if not rooms:
            st.user_rooms.pop(user, None)
        return True

    async def members(self, room: RoomId) -> list[UserId]:
        return sorted(self.state.room_members.get(room, ()))

    async def rooms_of(self, user: UserId) -> set[RoomId]:
        return set(self.state.user_rooms.get(user, ()))

    # ---- dead nodes ----------------------------------------------------------------------
    def _silent(self, mono_ms: int) -> dict[str, int]:
        return self.watch.silent(self.state.heartbeats, mono_ms, self.node_ttl_ms)

    async def reap(self, now_ms: int, mono_ms: int) -> list[Departure]:
        dead = self._silent(mono_ms)
        departures: list[Departure] = []
        for node in dead:
            departures += self._release(node, now_ms)
            del self.state.heartbeats[node]
            self.state.numbers.pop(node, None)
        return departures

    def _release(self, node: str, now_ms: int) -> list[Departure]:
        out: dict[UserId, Departure] = {}
        before = {u: sorted(rooms) for u, rooms in self.state.user_rooms.items()}

        def departure(user: UserId) -> Departure:
            if user not in out:
                info = self.state.info.get(user)
                out[user] = Departure(user, info.username if info else user,
                                      rooms_before=before.get(user, []))
            return out[user]

        for (room, user), nodes in list(self.state.member_nodes.items()):
            if node in nodes and self._remove_member(room, user, node):
                departure(user).rooms_left.append(room)
        for user, nodes in list(self.state.user_nodes.items()):
            if node in nodes and self._user_down(user, node, now_ms):
                d = departure(user)
                d.went_offline = True
                d.last_seen_ms = now_ms
        return list(out.values())

    # ---- calls -----------------------------------------------------------------------------
    async def claim_call(self, call: CallInfo) -> Claim:
        st = self.state
        if call.call_id in st.calls:
            return Claim("taken", st.calls[call.call_id])
        if call.call_id in st.ended_calls or call.call_id in st.reaped_calls:
            return Claim("ended")
        for party, outcome in ((call.caller, "caller_busy"), (call.callee, "callee_busy")):
            current = st.user_call.get(party)
            if current is not None:
                return Claim(outcome, st.calls.get(current))
        st.calls[call.call_id] = call
        st.user_call[call.caller] = st.user_call[call.callee] = call.call_id
        return Claim("ok", call)

    async def call_info(self, call_id: str) -> CallInfo | None:
        return self.state.calls.get(call_id)

    async def call_of(self, user: UserId) -> CallInfo | None:
        call_id = self.state.user_call.get(user)
        return self.state.calls.get(call_id) if call_id else None

    async def set_call_state(self, call_id: str, state: str, at_ms: int) -> None:
        call = self.state.calls.get(call_id)
        if call is not None:
            self.state.calls[call_id] = replace(
                call, state=state, answered_at=at_ms if state == "active" else call.answered_at)

    async def release_call(self, call_id: str, *, ended: bool) -> None:
        call = self.state.calls.pop(call_id, None)
        if call is None:
            if ended:  # refused busy at its claim (never held here), or forgotten
                self.state.ended_calls.setdefault(call_id, None)
            return
        if ended:
            self.state.ended_calls[call_id] = None
        for party in (call.caller, call.callee):
            if self.state.user_call.get(party) == call_id:
                del self.state.user_call[party]

    async def remember_ended(self, ended: dict[str, int], now_ms: int) -> None:
        st = self.state
        for call_id, left_ms in ended.items():
            if call_id not in st.calls and left_ms > 0:
                # Kept from when it would have ended by `heartbeat`'s reckoning.
                st.ended_calls[call_id] = now_ms - (ENDED_CALL_RETENTION_MS - left_ms)

    async def restore_call(self, call: CallInfo) -> Restore:
        st = self.state
        if call.call_id in st.reaped_calls:
            return Restore("reaped")
        known = st.calls.get(call.call_id)
        if known is not None and (known.caller, known.callee, known.home_node) != (
                call.caller, call.callee, call.home_node):
            return Restore("taken")
        st.calls[call.call_id] = replace(call, home_seen=None)
        held_elsewhere = []
        for party in (call.caller, call.callee):
            current = st.user_call.setdefault(party, call.call_id)
            if current != call.call_id:
                held_elsewhere.append(party)
        return Restore("restored", tuple(held_elsewhere))

    async def reap_calls(self, now_ms: int, mono_ms: int) -> list[CallInfo]:
        dead = self._silent(mono_ms)
        gone = [replace(c, home_seen=dead[c.home_node])
                for c in self.state.calls.values() if c.home_node in dead]
        for call in gone:
            await self.release_call(call.call_id, ended=True)
            self.state.reaped_calls[call.call_id] = now_ms
        return gone
