"""The Directory contract: who is online and who is in which room, across every node.

Every backend passes the same contract suite (tests/contract/test_directory.py).

Each node reports only what its own connections hold: "this node holds user U" (U has a
connection here) and "this node holds U in room R". A user is online while some live
node holds them, and a member of R while some live node holds them in R; the answers
that matter to the rules — *first* holder, *last* holder — are decided atomically, so
two nodes never both announce the same join, leave or offline.

Nodes heartbeat. A node silent for `node_ttl_ms` is presumed dead: `reap()`, run by any
live node, releases everything it held, once, and returns the departures it caused
(users who left rooms or went offline) so the reaping node can tell the others. Silent
means what the reaper saw (`NodeWatch`): the node's heartbeat has not changed for a TTL of
the reaper's monotonic clock, so the nodes' wall clocks need not agree.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from hubbub.core.calls import ENDED_RETENTION_MS
from hubbub.ids import RoomId, UserId

DEFAULT_NODE_TTL_MS = 10_000
# How long an offline user's record (username, `offline`, lastSeen) is kept; then the user
# is forgotten, as if never seen. Nothing reads it once the `offline` event has gone out,
# and without a bound the directory would hold every user ever seen.
OFFLINE_RETENTION_MS = 24 * 3600 * 1000
# How long the directory remembers that it reaped a call (its home was presumed dead): a
# home that comes back within it learns that its call was ended for the others, rather
# than writing it back (`restore_call`).
REAPED_CALL_RETENTION_MS = 24 * 3600 * 1000
# How long the directory remembers that a call ended: as long as its home does, so that
# a late offer naming it (an ICE restart racing a hang-up, say) is refused from every node
# as its home refuses it, rather than start a new call under the old id.
ENDED_CALL_RETENTION_MS = ENDED_RETENTION_MS


@dataclass(slots=True, frozen=True)
class PresenceInfo:
    username: str
    status: str  # online | away | busy | offline
    last_seen_ms: int


@dataclass(slots=True)
class Departure:
    """What releasing a dead node's holdings changed for one user."""

    user: UserId
    username: str
    rooms_left: list[RoomId] = field(default_factory=list)
    # The rooms the user was in before (who must hear that they went offline).
    rooms_before: list[RoomId] = field(default_factory=list)
    went_offline: bool = False
    last_seen_ms: int = 0


@dataclass(slots=True, frozen=True)
class CallInfo:
    """Where a call lives: its parties and the node whose rules own it (its home)."""

    call_id: str
    caller: UserId
    callee: UserId
    home: int  # the home node's number (routes frames to it)
    home_node: str  # the home node's id (reaps it with the node)
    state: str = "ringing"
    # What the call log needs if the home node dies and another node writes the record.
    started_at: int = 0
    room: str | None = None
    answered_at: int | None = None  # set with state "active"
    home_seen: int | None = None  # set by `reap_calls`: the home's last heartbeat (ms)


@dataclass(slots=True, frozen=True)
class Claim:
    """The answer to `claim_call`: `ok`, `taken` (the callId is in use), `ended` (the
    callId is a call that ended or was reaped lately), `caller_busy` or `callee_busy`
    (with the call that party is in)."""

    outcome: str
    other: CallInfo | None = None


@dataclass(slots=True, frozen=True)
class Restore:
    """The answer to `restore_call`: `restored` (the directory holds the call again; each
    party in `held_elsewhere` is recorded in another call, which was kept), `reaped` (the
    call was reaped while its home was cut off: its parties were told it ended, and
    nothing was written) or `taken` (the callId is another call's: nothing was written)."""

    outcome: str
    held_elsewhere: tuple[UserId, ...] = ()


@dataclass(slots=True)
class ToldAgain:
    """The answer to `tell_again`: the users no live node held before, with the rooms the
    directory had for them, and the memberships no live node held, with the status the
    directory has for their user (None: it has none)."""

    came_online: dict[UserId, set[RoomId]] = field(default_factory=dict)
    joined: list[tuple[RoomId, UserId, str | None]] = field(default_factory=list)


