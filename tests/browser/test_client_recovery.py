"""hubbub.js across drops and refusals: what is final, what is retried, what is kept.

Each test stages one way a connection goes wrong (a scripted fake server for answers a
healthy server does not give, a proxy for a network drop) and checks the client's shared
design: a transient auth error is retried, 1008 is final, oversized frames never reach
the wire, re-joins keep their missed events, chats are paced, calls end on both sides.
"""

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from tests.browser.conftest import Browser, Hubbub
from tests.browser.helpers import FakeServer, RawClient, until, welcome
from tests.support.gate import Gate

ROOM = "lobby"
FAST = "{backoffBaseMs: 50, backoffCapMs: 200}"


async def connect(page: Any, url: str | None = None, user: str = "ann") -> dict[str, Any]:
    """harness.connect() with a short backoff, to this page's server or to `url`."""
    welcome_: dict[str, Any] = await page.evaluate(
        f"([u, url]) => harness.connect(u, u, {{...{FAST}, ...(url ? {{url}} : {{}})}})",
        [user, url])
    return welcome_


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


async def test_an_oversized_frame_fails_at_once_and_never_reaches_the_server(
        server: Hubbub, browser: Browser) -> None:
    page = await browser.harness_page("ann", server)
    await connect(page)
    await page.evaluate("r => harness.hub.joinRoom(r)", ROOM)
    await page.evaluate("""r => {
      harness.track('big', harness.hub.sendChatMessage(r, undefined, 'é'.repeat(40000)));
      harness.track('after', harness.hub.sendChatMessage(r, undefined, 'small'));
    }""", ROOM)
    # 40 000 characters, 80 000 bytes in UTF-8: more than the 65 536 the server takes.
    await until(page, "harness.settled.big && harness.settled.after", "both chats to settle",
                dump="[harness.settled, harness.events.map(m => [m.type, m.payload.code])]")
    settled = await page.evaluate("harness.settled")
    assert settled["big"]["code"] == "too_large", settled
    assert settled["after"]["value"]["seq"] == 1, settled
    error = await page.evaluate("harness.events.find(m => m.type === 'error')")
    assert (error["payload"]["code"], error["local"], error["request"]["type"]) == (
        "too_large", True, "chat")
    code = await page.evaluate("([r, m]) => harness.hub.editMessage(r, m, 'x'.repeat(70000))"
                               ".then(() => 'sent', e => e.code)",
                               [ROOM, settled["after"]["value"]["messageId"]])
    assert code == "too_large"
    assert await page.evaluate("[harness.hub.state, harness.hub.outbox.length, "
                               "harness.of('close').length]") == ["open", 0, 0]
    history = await page.evaluate("r => harness.hub.history(r)", ROOM)
    assert [m["content"] for m in history["messages"]] == ["small"]


