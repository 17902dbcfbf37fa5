"""What a node has shown its connections of each room's members, so that it can put them
right when the broker lost some of the events that changed it (docs/topics/presence.md,
"When Redis blinks").

A room's view starts from the member list the room's first local join read from the
directory, and follows every `join_room`, `leave_room` and `presence` event the node
delivers to the room, its own and the other nodes'. Pub/sub delivers at most once: an
event lost while Redis was away leaves the view, and the connections' lists, wrong for
good. Compared with the directory's list once it has heard from every node again, the
view gives the events that make them right (`RoomViews.differences`).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from hubbub.ids import RoomId, UserId


@dataclass(slots=True, frozen=True)
class Shown:
    """A member as the room's connections were last told of them."""

    username: str
    status: str


@dataclass(slots=True, frozen=True)
class Listed:
    """A member as the directory lists them."""

    user: UserId
    username: str
    status: str


@dataclass(slots=True)
class Differences:
    """What a room's connections are told so that their list is the directory's again."""

    joined: list[Listed] = field(default_factory=list)  # listed, not shown
    left: list[tuple[UserId, Shown]] = field(default_factory=list)  # shown, not listed
    changed: list[Listed] = field(default_factory=list)  # both, with another status

    def __bool__(self) -> bool:
        return bool(self.joined or self.left or self.changed)


class RoomViews:
    def __init__(self) -> None:
        self._rooms: dict[RoomId, dict[UserId, Shown]] = {}

    def rooms(self) -> list[RoomId]:
        return list(self._rooms)

    def view(self, room: RoomId) -> dict[UserId, Shown]:
        """A copy of `room`'s view (empty when it has none)."""
        return dict(self._rooms.get(room, {}))

    def listed(self, room: RoomId, members: Iterable[Listed]) -> None:
        """A local join read `room`'s member list. The first sets the view; a later one
        changes nothing, as the connections already there were not told that list."""
        if room not in self._rooms:
            self._rooms[room] = {m.user: Shown(m.username, m.status) for m in members}

    def closed(self, room: RoomId) -> None:
        self._rooms.pop(room, None)

    def joined(self, room: RoomId, user: UserId, username: str, status: str) -> None:
        view = self._rooms.get(room)
        if view is not None:
            view[user] = Shown(username, status)

    def left(self, room: RoomId, user: UserId) -> None:
        view = self._rooms.get(room)
        if view is not None:
            view.pop(user, None)

    def status(self, rooms: Iterable[RoomId], user: UserId, username: str,
               status: str) -> None:
        """A presence event to `rooms`: it changes only those where `user` is shown."""
        for room in rooms:
            view = self._rooms.get(room)
            if view is not None and user in view:
                view[user] = Shown(username, status)

    def differences(self, room: RoomId, listed: Iterable[Listed],
                    before: dict[UserId, Shown]) -> Differences:
        """What sets `room`'s view to the directory's `listed`, which was read while the
        view was `before`. A member whose view changed during that read is left as the
        live events made it: they are as new as the list, or newer."""
        view = self._rooms.get(room)
        out = Differences()
        if view is None:
            return out
        wanted: set[UserId] = set()
        for m in listed:
            wanted.add(m.user)
            if before.get(m.user) != view.get(m.user):
                continue
            shown = view.get(m.user)
            if shown is None:
                out.joined.append(m)
            elif shown.status != m.status:
                out.changed.append(m)
        out.left = [(u, shown) for u, shown in view.items()
                    if u not in wanted and before.get(u) == shown]
        return out
