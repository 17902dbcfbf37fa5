"""hubbub.js across drops and refusals: what is final, what is retried, what is kept.

Each test stages one way a connection goes wrong (a scripted fake server for answers a
healthy server does not give, a proxy for a network drop) and checks the client's shared
design: a transient auth error is retried, 1008 is final, oversized frames never reach
the wire, re-joins keep their missed events, chats are paced, calls end on both sides.
"""

from typing import Any

import aiohttp

from tests.browser.conftest import Browser, Hubbub
from tests.browser.helpers import FakeServer, until, welcome

ROOM = "lobby"
FAST = "{backoffBaseMs: 50, backoffCapMs: 200}"


async def test_a_transient_error_answering_a_reconnects_auth_is_retried_and_chats_kept(
        server: Hubbub, browser: Browser) -> None:
    async def first(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json(welcome(auth))
        await ws.close(code=1012, message=b"restarting")

    async def redis_down(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json({"type": "error", "id": auth["id"],
                            "payload": {"code": "internal", "message": "the store is down"}})
        await fake.receive(ws)  # the client closes it

    async def healthy(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json(welcome(auth))
        await fake.serve(ws)

    fake = await FakeServer(first, redis_down, redis_down, healthy).start()
    try:
        page = await browser.harness_page("ann", server)
        await page.evaluate(f"u => harness.connect('ann', 'Ann', {{url: u, ...{FAST}}})",
                            fake.ws_url)
        await until(page, "harness.hub.state === 'reconnecting'", "the 1012 close")
        await page.evaluate("void (window.sent = harness.hub.sendChatMessage('lobby', undefined,"
                            " 'hi'))")
        await until(page, "harness.of('reconnect').length === 1", "the reconnect after two "
                    "`internal` answers", dump="harness.events.map(m => [m.type, m.payload])")
        assert (await page.evaluate("window.sent"))["seq"] == 1
        assert fake.connections == 4
        closes = await page.evaluate("harness.of('close')")
        assert closes == [{"code": 1012, "reason": "restarting", "willReconnect": True}], closes
        attempts = await page.evaluate("harness.of('reconnecting').map(p => p.attempt)")
        assert attempts == [1, 2, 3], "the backoff grows; it is not reset by a refused auth"
        assert await page.evaluate("[harness.hub.state, harness.hub.outbox.length]") == ["open", 0]
    finally:
        await fake.close()


async def test_a_refusal_answering_a_reconnects_auth_is_final(server: Hubbub,
                                                              browser: Browser) -> None:
    async def first(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json(welcome(auth))
        await ws.close(code=1012, message=b"restarting")

    async def refused(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json({"type": "error", "id": auth["id"],
                            "payload": {"code": "forbidden", "message": "banned"}})
        await fake.receive(ws)

    fake = await FakeServer(first, refused).start()
    try:
        page = await browser.harness_page("ann", server)
        await page.evaluate(f"u => harness.connect('ann', 'Ann', {{url: u, ...{FAST}}})",
                            fake.ws_url)
        await until(page, "harness.hub.state === 'closed'", "the client to stop")
        closes = await page.evaluate("harness.of('close').map(p => [p.code, p.willReconnect])")
        assert closes == [[1012, True], [4001, False]], closes
        assert fake.connections == 2
    finally:
        await fake.close()


async def test_close_1008_is_final(server: Hubbub, browser: Browser) -> None:
    async def policy(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json(welcome(auth))
        await ws.close(code=1008, message=b"policy violation")

    fake = await FakeServer(policy).start()
    try:
        page = await browser.harness_page("ann", server)
        await page.evaluate(f"u => harness.connect('ann', 'Ann', {{url: u, ...{FAST}}})",
                            fake.ws_url)
        await until(page, "harness.of('close').length === 1", "the 1008 close")
        # 'reconnecting' would have been emitted with the close, synchronously.
        events = await page.evaluate("harness.events.map(m => [m.type, m.payload.code])")
        assert events == [["open", None], ["close", 1008]], events
        close = await page.evaluate("harness.of('close')[0]")
        assert close == {"code": 1008, "reason": "policy violation", "willReconnect": False}
        assert await page.evaluate("harness.hub.state") == "closed"
    finally:
        await fake.close()
