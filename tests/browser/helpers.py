"""Small helpers for the browser tests: waiting with a readable failure, a raw client."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiohttp.web


async def until(page: Any, expression: str, what: str, arg: Any = None,
                timeout: float = 15000, dump: str = "harness.events.map(m => m.type)") -> None:
    """Wait for a JS `expression` (a function source when `arg` is given) to be truthy in
    `page`; on timeout fail with `what` and what the page had seen (`dump`). Polled with
    `page.evaluate`, not `wait_for_function`: that one compiles its predicate with eval in
    the page, which the demo page's Content-Security-Policy refuses."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout / 1000
    while not await page.evaluate(expression, arg):
        if loop.time() >= deadline:
            try:
                seen = json.dumps(await page.evaluate(dump), ensure_ascii=False)[:4000]
            except Exception as dump_exc:
                seen = f"(could not read the page: {dump_exc})"
            raise AssertionError(f"timed out after {timeout / 1000:.0f} s waiting for {what}\n"
                                 f"  condition: {expression}\n  page state: {seen}")
        await asyncio.sleep(0.05)


class RawClient:
    """A plain WebSocket speaking the protocol frame by frame (the 'other client')."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.n = 0

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str, user: str,
                      room: str) -> "RawClient":
        client = cls(await http.ws_connect(url))
        welcome = await client.request("auth", {"userId": user, "username": user.title()})
        assert welcome["type"] == "welcome", welcome
        joined = await client.request("join_room", {"roomId": room})
        assert joined["type"] == "ack", joined
        return client

    async def request(self, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        frame_id = f"r{self.n}"
        await self.ws.send_json({"type": type_, "id": frame_id, "payload": payload})
        while True:
            frame = await self.ws.receive_json(timeout=10)
            if frame.get("id") == frame_id:
                return dict(frame)
            self.frames.append(frame)

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame received within `seconds` (plus those seen while awaiting acks)."""
        try:
            while True:
                self.frames.append(await self.ws.receive_json(timeout=seconds))
        except TimeoutError:
            pass
        return self.frames

    async def chat(self, room: str, content: str) -> dict[str, Any]:
        """A chat, waiting out `rate_limited` answers; returns the ack payload."""
        while True:
            answer = await self.request("chat", {"roomId": room, "content": content})
            if answer["type"] == "ack":
                return dict(answer["payload"])
            assert answer["payload"]["code"] == "rate_limited", answer
            await asyncio.sleep(answer["payload"].get("retryAfterMs", 100) / 1000)


Script = Callable[[aiohttp.web.WebSocketResponse, dict[str, Any]], Awaitable[None]]


class FakeServer:
    """A WebSocket endpoint that plays a scripted server: the n-th connection gets the n-th
    script (the last one repeats), called with the socket and the client's `auth` frame.
    For what a real server does only when something is wrong (an `internal` answer to
    `auth`, a 1008 close)."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self.connections = 0
        self.frames: list[dict[str, Any]] = []  # every frame received, in order
        self.port = 0
        self._runner: aiohttp.web.AppRunner | None = None
        self._sockets: set[aiohttp.web.WebSocketResponse] = set()

    async def start(self) -> "FakeServer":
        app = aiohttp.web.Application()
        app.router.add_get("/ws", self._handle)
        self._runner = aiohttp.web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.WebSocketResponse:
        ws = aiohttp.web.WebSocketResponse()
        await ws.prepare(request)
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        self._sockets.add(ws)
        try:
            await script(ws, await self.receive(ws))
        finally:
            self._sockets.discard(ws)
        return ws

    async def receive(self, ws: aiohttp.web.WebSocketResponse) -> dict[str, Any]:
        frame: dict[str, Any] = await ws.receive_json(timeout=15)
        self.frames.append(frame)
        return frame

    async def serve(self, ws: aiohttp.web.WebSocketResponse) -> None:
        """Answer every request with an empty ack (`chat`: a stored-like ack) until closed."""
        seq = 0
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            self.frames.append(frame)
            if frame["type"] == "ping":
                await ws.send_json({"type": "pong", "id": frame.get("id")})
                continue
            payload: dict[str, Any] = {}
            if frame["type"] == "chat":
                seq += 1
                payload = {"messageId": f"m{seq}", "seq": seq, "createdAt": 0}
            elif frame["type"] == "join_room":
                payload = {"roomId": frame["payload"]["roomId"], "members": [], "lastSeq": 0}
            await ws.send_json({"type": "ack", "id": frame.get("id"), "payload": payload})

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()


def welcome(auth: dict[str, Any], **limits: Any) -> dict[str, Any]:
    """The `welcome` answering `auth` (dev identity), with protocol-default limits."""
    user = auth["payload"].get("userId", "ann")
    return {"type": "welcome", "id": auth["id"], "payload": {
        "sessionId": "fake", "userId": user, "username": user.title(), "serverTime": 0,
        "heartbeatMs": 20000, "protocol": 1, "iceServers": [],
        "limits": {"maxFrameBytes": 65536, "maxRoomsPerConnection": 100,
                   "maxContentChars": 4000, "framesPerSecond": 100.0, "chatsPerSecond": 20.0,
                   "chatBurst": 40, "typingTimeoutMs": 3000, **limits}}}
