"""`presence` frames (PROTOCOL §Presence) and the presence side of connects and disconnects.

The directory holds each user's status cluster-wide; this node's PresenceTracker only
counts its own connections and runs the grace period after the last one closes.
"""

from collections.abc import Iterable

from hubbub.core.effects import Effects, Reply, ToRoom, ToRooms
from hubbub.core.presence import Status
from hubbub.core.session import Session
from hubbub.directory.base import PresenceInfo
from hubbub.errors import ProtocolError
from hubbub.features.node import Node
from hubbub.ids import RoomId, UserId
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import LeaveRoomEvent, Presence, PresenceAck, PresenceEvent


def presence_to(rooms: Iterable[RoomId], uid: UserId, info: PresenceInfo) -> Effects:
    """PROTOCOL §Presence: a change goes to every user who shares a room with `uid`."""
    targets = tuple(sorted(rooms))
    if not targets:
        return []
    return [ToRooms(targets, "presence", PresenceEvent(
        user_id=uid, username=info.username, status=info.status,  # type: ignore[arg-type]
        last_seen=info.last_seen_ms))]


async def set_status(node: Node, uid: UserId, status: Status) -> Effects:
    d = node.directory
    if not await d.set_status(uid, status, node.clock.now_ms()):
        return []
    info = (await d.presence([uid])).get(uid)
    return presence_to(await d.rooms_of(uid), uid, info) if info else []


async def handle_presence(node: Node, s: Session, frame: Presence) -> Effects:
    assert s.identity is not None
    wait = node.presence.take_change(s.identity.user_id, node.clock.mono_ms())
    if wait:
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many presence changes",
                            retry_after_ms=wait)
    effects = await set_status(node, s.identity.user_id, frame.payload.status)
    if frame.id is not None:
        effects.insert(0, Reply(s.conn, "ack", PresenceAck(status=frame.payload.status),
                                frame.id))
    return effects


async def released(node: Node, uid: UserId, username: str, rooms: list[RoomId],
                   last_seen_ms: int | None) -> Effects:
    """This node stopped holding `uid` in `rooms` (a lingering membership ended) and, with
    `last_seen_ms`, stopped holding the user at all (their grace period ended here). Tells
    the others only what changed cluster-wide: offline first, then the rooms left."""
    d = node.directory
    effects: Effects = []
    if last_seen_ms is not None:
        # With the rooms held here: a directory that forgot this node knows none of them.
        before = await d.rooms_of(uid) | set(rooms)
        if await d.user_down(uid, last_seen_ms):
            effects += presence_to(before, uid, PresenceInfo(username, "offline", last_seen_ms))
    for room in rooms:
        if node.joining[room, uid]:
            continue  # a join of the user is under way here: it keeps the membership
        if await d.remove_member(room, uid):
            effects.append(ToRoom(room, "leave_room", LeaveRoomEvent(
                room_id=room, user_id=uid, username=username)))
    return effects
