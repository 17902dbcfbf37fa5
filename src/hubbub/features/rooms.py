"""`join_room` / `leave_room` (PROTOCOL §Client → server)."""

from hubbub.core.effects import Effects, Reply, ToRoom
from hubbub.core.session import Session
from hubbub.errors import ProtocolError
from hubbub.features.node import Node
from hubbub.features.typing_indicators import stop_typing
from hubbub.ids import RoomId, room_id
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


def member_list(node: Node, room: RoomId) -> list[Member]:
    out = []
    for uid in node.rooms.members(room):
        p = node.presence.get(uid)
        out.append(Member(user_id=uid, username=p.username if p else uid,
                          status=p.status if p else "offline"))
    return out


async def handle_join(node: Node, s: Session, frame: JoinRoom) -> Effects:
    assert s.identity is not None
    room = room_id(frame.payload.room_id)
    ident = s.identity
    if not ident.may_join(room):
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you may not join room {room!r}")
    if room not in s.rooms and len(s.rooms) >= node.limits.max_rooms:
        raise ProtocolError(ErrorCode.FORBIDDEN,
                            f"a connection may be in at most {node.limits.max_rooms} rooms")
    since = frame.payload.since
    ack = JoinAck(room_id=room, members=[], last_seq=0)
    if not node.rooms.conns(room):
        await node.fanout.room_opened(room)
    # The position read is ordered with the room's writes (Store contract), and nothing
    # is awaited between it and taking our place in the room: live events from here on
    # are exactly those after `lastSeq`.
    if since is None:
        ack.last_seq = await node.store.last_seq(room)
    else:
        recovery = await node.store.events_since(room, since, node.settings.recovery_limit)
        ack.last_seq, ack.recovered = recovery.last_seq, recovery.complete
        ack.missed = recovery.events
    if s.closing or s.conn not in node.sessions:
        if not node.rooms.conns(room):
            node.fanout.room_closed(room)
        return []
    node.fanout.room_position(room, ack.last_seq)
    effects: Effects = [Reply(s.conn, "ack", ack, frame.id)]
    if room not in s.rooms:
        if len(s.rooms) >= node.limits.max_rooms:  # joins raced while we waited
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                f"a connection may be in at most {node.limits.max_rooms} rooms")
        s.rooms.add(room)
        if node.rooms.join(room, ident.user_id, s.conn):
            effects.append(ToRoom(room, "join_room", JoinRoomEvent(
                room_id=room, user_id=ident.user_id, username=ident.username,
                status=node.presence.status(ident.user_id)), exclude_user=ident.user_id))
    ack.members = member_list(node, room)
    return effects


def leave(node: Node, s: Session, room: RoomId) -> Effects:
    """Take this connection out of `room`; ends its typing; tells the others if the user left."""
    assert s.identity is not None
    ident = s.identity
    s.rooms.discard(room)
    effects = stop_typing(node, room, ident.user_id, ident.username)
    left = node.rooms.leave(room, ident.user_id, s.conn)
    if not node.rooms.conns(room):
        node.fanout.room_closed(room)
    if left:
        effects.append(ToRoom(room, "leave_room", LeaveRoomEvent(
            room_id=room, user_id=ident.user_id, username=ident.username)))
    return effects


def handle_leave(node: Node, s: Session, frame: LeaveRoom) -> Effects:
    room = room_id(frame.payload.room_id)
    if room not in s.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"not in room {room!r}")
    effects = leave(node, s, room)
    effects.insert(0, Reply(s.conn, "ack", RoomAck(room_id=room), frame.id))
    return effects
