"""Connection lifecycle, time-driven rules and node-wide messages: open, close, tick,
`ping`, announcements."""

import heapq
import logging

from hubbub import logs
from hubbub.core.effects import Close, Effects, Later, Reply, ToAll, ToRoom
from hubbub.core.session import Session
from hubbub.directory.base import PresenceInfo, ToldAgain
from hubbub.features import calls
from hubbub.features.node import Node, refuse_connection
from hubbub.features.presence import departures_owed, presence_to, released
from hubbub.features.typing_indicators import expire_typing, stop_typing
from hubbub.ids import ConnId, UserId
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import (
    AnnouncementEvent,
    JoinRoomEvent,
    LeaveRoomEvent,
    Ping,
    Pong,
)

log = logging.getLogger("hubbub.system")


def open_session(node: Node, remote: str = "", ip: str = "") -> Session:
    clock = node.clock
    s = Session(conn=node.new_conn_id(), limits=node.limits, remote=remote, ip=ip)
    node.sessions[s.conn] = s
    node.ip_conns[ip] += 1
    node.metrics.connections_opened += 1
    node.add_deadline(clock.mono_ms() + int(node.settings.auth_timeout * 1000), s.conn)
    return s


def admit(node: Node, s: Session) -> Effects:
    """Connection limits: over them a connection is refused politely, with 1013."""
    st = node.settings
    if st.max_connections and len(node.sessions) > st.max_connections:
        reason = "server is at its connection limit"
    elif st.max_connections_per_ip and node.ip_conns[s.ip] > st.max_connections_per_ip:
        reason = "too many connections from your address"
    else:
        return []
    return refuse_connection(node, s, reason)


def close_session(node: Node, conn: ConnId) -> Effects:
    """The connection is gone. Typing ends now; room membership and presence linger for
    the grace period (PROTOCOL §Presence: a quick reconnect does not flap)."""
    s = node.sessions.pop(conn, None)
    if s is None:
        return []
    node.ip_conns[s.ip] -= 1
    if node.ip_conns[s.ip] <= 0:
        del node.ip_conns[s.ip]
    if s.identity is None:
        return []
    uid, name = s.identity.user_id, s.identity.username
    now, mono = node.clock.now_ms(), node.clock.mono_ms()
    effects: Effects = []
    for room in s.rooms:
        effects += stop_typing(node, room, uid, name)
    node.rooms.detach(s.rooms, uid, conn)
    for room in s.rooms:
        if not node.rooms.conns(room):
            node.fanout.room_closed(room)
    conns = node.user_conns.get(uid)
    if conns is not None:
        conns.discard(conn)
        if not conns:
            del node.user_conns[uid]
            node.fanout.user_closed(uid)
    effects += calls.connection_closed(node, uid, name, conn, len(conns or ()))
    s.rooms.clear()
    node.presence.disconnect(uid, now, mono)
    heapq.heappush(node.lingering, (mono + node.presence.grace_ms, uid))
    return effects


def _release_lingering(node: Node, uid: UserId, username: str,
                       last_seen_ms: int | None) -> Effects:
    """The grace period of `uid` ended here: drop the memberships no connection holds and,
    with `last_seen_ms`, the user; the directory decides what the others hear."""
    rooms = node.rooms.purge_lingering(uid)
    if not rooms and last_seen_ms is None:
        return []
    return [Later(released(node, uid, username, rooms, last_seen_ms))]


def tick(node: Node, now_ms: int, mono_ms: int) -> Effects:
    """Everything that happens because time passed: typing expiry, ring timeouts, the end
    of presence grace periods, authentication deadlines and token expiry. The deadlines
    count on the monotonic clock (`mono_ms`); a token's `exp` is a wall-clock instant,
    judged by `now_ms` (ADR 0014, 0090)."""
    effects = expire_typing(node, mono_ms)
    effects += node.calls.expire(now_ms, mono_ms)
    effects += calls.finished(node)
    for uid, gone in node.presence.expire(mono_ms):
        effects += _release_lingering(node, uid, gone.username, gone.last_seen_ms)
    while node.lingering and node.lingering[0][0] <= mono_ms:
        _, uid = heapq.heappop(node.lingering)
        p = node.presence.get(uid)
        if p is not None and p.connections:
            effects += _release_lingering(node, uid, p.username, None)
    while node.deadlines and node.deadlines[0][0] <= mono_ms:
        _, conn = heapq.heappop(node.deadlines)
        s = node.sessions.get(conn)
        if s is not None and not s.closing and s.identity is None:
            effects.append(Close(conn, CloseCode.AUTH_FAILED, "authentication timeout"))
    while node.expiries and node.expiries[0][0] <= now_ms:
        _, conn = heapq.heappop(node.expiries)
        s = node.sessions.get(conn)
        if s is not None and not s.closing:
            effects.append(Close(conn, CloseCode.AUTH_FAILED, "token expired"))
    return effects


