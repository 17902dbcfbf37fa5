"""Room membership: room -> user -> connections (PROTOCOL §Client → server: join/leave).

A user is a member of a room while at least one of their connections has joined it.
When a connection drops, its memberships *linger* (the user stays listed, with no
connection) until the presence grace period ends, so a quick reconnect does not make
the room see leave/join flapping; see docs/topics/presence.md.
"""

from collections.abc import Iterable, Iterator

from hubbub.ids import ConnId, RoomId, UserId


class RoomRegistry:
    def __init__(self) -> None:
        self._members: dict[RoomId, dict[UserId, set[ConnId]]] = {}
        self._user_rooms: dict[UserId, set[RoomId]] = {}
        # Connections per room, flattened for the fan-out hot path.
        self._conns: dict[RoomId, set[ConnId]] = {}
        # A room's stamp changes whenever its connections do (stamps are never reused), so
        # the hub can keep a room's local connections as a list between changes.
        self._stamps: dict[RoomId, int] = {}
        self._last_stamp = 0

    # ---- queries -------------------------------------------------------------
    def members(self, room: RoomId) -> dict[UserId, set[ConnId]]:
        return self._members.get(room, {})

    def is_member(self, room: RoomId, user: UserId) -> bool:
        return user in self._members.get(room, {})

    def conns(self, room: RoomId) -> set[ConnId]:
        return self._conns.get(room, set())

    def stamp(self, room: RoomId) -> int:
        """Equal to an earlier stamp of `room` only if its connections are the same."""
        return self._stamps.get(room, 0)

    def rooms_of(self, user: UserId) -> set[RoomId]:
        return self._user_rooms.get(user, set())

    def room_count(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[RoomId]:
        return iter(self._members)

    # ---- changes ---------------------------------------------------------------
    def join(self, room: RoomId, user: UserId, conn: ConnId) -> bool:
        """Add a connection; True when the user was not a member before."""
        users = self._members.setdefault(room, {})
        conns = users.get(user)
        newly = conns is None
        if conns is None:
            conns = users[user] = set()
            self._user_rooms.setdefault(user, set()).add(room)
        conns.add(conn)
        self._conns.setdefault(room, set()).add(conn)
        self._restamp(room)
        return newly

    def leave(self, room: RoomId, user: UserId, conn: ConnId) -> bool:
        """Remove a connection; True when that made the user leave the room."""
        users = self._members.get(room)
        if users is None or user not in users:
            return False
        conns = users[user]
        conns.discard(conn)
        self._discard_conn(room, conn)
        if conns:
            return False
        self._remove_user(room, user)
        return True

    def detach(self, rooms: Iterable[RoomId], user: UserId, conn: ConnId) -> None:
        """A connection dropped: remove it but let the user's membership linger."""
        for room in rooms:
            conns = self._members.get(room, {}).get(user)
            if conns is not None:
                conns.discard(conn)
            self._discard_conn(room, conn)

    def purge_lingering(self, user: UserId) -> list[RoomId]:
        """Drop the user's memberships that no connection holds; returns those rooms."""
        gone = [r for r in self.rooms_of(user) if not self._members[r][user]]
        for room in gone:
            self._remove_user(room, user)
        return gone

    def _discard_conn(self, room: RoomId, conn: ConnId) -> None:
        conns = self._conns.get(room)
        if conns is not None and conn in conns:
            conns.discard(conn)
            if conns:
                self._restamp(room)
            else:
                del self._conns[room]
                del self._stamps[room]

    def _restamp(self, room: RoomId) -> None:
        self._last_stamp += 1
        self._stamps[room] = self._last_stamp

    def _remove_user(self, room: RoomId, user: UserId) -> None:
        users = self._members[room]
        del users[user]
        if not users:
            del self._members[room]
        rooms = self._user_rooms[user]
        rooms.discard(room)
        if not rooms:
            del self._user_rooms[user]
