"""The Origin check (cross-site WebSocket hijacking guard): a foreign Origin's upgrade is
answered, then closed at once with 1008 before any frame is read."""

import aiohttp

from tests.integration.rawws import OP_CLOSE, RawWs
from tests.support.server import running_server, ws_url

GOOD = "http://good.example"
OPEN = "open"


async def _outcome(url: str, origin: str | None) -> str | int | None:
    """OPEN when the connection answers a `ping`; else the close code the server sent."""
    headers = {"Origin": origin} if origin is not None else {}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        await ws.send_json({"type": "ping", "id": "p"})
        msg = await ws.receive(timeout=5)
        if msg.type == aiohttp.WSMsgType.TEXT:
            assert msg.json()["type"] == "pong"
            return OPEN
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        return ws.close_code


async def test_foreign_origin_is_closed_with_1008():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _outcome(ws_url(server), "http://evil.example") == 1008


async def test_foreign_origin_gets_the_close_frame_first_and_no_answer_to_its_frames():
    async with running_server(allowed_origin=[GOOD]) as server:
        ws = await RawWs.connect(ws_url(server), headers={"Origin": "http://evil.example"})
        try:
            await ws.send_json("ping", {}, id="p")
            opcode, payload = await ws.read_frame()
            assert (opcode, payload[:2]) == (OP_CLOSE, (1008).to_bytes(2, "big"))
            assert payload[2:] == b"origin not allowed"
            code, how = await ws.read_until_end()  # no pong, and the server hangs up
            assert code is None, how
        finally:
            ws.close()


async def test_allowed_origin_upgrades():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _outcome(ws_url(server), GOOD) == OPEN


async def test_origin_must_match_exactly_not_by_prefix():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _outcome(ws_url(server), GOOD + ".evil.example") == 1008
        assert await _outcome(ws_url(server), "https://good.example") == 1008


async def test_no_origin_header_upgrades_even_with_an_allow_list():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _outcome(ws_url(server), None) == OPEN


async def test_any_origin_upgrades_on_loopback_without_an_allow_list():
    async with running_server() as server:
        assert await _outcome(ws_url(server), "http://anything.example") == OPEN


async def test_refused_origin_opens_no_connection():
    async with running_server(allowed_origin=[GOOD]) as server:
        await _outcome(ws_url(server), "http://evil.example")
        assert server.hub.node.metrics.connections_opened == 0


async def test_wildcard_allow_list_admits_any_origin():
    async with running_server(allowed_origin=["*"]) as server:
        assert await _outcome(ws_url(server), "http://anything.example") == OPEN


def _local(url: str) -> str:
    """A server bound to every interface, reached over loopback."""
    return url.replace("0.0.0.0", "127.0.0.1")


async def test_without_an_allow_list_off_loopback_a_foreign_origin_is_closed_with_1008():
    async with running_server(host="0.0.0.0") as server:
        assert await _outcome(_local(ws_url(server)), "http://evil.example") == 1008


async def test_without_an_allow_list_off_loopback_the_same_origin_upgrades():
    async with running_server(host="0.0.0.0") as server:
        assert await _outcome(_local(ws_url(server)), _local(server.url)) == OPEN


async def test_with_an_allow_list_the_same_origin_still_upgrades():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _outcome(ws_url(server), server.url) == OPEN
