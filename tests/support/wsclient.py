"""A small WebSocket test client speaking PROTOCOL.md, on aiohttp."""

import asyncio
import json
from types import TracebackType
from typing import Any

import aiohttp

DEFAULT_TIMEOUT = 5.0


class WsClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self.ws = ws
        self._session = session
        self.user: str | None = None

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> "WsClient":
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, autoping=True, **kwargs)
        except BaseException:
            await session.close()
            raise
        return cls(ws, session)

    async def __aenter__(self) -> "WsClient":
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.close()

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        await self._session.close()

    async def send(self, type_: str, payload: dict[str, Any] | None = None,
                   id: str | None = None) -> None:
        data: dict[str, Any] = {"type": type_}
        if id is not None:
            data["id"] = id
        if payload is not None:
            data["payload"] = payload
        await self.ws.send_str(json.dumps(data))

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next text frame, decoded. Fails on close."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type!r} {msg.data!r}")
        result: dict[str, Any] = json.loads(msg.data)
        return result

    async def expect(self, type_: str, timeout: float = DEFAULT_TIMEOUT,
                     **match: Any) -> dict[str, Any]:
        """Skip frames until one of `type_` whose payload has the `match` fields arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {type_} {match} within {timeout}s")
            frame = await self.recv(left)
            payload = frame.get("payload") or {}
            if frame["type"] == type_ and all(payload.get(k) == v for k, v in match.items()):
                return frame

    async def request(self, type_: str, payload: dict[str, Any] | None = None,
                      id: str = "r1") -> dict[str, Any]:
        """Send a frame with an id; return its ack or error (other frames are skipped)."""
        await self.send(type_, payload, id)
        while True:
            frame = await self.recv()
            if frame.get("id") == id:
                return frame

    async def nothing(self, within: float = 0.3) -> None:
        """Assert that no frame arrives for a moment (used sparingly)."""
        try:
            msg = await self.ws.receive(timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {msg.type!r} {msg.data!r}")

    async def auth(self, user: str, username: str | None = None) -> dict[str, Any]:
        await self.send("auth", {"userId": user, "username": username or user}, id="auth")
        welcome = await self.expect("welcome")
        self.user = user
        return welcome

    async def join(self, room: str | int, **extra: Any) -> dict[str, Any]:
        ack = await self.request("join_room", {"roomId": room, **extra}, id=f"join-{room}")
        assert ack["type"] == "ack", ack
        return ack

    async def closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Wait for the server to close the connection; returns the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ws.closed:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("connection still open")
            msg = await self.ws.receive(timeout=left)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                break
        return self.ws.close_code
