"""Rooms and presence end to end (PROTOCOL §Client → server join/leave, §Presence)."""

import asyncio
import time

from tests.integration.helpers import clients, dev_client
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient

GRACE = 0.3


def members(ack: dict) -> dict[str, str]:
    return {m["userId"]: m["status"] for m in ack["payload"]["members"]}


async def test_join_ack_lists_the_members_with_their_status():
    async with running_server() as server, \
            clients(server, ("u1", "Ann"), ("u2", "Bob")) as [u1, u2]:
        first = await u1.join("r")
        assert first["payload"]["roomId"] == "r"
        assert first["payload"]["members"] == [
            {"userId": "u1", "username": "Ann", "status": "online"}]
        second = await u2.join("r")
        assert sorted(second["payload"]["members"], key=lambda m: m["userId"]) == [
            {"userId": "u1", "username": "Ann", "status": "online"},
            {"userId": "u2", "username": "Bob", "status": "online"},
        ]
        assert second["payload"]["lastSeq"] == 0


async def test_integer_room_id_is_normalised_to_its_decimal_string():
    async with running_server() as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        ack = await u1.join(1)
        assert ack["payload"]["roomId"] == "1"
        await u2.join("1")  # the same room
        event = await u1.expect("join_room")
        assert event["payload"]["roomId"] == "1"
        assert event["payload"]["userId"] == "u2"


async def test_join_is_broadcast_to_the_other_members_only():
    async with running_server() as server, \
            clients(server, ("u1", "Ann"), ("u2", "Bob")) as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        event = await u1.expect("join_room")
        assert {k: event["payload"][k] for k in ("roomId", "userId", "username")} == {
            "roomId": "r", "userId": "u2", "username": "Bob"}
        await u2.nothing()  # no echo of its own join


async def test_leave_is_acked_and_broadcast_to_the_remaining_members():
    async with running_server() as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.expect("join_room", userId="u2")
        ack = await u2.request("leave_room", {"roomId": "r"}, id="l1")
        assert ack["type"] == "ack"
        assert ack["payload"]["roomId"] == "r"
        event = await u1.expect("leave_room")
        assert event["payload"]["roomId"] == "r"
        assert event["payload"]["userId"] == "u2"


async def test_leaving_a_room_one_is_not_in_is_not_in_room():
    async with running_server() as server, await dev_client(server, "u1") as u1:
        err = await u1.request("leave_room", {"roomId": "r"}, id="l1")
        assert err["type"] == "error"
        assert err["payload"]["code"] == "not_in_room"


async def test_invalid_room_id_is_a_bad_request():
    async with running_server() as server, await dev_client(server, "u1") as u1:
        err = await u1.request("join_room", {"roomId": "no spaces!"}, id="j1")
        assert err["payload"]["code"] == "bad_request"


