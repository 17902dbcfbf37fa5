"""`join_room` / `leave_room` (PROTOCOL §Client → server types)."""

import asyncio
from typing import Any

from hubbub.core.effects import Reply
from hubbub.core.session import Session
from hubbub.features.dispatch import handle_frame
from hubbub.features.node import Node
from hubbub.ids import RoomId, UserId
from tests.support.clock import FakeClock
from tests.support.node import (
    advance,
    asend,
    connect,
    disconnect,
    error_code,
    frame,
    payload,
    replies,
    status_of,
)
from tests.unit.features.conftest import MakeNode
from tests.unit.features.helpers import inbox, join, received


async def test_join_ack_has_room_id_members_with_status_and_last_seq(node: Node) -> None:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob", "Bob")
    await join(node, bob, "r1")
    effects = await asend(node, ann, "join_room", {"roomId": "r1"}, id="j1")
    ack = effects[0]
    assert isinstance(ack, Reply) and (ack.type, ack.id) == ("ack", "j1")
    body = payload(ack)
    assert body["roomId"] == "r1"
    assert isinstance(body["lastSeq"], int)
    assert sorted(body["members"], key=lambda m: m["userId"]) == [
        {"userId": "ann", "username": "Ann", "status": "online"},
        {"userId": "bob", "username": "Bob", "status": "online"},
    ]


async def test_join_ack_members_show_each_users_status(node: Node) -> None:
    ann, bob = connect(node, "ann"), connect(node, "bob")
    await join(node, bob, "r1")
    await asend(node, bob, "presence", {"status": "busy"})
    effects = await join(node, ann, "r1")
    members = {m["userId"]: m["status"] for m in payload(effects[0])["members"]}
    assert members == {"ann": "online", "bob": "busy"}


async def test_join_with_an_integer_room_id_is_acked_with_the_string_room_id(node: Node) -> None:
    ann = connect(node, "ann")
    effects = await join(node, ann, 1)
    assert payload(effects[0])["roomId"] == "1"
    assert node.rooms.is_member(RoomId("1"), UserId("ann"))


async def test_join_with_an_invalid_room_id_is_bad_request(node: Node) -> None:
    ann = connect(node, "ann")
    effects = await asend(node, ann, "join_room", {"roomId": "no spaces"}, id="j")
    assert error_code(effects) == "bad_request"
    assert ann.rooms == set()


async def test_join_broadcasts_join_room_to_the_other_members_only(node: Node) -> None:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob", "Bob")
    await join(node, bob, "r1")
    effects = await join(node, ann, "r1")
    assert received(node, effects, bob, "join_room") == [
        {"roomId": "r1", "userId": "ann", "username": "Ann", "status": "online"}]
    assert received(node, effects, ann, "join_room") == []


async def test_join_room_event_does_not_reach_other_rooms(node: Node) -> None:
    ann, carol = connect(node, "ann"), connect(node, "carol")
    await join(node, carol, "r2")
    effects = await join(node, ann, "r1")
    assert inbox(node, effects, carol) == []


async def test_a_second_device_joining_does_not_reannounce_the_user(node: Node) -> None:
    ann1, ann2, bob = connect(node, "ann"), connect(node, "ann"), connect(node, "bob")
    await join(node, bob, "r1")
    await join(node, ann1, "r1")
    effects = await join(node, ann2, "r1")
    assert received(node, effects, bob, "join_room") == []
    assert "r1" in ann2.rooms


async def test_joining_twice_from_one_connection_is_acked_without_a_broadcast(node: Node) -> None:
    ann, bob = connect(node, "ann"), connect(node, "bob")
    await join(node, bob, "r1")
    await join(node, ann, "r1")
    effects = await join(node, ann, "r1")
    assert [type(e) for e in effects] == [Reply]
    assert received(node, effects, bob, "join_room") == []


async def test_members_list_a_user_with_several_devices_once(node: Node) -> None:
    ann1, ann2 = connect(node, "ann"), connect(node, "ann")
    await join(node, ann1, "r1")
    effects = await join(node, ann2, "r1")
    assert [m["userId"] for m in payload(effects[0])["members"]] == ["ann"]


async def test_leave_is_acked_and_broadcast_to_the_remaining_members(node: Node) -> None:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob", "Bob")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    effects = await asend(node, ann, "leave_room", {"roomId": "r1"}, id="l1")
    ack = effects[0]
    assert isinstance(ack, Reply) and (ack.type, ack.id) == ("ack", "l1")
    assert payload(ack) == {"roomId": "r1"}
    assert received(node, effects, bob, "leave_room") == [
        {"roomId": "r1", "userId": "ann", "username": "Ann"}]
    assert received(node, effects, ann, "leave_room") == []
    assert not node.rooms.is_member(RoomId("r1"), UserId("ann"))


async def test_leave_from_one_of_two_devices_is_not_broadcast(node: Node) -> None:
    ann1, ann2, bob = connect(node, "ann"), connect(node, "ann"), connect(node, "bob")
    for s in (ann1, ann2, bob):
        await join(node, s, "r1")
    effects = await asend(node, ann1, "leave_room", {"roomId": "r1"})
    assert received(node, effects, bob, "leave_room") == []
    assert node.rooms.is_member(RoomId("r1"), UserId("ann"))


async def test_leave_by_the_users_last_device_in_the_room_is_broadcast(node: Node) -> None:
    ann1, ann2, bob = connect(node, "ann"), connect(node, "ann"), connect(node, "bob")
    for s in (ann1, ann2, bob):
        await join(node, s, "r1")
    await asend(node, ann1, "leave_room", {"roomId": "r1"})
    effects = await asend(node, ann2, "leave_room", {"roomId": "r1"})
    assert [p["userId"] for p in received(node, effects, bob, "leave_room")] == ["ann"]


