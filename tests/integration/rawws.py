"""A hand-rolled WebSocket client on a raw asyncio socket, for what aiohttp will not do:
send invalid frames, never answer pings, never read (a slow reader), choose SO_RCVBUF."""

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from typing import Any
from urllib.parse import urlsplit

from tests.support.wsframes import client_frame

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Ended(Exception):
    """The server ended the TCP connection (EOF or reset)."""


class RawWs:
    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(buffered)
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, url: str, *, rcvbuf: int | None = None,
                      headers: dict[str, str] | None = None) -> "RawWs":
        """TCP connect (SO_RCVBUF set before connect, so the window is small from the
        start), then the HTTP upgrade. Raises AssertionError if the answer is not 101."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5.0)
            if not chunk:
                sock.close()
                raise AssertionError(f"connection closed during the upgrade: {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            sock.close()
            raise AssertionError(f"upgrade refused: {head!r}")
        return cls(sock, rest)

    def close(self) -> None:
        self.sock.close()

    # ---- sending (client frames are masked, RFC 6455 §5.3) ---------------------------
    async def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        await self.loop.sock_sendall(self.sock, client_frame(opcode, payload, fin=fin))

    async def send_text(self, data: bytes | str) -> None:
        await self.send_frame(OP_TEXT, data.encode() if isinstance(data, str) else data)

    async def send_json(self, type_: str, payload: dict[str, Any] | None = None,
                        id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": type_}
        if id is not None:
            frame["id"] = id
        if payload is not None:
            frame["payload"] = payload
        await self.send_text(json.dumps(frame))

    # ---- receiving --------------------------------------------------------------------
    async def _fill(self, need: int, deadline: float) -> None:
        while len(self.buf) < need:
            left = deadline - self.loop.time()
            if left <= 0:
                raise TimeoutError
            try:
                chunk = await asyncio.wait_for(self.loop.sock_recv(self.sock, 1 << 16), left)
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise Ended("reset") from exc
            if not chunk:
                raise Ended("eof")
            self.buf += chunk

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """(opcode, payload) of the next whole server frame."""
        deadline = self.loop.time() + timeout
        await self._fill(2, deadline)
        b1 = self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            await self._fill(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            await self._fill(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        await self._fill(off + n, deadline)
        opcode = self.buf[0] & 0x0F
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        return opcode, payload

    async def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next text frame, decoded (pings are skipped, not answered)."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == OP_TEXT:
                result: dict[str, Any] = json.loads(payload)
                return result
            if opcode == OP_CLOSE:
                raise AssertionError(f"closed: {payload!r}")

    async def expect(self, type_: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = self.loop.time() + timeout
        while True:
            frame = await self.recv_json(max(0.01, deadline - self.loop.time()))
            if frame["type"] == type_:
                return frame

    async def read_until_end(self, timeout: float = 10.0, *,
                             reply_close: bool = True) -> tuple[int | None, str]:
        """Read (and discard) until the server closes or ends the TCP connection.
        Returns (close code if a close frame was read, how the socket ended)."""
        deadline = self.loop.time() + timeout
        code: int | None = None
        while True:
            try:
                opcode, payload = await self.read_frame(max(0.01, deadline - self.loop.time()))
            except Ended as exc:
                return code, str(exc)
            if opcode == OP_CLOSE and code is None:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if reply_close:
                    with contextlib.suppress(OSError):
                        await self.send_frame(OP_CLOSE, payload[:2])
