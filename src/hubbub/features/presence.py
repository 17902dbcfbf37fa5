"""`presence` frames (PROTOCOL §Presence) and the presence side of connects and disconnects.

The directory holds each user's status cluster-wide; this node's PresenceTracker only
counts its own connections and runs the grace period after the last one closes.
"""

import logging
from collections.abc import Iterable

from hubbub import logs
from hubbub.core.effects import Effects, Reply, ToRoom, ToRooms
from hubbub.core.presence import Status
from hubbub.core.session import Session
from hubbub.directory.base import PresenceInfo
from hubbub.errors import ProtocolError
from hubbub.features.node import Node, OwedDeparture
from hubbub.ids import RoomId, UserId
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import LeaveRoomEvent, Presence, PresenceAck, PresenceEvent

log = logging.getLogger("hubbub.presence")


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
    the others only what changed cluster-wide: offline first, then the rooms left.

    What the directory could not be told (Redis away) is owed (`Node.unreleased_users`)
    and told with the user's next release, or by `departures_owed` at the next
    housekeeping round: else this node, alive, would hold it there for good."""
    d = node.directory
    owed = node.unreleased_users.pop(uid, None)
    left = set(rooms)
    if owed is not None:
        left |= owed.rooms
        if last_seen_ms is None:
            last_seen_ms = owed.last_seen_ms
    if last_seen_ms is not None and node.presence.get(uid) is not None:
        last_seen_ms = None  # held here again: online all along for the others
    # A room the user is in here again, or joining, keeps its membership.
    pending = sorted(r for r in left
                     if not node.rooms.is_member(r, uid) and not node.joining[r, uid])
    effects: Effects = []
    try:
        if last_seen_ms is not None:
            # With the rooms held here: a directory that forgot this node knows none of them.
            before = await d.rooms_of(uid) | left
            if await d.user_down(uid, last_seen_ms):
                effects += presence_to(before, uid,
                                       PresenceInfo(username, "offline", last_seen_ms))
            last_seen_ms = None
        while pending:
            if await d.remove_member(pending[0], uid):
                effects.append(ToRoom(pending[0], "leave_room", LeaveRoomEvent(
                    room_id=pending[0], user_id=uid, username=username)))
            pending.pop(0)
    except Exception as exc:  # Redis is away: told again at the next housekeeping round
        # Another release of the user, under way meanwhile, may have failed too.
        owed = node.unreleased_users.setdefault(uid, OwedDeparture(username))
        owed.rooms.update(pending)
        if last_seen_ms is not None:
            owed.last_seen_ms = max(owed.last_seen_ms or 0, last_seen_ms)
        suffix = logs.failures.admit("departure")
        if suffix is not None:
            log.warning("could not tell the directory that %s left, will retry: %r%s",
                        uid, exc, suffix)
    return effects


async def departures_owed(node: Node) -> Effects:
    """Each housekeeping round: tell the directory the departures it missed, until one
    fails again (Redis is still away: the next round goes on)."""
    effects: Effects = []
    for uid, owed in list(node.unreleased_users.items()):
        if uid not in node.unreleased_users:
            continue  # told meanwhile, by a release of the user
        effects += await released(node, uid, owed.username, [], None)
        if uid in node.unreleased_users:
            break
    return effects