async def test_the_outbox_is_checked_against_each_welcomes_frame_limit(
        server: Hubbub, browser: Browser) -> None:
    async def no_acks(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json(welcome(auth))
        while sum(f["type"] == "chat" for f in fake.frames) < 2:
            await fake.receive(ws)
        await ws.close(code=1012, message=b"restarting")

    async def smaller(ws: aiohttp.web.WebSocketResponse, auth: dict[str, Any]) -> None:
        await ws.send_json(welcome(auth, maxFrameBytes=2000))
        await fake.serve(ws)

    fake = await FakeServer(no_acks, smaller).start()
    try:
        page = await browser.harness_page("ann", server)
        await connect(page, fake.ws_url)
        await page.evaluate("""() => {
          harness.track('big', harness.hub.sendChatMessage('lobby', undefined, 'x'.repeat(3000)));
          harness.track('small', harness.hub.sendChatMessage('lobby', undefined, 'small'));
        }""")
        await until(page, "harness.settled.big && harness.settled.small", "both chats to settle")
        settled = await page.evaluate("harness.settled")
        assert settled["big"]["code"] == "too_large" and settled["small"]["value"]["seq"] == 1
        chats = [f["payload"]["content"][:5] for f in fake.frames if f["type"] == "chat"]
        assert chats == ["xxxxx", "small", "small"], "the big chat was not sent again"
    finally:
        await fake.close()


async def test_a_room_joined_again_from_an_open_handler_still_gets_what_it_missed(
        server: Hubbub, browser: Browser) -> None:
    async with Gate(server.port) as gate:
        page = await browser.harness_page("ann", server)
        await connect(page, gate.ws)
        # An app written for the original service joins its room on every 'open'.
        await page.evaluate("""r => {
          harness.hub.on('open', () => harness.track('reopen', harness.hub.joinRoom(r)));
          return harness.hub.joinRoom(r);
        }""", ROOM)
        async with aiohttp.ClientSession() as http:
            bob = await RawClient.connect(http, server.ws_url, "bob", ROOM)
            await bob.chat(ROOM, "before")
            await until(page, "harness.of('chat').length === 1", "the first chat")
            gate.shut()
            await until(page, "harness.of('close').length === 1", "Ann to notice the drop")
            for i in range(3):
                await bob.chat(ROOM, f"missed {i}")
            gate.open = True
            await until(page, "harness.of('reconnect').length === 1", "Ann to reconnect")
            await bob.chat(ROOM, "after")
            await until(page, "harness.of('chat').length >= 5", "the chat after the reconnect",
                        dump="harness.events.map(m => [m.type, m.payload.seq])")
            await bob.ws.close()
        chats = await page.evaluate("harness.events.filter(m => m.type === 'chat')"
                                    ".map(m => [m.payload.seq, m.payload.content, !!m.replayed])")
        assert chats == [[1, "before", False], [2, "missed 0", True], [3, "missed 1", True],
                         [4, "missed 2", True], [5, "after", False]], chats
        reopen = await page.evaluate("harness.settled.reopen.value")
        assert (reopen["lastSeq"], len(reopen["missed"]), reopen["recovered"]) == (4, 3, True)
        assert await page.evaluate("harness.hub.rooms.get('lobby').lastSeq") == 5


async def test_a_long_outbox_is_sent_at_the_advertised_pace_in_order(
        tmp_path: Any, browser: Browser) -> None:
    # 5 chats/s, burst 10: 30 queued chats would be 20 refusals if sent at once.
    server = Hubbub(store="sqlite:///" + str(tmp_path / "paced.db"),
                    log_path=tmp_path / "paced.log", extra=["--chat-rate", "5"])
    server.start()
    try:
        page = await browser.harness_page("ann", server)
        await page.evaluate("""r => {
          harness.acks = [];
          return harness.connect('ann', 'Ann').then(() => {
            harness.hub.joinRoom(r);
            for (let i = 0; i < 30; i++) {
              harness.hub.sendChatMessage(r, undefined, 'm' + i)
                .then((a) => harness.acks.push(a.seq), (e) => harness.acks.push(e.code));
            }
          });
        }""", ROOM)
        limits = await page.evaluate("harness.hub.welcome.limits")
        assert (limits["chatsPerSecond"], limits["chatBurst"]) == (5.0, 10)
        await until(page, "harness.acks.length === 30", "every chat to be acked", timeout=60000,
                    dump="[harness.acks, harness.events.map(m => [m.type, m.payload.code])]")
        assert await page.evaluate("harness.acks") == list(range(1, 31))
        errors = await page.evaluate("harness.of('error')")
        assert errors == [], "not one rate_limited refusal"
        assert await page.evaluate("harness.of('close')") == []
        history = await page.evaluate("r => harness.hub.history(r, {limit: 100})", ROOM)
        assert [m["content"] for m in history["messages"]] == [f"m{i}" for i in range(30)]
    finally:
        server.stop()


OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}


async def frame_at(client: RawClient, what: str, match: Callable[[dict[str, Any]], bool]
                   ) -> dict[str, Any]:
    """The first frame `client` got (or gets, within 15 s) that `match`es."""
    seen = 0
    while True:
        for frame in client.frames[seen:]:
            if match(frame):
                return frame
        seen = len(client.frames)
        try:
            client.frames.append(await client.ws.receive_json(timeout=15))
        except TimeoutError:
            raise AssertionError(f"no {what}; frames: {client.frames}") from None


@contextlib.asynccontextmanager
async def page_behind_gate(server: Hubbub, browser: Browser,
                           ) -> AsyncIterator[tuple[Gate, Any, RawClient, RawClient]]:
    """Ann's page, connected through a Gate (the link the tests cut) and in ROOM; Bob,
    and Ann's phone (another connection of hers, which keeps her side of a call alive),
    as raw clients in ROOM."""
    async with Gate(server.port) as gate, aiohttp.ClientSession() as http:
        page = await browser.harness_page("ann", server)
        await connect(page, gate.ws)
        await page.evaluate("r => harness.hub.joinRoom(r)", ROOM)
        bob = await RawClient.connect(http, server.ws_url, "bob", ROOM)
        phone = await RawClient.connect(http, server.ws_url, "ann", ROOM)
        yield gate, page, bob, phone