async def _tell_again(node: Node, now_ms: int) -> Effects:
    """The directory forgot this node (it was reaped while cut off, or Redis lost its
    data): tell it again who is here, in which rooms and in which calls living here, and
    tell the others whoever that brings back."""
    d = node.directory
    connected = [(uid, node.username(uid)) for uid in list(node.user_conns)]
    # Held, not reachable, as before the directory forgot: their going offline when the
    # grace ends is then announced (the others still see them online).
    idle = [(uid, node.username(uid)) for uid in node.presence.in_grace()]
    members = [(room, uid) for room in list(node.rooms) for uid in list(node.rooms.members(room))]
    # The heartbeat that found the directory forgetful listed this node again: the next
    # one will not say so. Until this write-back is whole, each round does it again.
    node.tell_again_owed = True
    told = ToldAgain()
    try:
        await d.tell_again(connected, idle, members, now_ms, told)
        # The ids of the calls that ended here lately stay refused on every node (ADR 0072).
        await d.remember_ended(node.calls.recently_ended(node.clock.mono_ms()), now_ms)
    except Exception as exc:  # Redis went away again: what was written is announced
        suffix = logs.failures.admit("write-back")
        if suffix is not None:
            log.warning("telling the directory again whom this node holds failed, the "
                        "next round goes on: %r%s", exc, suffix)
        return _came_back(node, told, now_ms)
    node.tell_again_owed = False
    live = node.calls.live_calls()
    if node.user_conns or live:
        log.warning("the directory did not know this node: told it again about %d users "
                    "and %d calls", len(node.user_conns), len(live))
    return _came_back(node, told, now_ms) + await calls.written_back(node, live)


def _came_back(node: Node, told: ToldAgain, now_ms: int) -> Effects:
    """The others hear of whom a write-back brought back."""
    effects: Effects = []
    for uid, rooms in told.came_online.items():
        effects += presence_to(rooms, uid, PresenceInfo(node.username(uid), "online", now_ms))
    for room, uid, status in told.joined:
        # The status the directory has: another node may have written the user back first,
        # with a status set since (announced to no room: the directory knew none of theirs).
        effects.append(ToRoom(room, "join_room", JoinRoomEvent(
            room_id=room, user_id=uid, username=node.username(uid),
            status=status or "online"),  # type: ignore[arg-type]
            exclude_user=uid))
    return effects


async def housekeeping(node: Node, now_ms: int, mono_ms: int) -> Effects:
    """Every few seconds: tell the directory this node lives, and release what dead nodes
    held (their users leave rooms and go offline for everyone else). A node is dead once
    this one has seen its heartbeat unchanged for a node TTL of `mono_ms` (`NodeWatch`);
    so is the wait after the directory forgot this node. The heartbeat itself is
    `now_ms`: a reaped call's record says when its home was last heard from."""
    d = node.directory
    effects: Effects = []
    if await d.heartbeat(now_ms):
        if node.calls.live_count():
            node.directory_forgot_mono = mono_ms
        effects += await _tell_again(node, now_ms)
    elif node.tell_again_owed:
        effects += await _tell_again(node, now_ms)
    effects += await calls.directory_retries(node)
    effects += await departures_owed(node)
    effects += calls.calls_of_dead_nodes(await d.reap_calls(now_ms, mono_ms), now_ms)
    forgot = node.directory_forgot_mono
    if forgot is None or mono_ms - forgot > d.node_ttl_ms:
        # Not sooner: after Redis came back empty, a party whose node has not told it
        # again yet would look gone, and their live call here would be ended.
        effects += await calls.orphaned(node)
    for gone in await d.reap(now_ms, mono_ms):
        if gone.went_offline:
            effects += presence_to(gone.rooms_before, gone.user,
                                   PresenceInfo(gone.username, "offline", gone.last_seen_ms))
        effects += [ToRoom(room, "leave_room", LeaveRoomEvent(
            room_id=room, user_id=gone.user, username=gone.username))
            for room in gone.rooms_left]
    if effects:
        log.info("released what dead nodes held: %d events", len(effects))
    return effects


def handle_ping(node: Node, s: Session, frame: Ping) -> Effects:
    return [Reply(s.conn, "pong", Pong(server_time=node.clock.now_ms()), frame.id)]


def announce(node: Node, content: str) -> Effects:
    node.metrics.announcements += 1
    return [ToAll("announcement", AnnouncementEvent(content=content,
                                                    created_at=node.clock.now_ms()))]
