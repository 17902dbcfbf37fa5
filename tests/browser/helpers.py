"""Small helpers for the browser tests: waiting with a readable failure, a raw client."""

import asyncio
import json
from typing import Any

import aiohttp


async def until(page: Any, expression: str, what: str, arg: Any = None,
                timeout: float = 15000, dump: str = "harness.events.map(m => m.type)") -> None:
    """Wait for a JS `expression` (a function source when `arg` is given) to be truthy in
    `page`; on timeout fail with `what` and what the page had seen (`dump`)."""
    try:
        await page.wait_for_function(expression, arg=arg, timeout=timeout)
    except Exception as exc:
        try:
            seen = json.dumps(await page.evaluate(dump), ensure_ascii=False)[:4000]
        except Exception as dump_exc:
            seen = f"(could not read the page: {dump_exc})"
        raise AssertionError(f"timed out after {timeout / 1000:.0f} s waiting for {what}\n"
                             f"  condition: {expression}\n  page state: {seen}") from exc


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