async def test_a_dropped_connection_ends_its_calls_on_both_sides(server: Hubbub,
                                                                 browser: Browser) -> None:
    async with page_behind_gate(server, browser) as (gate, page, bob, phone):

        async def ring() -> str:
            call_id: str = await page.evaluate(
                "o => harness.hub.sendWebRTCOffer(undefined, 'bob', o)", OFFER)
            await frame_at(bob, "offer", lambda f: f["type"] == "webrtc"
                           and f["payload"]["callId"] == call_id)
            return call_id

        # A call that ended normally is forgotten: no call_end for it at the drop.
        declined = await ring()
        await bob.request("call_reject", {"callId": declined})
        await until(page, "harness.of('call_reject').length === 1", "the call_reject")
        call_id = await ring()
        answer = await bob.request("webrtc", {"kind": "answer", "to": "ann",
                                              "callId": call_id, "sdp": ANSWER})
        assert answer["payload"]["state"] == "active", answer
        await until(page, "harness.of('webrtc').some(p => p.kind === 'answer')", "the answer")

        gate.shut()
        await until(page, "harness.of('call_end').length === 1", "Ann's own call_end")
        ends = await page.evaluate("harness.events.filter(m => m.type === 'call_end')")
        assert ends == [{"type": "call_end", "local": True, "payload": {
            "callId": call_id, "by": "ann", "reason": "disconnected"}}], ends
        order = await page.evaluate("(i => harness.events.slice(i - 1, i + 2).map(m => m.type))"
                                    "(harness.events.findIndex(m => m.type === 'call_end'))")
        assert order == ["close", "call_end", "reconnecting"], order

        # Her phone kept the call alive on the server; the reconnect ends it for Bob.
        gate.open = True
        await until(page, "harness.of('reconnect').length === 1", "Ann to reconnect")
        end = await frame_at(bob, "call_end", lambda f: f["type"] == "call_end"
                             and f["payload"]["callId"] == call_id)
        assert end["payload"] == {"callId": call_id, "by": "ann", "reason": "disconnected"}

        # Without the phone the server ends the call itself; Ann's call_end after the
        # reconnect is then refused, quietly.
        await phone.ws.close()
        call_id = await ring()
        await bob.request("webrtc", {"kind": "answer", "to": "ann", "callId": call_id,
                                     "sdp": ANSWER})
        gate.cut()
        end = await frame_at(bob, "the server's call_end",
                             lambda f: f["type"] == "call_end"
                             and f["payload"]["callId"] == call_id)
        assert end["payload"]["reason"] == "disconnected", end
        await until(page, "harness.of('reconnect').length === 2", "the second reconnect")
        await until(page, "harness.of('call_end').length === 2", "Ann's second call_end")
        # Answered in order: Ann's call_end was answered before this history page is.
        await page.evaluate("r => harness.hub.history(r, {limit: 1})", ROOM)
        await bob.ws.close()
        assert await page.evaluate("harness.of('error')") == []


async def test_a_call_that_only_rang_on_the_dropped_page_still_rings_on_the_others(
        server: Hubbub, browser: Browser) -> None:
    async with page_behind_gate(server, browser) as (gate, page, bob, phone):
        offer = await bob.request("webrtc", {"kind": "offer", "to": "ann", "sdp": OFFER})
        call_id = offer["payload"]["callId"]
        await until(page, "harness.of('webrtc').length === 1", "the offer on the page")
        await frame_at(phone, "the offer on the phone", lambda f: f["type"] == "webrtc")

        gate.cut()  # the page stops ringing ...
        await until(page, "harness.of('call_end').length === 1", "the page's call_end")
        await until(page, "harness.of('reconnect').length === 1", "the reconnect")
        await page.evaluate("r => harness.hub.history(r, {limit: 1})", ROOM)
        # ... but does not hang up a call it never answered: the phone still can.
        answer = await phone.request("webrtc", {"kind": "answer", "to": "bob",
                                                "callId": call_id, "sdp": ANSWER})
        assert answer["payload"]["state"] == "active", answer
        assert not [f for f in bob.frames if f["type"] == "call_end"]
        await bob.ws.close()
        await phone.ws.close()


async def test_disconnect_cancels_every_pending_promise(server: Hubbub,
                                                        browser: Browser) -> None:
    page = await browser.harness_page("ann", server)
    await connect(page)
    await page.evaluate("r => harness.hub.joinRoom(r)", ROOM)
    codes = await page.evaluate("""r => {
      const hub = harness.hub;
      const pending = [hub.history(r), hub.react(r, 'no-such-message', '👍'),
        hub.sendChatMessage(r, undefined, 'unsent'), hub.joinRoom('another')];
      hub.disconnect();  // before any of them can be answered
      return Promise.all(pending.map((p) => p.then(() => 'settled', (e) => e.code)));
    }""", ROOM)
    assert codes == ["cancelled"] * 4, codes