async def test_leave_with_an_integer_room_id_leaves_the_string_room(node: Node) -> None:
    ann = connect(node, "ann")
    await join(node, ann, "7")
    effects = await asend(node, ann, "leave_room", {"roomId": 7}, id="l")
    assert payload(effects[0]) == {"roomId": "7"}
    assert ann.rooms == set()


async def test_leaving_a_room_not_joined_is_not_in_room(node: Node) -> None:
    ann = connect(node, "ann")
    effects = await asend(node, ann, "leave_room", {"roomId": "r1"}, id="l")
    assert error_code(effects) == "not_in_room"
    assert [(r.type, r.id) for r in replies(effects)] == [("error", "l")]


async def test_leaving_a_room_only_another_device_joined_is_not_in_room(node: Node) -> None:
    ann1, ann2 = connect(node, "ann"), connect(node, "ann")
    await join(node, ann1, "r1")
    effects = await asend(node, ann2, "leave_room", {"roomId": "r1"})
    assert error_code(effects) == "not_in_room"
    assert node.rooms.is_member(RoomId("r1"), UserId("ann"))


async def test_joining_beyond_max_rooms_per_connection_is_forbidden(make: MakeNode) -> None:
    node = await make(max_rooms=2)
    ann, bob = connect(node, "ann"), connect(node, "bob")
    await join(node, bob, "r3")
    await join(node, ann, "r1")
    await join(node, ann, "r2")
    effects = await asend(node, ann, "join_room", {"roomId": "r3"}, id="j3")
    assert error_code(effects) == "forbidden"
    assert ann.rooms == {"r1", "r2"}
    assert inbox(node, effects, bob) == []


async def test_rejoining_a_joined_room_at_the_max_rooms_limit_is_acked(make: MakeNode) -> None:
    node = await make(max_rooms=1)
    ann = connect(node, "ann")
    await join(node, ann, "r1")
    effects = await join(node, ann, "r1")
    assert payload(effects[0])["roomId"] == "r1"


async def test_max_rooms_counts_per_connection_not_per_user(make: MakeNode) -> None:
    node = await make(max_rooms=1)
    ann1, ann2 = connect(node, "ann"), connect(node, "ann")
    await join(node, ann1, "r1")
    effects = await join(node, ann2, "r2")
    assert payload(effects[0])["roomId"] == "r2"


async def test_a_user_leaving_a_room_is_not_told_about_it_by_another_room(node: Node) -> None:
    ann, bob = connect(node, "ann"), connect(node, "bob")
    await join(node, ann, "r1")
    await join(node, ann, "r2")
    await join(node, bob, "r2")
    effects = await asend(node, ann, "leave_room", {"roomId": "r1"})
    assert inbox(node, effects, bob) == []


# ---- a join under way while the user's membership would be released ------------------------

def _hold_position_reads(node: Node) -> "asyncio.Future[None]":
    """The store's next position read waits until the returned future is set."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    real = node.store.last_seq

    async def held(room: str) -> int:
        await gate
        return await real(room)

    node.store.last_seq = held  # type: ignore[method-assign]
    return gate


async def _join_held(node: Node, s: Session,
                     room: str) -> "tuple[asyncio.Task[Any], asyncio.Future[None]]":
    gate = _hold_position_reads(node)
    result = handle_frame(node, s, frame("join_room", {"roomId": room}, "held"))
    assert not isinstance(result, list)
    task = asyncio.ensure_future(result)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    return task, gate


async def test_a_rejoin_under_way_when_the_lingering_membership_ends_keeps_the_user_in(
        node: Node, clock: FakeClock) -> None:
    """A phone reconnects right at the end of the grace: its join waits on the store while
    the old connection's lingering membership runs out. The user must not end up in the
    room here while the others were told they left."""
    bob = connect(node, "bob")
    await join(node, bob, "r1")
    old = connect(node, "cy")
    await join(node, old, "r1")
    new = connect(node, "cy")
    disconnect(node, old)  # cy lingers in r1: new has not joined it yet
    task, gate = await _join_held(node, new, "r1")
    told = advance(node, clock, node.presence.grace_ms + 1)
    assert received(node, told, bob, "leave_room") == []
    gate.set_result(None)
    effects = await task
    assert [e.type for e in effects if isinstance(e, Reply)] == ["ack"]
    assert received(node, effects, bob, "join_room") == []  # cy never left, for bob
    assert node.rooms.is_member(RoomId("r1"), UserId("cy"))
    assert UserId("cy") in await node.directory.members(RoomId("r1"))
    assert status_of(node, "cy") == "online"
    assert not node.joining


async def test_a_join_that_fails_after_a_held_release_tells_the_room_the_user_left(
        node: Node, clock: FakeClock) -> None:
    bob = connect(node, "bob")
    await join(node, bob, "r1")
    old = connect(node, "cy")
    await join(node, old, "r1")
    new = connect(node, "cy")
    disconnect(node, old)
    task, gate = await _join_held(node, new, "r1")
    advance(node, clock, node.presence.grace_ms + 1)  # the release waits for the join
    closed = disconnect(node, new)  # then the joining connection goes as well
    gate.set_result(None)
    effects = await task
    assert [e.type for e in effects if isinstance(e, Reply)] == []
    assert [p["userId"] for p in received(node, effects + closed, bob, "leave_room")] == ["cy"]
    assert UserId("cy") not in await node.directory.members(RoomId("r1"))
    assert not node.rooms.is_member(RoomId("r1"), UserId("cy"))
    assert not node.joining
