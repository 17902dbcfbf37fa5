"""`webrtc`, `call_reject`, `call_end` (PROTOCOL §Calls): who may call whom, then the
call state machine in core decides where each frame goes.

A call lives on one node, its *home*: the node where the offer arrived. The directory
makes "one live call per user" hold cluster-wide and tells any node where a call lives;
a frame about a call that lives elsewhere is forwarded there and handled by the same
rules, as if its sender were local (the answer goes back through the fan-out).
"""

import logging
import secrets
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import msgspec

from hubbub import logs
from hubbub.core.calls import Call
from hubbub.core.effects import Effects, Forward, Later, LogCall, Reply, ToUser
from hubbub.core.identity import Identity
from hubbub.core.session import Session
from hubbub.directory.base import CallInfo, Restore
from hubbub.errors import ProtocolError
from hubbub.features.node import Node, error
from hubbub.ids import ConnId, RoomId, UserId, node_of, room_id, user_id
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import BadFrame, parse
from hubbub.protocol.frames import (
    CallAck,
    CallEnd,
    CallEndEvent,
    CallHistory,
    CallHistoryAck,
    CallRecord,
    CallReject,
    Inbound,
    WebRTC,
    WebRTCEvent,
)

Result = Effects | Coroutine[Any, Any, Effects]
log = logging.getLogger("hubbub.calls")


async def _may_call(node: Node, caller: UserId, callee: UserId, room: RoomId | None) -> None:
    """PROTOCOL §Calls: the callee is online, anywhere in the cluster, and shares a room
    with the caller (or the offer's room). Online comes first: an offline user has left
    every room once the presence grace is over, and PROTOCOL's answer for calling an
    offline user is `not_found`, not the room rule's `forbidden`. The price: any
    authenticated user can tell whether a user id has a connection (docs/topics/calls.md)."""
    d = node.directory
    if not await d.is_online(callee):
        raise ProtocolError(ErrorCode.NOT_FOUND, f"{callee} is not online")
    mine, theirs = await d.rooms_of(caller), await d.rooms_of(callee)
    if room is not None:
        if room not in mine or room not in theirs:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"you and {callee} are not both in {room}")
    elif not mine & theirs:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you share no room with {callee}")


def _ack(node: Node, s: Session, frame_id: str | None, call_id: str) -> Effects:
    if frame_id is None:
        return []
    call = node.calls.calls.get(call_id)
    state = call.state.value if call else "ended"
    return [Reply(s.conn, "ack", CallAck(call_id=call_id, state=state),  # type: ignore[arg-type]
                  frame_id)]


def finished(node: Node) -> Effects:
    """Calls that just ended: into the call log, and their parties are free again."""
    logs = node.calls.drain_log()
    if not logs:
        return []
    ids = [e.record.call_id for e in logs]  # type: ignore[union-attr]
    return [*logs, Later(_release(node, ids))]


async def _release(node: Node, call_ids: list[str]) -> Effects:
    for call_id in call_ids:
        try:
            await node.directory.release_call(call_id, ended=True)
        except Exception as exc:  # Redis is down: the next housekeeping round tries again
            node.unreleased_calls.add(call_id)
            suffix = logs.failures.admit("call release")
            if suffix is not None:
                log.warning("could not release call %s in the directory, will retry: %r%s",
                            call_id, exc, suffix)
    return []


def _elsewhere(node: Node, s: Session, frame: Inbound, call_id: str) -> Result | None:
    """None when the call lives here; else a coroutine that forwards the frame home."""
    if call_id in node.calls.calls:
        return None
    return _forward(node, s, frame, call_id)


async def _forward(node: Node, s: Session, frame: Inbound, call_id: str) -> Effects:
    assert s.identity is not None
    info = await node.directory.call_info(call_id)
    if info is None or info.home == node.number:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no call {call_id!r}")
    if s.identity.user_id not in (info.caller, info.callee):
        raise ProtocolError(ErrorCode.FORBIDDEN, "only the two parties may act on a call")
    return [Forward(info.home, s.conn, s.identity.user_id, s.identity.username,
                    msgspec.json.encode(frame), frame.id)]


