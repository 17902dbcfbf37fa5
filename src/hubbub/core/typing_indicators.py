"""Typing indicators (PROTOCOL §Typing).

- `isTyping: true` goes out at most once per user per room per `throttle_ms`; repeats
  inside that window are absorbed but still refresh the expiry.
- With no refresh for `timeout_ms` the server itself sends `isTyping: false`.
- A chat in the room, leaving it or disconnecting ends typing: `false` once.
"""

import heapq
from dataclasses import dataclass

from hubbub.ids import RoomId, UserId

Key = tuple[RoomId, UserId]


@dataclass(slots=True)
class _Typing:
    last_sent_ms: int
    expires_ms: int


class TypingTracker:
    def __init__(self, timeout_ms: int, throttle_ms: int = 1000) -> None:
        self.timeout_ms = timeout_ms
        self.throttle_ms = throttle_ms
        self._active: dict[Key, _Typing] = {}
        self._deadlines: list[tuple[int, RoomId, UserId]] = []

    def is_typing(self, room: RoomId, user: UserId) -> bool:
        return (room, user) in self._active

    def start(self, room: RoomId, user: UserId, now_ms: int) -> bool:
        """`isTyping: true` arrived; True when it must be broadcast."""
        expires = now_ms + self.timeout_ms
        state = self._active.get((room, user))
        heapq.heappush(self._deadlines, (expires, room, user))
        if state is None:
            self._active[(room, user)] = _Typing(now_ms, expires)
            return True
        state.expires_ms = expires
        if now_ms - state.last_sent_ms >= self.throttle_ms:
            state.last_sent_ms = now_ms
            return True
        return False

    def stop(self, room: RoomId, user: UserId) -> bool:
        """Typing ended (false, chat, leave, disconnect); True when `false` must be sent."""
        return self._active.pop((room, user), None) is not None

    def next_deadline(self) -> int | None:
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, now_ms: int) -> list[Key]:
        """Typing states with no refresh for `timeout_ms`: ended, `false` to be sent."""
        ended: list[Key] = []
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            deadline, room, user = heapq.heappop(self._deadlines)
            state = self._active.get((room, user))
            if state is not None and state.expires_ms == deadline:
                del self._active[(room, user)]
                ended.append((room, user))
        return ended
