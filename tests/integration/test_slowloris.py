"""A client that never finishes its HTTP handshake is cut off (slowloris guard)."""

import asyncio

from tests.support.server import running_server


async def _trickle(port: int, seconds: float) -> bytes:
    """Send a request line and then one header byte at a time; return what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while loop.time() < deadline:
            writer.write(b"X")
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(1024), 0.1)
            except TimeoutError:
                continue
            return data  # b"" = closed by the server
    except ConnectionError:
        return b""
    finally:
        writer.close()
    raise AssertionError("the server kept a half-sent request open")


async def test_a_client_trickling_its_headers_is_closed_after_the_handshake_timeout():
    async with running_server(handshake_timeout=0.5) as server:
        assert await _trickle(server.port, seconds=10) == b""


async def test_a_websocket_outlives_the_handshake_timeout():
    from tests.support.server import ws_url
    from tests.support.wsclient import WsClient

    async with running_server(handshake_timeout=0.3) as server, \
            await WsClient.open(ws_url(server)) as c:
        await c.auth("ann")
        await asyncio.sleep(0.8)  # longer than the handshake timeout: the socket must stay
        assert (await c.request("ping", {}, id="p"))["type"] == "pong"
