"""`join_room` / `leave_room` (PROTOCOL §Client → server).

Membership has two levels: this node's connections in a room (core.rooms, for delivery)
and the users in a room on any node (the directory, for member lists and for announcing
a join or a leave exactly once, however many devices and nodes a user has).
"""

from dataclasses import dataclass
from typing import Any

from hubbub.core.effects import CatchUp, Effects, Reply, ToRoom
from hubbub.core.session import Session
from hubbub.directory.base import PresenceInfo
from hubbub.errors import ProtocolError
from hubbub.features.node import Node, error
from hubbub.features.presence import released
from hubbub.features.typing_indicators import stop_typing
from hubbub.ids import RoomId, UserId, room_id
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    JoinAck,
    JoinRoom,
    JoinRoomEvent,
    LeaveRoom,
    LeaveRoomEvent,
    Member,
    RoomAck,
)


async def member_list(node: Node, room: RoomId) -> tuple[list[Member], dict[UserId, PresenceInfo]]:
    users = await node.directory.members(room)
    infos = await node.directory.presence(users)
    members = []
    for uid in users:
        p = infos.get(uid)
        members.append(Member(user_id=uid, username=p.username if p else uid,
                              status=p.status if p else "online"))  # type: ignore[arg-type]
    return members, infos


def _room_limit(node: Node) -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN,
                         f"a connection may be in at most {node.limits.max_rooms} rooms")


async def handle_join(node: Node, s: Session, frame: JoinRoom) -> Effects:
    assert s.identity is not None
    room = room_id(frame.payload.room_id)
    ident = s.identity
    uid = ident.user_id
    if not ident.may_join(room):
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you may not join room {room!r}")
    if room not in s.rooms and len(s.rooms) >= node.limits.max_rooms:
        raise _room_limit(node)
    key = (room, uid)
    node.joining[key] += 1
    held: list[Any] | None = None
    if room not in s.rooms and s.conn not in node.prejoin.get(room, ()):
        # The hub holds back what the room hears meanwhile (a second join of the same
        # room from this connection, while this one waits, takes its fresh `members`).
        held = node.prejoin.setdefault(room, {})[s.conn] = []
    try:
        joined = await _join(node, s, frame, room, uid)
    finally:
        node.joining[key] -= 1
        if not node.joining[key]:
            del node.joining[key]
        if held is not None:
            waiting = node.prejoin[room]
            del waiting[s.conn]
            if not waiting:
                del node.prejoin[room]
    if isinstance(joined, _Failed):
        return await _join_failed(node, s, frame, room, uid, joined.newly)
    if held:
        ack = joined[0]
        assert isinstance(ack, Reply) and isinstance(ack.payload, JoinAck)
        joined.append(CatchUp(s.conn, held, frozenset(m.user_id for m in ack.payload.members)))
    return joined


@dataclass(slots=True, frozen=True)
class _Failed:
    """A join that cannot take its place (`_join_failed`); `newly`: it added the user to
    the room in the directory, and nobody was told."""

    newly: bool


async def _join(node: Node, s: Session, frame: JoinRoom, room: RoomId,
                uid: UserId) -> "Effects | _Failed":
    assert s.identity is not None
    ident = s.identity
    since = frame.payload.since
    # Cluster-wide first: is the user new to the room (announce it once), who is there.
    newly = False
    if not node.rooms.is_member(room, uid):
        newly = await node.directory.add_member(room, uid)
    members, infos = await member_list(node, room)
    if not node.rooms.conns(room):
        await node.fanout.room_opened(room, members)
    ack = JoinAck(room_id=room, members=members, last_seq=0)
    # The position read is ordered with the room's writes (Store contract), and nothing
    # is awaited between it and taking our place in the room: live events from here on
    # are exactly those after `lastSeq`.
    # With several nodes this node may meanwhile have delivered newer events to the room
    # (they arrive from the others, not through the store): the joiner's position is then
    # the room's delivered one, and a recovery is read again up to it.
    for _ in range(3):
        if since is None:
            ack.last_seq = max(await node.store.last_seq(room),
                               node.fanout.delivered(room) or 0)
            break
        recovery = await node.store.events_since(room, since, node.settings.recovery_limit)
        ack.last_seq, ack.recovered = recovery.last_seq, recovery.complete
        ack.missed = recovery.events
        if recovery.last_seq >= (node.fanout.delivered(room) or 0):
            break
    if s.closing or s.conn not in node.sessions or (
            room not in s.rooms and len(s.rooms) >= node.limits.max_rooms):
        return _Failed(newly)
    node.fanout.room_position(room, ack.last_seq, s.conn)
    effects: Effects = [Reply(s.conn, "ack", ack, frame.id)]
    if room not in s.rooms:
        s.rooms.add(room)
        node.rooms.join(room, uid, s.conn)
        if newly:
            p = infos.get(uid)
            effects.append(ToRoom(room, "join_room", JoinRoomEvent(
                room_id=room, user_id=uid, username=ident.username,
                status=p.status if p else "online"),  # type: ignore[arg-type]
                exclude_user=uid))
    return effects


async def _join_failed(node: Node, s: Session, frame: JoinRoom, room: RoomId, uid: UserId,
                       newly: bool) -> Effects:
    """The connection closed, or its other joins took its last room, while this one
    waited. If no connection of the user holds the room here and no other join is under
    way, the membership goes: quietly if this join made it (it was never announced),
    else as a leave, which a release deferred for this join (`Node.joining`) still owes."""
    assert s.identity is not None
    effects: Effects = []
    if not node.rooms.conns(room):
        node.fanout.room_closed(room)
    if not node.rooms.is_member(room, uid) and not node.joining[room, uid]:
        if newly:
            await node.directory.remove_member(room, uid)
        else:
            effects = await released(node, uid, s.identity.username, [room], None)
    if s.closing or s.conn not in node.sessions:
        return effects
    if not effects:
        raise _room_limit(node)  # other joins of this connection won the race
    node.metrics.errors[ErrorCode.FORBIDDEN] += 1
    return effects + error(s.conn, _room_limit(node), frame.id)


async def leave(node: Node, s: Session, room: RoomId) -> Effects:
    """Take this connection out of `room` and end its typing; if that was the user's last
    connection here in the room, the directory decides whether the room hears a leave.
    Awaited in line, not in the background: a join that follows must be announced after."""
    assert s.identity is not None
    ident = s.identity
    s.rooms.discard(room)
    effects = stop_typing(node, room, ident.user_id, ident.username)
    left = node.rooms.leave(room, ident.user_id, s.conn)
    if not node.rooms.conns(room):
        node.fanout.room_closed(room)
    if left:
        effects += await released(node, ident.user_id, ident.username, [room], None)
    return effects


async def handle_leave(node: Node, s: Session, frame: LeaveRoom) -> Effects:
    room = room_id(frame.payload.room_id)
    if room not in s.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"not in room {room!r}")
    effects = await leave(node, s, room)
    effects.insert(0, Reply(s.conn, "ack", RoomAck(room_id=room), frame.id))
    return effects


__all__ = ["LeaveRoomEvent", "handle_join", "handle_leave", "leave", "member_list"]
