"""Who a connection is once authenticated, and what it may do (PROTOCOL §Authentication)."""

from dataclasses import dataclass
from fnmatch import fnmatchcase

from hubbub.ids import RoomId, UserId


@dataclass(slots=True, frozen=True)
class Identity:
    user_id: UserId
    username: str
    admin: bool = False
    # Glob patterns from the token's `rooms` claim; None = any room.
    room_globs: tuple[str, ...] | None = None
    # Token expiry (ms since the epoch); None = never (dev identity mode).
    expires_at_ms: int | None = None

    def may_join(self, room: RoomId) -> bool:
        if self.room_globs is None:
            return True
        return any(fnmatchcase(room, pattern) for pattern in self.room_globs)
