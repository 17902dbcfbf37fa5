"""The state of one hubbub node as the handlers see it: the core rule objects, wired."""

import heapq
import itertools
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from hubbub.config import Settings
from hubbub.core.calls import Calls
from hubbub.core.clock import Clock
from hubbub.core.effects import Close, Effects, Reply
from hubbub.core.presence import CALLS_PER_SECOND, CHANGES_PER_SECOND, PresenceTracker
from hubbub.core.ratelimit import KeyedBuckets
from hubbub.core.rooms import RoomRegistry
from hubbub.core.session import Limits, Session
from hubbub.core.typing_indicators import TypingTracker
from hubbub.directory.base import Directory
from hubbub.directory.memory import MemoryDirectory
from hubbub.errors import ProtocolError
from hubbub.ids import ConnId, RoomId, UserId, conn_id
from hubbub.metrics import Metrics
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import ErrorPayload, Member
from hubbub.store.base import Store


class Fanout(Protocol):
    """What the rules tell the node's fan-out about local interest (hubbub.server.fanout)."""

    async def room_opened(self, room: RoomId, members: list[Member]) -> None:
        """The first local connection is joining `room` and read its `members` (what this
        node's connections are shown of it from now on); returns once its events flow."""

    def room_position(self, room: RoomId, last_seq: int, conn: ConnId) -> None:
        """Local connection `conn` joined `room` at `last_seq`."""

    def delivered(self, room: RoomId) -> int | None:
        """The last seq of `room` this node delivered to its connections, if it orders it."""

    def room_closed(self, room: RoomId) -> None:
        """The last local connection left `room`."""

    async def user_opened(self, user: UserId) -> None:
        """The first local connection of `user` is authenticating; returns once events
        for the user reach this node."""

    def user_closed(self, user: UserId) -> None:
        """The last local connection of `user` closed."""


class LocalOnly:
    """One node, nobody else to tell."""

    async def room_opened(self, room: RoomId, members: list[Member]) -> None:
        return None

    def room_position(self, room: RoomId, last_seq: int, conn: ConnId) -> None:
        return None

    def delivered(self, room: RoomId) -> int | None:
        return None

    def room_closed(self, room: RoomId) -> None:
        return None

    async def user_opened(self, user: UserId) -> None:
        return None

    def user_closed(self, user: UserId) -> None:
        return None


# Reads per user and second through the HTTP API, and the burst (docs/topics/backpressure.md).
HTTP_READS_PER_SECOND = 10.0
HTTP_READ_BURST = 20.0


def limits_from(settings: Settings) -> Limits:
    on = settings.rate_limit > 0
    return Limits(
        frames_per_second=settings.rate_limit if on else 0.0,
        # A burst below one frame would refuse every frame: at least one always fits.
        frame_burst=max(1.0, settings.rate_limit * 2),
        chats_per_second=settings.chat_rate if on else 0.0,
        chat_burst=max(1.0, settings.chat_rate * 2),
        joins_per_second=10.0 if on else 0.0,
        # A client that reconnects re-joins every room it was in at once (the clients
        # resume by themselves): the burst lets all --max-rooms of them through.
        join_burst=max(50.0, float(settings.max_rooms)),
        max_rooms=settings.max_rooms,
        max_content_chars=settings.max_content,
    )


@dataclass(slots=True)
class OwedDeparture:
    """What the directory still holds of a user through this node that this node let go:
    the user (`last_seen_ms` set: their last connection here closed then) and rooms."""

    username: str
    rooms: set[RoomId] = field(default_factory=set)
    last_seen_ms: int | None = None


