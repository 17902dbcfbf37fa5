"""Connection limits refuse politely with 1013 instead of falling over."""

from tests.integration.helpers import metric
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient


async def test_a_connection_over_the_total_limit_is_closed_with_1013():
    async with running_server(max_connections=2) as server, \
            await WsClient.open(ws_url(server)) as a, await WsClient.open(ws_url(server)) as b:
        await a.auth("a")
        await b.auth("b")
        async with await WsClient.open(ws_url(server)) as c:
            assert await c.closed() == 1013
        assert (await a.request("ping", {}, id="p"))["type"] == "pong"
        assert await metric(server, "hubbub_connections_refused_total") == 1


async def test_a_closed_connection_frees_its_place_under_the_total_limit():
    async with running_server(max_connections=1) as server:
        async with await WsClient.open(ws_url(server)) as a:
            await a.auth("a")
        async with await WsClient.open(ws_url(server)) as b:
            assert (await b.auth("b"))["type"] == "welcome"


async def test_connections_over_the_per_ip_limit_are_closed_with_1013():
    async with running_server(max_connections_per_ip=1) as server, \
            await WsClient.open(ws_url(server)) as a:
        await a.auth("a")
        async with await WsClient.open(ws_url(server)) as b:
            assert await b.closed() == 1013


async def test_a_user_over_the_per_user_limit_is_closed_with_1013_and_others_stay():
    async with running_server(max_connections_per_user=2) as server, \
            await WsClient.open(ws_url(server)) as d1, await WsClient.open(ws_url(server)) as d2:
        await d1.auth("ann")
        await d2.auth("ann")
        async with await WsClient.open(ws_url(server)) as d3:
            await d3.send("auth", {"userId": "ann"}, id="auth")
            assert await d3.closed() == 1013
        async with await WsClient.open(ws_url(server)) as other:
            assert (await other.auth("bob"))["type"] == "welcome"
        assert (await d1.request("ping", {}, id="p"))["type"] == "pong"
