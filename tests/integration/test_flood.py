"""A client that floods the server is slowed, then cut off; everyone else carries on
(PROTOCOL §Errors rate_limited, §Close codes 4008)."""

import contextlib
import json

import aiohttp

from tests.integration.helpers import clients, dev_client
from tests.support.server import running_server
from tests.support.wsclient import WsClient

FRAMES = 3000


async def _flood(client: WsClient, n: int = FRAMES) -> None:
    """Send `n` pings as fast as the socket takes them; stop quietly once closed."""
    with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
        for i in range(n):
            if client.ws.closed:
                return
            await client.ws.send_str(json.dumps({"type": "ping", "id": f"f{i}"}))


async def _drain(client: WsClient) -> tuple[list[dict], int | None]:
    """Every text frame until the server closes; and the close code."""
    frames: list[dict] = []
    while True:
        msg = await client.ws.receive(timeout=10.0)
        if msg.type is aiohttp.WSMsgType.TEXT:
            frames.append(json.loads(msg.data))
        else:
            return frames, client.ws.close_code


async def test_flooding_client_gets_rate_limited_with_retry_after_ms():
    async with running_server() as server, await dev_client(server, "flood") as c:
        await _flood(c)
        frames, _ = await _drain(c)
        limited = [f for f in frames if f["type"] == "error"
                   and f["payload"]["code"] == "rate_limited"]
        assert limited, [f["type"] for f in frames[:5]]
        for f in limited:
            assert isinstance(f["payload"]["retryAfterMs"], int)
            assert f["payload"]["retryAfterMs"] > 0
            assert f["id"].startswith("f")  # the refused frame's id is echoed


async def test_flooding_client_that_keeps_going_is_closed_with_4008():
    async with running_server() as server, await dev_client(server, "flood") as c:
        await _flood(c)
        _, code = await _drain(c)
        assert code == 4008


async def test_flooded_server_still_answers_other_clients():
    async with running_server() as server, await dev_client(server, "calm") as calm:
        async with await dev_client(server, "flood") as c:
            await _flood(c)
            await _drain(c)
        pong = await calm.request("ping", {}, id="still-there")
        assert pong["type"] == "pong"
        assert pong["id"] == "still-there"


async def test_frames_within_the_rate_get_answered_not_limited():
    async with running_server() as server, await dev_client(server, "ok") as c:
        for i in range(50):
            pong = await c.request("ping", {}, id=f"p{i}")
            assert pong["type"] == "pong"


async def test_rate_limit_zero_disables_the_flood_limits():
    async with running_server(rate_limit=0) as server, await dev_client(server, "fast") as c:
        n = 1000
        await _flood(c, n)
        answers = [await c.recv() for _ in range(n)]
        assert {a["type"] for a in answers} == {"pong"}
        assert [a["id"] for a in answers] == [f"f{i}" for i in range(n)]


async def test_frames_sent_after_the_server_closed_the_connection_are_not_acted_on():
    async with running_server() as server, clients(server, "bad", "other") as [bad, other]:
        await bad.join("r")
        await other.join("r")
        await bad.expect("join_room", userId="other")
        for _ in range(80):  # enough strikes for 4008 even if the bucket refills a little
            await bad.ws.send_str("not json")
        for status in ("away", "busy") * 5:
            await bad.ws.send_str(json.dumps({"type": "presence", "payload": {"status": status}}))
        assert await bad.closed() == 4008
        await other.nothing(within=0.5)  # none of the late status changes went out


async def test_the_strike_beyond_the_burst_is_answered_then_closed_with_4008():
    async with running_server() as server, clients(server, "bad") as [bad]:
        for _ in range(51):  # docs/reference/protocol.md: 50 strikes in a burst
            await bad.ws.send_str("not json")
        frames, code = await _drain(bad)
        assert [f["payload"]["code"] for f in frames] == ["bad_request"] * 51
        assert code == 4008


async def test_ordinary_refusals_are_not_strikes():
    async with running_server(rate_limit=0) as server, clients(server, "u1") as [c]:
        for i in range(120):
            await c.send("leave_room", {"roomId": "r"}, id=f"l{i}")
        for _ in range(120):
            assert (await c.recv())["payload"]["code"] == "not_in_room"
        assert (await c.request("ping", {}, id="p"))["type"] == "pong"