# ---- webrtc ------------------------------------------------------------------------------
def handle_webrtc(node: Node, s: Session, frame: WebRTC) -> Result:
    """Relay frames of a call that lives here synchronously (the hot path of a call); a
    new call first checks, cluster-wide, that the caller may call the callee."""
    p = frame.payload
    to = user_id(p.to)
    if p.kind in ("offer", "answer") and p.sdp is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a {p.kind} needs `sdp`")
    if p.kind == "offer" and (p.call_id is None or p.call_id not in node.calls.calls):
        call_id = p.call_id or secrets.token_urlsafe(12)
        return _offer(node, s, frame, call_id, to)
    if p.call_id is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a {p.kind} needs `callId`")
    return _elsewhere(node, s, frame, p.call_id) or _relay(node, s, frame, to, p.call_id)


def settled_relay(node: Node, s: Session,
                  frame: WebRTC) -> tuple[ConnId, WebRTCEvent, Reply | None] | None:
    """The hot path of a call, without an effect list: an `ice_candidate` of an
    established call between two connections of this node (`Calls.settled_ice`). Gives
    the peer's connection, the event for it and the sender's ack, having made every check
    and count that `dispatch.handle_read` and `handle_webrtc` would make; they would send
    the same. None, having changed nothing: any other frame, which takes that general path
    and gets its answer there (docs/decisions/0029-the-settled-relay.md)."""
    p = frame.payload
    identity = s.identity
    if p.kind != "ice_candidate" or identity is None or p.call_id is None:
        return None
    me = identity.user_id
    settled = node.calls.settled_ice(p.call_id, me, s.conn, p.to, p.candidate)
    if settled is None or settled[0] not in node.sessions or not admit_settled(node, s, frame, me):
        return None
    return settled[0], settled[1], settled_ack(s, frame)


def admit_settled(node: Node, s: Session, frame: WebRTC, me: UserId) -> bool:
    """The checks and counts of `handle_read` that a settled frame still needs: it speaks
    for its sender, and the frame rate limit lets it through (it counts in `frames_in`).
    False, having spent nothing: the general path refuses it the same way."""
    p = frame.payload
    if (p.user_id is not None and p.user_id != me) or (p.from_ is not None and p.from_ != me):
        return False
    if s.frames.take(node.clock.mono_ms()):
        return False
    node.metrics.frames_in["webrtc"] += 1
    return True


def settled_ack(s: Session, frame: WebRTC) -> Reply | None:
    """The ack of a settled frame that asked for one (it has an `id`)."""
    if frame.id is None:
        return None
    assert frame.payload.call_id is not None
    return Reply(s.conn, "ack", CallAck(call_id=frame.payload.call_id, state="active"), frame.id)


async def _offer(node: Node, s: Session, frame: WebRTC, call_id: str, to: UserId) -> Effects:
    """An offer for a callId this node does not hold: a renegotiation of a call that
    lives elsewhere, or a new call that starts here."""
    assert s.identity is not None
    p, me = frame.payload, s.identity.user_id
    info = await node.directory.call_info(call_id) if p.call_id else None
    if info is not None and info.home != node.number:
        return await _forward(node, s, frame, call_id)
    room = room_id(p.room_id) if p.room_id is not None else None
    if to == me:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "you cannot call yourself")
    await _may_call(node, me, to, room)
    if call_id in node.calls.calls:  # the same offer twice, raced while we checked
        relayed = _relay(node, s, frame, to, call_id)
        return relayed if isinstance(relayed, list) else await relayed
    now, mono = node.clock.now_ms(), node.clock.mono_ms()
    wait = node.presence.take_call(me, mono)
    if wait:  # each new call rings every device of the callee (ADR 0042)
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many new calls", retry_after_ms=wait)
    claim = await node.directory.claim_call(CallInfo(call_id, me, to, node.number,
                                                     node.directory.node_id, started_at=now,
                                                     room=room))
    if claim.outcome == "taken":
        raise ProtocolError(ErrorCode.CONFLICT, f"callId {call_id!r} is already in use")
    if claim.outcome == "ended":  # a late frame of a call that ended (home: Calls.offer)
        raise ProtocolError(ErrorCode.CONFLICT, f"call {call_id!r} has ended")
    if claim.outcome == "caller_busy":
        other = claim.other
        if other is not None and other.caller == to and other.state == "ringing":
            # Glare: both called each other; the first offer wins (docs/topics/calls.md).
            raise ProtocolError(ErrorCode.CONFLICT,
                                f"{to} is calling you (callId {other.call_id}): answer it")
        raise ProtocolError(ErrorCode.CONFLICT, "you are already in a call; end it first")
    try:
        effects = node.calls.offer(call_id=call_id, caller=me, conn=s.conn, callee=to,
                                   room=room, sdp=p.sdp, candidate=p.candidate, now_ms=now,
                                   mono_ms=mono, callee_busy=claim.outcome == "callee_busy")
    except ProtocolError:
        if claim.outcome == "ok":  # the rules refused it: the parties are not in a call
            await node.directory.release_call(call_id, ended=False)
        raise
    return _ack(node, s, frame.id, call_id) + effects + finished(node)


