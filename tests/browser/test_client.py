"""hubbub.js in Chromium against a real `hubbub serve` (PROTOCOL.md "Client libraries").

Two pages use HubbubClient to chat, type, show presence and hold a real WebRTC call
signalled through hubbub; the client reconnects by itself across a server restart and
gets what it missed exactly once; a refused token stops it for good.
"""

import signal
from typing import Any

import aiohttp

from tests.browser.conftest import Browser, Hubbub
from tests.browser.helpers import RawClient, until

ROOM = "lobby"


async def connect(page: Any, user: str, name: str) -> dict[str, Any]:
    welcome: dict[str, Any] = await page.evaluate("([u, n]) => harness.connect(u, n)",
                                                  [user, name])
    return welcome


async def test_two_pages_chat_type_see_presence_and_hold_a_video_call(
        server: Hubbub, browser: Browser) -> None:
    ann = await browser.harness_page("ann", server)
    bob = await browser.harness_page("bob", server)
    welcome = await connect(ann, "ann", "Ann")
    assert (welcome["userId"], welcome["username"], welcome["protocol"]) == ("ann", "Ann", 1)
    await ann.evaluate("r => harness.hub.joinRoom(r)", ROOM)
    await connect(bob, "bob", "Bob")
    joined = await bob.evaluate("r => harness.hub.joinRoom(r)", ROOM)
    assert {m["userId"]: m["status"] for m in joined["members"]} == {
        "ann": "online", "bob": "online"}

    # Presence: Ann sees Bob arrive, then go away.
    await until(ann, "harness.of('join_room').some(p => p.userId === 'bob')", "Bob's join_room")
    await bob.evaluate("harness.hub.setPresence('bob', 'Bob', 'away')")
    await until(ann, "harness.of('presence').some(p => p.userId === 'bob' && p.status === 'away')",
                "Bob's presence 'away'")

    # Typing through the helper: true while typing, false on stopTyping().
    await bob.evaluate("r => harness.hub.typing(r)", ROOM)
    await until(ann, "harness.of('typing').some(p => p.userId === 'bob' && p.isTyping)",
                "Bob typing")
    await bob.evaluate("r => harness.hub.stopTyping(r)", ROOM)
    await until(ann, "harness.of('typing').some(p => p.userId === 'bob' && !p.isTyping)",
                "Bob no longer typing")

    # Chat: the ack, the broadcast to both (sender included), edit, reaction, delete.
    ack = await ann.evaluate("r => harness.hub.sendChatMessage(r, 'ann', 'hello bob')", ROOM)
    assert ack["seq"] == 1 and ack["messageId"] and isinstance(ack["createdAt"], int)
    await until(bob, "harness.of('chat').length === 1", "Ann's chat at Bob's")
    chat = await bob.evaluate("harness.of('chat')[0]")
    assert (chat["messageId"], chat["userId"], chat["username"], chat["content"]) == (
        ack["messageId"], "ann", "Ann", "hello bob")
    assert chat["clientMsgId"], "every chat carries a clientMsgId"
    await until(ann, "harness.of('chat').length === 1", "Ann's own chat echoed to her")
    mid = ack["messageId"]
    await bob.evaluate("([r, m]) => harness.hub.react(r, m, '👍', 'add')", [ROOM, mid])
    await ann.evaluate("([r, m]) => harness.hub.editMessage(r, m, 'hello Bob!')", [ROOM, mid])
    await until(ann, "harness.of('reaction').some(p => p.emoji === '👍' && p.userId === 'bob')",
                "Bob's reaction at Ann's")
    await until(bob, "harness.of('message_edit').some(p => p.content === 'hello Bob!')",
                "Ann's edit at Bob's")
    doomed = await ann.evaluate("r => harness.hub.sendChatMessage(r, 'ann', 'oops')", ROOM)
    await ann.evaluate("([r, m]) => harness.hub.deleteMessage(r, m)", [ROOM, doomed["messageId"]])
    await until(bob, "harness.of('message_delete').length === 1", "the delete at Bob's")

    page = await bob.evaluate("r => harness.hub.history(r, {limit: 10})", ROOM)
    assert page["hasMore"] is False
    first, second = page["messages"]
    assert (first["content"], first["reactions"]) == ("hello Bob!", {"👍": ["bob"]})
    assert (second["deleted"], second["content"]) == (True, None)
    older = await bob.evaluate("([r, s]) => harness.hub.history(r, {beforeSeq: s, limit: 1})",
                               [ROOM, second["seq"]])
    assert [m["messageId"] for m in older["messages"]] == [mid]

    # A refused request rejects with .code, and the error event names the request.
    code = await bob.evaluate(
        "harness.hub.sendTypingIndicator('nowhere', 'bob', 'Bob', true)"
        ".then(() => 'ok', e => e.code)")
    assert code == "not_in_room"
    error = await bob.evaluate("harness.events.filter(m => m.type === 'error').pop()")
    assert error["payload"]["code"] == "not_in_room" and error["request"]["type"] == "typing"

    # A real call: offer, answer and trickled ICE through hubbub; media flows both ways.
    await bob.evaluate("harness.handleSignals(); harness.autoAnswer()")
    await ann.evaluate("harness.handleSignals()")
    call_id = await ann.evaluate("harness.call('bob')")
    assert isinstance(call_id, str) and call_id
    for who, p in (("Ann", ann), ("Bob", bob)):
        await until(p, "harness.callState().connectionState === 'connected'",
                    f"{who}'s RTCPeerConnection to reach 'connected'", timeout=30000,
                    dump="[harness.callState(), harness.events.map(m => m.type)]")
        await until(p, "harness.callState().remoteVideoWidth > 0",
                    f"{who}'s remote <video> to show frames", timeout=30000,
                    dump="harness.callState()")
    await ann.evaluate("id => harness.hub.endCall(id, 'hangup')", call_id)
    await until(bob, "harness.of('call_end').some(p => p.reason === 'hangup' && p.by === 'ann')",
                "call_end 'hangup' at Bob's")