async def test_status_change_is_broadcast_to_users_sharing_a_room():
    async with running_server() as server, \
            clients(server, ("u1", "Ann"), "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        ack = await u1.request("presence", {"status": "away"}, id="p1")
        assert ack["type"] == "ack"
        event = await u2.expect("presence", userId="u1")
        p = event["payload"]
        assert (p["status"], p["username"]) == ("away", "Ann")
        assert isinstance(p["lastSeen"], int)


async def test_status_change_is_not_sent_to_users_in_other_rooms():
    async with running_server() as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("a")
        await u2.join("b")
        await u1.request("presence", {"status": "busy"}, id="p1")
        await u2.nothing()


async def test_status_is_listed_in_member_lists():
    async with running_server() as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u1.request("presence", {"status": "busy"}, id="p1")
        assert members(await u2.join("r"))["u1"] == "busy"


# ---- several devices of one user -------------------------------------------------------


async def test_both_devices_of_a_user_receive_room_events():
    async with running_server() as server, \
            clients(server, "u1", "u1", "u2") as [phone, laptop, u2]:
        await phone.join("r")
        await laptop.join("r")
        await u2.join("r")
        for device in (phone, laptop):
            assert (await device.expect("join_room"))["payload"]["userId"] == "u2"
        await u2.request("presence", {"status": "away"}, id="p1")
        for device in (phone, laptop):
            assert (await device.expect("presence", userId="u2"))["payload"]["status"] == \
                "away"


async def test_a_user_with_two_devices_is_listed_once_and_joins_once():
    async with running_server() as server, \
            clients(server, "u2") as [u2]:
        await u2.join("r")
        async with await dev_client(server, "u1") as phone, \
                await dev_client(server, "u1") as laptop:
            await phone.join("r")
            ack = await laptop.join("r")
            assert sorted(m["userId"] for m in ack["payload"]["members"]) == ["u1", "u2"]
            await u2.expect("join_room", userId="u1")
            await u2.nothing()  # the second device's join is not broadcast again


async def test_closing_one_device_keeps_the_user_online():
    async with running_server(presence_grace=GRACE) as server, \
            clients(server, "u2", "u1") as [u2, laptop]:
        await u2.join("r")
        await laptop.join("r")
        phone = await dev_client(server, "u1")
        await phone.join("r")
        await u2.expect("join_room", userId="u1")
        await phone.close()
        await u2.nothing(within=GRACE * 3)  # no offline, no leave_room
        async with await dev_client(server, "u3") as u3:
            assert members(await u3.join("r"))["u1"] == "online"


async def test_closing_every_device_makes_the_user_offline_after_the_grace_period():
    async with running_server(presence_grace=GRACE) as server, \
            clients(server, "u2") as [u2]:
        await u2.join("r")
        phone = await dev_client(server, "u1", "Ann")
        laptop = await dev_client(server, "u1", "Ann")
        await phone.join("r")
        await laptop.join("r")
        await u2.expect("join_room", userId="u1")
        await phone.close()
        before_last_close = int(time.time() * 1000) - 1
        await laptop.close()
        event = await u2.expect("presence", userId="u1")
        received = int(time.time() * 1000) + 1
        p = event["payload"]
        assert p["status"] == "offline"
        assert p["username"] == "Ann"
        # lastSeen is when the last connection closed, not when the grace period ended
        assert isinstance(p["lastSeen"], int)
        assert before_last_close <= p["lastSeen"] <= received
        left = await u2.expect("leave_room", userId="u1")
        assert left["payload"]["roomId"] == "r"
        async with await dev_client(server, "u3") as u3:
            assert "u1" not in members(await u3.join("r"))


async def test_reconnecting_within_the_grace_period_does_not_flap():
    async with running_server(presence_grace=1.0) as server, \
            clients(server, "u2") as [u2]:
        await u2.join("r")
        first = await dev_client(server, "u1")
        await first.join("r")
        await u2.expect("join_room", userId="u1")
        await first.close()
        async with await dev_client(server, "u1") as again:
            await again.join("r")
            await u2.nothing(within=1.5)


async def test_unauthenticated_connection_is_not_a_member_of_anything():
    async with running_server() as server, await dev_client(server, "u1") as u1, \
                await WsClient.open(ws_url(server)) as anon:
        await u1.join("r")
        await u1.request("presence", {"status": "away"}, id="p1")
        await anon.nothing()


async def test_a_status_change_reaches_a_user_sharing_two_rooms_once():
    async with running_server() as server, clients(server, "u1", "u2") as [u1, u2]:
        for room in ("a", "b"):
            await u1.join(room)
            await u2.join(room)
        await u1.request("presence", {"status": "away"}, id="p1")
        await u2.expect("presence", userId="u1", status="away")
        await u2.nothing()


async def test_first_presence_frame_in_dev_mode_sets_the_initial_status():
    async with running_server() as server, clients(server, "u2") as [u2]:
        await u2.join("r")
        async with await WsClient.open(ws_url(server)) as u1:
            await u1.send("presence", {"userId": "u1", "username": "Ann", "status": "busy"})
            await u1.expect("welcome")
            assert members(await u1.join("r"))["u1"] == "busy"
            event = await u2.expect("join_room", userId="u1")
            assert event["payload"]["username"] == "Ann"


# ---- what the room hears while a join waits ------------------------------------------------


async def test_a_joiner_hears_what_the_room_heard_while_its_join_waited():
    """ann's join reads the members, then waits for its position (the store); meanwhile
    bob joins and goes away. ann's ack lists the members as read before, and the events of
    that wait follow it, so her view ends as the room is (DESIGN §5.8: snapshot + events)."""
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        store = server.node.store
        loop = asyncio.get_running_loop()
        reading, gate = loop.create_future(), loop.create_future()
        real = store.last_seq

        async def held_once(room: str) -> int:
            store.last_seq = real
            reading.set_result(None)
            await gate
            return await real(room)

        store.last_seq = held_once
        await ann.send("join_room", {"roomId": "r1"}, id="j")
        await asyncio.wait_for(reading, 10)  # ann's join waits for its position now
        await bob.join("r1")
        assert (await bob.request("presence", {"status": "away"}, id="p"))["type"] == "ack"
        gate.set_result(None)
        ack = await ann.recv()
        assert (ack["type"], ack["id"]) == ("ack", "j")
        members = {m["userId"]: m["status"] for m in ack["payload"]["members"]}
        assert "bob" not in members  # read before bob joined
        joined = await ann.expect("join_room")
        assert joined["payload"]["userId"] == "bob"
        away = await ann.expect("presence")
        assert (away["payload"]["userId"], away["payload"]["status"]) == ("bob", "away")
        assert not server.node.prejoin


async def test_a_member_listed_in_the_ack_is_not_announced_to_the_joiner_again():
    """bob's join has put him in the directory and waits for its position; ann's join
    reads the members (bob among them) and waits in turn. bob's join completes first, and
    its `join_room` reaches the room while ann's waits: her ack lists bob already, so the
    held `join_room` says nothing new and is not sent. The next thing she hears is cy."""
    async with running_server() as server, clients(server, "ann", "bob", "cy") as [ann, bob, cy]:
        store = server.node.store
        loop = asyncio.get_running_loop()
        real = store.last_seq
        gates: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

        async def held(room: str) -> int:
            gates.put_nowait(gate := loop.create_future())
            await gate
            return await real(room)

        store.last_seq = held
        await bob.send("join_room", {"roomId": "r1"}, id="jb")
        bobs = await asyncio.wait_for(gates.get(), 10)  # bob's join waits for its position
        await ann.send("join_room", {"roomId": "r1"}, id="ja")
        anns = await asyncio.wait_for(gates.get(), 10)  # and ann's, the members read
        store.last_seq = real
        bobs.set_result(None)
        assert (await bob.expect("ack"))["id"] == "jb"
        anns.set_result(None)
        ack = await ann.expect("ack")
        assert ack["id"] == "ja"
        assert "bob" in {m["userId"] for m in ack["payload"]["members"]}
        await cy.join("r1")
        event = await ann.recv()
        assert (event["type"], event["payload"]["userId"]) == ("join_room", "cy")
        assert not server.node.prejoin