def _relay(node: Node, s: Session, frame: WebRTC, to: UserId, call_id: str) -> Result:
    assert s.identity is not None
    p, me = frame.payload, s.identity.user_id
    call = node.calls.calls.get(call_id)
    if call is not None and call.is_party(me) and call.peer_of(me) != to:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`to` is not the other party")
    answered_at: int | None = None  # set when this frame answers a ringing call
    if p.kind == "ice_candidate":  # most frames of a call, and they need no clock
        effects = node.calls.ice(call_id=call_id, user=me, conn=s.conn, candidate=p.candidate)
    elif p.kind == "offer":
        room = room_id(p.room_id) if p.room_id is not None else None
        effects = node.calls.offer(call_id=call_id, caller=me, conn=s.conn, callee=to, room=room,
                                   sdp=p.sdp, candidate=p.candidate, now_ms=node.clock.now_ms(),
                                   mono_ms=node.clock.mono_ms())
    else:
        was_ringing = call is not None and call.answered_at_ms is None
        now = node.clock.now_ms()
        effects = node.calls.answer(call_id=call_id, user=me, conn=s.conn, sdp=p.sdp,
                                    now_ms=now, mono_ms=node.clock.mono_ms())
        answered_at = now if was_ringing else None
    effects = _ack(node, s, frame.id, call_id) + effects + finished(node)
    return effects if answered_at is None else _answered(node, call_id, answered_at, effects)


async def _answered(node: Node, call_id: str, at_ms: int, effects: Effects) -> Effects:
    """The directory learns that the call is active before anyone hears of the answer, so
    a home node that dies right after still leaves the answer time for the call log."""
    try:
        await node.directory.set_call_state(call_id, "active", at_ms)
    except Exception as exc:  # the call goes on here; only the directory's copy is stale
        log.warning("could not mark call %s active in the directory: %r", call_id, exc)
    return effects


# ---- reject, end, history ------------------------------------------------------------------
def handle_call_reject(node: Node, s: Session, frame: CallReject) -> Result:
    return _control(node, s, frame, node.calls.reject)


def handle_call_end(node: Node, s: Session, frame: CallEnd) -> Result:
    return _control(node, s, frame, partial(node.calls.hang_up, conn=s.conn))


def _control(node: Node, s: Session, frame: CallReject | CallEnd,
             action: Callable[..., Effects]) -> Result:
    """`call_reject` / `call_end`: the call's home applies `action`; elsewhere, forward."""
    assert s.identity is not None
    p = frame.payload
    elsewhere = _elsewhere(node, s, frame, p.call_id)
    if elsewhere is not None:
        return elsewhere
    effects = action(call_id=p.call_id, user=s.identity.user_id, reason=p.reason,
                     now_ms=node.clock.now_ms(), mono_ms=node.clock.mono_ms())
    return _ack(node, s, frame.id, p.call_id) + effects + finished(node)


async def handle_call_history(node: Node, s: Session, frame: CallHistory) -> Effects:
    """The caller's own call log, newest first (docs/reference/protocol.md)."""
    assert s.identity is not None
    calls = await node.store.call_history(s.identity.user_id, frame.payload.limit)
    return [Reply(s.conn, "ack", CallHistoryAck(calls=calls), frame.id)]


# ---- the home side of forwarded frames, departures ------------------------------------------
_CALL_FRAMES: dict[type[Inbound], Any] = {
    WebRTC: handle_webrtc, CallReject: handle_call_reject, CallEnd: handle_call_end}


