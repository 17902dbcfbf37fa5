"""A reader that never reads is dropped (PROTOCOL §Close codes 1013, DESIGN §4) and
nobody else suffers for it."""

import asyncio

import aiohttp

from tests.integration.helpers import clients, metric
from tests.integration.rawws import RawWs
from tests.support.server import running_server, ws_url

MAX_QUEUE = 64 * 1024
PAD = "x" * 30_000
# Enough announcements to fill every socket buffer many times over; the loop stops
# as soon as the server drops the slow reader, this only keeps a bug from hanging.
MAX_ANNOUNCEMENTS = 2000


async def _slow_reader(server) -> RawWs:
    """Upgrade, authenticate and join by hand with a tiny receive buffer; then never read."""
    raw = await RawWs.connect(ws_url(server), rcvbuf=4096)
    await raw.send_json("auth", {"userId": "slow"}, id="a")
    assert (await raw.recv_json())["type"] == "welcome"
    await raw.send_json("join_room", {"roomId": "r"}, id="j")
    assert (await raw.recv_json())["id"] == "j"
    return raw


async def _flood_until_dropped(server, http: aiohttp.ClientSession) -> int:
    """POST large announcements until the node has dropped a slow reader; returns how many."""
    sent = 0
    while server.hub.node.metrics.slow_readers_dropped == 0 and sent < MAX_ANNOUNCEMENTS:
        await _announce(http, server, f"{sent:06d} {PAD}")
        sent += 1
    return sent


async def _collect(client, into: list[int]) -> None:
    """Record the number of every announcement until the `END` marker."""
    while True:
        frame = await client.expect("announcement", timeout=20.0)
        head = frame["payload"]["content"].split(" ", 1)[0]
        if head == "END":
            return
        into.append(int(head))


async def _announce(http: aiohttp.ClientSession, server, content: str) -> None:
    async with http.post(server.url + "/api/announcements", json={"content": content},
                         headers={"Authorization": "Bearer admin"}) as resp:
        assert resp.status == 202


def settings() -> dict:
    return {"max_queue": MAX_QUEUE, "rate_limit": 0, "admin_token": "admin",
            "max_content": 40_000, "heartbeat": 0}


async def test_slow_reader_is_dropped_and_counted_in_metrics():
    async with running_server(**settings()) as server:
        raw = await _slow_reader(server)
        try:
            async with aiohttp.ClientSession() as http:
                await _flood_until_dropped(server, http)
            assert (await metric(server, "hubbub_slow_readers_dropped_total") or 0) >= 1
        finally:
            raw.close()


async def test_slow_readers_socket_ends_with_1013_or_eof():
    async with running_server(**settings()) as server:
        raw = await _slow_reader(server)
        try:
            async with aiohttp.ClientSession() as http:
                await _flood_until_dropped(server, http)
            code, ended = await raw.read_until_end(timeout=15.0)
            assert code in (1013, None), code
            assert ended in ("eof", "reset")
        finally:
            raw.close()


async def test_normal_reader_in_the_same_room_receives_every_message_in_order():
    async with running_server(**settings()) as server, \
            clients(server, "normal") as [normal]:
        await normal.join("r")
        raw = await _slow_reader(server)
        try:
            received: list[int] = []
            collector = asyncio.create_task(_collect(normal, received))
            async with aiohttp.ClientSession() as http:
                sent = await _flood_until_dropped(server, http)
                for n in range(sent, sent + 5):  # a few more after the drop
                    await _announce(http, server, f"{n:06d} after")
                await _announce(http, server, "END")
            await asyncio.wait_for(collector, 30.0)
            assert server.hub.node.metrics.slow_readers_dropped >= 1
            assert received == list(range(sent + 5))
            pong = await normal.request("ping", {}, id="p")
            assert pong["type"] == "pong"
        finally:
            raw.close()


async def test_dropped_slow_reader_is_counted_as_closed_with_1013():
    async with running_server(**settings()) as server:
        raw = await _slow_reader(server)
        try:
            async with aiohttp.ClientSession() as http:
                await _flood_until_dropped(server, http)
            await raw.read_until_end(timeout=15.0)
            for _ in range(100):  # bounded wait for the server to finish its side
                if await metric(server, "hubbub_connections") == 0:
                    break
                await asyncio.sleep(0.05)
            assert await metric(server, "hubbub_connections_closed_total", code="1013") == 1
        finally:
            raw.close()


async def test_dropped_slow_readers_presence_ends_normally():
    async with running_server(**settings(), presence_grace=0.3) as server, \
            clients(server, "normal") as [normal]:
        await normal.join("r")
        raw = await _slow_reader(server)
        try:
            async with aiohttp.ClientSession() as http:
                await _flood_until_dropped(server, http)
            # The dropped socket is cut off after a short grace (it cannot take a
            # close handshake), then the presence grace runs: offline, then gone.
            offline = await normal.expect("presence", timeout=15.0, userId="slow")
            assert offline["payload"]["status"] == "offline"
            await normal.expect("leave_room", timeout=5.0, userId="slow")
        finally:
            raw.close()


def _behind(server, user: str) -> bool:
    """Whether the node holds bytes for `user` that the kernel did not take."""
    return any(c.user == user and c.transport.get_write_buffer_size() > 0
               for c in server.hub.conns.values())


async def test_typing_is_shed_for_a_reader_that_is_behind_and_ends_for_everyone():
    # A queue bound far above what the flood needs: the reader is behind, not dropped.
    async with running_server(**{**settings(), "max_queue": 64 * 1024 * 1024}) as server, \
            clients(server, "typist", "normal") as [typist, normal]:
        await typist.join("r")
        await normal.join("r")
        raw = await _slow_reader(server)
        try:
            async with aiohttp.ClientSession() as http:
                sent = 0
                while not _behind(server, "slow") and sent < MAX_ANNOUNCEMENTS:
                    await _announce(http, server, f"{sent:06d} {PAD}")
                    sent += 1
            assert _behind(server, "slow")
            await typist.send("typing", {"roomId": "r", "isTyping": True})
            started = await normal.expect("typing", timeout=10.0)
            assert started["payload"]["isTyping"] is True
            assert await metric(server, "hubbub_typing_shed_total") == 1
            await typist.send("typing", {"roomId": "r", "isTyping": False})
            ended = await normal.expect("typing", timeout=10.0)
            assert ended["payload"]["isTyping"] is False
            assert await metric(server, "hubbub_typing_shed_total") == 1
            assert server.hub.node.metrics.slow_readers_dropped == 0
        finally:
            raw.close()