class NodeWatch:
    """Which other nodes this node has seen fall silent. A heartbeat carries its node's
    wall clock (`home_seen` reports it), but only its *changing* is trusted: a node is
    presumed dead once its heartbeat has stayed the same for the node TTL, counted on the
    watcher's monotonic clock from when the watcher first read it (so it was silent at
    least that long). Comparing one node's wall clock with another's would reap a live
    node whose clock is behind by a TTL, never reap a dead one whose clock was ahead, and
    reap every node at a step of the watcher's clock."""

    __slots__ = ("_seen", "own")

    def __init__(self, own: str) -> None:
        self.own = own
        # node -> (its heartbeat as last read, this node's mono_ms when it last changed)
        self._seen: dict[str, tuple[int, int]] = {}

    def silent(self, beats: dict[str, int], mono_ms: int, ttl_ms: int) -> dict[str, int]:
        """Read the heartbeats of every node the directory knows; returns the nodes seen
        silent for `ttl_ms` or more, with their last heartbeat. A node first read now starts
        its watch now: a node that starts watching reaps nobody for a TTL."""
        seen: dict[str, tuple[int, int]] = {}
        for node, beat in beats.items():
            if node == self.own:
                continue
            last = self._seen.get(node)
            seen[node] = last if last is not None and last[0] == beat else (beat, mono_ms)
        self._seen = seen  # forgets the nodes reaped meanwhile
        return {node: beat for node, (beat, since) in seen.items()
                if mono_ms - since >= ttl_ms}


