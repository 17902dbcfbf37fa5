"""Presence on this node (PROTOCOL §Presence): whatever their number of devices, a user
is present while they have a connection here. When the last one closes they stay for
`grace_ms`; only then do they become `offline` (with `lastSeen` = the moment the last
connection closed), so a quick reconnect does not flap. The status a user chooses
(away, busy) lives in the directory, cluster-wide (hubbub.directory).

`lastSeen` is a wall-clock instant (`now_ms`): it goes out on the wire. The grace and the
budgets count on the monotonic clock (`mono_ms`), so a step of the system clock neither
ends a grace early nor holds a departed user online.
"""

import heapq
from dataclasses import dataclass, field
from typing import Literal

from hubbub.core.ratelimit import TokenBucket
from hubbub.ids import UserId

Status = Literal["online", "away", "busy", "offline"]


@dataclass(slots=True)
class UserPresence:
    username: str
    connections: int
    last_seen_ms: int  # wall clock
    # Set while the user has no connection and the grace period runs (monotonic).
    offline_at_mono: int | None = None
    # `presence` frames of this user on this node, whichever connection sends them: each
    # is broadcast to every room the user is in, so it is bounded per user (ADR 0041).
    changes: TokenBucket = field(default_factory=lambda: TokenBucket(0.0, 1.0))
    # New calls this user starts on this node, whichever connection offers them: each makes
    # every device of the callee ring, so it is bounded per user too (ADR 0042).
    calls: TokenBucket = field(default_factory=lambda: TokenBucket(0.0, 1.0))


# `presence` frames per user and second on one node, and the burst; see ADR 0041.
CHANGES_PER_SECOND = 2.0
CHANGE_BURST = 10.0
# New calls per user and second on one node (one every 5 s), and the burst; see ADR 0042.
CALLS_PER_SECOND = 0.2
CALL_BURST = 5.0


class PresenceTracker:
    def __init__(self, grace_ms: int, changes_per_second: float = CHANGES_PER_SECOND,
                 change_burst: float = CHANGE_BURST,
                 calls_per_second: float = CALLS_PER_SECOND,
                 call_burst: float = CALL_BURST) -> None:
        self.grace_ms = grace_ms
        self.changes_per_second = changes_per_second  # <= 0: unlimited
        self.change_burst = change_burst
        self.calls_per_second = calls_per_second  # <= 0: unlimited
        self.call_burst = call_burst
        self._users: dict[UserId, UserPresence] = {}
        self._deadlines: list[tuple[int, UserId]] = []

    def get(self, user: UserId) -> UserPresence | None:
        """The user while present here (connected, or within the grace); None: offline."""
        return self._users.get(user)

    def online_count(self) -> int:
        return len(self._users)

    def in_grace(self) -> list[UserId]:
        """The users held here with no connection, while their grace period runs."""
        return [u for u, p in self._users.items() if p.offline_at_mono is not None]

    def connect(self, user: UserId, username: str, now_ms: int) -> bool:
        """A connection of `user` opened; True when the user just came online."""
        p = self._users.get(user)
        if p is None:
            self._users[user] = UserPresence(
                username, 1, now_ms,
                changes=TokenBucket(self.changes_per_second, self.change_burst),
                calls=TokenBucket(self.calls_per_second, self.call_burst))
            return True
        p.connections += 1
        p.username = username
        p.offline_at_mono = None
        p.last_seen_ms = now_ms
        return False

    def disconnect(self, user: UserId, now_ms: int, mono_ms: int) -> None:
        """A connection closed; the last one starts the grace period: `lastSeen` is
        `now_ms`, the user goes offline `grace_ms` after `mono_ms`."""
        p = self._users.get(user)
        if p is None:
            return
        p.connections = max(0, p.connections - 1)
        p.last_seen_ms = now_ms
        if p.connections == 0:
            p.offline_at_mono = mono_ms + self.grace_ms
            heapq.heappush(self._deadlines, (p.offline_at_mono, user))

    def take_change(self, user: UserId, mono_ms: int) -> int:
        """A `presence` frame of `user`: 0 if it may go out, else the ms until one may.
        One budget per user, shared by all of their connections here."""
        p = self._users.get(user)
        return 0 if p is None else p.changes.take(mono_ms)

    def take_call(self, user: UserId, mono_ms: int) -> int:
        """A new call that `user` starts: 0 if it may ring, else the ms until one may.
        One budget per user, shared by all of their connections here."""
        p = self._users.get(user)
        return 0 if p is None else p.calls.take(mono_ms)

    def next_deadline(self) -> int | None:
        """The earliest end of a grace period, on the monotonic clock."""
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, mono_ms: int) -> list[tuple[UserId, UserPresence]]:
        """Users whose grace period ended without a reconnect: now offline and forgotten."""
        gone: list[tuple[UserId, UserPresence]] = []
        while self._deadlines and self._deadlines[0][0] <= mono_ms:
            deadline, user = heapq.heappop(self._deadlines)
            p = self._users.get(user)
            # Stale heap entries (the user reconnected, or left again later) are skipped.
            if p is None or p.offline_at_mono != deadline or p.connections:
                continue
            del self._users[user]
            p.offline_at_mono = None
            gone.append((user, p))
        return gone
