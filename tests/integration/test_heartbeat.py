"""PROTOCOL §Heartbeat: WebSocket pings from the server, dead peers cut off, app-level ping."""

import aiohttp

from tests.integration.helpers import dev_client
from tests.integration.rawws import OP_PING, Ended, RawWs
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient

HEARTBEAT = 0.2


async def test_server_sends_websocket_pings_every_heartbeat():
    async with running_server(heartbeat=HEARTBEAT) as server, \
            aiohttp.ClientSession() as http, \
            http.ws_connect(ws_url(server), autoping=False) as ws:
        pings = 0
        while pings < 2:
            msg = await ws.receive(timeout=5.0)
            if msg.type is aiohttp.WSMsgType.PING:
                pings += 1
                await ws.pong(msg.data)
        assert not ws.closed


async def test_welcome_announces_the_heartbeat_interval():
    async with running_server(heartbeat=HEARTBEAT) as server, \
            await WsClient.open(ws_url(server)) as c:
        welcome = await c.auth("u1")
        assert welcome["payload"]["heartbeatMs"] == 200


async def test_peer_that_never_answers_pings_is_closed():
    async with running_server(heartbeat=HEARTBEAT) as server:
        raw = await RawWs.connect(ws_url(server))
        try:
            await raw.send_json("auth", {"userId": "mute"})
            await raw.expect("welcome")
            pinged = False
            try:
                while True:  # read (pings included) but never answer
                    opcode, _ = await raw.read_frame(timeout=10.0)
                    pinged = pinged or opcode == OP_PING
            except Ended:
                pass
            assert pinged
        finally:
            raw.close()


async def test_silent_peer_that_never_authenticates_is_also_closed():
    async with running_server(heartbeat=HEARTBEAT) as server:
        raw = await RawWs.connect(ws_url(server))
        try:
            _, ended = await raw.read_until_end(timeout=10.0, reply_close=False)
            assert ended in ("eof", "reset")
        finally:
            raw.close()


async def test_peer_that_answers_pings_stays_connected_past_several_intervals():
    async with running_server(heartbeat=HEARTBEAT) as server, \
            aiohttp.ClientSession() as http, \
            http.ws_connect(ws_url(server), autoping=False) as ws:
        pings = 0
        while pings < 6:
            msg = await ws.receive(timeout=5.0)
            assert msg.type is aiohttp.WSMsgType.PING, msg
            pings += 1
            await ws.pong(msg.data)
        assert not ws.closed


async def test_client_websocket_ping_gets_a_pong_with_the_same_data():
    async with running_server(heartbeat=0) as server, \
            aiohttp.ClientSession() as http, \
            http.ws_connect(ws_url(server), autoping=False) as ws:
        await ws.ping(b"hello")
        msg = await ws.receive(timeout=5.0)
        assert msg.type is aiohttp.WSMsgType.PONG
        assert msg.data == b"hello"


async def test_app_level_ping_gets_pong_carrying_the_id():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.send("ping", {}, id="hb-7")
        pong = await c.recv()
        assert pong["type"] == "pong"
        assert pong["id"] == "hb-7"
        assert isinstance(pong["payload"]["serverTime"], int)


async def test_app_level_ping_without_id_gets_pong_without_id():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.send("ping")
        pong = await c.recv()
        assert pong["type"] == "pong"
        assert "id" not in pong
