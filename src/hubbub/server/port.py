"""One port for everything: `GET /ws` goes to the WebSocket endpoint (picows), every
other request to the HTTP routes (aiohttp).

The router reads a connection's request head, no more, within `--handshake-timeout`
(the slowloris deadline for both kinds), then hands the socket and the bytes it read to the
protocol that serves it. The head is at most 16 KiB.
"""

import asyncio
from collections.abc import Callable
from typing import Any

MAX_HEAD = 16 * 1024
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
              b"Connection: close\r\n\r\n")


def is_websocket_request(head: bytes) -> bool:
    """`GET /ws` or `GET /ws?...`: the WebSocket endpoint's requests."""
    line = head[:head.find(b"\r\n")]
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return False
    target = parts[1]
    return target == b"/ws" or target.startswith(b"/ws?")


class PortRouter(asyncio.Protocol):
    __slots__ = ("_buf", "_http", "_timer", "_transport", "_ws")

    def __init__(self, ws: Callable[[], Any], http: Callable[[], Any], timeout: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._ws = ws
        self._http = http
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer = loop.call_later(timeout, self._expire)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        transport = self._transport
        assert transport is not None
        if end < 0 and len(buf) <= MAX_HEAD:
            return
        if end < 0 or end + 4 > MAX_HEAD:  # a whole head can arrive in one read
            self._timer.cancel()
            transport.write(_TOO_LARGE)
            transport.close()
            return
        self._timer.cancel()
        head, tail = bytes(buf[:end + 4]), bytes(buf[end + 4:])
        self._buf = bytearray()
        if is_websocket_request(head):
            ws = self._ws()
            transport.set_protocol(ws)
            ws.connection_made(transport)
            ws.upgrade(head, tail)
        else:
            http = self._http()
            transport.set_protocol(http)
            http.connection_made(transport)
            http.data_received(head + tail)