def forwarded(node: Node, conn: ConnId, user: UserId, username: str, data: bytes) -> Result:
    """A call frame another node forwarded to this one, the call's home. It is handled
    like a local frame of a connection that lives on that node. No frame: that
    connection closed (see `connection_closed`)."""
    if not data:
        return _departed(node, user, conn)
    s = Session(conn=conn, limits=node.limits,
                identity=Identity(user, username))
    try:
        frame = parse(data)
    except BadFrame:
        return []
    if not isinstance(frame, WebRTC | CallReject | CallEnd):
        return []
    call_id = frame.payload.call_id or ""
    try:
        if call_id not in node.calls.calls:
            # Forwarded here, but the call already ended and was forgotten.
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no call {call_id!r}")
        result = _CALL_FRAMES[type(frame)](node, s, frame)
    except ProtocolError as exc:
        return error(conn, exc, frame.id)
    if isinstance(result, list):
        return result
    return _answer_errors(result, conn, frame.id)


async def _answer_errors(work: Coroutine[Any, Any, Effects], conn: ConnId,
                         frame_id: str | None) -> Effects:
    try:
        return await work
    except ProtocolError as exc:
        return error(conn, exc, frame_id)


def calls_of_dead_nodes(gone: list[CallInfo], now_ms: int) -> Effects:
    """Calls whose home node died: both parties hear `call_end` (disconnected), and the call
    log gets the record the home would have written. The call ended between the home's last
    heartbeat and now; the record says the heartbeat (or the answer, if that came later)."""
    effects: Effects = []
    for info in gone:
        event = CallEndEvent(call_id=info.call_id, by=info.callee, reason="disconnected")
        effects += [ToUser(info.caller, "call_end", event), ToUser(info.callee, "call_end", event)]
        if not info.started_at:  # claimed by a node too old to say when: no record
            continue
        ended = max(now_ms if info.home_seen is None else info.home_seen,
                    info.answered_at or info.started_at)
        effects.append(LogCall(CallRecord(
            call_id=info.call_id, caller=info.caller, callee=info.callee, room_id=info.room,
            started_at=info.started_at, answered_at=info.answered_at, ended_at=ended,
            end_reason="disconnected")))
    return effects


def connection_closed(node: Node, user: UserId, username: str, conn: ConnId,
                      local_left: int) -> Effects:
    """A connection of `user` closed on this node (`local_left` of theirs remain here).
    PROTOCOL §Calls: the user's last connection anywhere ends their call
    (`disconnected`); an owning connection with siblings left unbinds its side."""
    return [Later(_connection_closed(node, user, username, conn, local_left))]


async def _connection_closed(node: Node, user: UserId, username: str, conn: ConnId,
                             local_left: int) -> Effects:
    d = node.directory
    if not local_left:
        await d.user_idle(user)
    if node.calls.live_call_of(user) is not None:
        return await _departed(node, user, conn, local_left)
    info = await d.call_of(user)
    if info is not None and info.home != node.number:
        return [Forward(info.home, conn, user, username, b"")]
    return []


def call_frames_unanswered(node: Node, frames: list[tuple[ConnId, str]]) -> Effects:
    """Call frames forwarded to the call's home that got no answer in time: the frame or
    its answer was lost (pub/sub is at most once), or the home died. PROTOCOL wants one
    answer per `id`: `internal`, after which a retry is safe (the call's state is
    unknown: the frame may or may not have been handled)."""
    effects: Effects = []
    for conn, frame_id in frames:
        log.warning("no answer from the call's node to frame %r of conn=%s", frame_id, conn)
        effects += error(conn, ProtocolError(
            ErrorCode.INTERNAL, "the call's node did not answer; try again"), frame_id)
    return effects


async def orphaned(node: Node) -> Effects:
    """Calls living here whose party has no connection left anywhere, yet were not ended:
    the node that held the party's last connection died (reaping its users tells no call
    home), or its notice was lost (pub/sub is at most once; a node shutting down may not
    get it out). End each as that last close would have: `disconnected`. And a side owned
    by a connection whose node was reaped is unbound, as that connection's close would
    have done, so the party's device on a live node can take the call over."""
    effects: Effects = []
    for user in node.calls.live_parties():
        if user in node.user_conns or node.calls.live_call_of(user) is None:
            continue  # connected here, or its call ended with its peer's just before
        if not await node.directory.is_online(user):
            log.info("ending the call of %s: no connection left on any node", user)
            effects += await _departed(node, user, ConnId(0))
    remote = [(call, user, conn) for call in node.calls.live_calls()
              for user, conn in ((call.caller, call.caller_conn), (call.callee, call.callee_conn))
              if conn is not None and node_of(conn) != node.number]
    live = await node.directory.live_numbers() if remote else None
    if live is None:  # no owner elsewhere, or a node too old to say its number
        return effects
    for call, user, conn in remote:
        if node_of(conn) not in live and node.calls.live_call_of(user) is call:
            log.info("call %s: the connection of %s that owned it went with its node",
                     call.call_id, user)
            effects += await _departed(node, user, conn)
    return effects


