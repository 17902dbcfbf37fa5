"""Typing indicators end to end (PROTOCOL §Typing)."""

from tests.integration.helpers import clients, dev_client
from tests.support.server import running_server

TIMEOUT = 0.3


async def test_other_member_receives_is_typing_true():
    async with running_server(typing_timeout=TIMEOUT) as server, \
            clients(server, ("u1", "Ann"), "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.send("typing", {"roomId": "r", "isTyping": True})
        event = await u2.expect("typing")
        assert event["payload"] == {"roomId": "r", "userId": "u1", "username": "Ann",
                                    "isTyping": True}


async def test_typist_does_not_receive_its_own_typing_event():
    async with running_server(typing_timeout=5.0) as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u2.join("r")
        await u1.join("r")
        ack = await u1.request("typing", {"roomId": "r", "isTyping": True}, id="t1")
        assert ack["type"] == "ack"
        await u2.expect("typing", isTyping=True)
        await u1.nothing()


async def test_server_sends_is_typing_false_after_the_typing_timeout():
    async with running_server(typing_timeout=TIMEOUT) as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.send("typing", {"roomId": "r", "isTyping": True})
        await u2.expect("typing", isTyping=True)
        stopped = await u2.expect("typing")
        assert stopped["payload"]["userId"] == "u1"
        assert stopped["payload"]["isTyping"] is False


async def test_explicit_is_typing_false_is_broadcast_once():
    async with running_server(typing_timeout=5.0) as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.send("typing", {"roomId": "r", "isTyping": True})
        await u2.expect("typing", isTyping=True)
        await u1.send("typing", {"roomId": "r", "isTyping": False})
        await u1.send("typing", {"roomId": "r", "isTyping": False})
        await u2.expect("typing", isTyping=False)
        await u2.nothing()


async def test_repeated_typing_inside_the_throttle_window_is_absorbed():
    async with running_server(typing_timeout=5.0) as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        for i in range(5):
            ack = await u1.request("typing", {"roomId": "r", "isTyping": True}, id=f"t{i}")
            assert ack["type"] == "ack"  # absorbed, not an error
        await u2.expect("typing", isTyping=True)
        await u2.nothing()


async def test_disconnect_ends_typing():
    async with running_server(typing_timeout=5.0, presence_grace=5.0) as server, \
            clients(server, "u2") as [u2]:
        u1 = await dev_client(server, "u1")
        await u1.join("r")
        await u2.join("r")
        await u1.send("typing", {"roomId": "r", "isTyping": True})
        await u2.expect("typing", isTyping=True)
        await u1.close()
        stopped = await u2.expect("typing", timeout=3.0)
        assert stopped["payload"]["userId"] == "u1"
        assert stopped["payload"]["isTyping"] is False


async def test_leaving_the_room_ends_typing():
    async with running_server(typing_timeout=5.0) as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.send("typing", {"roomId": "r", "isTyping": True})
        await u2.expect("typing", isTyping=True)
        await u1.request("leave_room", {"roomId": "r"}, id="l1")
        first = await u2.recv()
        assert first["type"] == "typing"
        assert first["payload"]["isTyping"] is False
        await u2.expect("leave_room", userId="u1")


async def test_typing_in_a_room_one_has_not_joined_is_not_in_room():
    async with running_server() as server, await dev_client(server, "u1") as u1:
        err = await u1.request("typing", {"roomId": "r", "isTyping": True}, id="t1")
        assert err["payload"]["code"] == "not_in_room"
