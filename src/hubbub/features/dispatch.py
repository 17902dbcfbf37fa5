"""From raw frame to effects: parse, rate-limit, authenticate, check identity, dispatch.

Every refusal is turned into an `error` frame here, in one place. Handlers for frames
that touch the store are coroutines; the others run synchronously so the common path
(typing, presence, relay) never pays for a task.
"""

import logging
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from hubbub import logs
from hubbub.core.effects import Close, Effects
from hubbub.core.identity import speaks_for
from hubbub.core.session import Session
from hubbub.errors import ProtocolError, StoreUnavailable
from hubbub.features.auth import handle_auth
from hubbub.features.calls import (
    handle_call_end,
    handle_call_history,
    handle_call_reject,
    handle_webrtc,
)
from hubbub.features.chat import (
    handle_chat,
    handle_delete,
    handle_edit,
    handle_history,
    handle_reaction,
)
from hubbub.features.node import Node, error
from hubbub.features.pending import Pending
from hubbub.features.presence import handle_presence
from hubbub.features.rooms import handle_join, handle_leave
from hubbub.features.system import handle_ping
from hubbub.features.typing_indicators import handle_typing
from hubbub.protocol.codes import STRIKE_CODES, CloseCode, ErrorCode
from hubbub.protocol.envelope import BadFrame, parse
from hubbub.protocol.frames import (
    Auth,
    CallEnd,
    CallHistory,
    CallReject,
    Chat,
    History,
    Inbound,
    JoinRoom,
    LeaveRoom,
    MessageDelete,
    MessageEdit,
    Ping,
    Presence,
    Reaction,
    Typing,
    WebRTC,
)

log = logging.getLogger("hubbub.dispatch")

Handler = Callable[[Node, Session, Any],
                   Effects | Pending[Any] | Coroutine[Any, Any, Effects]]

# One handler per inbound type (PROTOCOL §Client → server types). `auth` is handled
# before this table: it is the only frame besides `ping` allowed before authentication.
DISPATCH: dict[type[Inbound], Handler] = {
    Chat: handle_chat,
    MessageEdit: handle_edit,
    MessageDelete: handle_delete,
    Reaction: handle_reaction,
    History: handle_history,
    Presence: handle_presence,
    WebRTC: handle_webrtc,
    CallReject: handle_call_reject,
    CallEnd: handle_call_end,
    CallHistory: handle_call_history,
    JoinRoom: handle_join,
    LeaveRoom: handle_leave,
    Typing: handle_typing,
    Ping: handle_ping,
}

_TAGS: dict[type, str] = {}


def _tag(t: type[Inbound]) -> str:
    tag = _TAGS.get(t)
    if tag is None:
        tag = _TAGS[t] = str(t.__struct_config__.tag)
    return tag


def refused(node: Node, s: Session, exc: ProtocolError, frame_id: str | None) -> Effects:
    """The `error` frame for a refused frame, and 4008 when the client keeps misbehaving."""
    node.metrics.errors[exc.code] += 1
    effects = error(s.conn, exc, frame_id)
    if exc.code in STRIKE_CODES and s.strikes.take(node.clock.mono_ms()):
        s.closing = True
        effects.append(Close(s.conn, CloseCode.TOO_MANY_BAD_FRAMES, "too many bad frames"))
    return effects


def _check_identity(s: Session, frame: Any) -> None:
    """PROTOCOL §Authentication: a payload's `userId`/`from` must be the caller's own."""
    assert s.identity is not None
    if not speaks_for(s.identity.user_id, frame.payload.user_id, frame.payload.from_):
        raise ProtocolError(ErrorCode.FORBIDDEN, "userId/from must be your own identity")


def _internal(node: Node, s: Session, fid: str | None) -> Effects:
    """A bug, or a backend that failed (called in an `except`): the frame still gets its
    one answer, `internal`. Logged with its traceback, once a while per exception type."""
    suffix = logs.failures.admit_exception()
    if suffix is not None:
        log.exception("internal error handling a frame on conn=%s%s", s.conn, suffix)
    return refused(node, s, ProtocolError(ErrorCode.INTERNAL, "internal error"), fid)


# What a client is told when the store fails a write. The cause (a file path, a database
# host, a driver's message) is the operator's business: it goes to the log, not the wire.
STORE_FAILED = "the store could not persist this; nothing was saved: retry later"