async def test_client_reconnects_after_a_server_restart_and_gets_what_it_missed_once(
        server: Hubbub, browser: Browser) -> None:
    ann = await browser.harness_page("ann", server)
    bounds = await ann.evaluate(
        "import('/hubbub.js').then(m => [0,1,2,3,4,5,6,7].map(a => m.backoffDelay(a, 500, 20000,"
        " () => 1)))")
    assert bounds == [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]
    await connect(ann, "ann", "Ann")
    await ann.evaluate("r => harness.hub.joinRoom(r)", ROOM)

    async with aiohttp.ClientSession() as http:
        bob = await RawClient.connect(http, server.ws_url, "bob", ROOM)
        await bob.request("chat", {"roomId": ROOM, "content": "before the crash"})
        await until(ann, "harness.of('chat').length === 1", "the first chat")

        server.kill()
        await until(ann, "harness.hub.state === 'reconnecting'", "Ann to notice the crash")
        close = await ann.evaluate("harness.of('close')[0]")
        assert close["willReconnect"] is True and close["code"] != 4001, close
        # Keep Ann away (new connections fail) while the server is back and Bob talks.
        await browser.contexts["ann"].set_offline(True)
        await ann.evaluate("r => { window.awayAck = harness.hub.sendChatMessage(r, 'ann', "
                           "'written while away'); }", ROOM)
        await bob.ws.close()

        server.start()  # the same port and SQLite file
        bob = await RawClient.connect(http, server.ws_url, "bob", ROOM)
        missed = await bob.request("chat", {"roomId": ROOM, "content": "while ann was away",
                                            "clientMsgId": "bob-2"})
        assert missed["payload"]["seq"] == 2, missed
        assert await ann.evaluate("harness.of('chat').length") == 1

        await browser.contexts["ann"].set_offline(False)
        await until(ann, "harness.of('reconnect').length === 1", "Ann to reconnect by herself",
                    timeout=30000, dump="harness.events.map(m => [m.type, m.payload])")
        away_ack = await ann.evaluate("window.awayAck")
        assert away_ack["seq"] == 3, away_ack
        await until(ann, "harness.of('chat').length >= 3", "Ann's resent chat echoed")
        frames = await bob.drain(1.0)
        await bob.ws.close()

    chats = await ann.evaluate("harness.events.filter(m => m.type === 'chat')"
                               ".map(m => [m.payload.seq, m.payload.content, !!m.replayed])")
    assert chats == [[1, "before the crash", False], [2, "while ann was away", True],
                     [3, "written while away", False]], chats
    rejoin = await ann.evaluate("harness.of('rejoin')")
    assert len(rejoin) == 1 and rejoin[0]["recovered"] is True, rejoin
    assert await ann.evaluate("harness.hub.outbox.length") == 0
    from_ann = [f["payload"]["content"] for f in frames
                if f["type"] == "chat" and f["payload"]["userId"] == "ann"]
    assert from_ann == ["written while away"], from_ann
    reconnecting = await ann.evaluate("harness.of('reconnecting')")
    for event in reconnecting:
        assert 0 <= event["delayMs"] <= min(20000, 500 * 2 ** (event["attempt"] - 1)), event


async def test_a_refused_token_stops_the_client(tmp_path: Any, browser: Browser) -> None:
    server = Hubbub(store="sqlite://:memory:", log_path=tmp_path / "jwt.log",
                    extra=["--jwt-secret", "a-secret-of-the-test-at-least-32-bytes"])
    server.start()
    try:
        page = await browser.harness_page("ann", server)
        result = await page.evaluate(
            "harness.connect(undefined, undefined, {token: 'not.a.jwt'}).then(() => 'open',"
            " e => [e.code, e.payload.code])")
        assert result == ["unauthorized", 4001]
        await page.wait_for_timeout(1500)
        events = await page.evaluate("harness.events.map(m => [m.type, m.payload.code])")
        assert events == [["close", 4001]], events
        assert await page.evaluate("harness.hub.state") == "closed"
    finally:
        server.stop()


async def test_a_silent_server_is_noticed_by_the_heartbeat(server: Hubbub,
                                                           browser: Browser) -> None:
    page = await browser.harness_page("ann", server)
    await page.evaluate("harness.connect('ann', 'Ann', {heartbeatMs: 300, connectTimeoutMs: 2000})")
    await page.evaluate("r => harness.hub.joinRoom(r)", ROOM)
    await page.wait_for_timeout(1200)  # four pings, all answered
    assert await page.evaluate("[harness.hub.state, harness.of('close').length]") == ["open", 0]

    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)  # the TCP connection stays, nothing answers
    try:
        await until(page, "harness.of('close').length === 1", "the heartbeat to give up",
                    timeout=5000)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    close = await page.evaluate("harness.of('close')[0]")
    assert close == {"code": 4000, "reason": "heartbeat timeout", "willReconnect": True}
    await until(page, "harness.of('reconnect').length === 1", "the reconnect", timeout=20000,
                dump="harness.events.map(m => [m.type, m.payload])")
    assert await page.evaluate("harness.hub.state") == "open"
