"""The `/ws` endpoint: the only module that speaks to the WebSocket library."""

import asyncio
import inspect
import ipaddress
import logging
import time
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
    ws = web.WebSocketResponse(autoping=False, autoclose=True, compress=False,
                               max_msg_size=st.max_frame, timeout=2.0, decode_text=False)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None

    async def closer(code: int, reason: str) -> object:
        return await ws.close(code=code, message=reason.encode()[:120])

    session = open_session(node, _remote(request), request.remote or "")
    conn = Conn(session, transport, closer)
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
                    close_reason = str(msg.data)
                    close_code = getattr(msg.data, "code", None)
                break
        if conn.close_task is not None:
            # We started the close (auth failure, abuse, shutdown): let it finish.
            await asyncio.wait([conn.close_task], timeout=CLOSE_GRACE_S + 1.0)
    except ConnectionError:
        close_reason = close_reason or "connection lost"
    finally:
        hub.remove(conn, conn.close_code or close_code or ws.close_code, close_reason)
    return ws
