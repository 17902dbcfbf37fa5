"""The Origin check happens before the upgrade (cross-site WebSocket hijacking guard)."""

import aiohttp
import pytest

from tests.integration.rawws import RawWs
from tests.support.server import running_server, ws_url

GOOD = "http://good.example"


async def _upgrade_status(url: str, origin: str | None) -> int:
    headers = {"Origin": origin} if origin is not None else {}
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_foreign_origin_gets_403_before_the_upgrade():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _upgrade_status(ws_url(server), "http://evil.example") == 403


async def test_foreign_origin_is_refused_with_a_plain_http_response():
    async with running_server(allowed_origin=[GOOD]) as server:
        with pytest.raises(AssertionError, match="403"):
            await RawWs.connect(ws_url(server), headers={"Origin": "http://evil.example"})


async def test_allowed_origin_upgrades():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _upgrade_status(ws_url(server), GOOD) == 101


async def test_origin_must_match_exactly_not_by_prefix():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _upgrade_status(ws_url(server), GOOD + ".evil.example") == 403
        assert await _upgrade_status(ws_url(server), "https://good.example") == 403


async def test_no_origin_header_upgrades_even_with_an_allow_list():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _upgrade_status(ws_url(server), None) == 101


async def test_any_origin_upgrades_on_loopback_without_an_allow_list():
    async with running_server() as server:
        assert await _upgrade_status(ws_url(server), "http://anything.example") == 101


async def test_refused_origin_opens_no_connection():
    async with running_server(allowed_origin=[GOOD]) as server:
        await _upgrade_status(ws_url(server), "http://evil.example")
        assert server.hub.node.metrics.connections_opened == 0


async def test_wildcard_allow_list_admits_any_origin():
    async with running_server(allowed_origin=["*"]) as server:
        assert await _upgrade_status(ws_url(server), "http://anything.example") == 101


def _local(url: str) -> str:
    """A server bound to every interface, reached over loopback."""
    return url.replace("0.0.0.0", "127.0.0.1")


async def test_without_an_allow_list_off_loopback_a_foreign_origin_gets_403():
    async with running_server(host="0.0.0.0") as server:
        assert await _upgrade_status(_local(ws_url(server)), "http://evil.example") == 403


async def test_without_an_allow_list_off_loopback_the_same_origin_upgrades():
    async with running_server(host="0.0.0.0") as server:
        assert await _upgrade_status(_local(ws_url(server)), _local(server.url)) == 101


async def test_with_an_allow_list_the_same_origin_still_upgrades():
    async with running_server(allowed_origin=[GOOD]) as server:
        assert await _upgrade_status(ws_url(server), server.url) == 101
