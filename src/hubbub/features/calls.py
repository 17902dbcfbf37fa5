"""`webrtc`, `call_reject`, `call_end` (PROTOCOL §Calls): who may call whom, then the
call state machine in core decides where each frame goes."""

import secrets
from collections.abc import Coroutine
from typing import Any

from hubbub.core.effects import Effects, Reply
from hubbub.core.session import Session
from hubbub.errors import ProtocolError
from hubbub.features.node import Node
from hubbub.ids import RoomId, UserId, room_id, user_id
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    CallAck,
    CallEnd,
    CallHistory,
    CallHistoryAck,
    CallReject,
    WebRTC,
)


async def _may_call(node: Node, caller: UserId, callee: UserId, room: RoomId | None) -> None:
    """PROTOCOL §Calls: the callee shares a room with the caller (or the offer's room)
    and is online, anywhere in the cluster. The room check comes first, so nobody learns
    whether a stranger is online."""
    d = node.directory
    mine, theirs = await d.rooms_of(caller), await d.rooms_of(callee)
    if room is not None:
        if room not in mine or room not in theirs:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"you and {callee} are not both in {room}")
    elif not mine & theirs:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you share no room with {callee}")
    if not await d.is_online(callee):
        raise ProtocolError(ErrorCode.NOT_FOUND, f"{callee} is not online")


def _ack(node: Node, s: Session, frame_id: str | None, call_id: str) -> Effects:
    if frame_id is None:
        return []
    call = node.calls.calls.get(call_id)
    state = call.state.value if call else "ended"
    return [Reply(s.conn, "ack", CallAck(call_id=call_id, state=state),  # type: ignore[arg-type]
                  frame_id)]


def handle_webrtc(node: Node, s: Session,
                  frame: WebRTC) -> Effects | Coroutine[Any, Any, Effects]:
    """Relay frames of a known call synchronously (the hot path of a call); a new call
    first checks, cluster-wide, that the caller may call the callee."""
    p = frame.payload
    to = user_id(p.to)
    if p.kind in ("offer", "answer") and p.sdp is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a {p.kind} needs `sdp`")
    if p.kind == "offer":
        call_id = p.call_id or secrets.token_urlsafe(12)
        if call_id not in node.calls.calls:
            return _new_call(node, s, frame, call_id, to)
        return _relay(node, s, frame, to, call_id)
    if p.call_id is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a {p.kind} needs `callId`")
    return _relay(node, s, frame, to, p.call_id)


async def _new_call(node: Node, s: Session, frame: WebRTC, call_id: str, to: UserId) -> Effects:
    assert s.identity is not None
    p, me = frame.payload, s.identity.user_id
    room = room_id(p.room_id) if p.room_id is not None else None
    await _may_call(node, me, to, room)
    if call_id in node.calls.calls:  # the same offer twice, raced while we checked
        return _relay(node, s, frame, to, call_id)
    effects = node.calls.offer(call_id=call_id, caller=me, conn=s.conn, callee=to, room=room,
                               sdp=p.sdp, candidate=p.candidate, now_ms=node.clock.now_ms())
    return _ack(node, s, frame.id, call_id) + effects + node.calls.drain_log()


def _relay(node: Node, s: Session, frame: WebRTC, to: UserId, call_id: str) -> Effects:
    assert s.identity is not None
    p, me, now = frame.payload, s.identity.user_id, node.clock.now_ms()
    if p.kind == "offer":
        room = room_id(p.room_id) if p.room_id is not None else None
        effects = node.calls.offer(call_id=call_id, caller=me, conn=s.conn, callee=to, room=room,
                                   sdp=p.sdp, candidate=p.candidate, now_ms=now)
    else:
        call = node.calls.calls.get(call_id)
        if call is not None and call.is_party(me) and call.peer_of(me) != to:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "`to` is not the other party")
        if p.kind == "answer":
            siblings = tuple(c for c in node.user_conns.get(me, ()) if c != s.conn)
            effects = node.calls.answer(call_id=call_id, user=me, conn=s.conn, sdp=p.sdp,
                                        siblings=siblings, now_ms=now)
        else:
            effects = node.calls.ice(call_id=call_id, user=me, conn=s.conn,
                                     candidate=p.candidate)
    return _ack(node, s, frame.id, call_id) + effects + node.calls.drain_log()


def handle_call_reject(node: Node, s: Session, frame: CallReject) -> Effects:
    assert s.identity is not None
    p = frame.payload
    effects = node.calls.reject(call_id=p.call_id, user=s.identity.user_id, reason=p.reason,
                                now_ms=node.clock.now_ms())
    return _ack(node, s, frame.id, p.call_id) + effects + node.calls.drain_log()


def handle_call_end(node: Node, s: Session, frame: CallEnd) -> Effects:
    assert s.identity is not None
    p = frame.payload
    effects = node.calls.hang_up(call_id=p.call_id, user=s.identity.user_id, reason=p.reason,
                                 now_ms=node.clock.now_ms())
    return _ack(node, s, frame.id, p.call_id) + effects + node.calls.drain_log()


async def handle_call_history(node: Node, s: Session, frame: CallHistory) -> Effects:
    """The caller's own call log, newest first (docs/reference/protocol.md)."""
    assert s.identity is not None
    calls = await node.store.call_history(s.identity.user_id, frame.payload.limit)
    return [Reply(s.conn, "ack", CallHistoryAck(calls=calls), frame.id)]
