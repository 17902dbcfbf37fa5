"""Typing indicators (PROTOCOL §Typing).

- `isTyping: true` goes out at most once per user per room per `throttle_ms`, even
  across stops; repeats inside that window are absorbed but still refresh the expiry.
- With no refresh for `timeout_ms` the server itself sends `isTyping: false`.
- A chat in the room, leaving it or disconnecting ends typing: `false` once.

Every instant here is on the monotonic clock (`mono_ms`): a step of the system clock
neither ends typing early nor holds the throttle shut.
"""

import heapq
from dataclasses import dataclass

from hubbub.ids import RoomId, UserId

Key = tuple[RoomId, UserId]


@dataclass(slots=True)
class _Typing:
    expires_mono: int
    # False while this typing spell's `true` was absorbed: the others think the user is
    # not typing, so ending it must not send them a `false`.
    shown: bool = True


class TypingTracker:
    def __init__(self, timeout_ms: int, throttle_ms: int = 1000) -> None:
        self.timeout_ms = timeout_ms
        self.throttle_ms = throttle_ms
        self._active: dict[Key, _Typing] = {}
        self._deadlines: list[tuple[int, RoomId, UserId]] = []
        # When each (room, user) last had a `true` broadcast, kept across stops for the
        # throttle window, so toggling true/false cannot send more than one per window.
        self._last_true: dict[Key, int] = {}
        self._forget: list[tuple[int, RoomId, UserId]] = []

    def is_typing(self, room: RoomId, user: UserId) -> bool:
        return (room, user) in self._active

    def start(self, room: RoomId, user: UserId, mono_ms: int) -> bool:
        """`isTyping: true` arrived; True when it must be broadcast."""
        key = (room, user)
        expires = mono_ms + self.timeout_ms
        heapq.heappush(self._deadlines, (expires, room, user))
        state = self._active.get(key)
        last = self._last_true.get(key)
        if last is not None and mono_ms - last < self.throttle_ms:
            if state is None:
                self._active[key] = _Typing(expires, shown=False)
            else:
                state.expires_mono = expires
            return False
        if state is None:
            self._active[key] = _Typing(expires)
        else:
            state.expires_mono = expires
            state.shown = True
        self._sent_true(key, mono_ms)
        return True

    def remote_true(self, room: RoomId, user: UserId, mono_ms: int) -> bool:
        """Another node broadcast `true` for `user` in `room` (their other device). True
        when it is news to this node's members: no `true` went out here within the
        throttle window. Either way the window now runs here too, so a `true` from a
        device on this node inside it is absorbed: once per user per room, cluster-wide."""
        key = (room, user)
        last = self._last_true.get(key)
        if last is not None and mono_ms - last < self.throttle_ms:
            return False
        self._sent_true(key, mono_ms)
        return True

    def _sent_true(self, key: Key, mono_ms: int) -> None:
        self._last_true[key] = mono_ms
        heapq.heappush(self._forget, (mono_ms + self.throttle_ms, key[0], key[1]))

    def stop(self, room: RoomId, user: UserId) -> bool:
        """Typing ended (false, chat, leave, disconnect); True when `false` must be sent."""
        state = self._active.pop((room, user), None)
        return state is not None and state.shown

    def next_deadline(self) -> int | None:
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, mono_ms: int) -> list[Key]:
        """Typing states with no refresh for `timeout_ms`: ended, `false` to be sent."""
        ended: list[Key] = []
        while self._deadlines and self._deadlines[0][0] <= mono_ms:
            deadline, room, user = heapq.heappop(self._deadlines)
            state = self._active.get((room, user))
            if state is not None and state.expires_mono == deadline:
                del self._active[(room, user)]
                if state.shown:
                    ended.append((room, user))
        while self._forget and self._forget[0][0] <= mono_ms:
            due, room, user = heapq.heappop(self._forget)
            if self._last_true.get((room, user)) == due - self.throttle_ms:
                del self._last_true[(room, user)]
        return ended