class Directory(ABC):
    node_id: str
    node_ttl_ms: int  # silent this long, a node is presumed dead
    # This node's number (the high bits of its connection ids), set before `start`: each
    # heartbeat publishes it, so a call's home can tell which connections died with their
    # node (`live_numbers`).
    number: int = 0

    @abstractmethod
    async def start(self) -> None:
        """Connect and announce this node (a first heartbeat)."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect. What this node held stays until another node reaps it after the
        node TTL: that delay is also the grace in which its clients, closed with 1001,
        reconnect elsewhere without their rooms hearing them leave."""

    @abstractmethod
    async def heartbeat(self, now_ms: int) -> bool:
        """This node is alive (call every few seconds). True when the directory did not
        know it: its first heartbeat, or it had been reaped (cut off longer than the node
        TTL) or the directory lost its data (Redis restarted empty) — then the node tells
        it again what it holds. `now_ms` is this node's wall clock: the others only need
        it to change from one heartbeat to the next (`NodeWatch`)."""

    @abstractmethod
    async def live_numbers(self) -> set[int] | None:
        """The numbers of the nodes the directory lists: alive, or dead and not reaped
        yet. A connection whose node's number is not among them is gone. None when a
        listed node publishes no number (an older version, during a rolling upgrade):
        then nobody can tell."""

    @abstractmethod
    async def user_up(self, user: UserId, username: str, now_ms: int) -> bool:
        """This node now has a connection of `user` (idempotent). True when no live node
        held them before (they came online); their status then starts as `online`."""

    @abstractmethod
    async def user_idle(self, user: UserId) -> None:
        """This node still holds `user` (a grace period runs) but has no connection of
        theirs: they cannot be reached here, e.g. for a call."""

    @abstractmethod
    async def user_down(self, user: UserId, now_ms: int) -> bool:
        """This node no longer holds `user`. True when no live node holds them any more:
        they are offline, with lastSeen = now_ms, and forgotten `offline_retention_ms`
        later unless they come back. That includes a user the directory did not know this
        node held (it forgot: Redis restarted empty, or this node was reaped while cut
        off): the caller held them, so the others may not have heard they left. A user
        the directory has offline already stays as they are (False)."""

    @abstractmethod
    async def set_status(self, user: UserId, status: str, now_ms: int) -> bool:
        """The user chose a status; True when it changed."""

    @abstractmethod
    async def presence(self, users: list[UserId]) -> dict[UserId, PresenceInfo]:
        """What is known of each user; users never seen are absent."""

    @abstractmethod
    async def is_online(self, user: UserId) -> bool:
        """Some live node has a connection of `user` (not only a grace period)."""

    @abstractmethod
    async def add_member(self, room: RoomId, user: UserId) -> bool:
        """This node now holds `user` in `room`; True when no live node held them there."""

    @abstractmethod
    async def remove_member(self, room: RoomId, user: UserId) -> bool:
        """This node no longer holds `user` in `room`; True when no live node does, also
        when the directory did not know this node held them there (as `user_down`; the
        caller says it once)."""

    @abstractmethod
    async def members(self, room: RoomId) -> list[UserId]: ...

    @abstractmethod
    async def rooms_of(self, user: UserId) -> set[RoomId]: ...

    async def tell_again(self, connected: list[tuple[UserId, str]],
                         idle: list[tuple[UserId, str]], members: list[tuple[RoomId, UserId]],
                         now_ms: int, told: ToldAgain | None = None) -> ToldAgain:
        """Write back what this node holds, after the directory forgot it (`heartbeat` said
        so): `user_up` for each connected user (with their username), `user_up` then
        `user_idle` for each user in a grace period, and `add_member` for each membership,
        in that order. A backend may batch the writes (each stays atomic on its own).
        The answer accumulates in `told` as the writes are made: when one fails, what was
        written before it is known all the same."""
        told = ToldAgain() if told is None else told
        for user, username in connected:
            if await self.user_up(user, username, now_ms):
                told.came_online[user] = await self.rooms_of(user)
        for user, username in idle:
            await self.user_up(user, username, now_ms)
            await self.user_idle(user)
        for room, user in members:
            if await self.add_member(room, user):
                info = (await self.presence([user])).get(user)
                told.joined.append((room, user, info.status if info else None))
        return told

    @abstractmethod
    async def reap(self, now_ms: int, mono_ms: int) -> list[Departure]:
        """Release the holdings of nodes this node has seen silent for the node TTL of
        `mono_ms` (`NodeWatch`); `now_ms` is the departed users' lastSeen."""

    # ---- calls: one live call per user, cluster-wide -------------------------------------
    @abstractmethod
    async def claim_call(self, call: CallInfo) -> Claim:
        """Atomically: the callId is new and neither party is in a live call; then both
        are in this one. Otherwise nothing changes and the claim says why."""

    @abstractmethod
    async def call_info(self, call_id: str) -> CallInfo | None: ...

    @abstractmethod
    async def call_of(self, user: UserId) -> CallInfo | None:
        """The live call `user` is in, if any."""

    @abstractmethod
    async def set_call_state(self, call_id: str, state: str, at_ms: int) -> None:
        """The call's state changed at `at_ms`; "active" records it as `answered_at`."""

    @abstractmethod
    async def release_call(self, call_id: str, *, ended: bool) -> None:
        """The call is over: its parties are free again (idempotent). `ended`: it took
        place (it rang), so its id is remembered for `ENDED_CALL_RETENTION_MS` and not
        claimed again meanwhile; not when the rules refused it right after its claim. A
        call the directory does not hold (its claim was refused `callee_busy`, or the
        directory forgot it) leaves its id remembered all the same."""

    @abstractmethod
    async def remember_ended(self, ended: dict[str, int], now_ms: int) -> None:
        """Write back what a directory that forgot this node (`heartbeat` said so) knew of
        the calls that ended here lately: each callId is remembered as ended for the ms
        given (what is left of its `ENDED_CALL_RETENTION_MS`), as `release_call` with
        `ended` remembered it. An id a live call holds now is left to that call."""

    @abstractmethod
    async def restore_call(self, call: CallInfo) -> Restore:
        """Atomically write back a live call of this node (its home) that the directory
        forgot (`heartbeat` said so): the call and each party's record as if `claim_call`
        (and `set_call_state`, for an answered call) had just written them, with the
        state, start and answer times of `call`. A party already recorded in another call
        keeps that record (it is newer: claimed while the directory did not know this
        call), and is listed in `held_elsewhere`; restoring again later fills in the
        parties that became free. Nothing is written for a call this directory reaped
        (`reaped`) or a callId that is another call's (`taken`). Idempotent."""

    async def restore_calls(self, calls: list[CallInfo]) -> list[Restore]:
        """`restore_call` for each call, in order, with their answers. A backend may batch
        them (each stays atomic on its own)."""
        return [await self.restore_call(call) for call in calls]

    @abstractmethod
    async def reap_calls(self, now_ms: int, mono_ms: int) -> list[CallInfo]:
        """Release the calls whose home node is dead, as `reap` judges it (call before
        `reap`, which forgets the node); returns them,
        once, with `home_seen` set, so their parties can be told the call ended and the
        reaper can write the call log record the dead home could not. Each is remembered
        as reaped for `REAPED_CALL_RETENTION_MS` (see `restore_call`)."""