@dataclass
class Node:
    settings: Settings
    clock: Clock
    limits: Limits = field(init=False)
    rooms: RoomRegistry = field(default_factory=RoomRegistry)
    presence: PresenceTracker = field(init=False)
    typing: TypingTracker = field(init=False)
    calls: Calls = field(init=False)
    # Reads through the HTTP API (history, call log), per user: they go to the store like
    # a `history` frame, and HTTP has no connection to keep a bucket on.
    http_reads: KeyedBuckets = field(init=False)
    sessions: dict[ConnId, Session] = field(default_factory=dict)
    # Open connections per client IP (for --max-connections-per-ip).
    ip_conns: Counter[str] = field(default_factory=Counter)
    # Authenticated connections of each user (several devices = one user).
    user_conns: dict[UserId, set[ConnId]] = field(default_factory=dict)
    # Authentications under way per user, waiting for the fan-out and the directory.
    opening: Counter[UserId] = field(default_factory=Counter)
    # Joins under way per (room, user), waiting for the directory or the store: while one
    # is, the user's membership of that room is not released (`released`), or the join
    # would finish in a room the others were told the user left (docs/topics/presence.md).
    joining: Counter[tuple[RoomId, UserId]] = field(default_factory=Counter)
    # Connections joining a room (not in it yet), each with what the hub held back for it:
    # the room's join, leave and presence events sent while the join waited (core.effects.CatchUp).
    prejoin: dict[RoomId, dict[ConnId, list[Any]]] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    # Set by the server once opened (hubbub.store.open_store); rules never reach past it.
    store: Store = field(init=False)
    fanout: Fanout = field(default_factory=LocalOnly)
    # Cluster-wide presence and membership; in-process for a lone node.
    directory: Directory = field(default_factory=MemoryDirectory)
    # Calls that ended here whose release from the directory failed (Redis was down):
    # released again each housekeeping round, or their parties would stay busy.
    unreleased_calls: set[str] = field(default_factory=set)
    # Likewise departures (a grace period ended, a room was left) the directory did not
    # hear of: this node lives on, so nobody would ever reap what it still holds there.
    unreleased_users: "dict[UserId, OwedDeparture]" = field(default_factory=dict)
    # Live calls here not yet wholly written back to a directory that forgot this node (a
    # write failed, or a party was recorded in another call): written again each round.
    unrestored_calls: set[str] = field(default_factory=set)
    # When the heartbeat last found that the directory did not know this node while calls
    # lived here. For a node TTL after that, the other nodes may not yet have told it
    # again whom they hold: a party missing from it is not taken for gone (`orphaned`).
    directory_forgot_mono: int | None = None  # monotonic
    # A write-back to a forgetful directory broke off (Redis went away again): the next
    # housekeeping round does it again, though the heartbeat no longer says it forgot.
    tell_again_owed: bool = False
    # This node's number: the high bits of its connection ids (0 for a lone node).
    number: int = 0
    # (monotonic deadline, conn): each connection's authentication deadline.
    deadlines: list[tuple[int, ConnId]] = field(default_factory=list)
    # (exp in wall-clock ms, conn): when a connection's token expires (ADR 0014, 0090).
    expiries: list[tuple[int, ConnId]] = field(default_factory=list)
    # (monotonic deadline, user): when a dropped connection's memberships stop lingering.
    lingering: list[tuple[int, UserId]] = field(default_factory=list)
    _conn_ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.limits = limits_from(self.settings)
        limited = self.settings.rate_limit > 0
        self.presence = PresenceTracker(
            int(self.settings.presence_grace * 1000),
            changes_per_second=CHANGES_PER_SECOND if limited else 0.0,
            calls_per_second=CALLS_PER_SECOND if limited else 0.0)
        self.typing = TypingTracker(int(self.settings.typing_timeout * 1000))
        self.http_reads = KeyedBuckets(HTTP_READS_PER_SECOND if limited else 0.0,
                                       HTTP_READ_BURST)
        self.calls = Calls(int(self.settings.ring_timeout * 1000))

    def new_conn_id(self) -> ConnId:
        return conn_id(self.number, next(self._conn_ids))

    def username(self, uid: UserId) -> str:
        """The name of a user this node holds; their id for one it does not."""
        p = self.presence.get(uid)
        return p.username if p else uid

    def add_deadline(self, when_mono: int, conn: ConnId) -> None:
        """`conn` is closed at `when_mono` (monotonic) unless it has authenticated."""
        self.deadlines = self._pushed(self.deadlines, when_mono, conn)

    def add_expiry(self, exp_ms: int, conn: ConnId) -> None:
        """`conn` is closed once the wall clock reaches `exp_ms`, its token's `exp`: an
        instant on the issuer's clock, judged by the wall clock as at authentication."""
        self.expiries = self._pushed(self.expiries, exp_ms, conn)

    def _pushed(self, heap: list[tuple[int, ConnId]], when: int,
                conn: ConnId) -> list[tuple[int, ConnId]]:
        heapq.heappush(heap, (when, conn))
        # A closed connection's entry stays in the heap until it is due: a token's `exp`
        # may be days away, so churn would pile them up. Each live connection has at most
        # one; past twice that the closed ones' are dropped, which happens once per as
        # many pushes as are kept: O(1) per push.
        if len(heap) > 2 * len(self.sessions) + 64:
            heap = [d for d in heap if d[1] in self.sessions]
            heapq.heapify(heap)
        return heap

    @staticmethod
    def new_session_id() -> str:
        return secrets.token_urlsafe(12)


def error(conn: ConnId, exc: ProtocolError, frame_id: str | None) -> Effects:
    return [
        Reply(
            conn,
            "error",
            ErrorPayload(code=exc.code, message=exc.message, retry_after_ms=exc.retry_after_ms),
            frame_id,
        )
    ]


def refuse_connection(node: Node, s: Session, reason: str) -> Effects:
    """A connection over a limit: closed politely with 1013, and counted."""
    node.metrics.refused_connections += 1
    s.closing = True
    return [Close(s.conn, CloseCode.OVERLOADED, reason)]
