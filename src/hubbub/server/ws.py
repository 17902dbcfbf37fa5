"""The `/ws` endpoint: the only module that speaks to the WebSocket library."""

import asyncio
import inspect
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from hubbub.errors import ProtocolError
from hubbub.features.auth import authenticate_token
from hubbub.features.dispatch import handle_frame, refused
from hubbub.features.node import error
from hubbub.features.system import admit, open_session
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.server import framing
from hubbub.server.hub import CLOSE_GRACE_S, Conn, Hub

log = logging.getLogger("hubbub.conn")

HUB = web.AppKey("hubbub.hub", Hub)


def origin_allowed(request: web.Request, allowed: list[str], bound_host: str) -> bool:
    """Cross-site WebSocket hijacking guard (checked before the upgrade).

    No Origin header = not a browser: allowed. Same origin as the Host header: allowed.
    `--allowed-origin` set: those as well. Unset: any origin while bound to loopback.
    """
    origin = request.headers.get("Origin")
    if origin is None or urlsplit(origin).netloc == request.host:
        return True
    if allowed:
        return origin in allowed or "*" in allowed
    return is_loopback(bound_host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class _Parser(Protocol):
    def feed_data(self, data: bytes) -> tuple[bool, bytes]: ...
    def feed_eof(self) -> None: ...


# A frame header with the reserved opcode 3: aiohttp's reader fails it with 1002.
_FAIL_1002 = b"\x83\x80"


class MaskCheck:
    """RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is
    not masked." aiohttp's reader unmasks a masked frame and takes an unmasked one as it is,
    so this walks the frame headers in front of it and fails the connection (1002) at the
    first unmasked frame. Frames before it are handled; nothing after it is. A header split
    across reads is passed on once complete (at most 13 bytes later)."""

    __slots__ = ("_held", "_inner", "_skip", "unmasked")

    def __init__(self, inner: _Parser) -> None:
        self._inner = inner
        self._held = b""  # the start of a header split across reads, not passed on yet
        self._skip = 0  # bytes of the current frame's payload still to come
        self.unmasked = False

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.unmasked:
            return False, b""
        buf = self._held + data if self._held else data
        end, pos = len(buf), self._skip
        while end - pos >= 2:
            b1 = buf[pos + 1]
            if not b1 & 0x80:
                self.unmasked = True
                return self._inner.feed_data(buf[:pos] + _FAIL_1002)
            n = b1 & 0x7F
            ext = 2 if n == 126 else 8 if n == 127 else 0
            if end - pos < 6 + ext:
                break
            if ext:
                n = int.from_bytes(buf[pos + 2:pos + 2 + ext], "big")
            pos += 6 + ext + n
        if pos >= end:
            self._skip, self._held = pos - end, b""
            return self._inner.feed_data(buf)
        self._skip, self._held = 0, buf[pos:]
        return self._inner.feed_data(buf[:pos]) if pos else (False, b"")


class _Response(web.WebSocketResponse):
    mask_check: MaskCheck | None = None
    # The hub's flush: what it queued (answers to frames already handled) goes out before
    # any close frame, also the ones aiohttp sends itself (1002, 1009, an answered close).
    before_close: Callable[[], None] | None = None

    async def close(self, **kwargs: Any) -> bool:
        if self.before_close is not None:
            self.before_close()
        return await super().close(**kwargs)

    def _post_start(self, request: web.BaseRequest, protocol: str | None,
                    writer: Any) -> None:
        """Put MaskCheck in front of the reader aiohttp installs, and pass it the bytes a
        client sent right behind its upgrade request too (aiohttp's RequestHandler keeps
        them in `_message_tail`). Without those private names, aiohttp's behaviour stays."""
        proto: Any = request.protocol
        tail: bytes = getattr(proto, "_message_tail", b"")
        if tail:
            proto._message_tail = b""
        super()._post_start(request, protocol, writer)
        inner = getattr(proto, "_payload_parser", None)
        if inner is None:
            if tail:
                proto._message_tail = tail
            return
        self.mask_check = proto._payload_parser = MaskCheck(inner)
        if tail:
            self.mask_check.feed_data(tail)


def _remote(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else "?"


async def handle_ws(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    node = hub.node
    st = node.settings
    if not origin_allowed(request, st.allowed_origin, st.host):
        log.info("refused upgrade from origin %r", request.headers.get("Origin"))
        return web.Response(status=403, text="origin not allowed\n")
    ws = _Response(autoping=False, autoclose=True, compress=False,
                   max_msg_size=st.max_frame, timeout=2.0, decode_text=False)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None

    async def closer(code: int, reason: str) -> object:
        return await ws.close(code=code, message=reason.encode()[:120])

    session = open_session(node, _remote(request), request.remote or "")
    conn = Conn(session, transport, closer)
    ws.before_close = hub.flush
    hub.add(conn)
    log.info("open conn=%s remote=%s", conn.id, session.remote)
    hub.run(admit(node, session))
    token = request.query.get("token")
    if token and not session.closing:
        try:
            hub.run(await authenticate_token(node, session, token, None))
        except ProtocolError as exc:  # dev identity mode: say so instead of waiting 10 s
            hub.run(refused(node, session, exc, None))
    close_reason = ""
    close_code: int | None = None
    try:
        while True:
            msg = await ws.receive()
            conn.last_rx = time.monotonic()
            kind = msg.type
            if conn.closed and (kind is WSMsgType.TEXT or kind is WSMsgType.BINARY):
                # We closed this connection (4001, 4008, 1001, 1013): frames still in flight
                # are void, or an expired or abusive session would go on acting.
                continue
            if kind is WSMsgType.TEXT:
                if not msg.data.isascii() and not _utf8(msg.data):
                    # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection.
                    hub.close(conn.id, CloseCode.INVALID_DATA, "text frame is not UTF-8")
                    continue
                try:
                    result = handle_frame(node, session, msg.data)
                    if inspect.isawaitable(result):
                        result = await result
                except Exception:
                    log.exception("internal error conn=%s", conn.id)
                    result = error(conn.id, ProtocolError(ErrorCode.INTERNAL, "internal error"),
                                   None)
                hub.run(result)
                # An idle connection would otherwise keep its last frame and effects (a
                # join ack with its member list) alive until its next frame.
                result = msg = None  # type: ignore[assignment]
            elif kind is WSMsgType.BINARY:
                hub.run(refused(node, session, ProtocolError(
                    ErrorCode.BAD_REQUEST, "binary frames are not supported; send JSON text"),
                    None))
            elif kind is WSMsgType.PING:
                hub.queue(conn, framing.pong(msg.data))
            elif kind is WSMsgType.PONG:
                pass
            else:
                if kind is WSMsgType.ERROR:
                    close_code = getattr(msg.data, "code", None)
                    close_reason = "unmasked client frame" if ws.mask_check is not None \
                        and ws.mask_check.unmasked else str(msg.data)
                break
        if conn.close_task is not None:
            # We started the close (auth failure, abuse, shutdown): let it finish.
            await asyncio.wait([conn.close_task], timeout=CLOSE_GRACE_S + 1.0)
    except ConnectionError:
        close_reason = close_reason or "connection lost"
    finally:
        hub.remove(conn, conn.close_code or close_code or ws.close_code, close_reason)
    return ws