async def _departed(node: Node, user: UserId, conn: ConnId, local_left: int = 0) -> Effects:
    """On the call's home: a connection of `user` closed somewhere."""
    if node.calls.live_call_of(user) is None:
        return []
    left = local_left or int(await node.directory.is_online(user)
                             or await _directory_may_have_forgotten(node))
    return node.calls.connection_closed(user, conn, left, node.clock.now_ms(),
                                        node.clock.mono_ms()) + finished(node)


async def _directory_may_have_forgotten(node: Node) -> bool:
    """Whether the directory may not know yet whom the other nodes hold: it forgot this
    node, which has not noticed (it is not listed), or noticed less than a node TTL ago,
    while every node tells it again. A party it does not list may then be connected
    elsewhere; `orphaned` ends their call after that TTL if they are not (ADR 0071)."""
    forgot = node.directory_forgot_mono
    if forgot is not None and node.clock.mono_ms() - forgot <= node.directory.node_ttl_ms:
        return True
    numbers = await node.directory.live_numbers()
    return numbers is not None and node.number not in numbers


# ---- a directory that forgot this node (docs/decisions/0071-...) ----------------------------
async def written_back(node: Node, live: list[Call]) -> Effects:
    """Write back to the directory these calls living here, as their claim (and answer)
    wrote them: it forgot this node (Redis restarted empty, or the node was reaped while
    cut off). A call that fails to be written, or whose party the directory records in
    another call, is written again next housekeeping round (`unrestored_calls`)."""
    node.unrestored_calls.update(c.call_id for c in live)
    d = node.directory
    sending: list[tuple[Call, CallInfo]] = []
    for call in live:
        if call.ended_at_ms is not None:  # ended since: its release is under way
            node.unrestored_calls.discard(call.call_id)
            continue
        sending.append((call, CallInfo(
            call.call_id, call.caller, call.callee, node.number, d.node_id,
            state=call.state.value, started_at=call.started_at_ms, room=call.room,
            answered_at=call.answered_at_ms)))
    restores = await d.restore_calls([sent for _, sent in sending])
    effects: Effects = []
    for (call, sent), restore in zip(sending, restores, strict=True):
        effects += await _written_back(node, call, sent, restore)
    return effects


async def _written_back(node: Node, call: Call, sent: CallInfo, restore: Restore) -> Effects:
    node.unrestored_calls.discard(call.call_id)
    if call.ended_at_ms is not None:
        # It ended while it was written back: its release may have reached the directory
        # first, so release it again, after the write.
        return await _release(node, [call.call_id]) if restore.outcome == "restored" else []
    if restore.outcome == "reaped":
        log.info("call %s was ended for its parties while this node was cut off", call.call_id)
        return node.calls.reaped(call.call_id, node.clock.now_ms(), node.clock.mono_ms())
    if restore.outcome == "taken":
        log.warning("call %s not written back: another call holds its callId", call.call_id)
        return []
    if call.answered_at_ms is not None and sent.answered_at is None:
        # Answered while it was written back: that answer's write may have gone first.
        await node.directory.set_call_state(call.call_id, "active", call.answered_at_ms)
    if restore.held_elsewhere:  # a newer call of theirs: kept; fill in once it ends
        node.unrestored_calls.add(call.call_id)
    return []


async def directory_retries(node: Node) -> Effects:
    """Each housekeeping round: release again the calls whose release failed, and write
    back again the calls not yet wholly written back (`written_back`)."""
    if node.unreleased_calls:
        ids = sorted(node.unreleased_calls)
        node.unreleased_calls.clear()
        await _release(node, ids)
    if not node.unrestored_calls:
        return []
    live = [c for c in node.calls.live_calls() if c.call_id in node.unrestored_calls]
    node.unrestored_calls.clear()  # ended calls drop out: their release is under way
    return await written_back(node, live)