def _unavailable(node: Node, s: Session, exc: StoreUnavailable, fid: str | None) -> Effects:
    """The store failed a write: nothing was acked or broadcast; the log says why."""
    suffix = logs.failures.admit("store")
    if suffix is not None:
        log.error("store unavailable on conn=%s: %s%s", s.conn, exc, suffix)
    return refused(node, s, ProtocolError(ErrorCode.INTERNAL, STORE_FAILED), fid)


def _failed(node: Node, s: Session, fid: str | None, exc: Exception) -> Effects:
    """The answer to an exception from a handler that waited (called in its `except`)."""
    if isinstance(exc, ProtocolError):
        return refused(node, s, exc, fid)
    if isinstance(exc, StoreUnavailable):
        return _unavailable(node, s, exc, fid)
    return _internal(node, s, fid)


async def _guarded(node: Node, s: Session, coro: Awaitable[Effects], fid: str | None) -> Effects:
    try:
        return await coro
    except Exception as exc:
        return _failed(node, s, fid, exc)


# Frames of one connection that may wait on the store side by side: their handlers check
# nothing that an earlier frame of theirs changes when its effects run (a chat changes no
# membership, limit or identity), and the store applies writes in the order they were
# queued. So a client's burst of chats joins one group commit instead of one commit each.
OVERLAPPING: frozenset[type] = frozenset((Chat,))


def _authenticate_first() -> ProtocolError:
    return ProtocolError(ErrorCode.UNAUTHORIZED, "authenticate first")


def _open_before_auth(node: Node, frame_type: str) -> bool:
    """The types a connection may send before it has authenticated."""
    return frame_type in ("auth", "ping") or (frame_type == "presence"
                                               and node.settings.dev_identity)


def read_frame(data: bytes | str, utf8_checked: bool = False) -> Inbound | BadFrame:
    """Parse one text frame; a frame that does not parse comes back as its `BadFrame`."""
    try:
        return parse(data, utf8_checked)
    except BadFrame as exc:
        return exc


def handle_frame(node: Node, s: Session, data: bytes | str) -> Effects | Awaitable[Effects]:
    """Handle one text frame. Returns effects, or an awaitable of them for store-bound types."""
    return handle_read(node, s, read_frame(data))


def handle_read(node: Node, s: Session,
                frame: Inbound | BadFrame) -> Effects | Awaitable[Effects]:
    """Handle a parsed frame (or the reason it did not parse)."""
    if isinstance(frame, BadFrame):
        node.metrics.frames_in["invalid"] += 1
        if (s.identity is None and frame.frame_type is not None
                and not _open_before_auth(node, frame.frame_type)):
            # PROTOCOL: every frame but auth/ping before authentication gets
            # `unauthorized`, whatever else is wrong with it.
            return refused(node, s, _authenticate_first(), frame.frame_id)
        return refused(node, s, frame, frame.frame_id)
    t = type(frame)
    node.metrics.frames_in[_tag(t)] += 1
    fid = frame.id
    try:
        mono = node.clock.mono_ms()
        wait = s.frames.take(mono)
        if wait:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "too many frames", retry_after_ms=wait)
        if s.identity is None:
            if t is Auth or (t is Presence and node.settings.dev_identity):
                return _guarded(node, s, handle_auth(node, s, frame), fid)  # type: ignore[arg-type]
            if t is Ping:
                return handle_ping(node, s, frame)  # type: ignore[arg-type]
            raise _authenticate_first()
        _check_identity(s, frame)
        if t is Auth:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "already authenticated")
        if t is Chat:
            wait = s.chats.take(mono)
            if wait:
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many chats",
                                    retry_after_ms=wait)
        elif t is JoinRoom:
            wait = s.joins.take(mono)
            if wait:
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many joins",
                                    retry_after_ms=wait)
        handler = DISPATCH.get(t)
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE,
                                f"{_tag(t)!r} is not supported by this server yet")
        result = handler(node, s, frame)
        if type(result) is list:
            return result
        if type(result) is Pending:
            result.refuse = partial(_failed, node, s, fid)
            return result
        return _guarded(node, s, result, fid)  # type: ignore[arg-type]  # a coroutine
    except ProtocolError as exc:
        return refused(node, s, exc, fid)
    except Exception:
        return _internal(node, s, fid)
