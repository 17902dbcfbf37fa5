"""`presence` frames (PROTOCOL §Presence) and the presence side of connects and disconnects."""

from hubbub.core.effects import Effects, Reply, ToRooms
from hubbub.core.presence import Status, UserPresence
from hubbub.core.session import Session
from hubbub.features.node import Node
from hubbub.ids import UserId
from hubbub.protocol.frames import Presence, PresenceAck, PresenceEvent


def presence_event(node: Node, uid: UserId, offline: UserPresence | None = None) -> Effects:
    """Tell everyone who shares a room with `uid` about its presence (PROTOCOL §Presence).
    `offline` is the final state of a user whose grace period just ended."""
    p = offline or node.presence.get(uid)
    rooms = tuple(node.rooms.rooms_of(uid))
    if p is None or not rooms:
        return []
    return [ToRooms(rooms, "presence", PresenceEvent(
        user_id=uid, username=p.username, status=p.status, last_seen=p.last_seen_ms))]


def set_status(node: Node, s: Session, status: Status) -> Effects:
    assert s.identity is not None
    uid = s.identity.user_id
    if not node.presence.set_status(uid, status, node.clock.now_ms()):
        return []
    return presence_event(node, uid)


def handle_presence(node: Node, s: Session, frame: Presence) -> Effects:
    effects = set_status(node, s, frame.payload.status)
    if frame.id is not None:
        effects.insert(0, Reply(s.conn, "ack", PresenceAck(status=frame.payload.status), frame.id))
    return effects
