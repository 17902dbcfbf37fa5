"""`typing` frames (PROTOCOL §Typing). The throttle and expiry rules live in core."""

from hubbub.core.effects import Effects, Reply, ToRoom
from hubbub.core.session import Session
from hubbub.errors import ProtocolError
from hubbub.features.node import Node
from hubbub.ids import RoomId, UserId, room_id
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import EmptyAck, Typing, TypingEvent


def typing_event(room: RoomId, user: UserId, username: str, is_typing: bool) -> ToRoom:
    return ToRoom(room, "typing", TypingEvent(room_id=room, user_id=user, username=username,
                                             is_typing=is_typing), exclude_user=user)


def stop_typing(node: Node, room: RoomId, user: UserId, username: str) -> Effects:
    """End typing (chat sent, room left, disconnect): `false` once, if it was on."""
    if node.typing.stop(room, user):
        return [typing_event(room, user, username, False)]
    return []


def handle_typing(node: Node, s: Session, frame: Typing) -> Effects:
    assert s.identity is not None
    room = room_id(frame.payload.room_id)
    if room not in s.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"not in room {room!r}")
    uid, name = s.identity.user_id, s.identity.username
    effects: Effects = []
    if frame.id is not None:
        effects.append(Reply(s.conn, "ack", EmptyAck(), frame.id))
    if frame.payload.is_typing:
        if node.typing.start(room, uid, node.clock.mono_ms()):
            effects.append(typing_event(room, uid, name, True))
    else:
        effects += stop_typing(node, room, uid, name)
    return effects


def expire_typing(node: Node, mono_ms: int) -> Effects:
    effects: Effects = []
    for room, user in node.typing.expire(mono_ms):
        effects.append(typing_event(room, user, node.username(user), False))
    return effects
