"""Presence (PROTOCOL §Presence): one status per user, offline only after a grace period."""

from hubbub.core.effects import Reply
from hubbub.features.node import Node
from hubbub.ids import RoomId, UserId
from tests.support.clock import FakeClock
from tests.support.node import advance, asend, connect, disconnect, error_code, payload, status_of
from tests.unit.features.conftest import MakeNode
from tests.unit.features.helpers import in_room, inbox, join, received

GRACE_MS = 5000  # --presence-grace default


async def test_several_devices_of_one_user_count_as_one_online_user(node: Node) -> None:
    connect(node, "ann")
    connect(node, "ann")
    connect(node, "ann")
    assert node.presence.online_count() == 1
    assert status_of(node, "ann") == "online"


async def test_closing_one_of_two_devices_keeps_the_user_online(
    node: Node, clock: FakeClock
) -> None:
    ann1, ann2, bob = connect(node, "ann"), connect(node, "ann"), connect(node, "bob")
    for s in (ann1, ann2, bob):
        await join(node, s, "r1")
    effects = disconnect(node, ann1) + advance(node, clock, GRACE_MS * 2)
    assert received(node, effects, bob, "presence") == []
    assert status_of(node, "ann") == "online"


async def test_last_connection_closing_is_not_offline_during_the_grace_period(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    effects = disconnect(node, ann) + advance(node, clock, GRACE_MS - 1)
    assert inbox(node, effects, bob) == []
    assert status_of(node, "ann") == "online"


async def test_last_connection_closing_is_offline_after_grace_with_last_seen_at_close(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    clock.advance(1234)
    closed_at = clock.now
    disconnect(node, ann)
    advance(node, clock, GRACE_MS - 1)
    effects = advance(node, clock, 1)
    assert received(node, effects, bob, "presence") == [
        {"userId": "ann", "username": "Ann", "status": "offline", "lastSeen": closed_at}]
    assert status_of(node, "ann") == "offline"


async def test_offline_is_sent_once(node: Node, clock: FakeClock) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    first = advance(node, clock, GRACE_MS)
    later = advance(node, clock, GRACE_MS * 10)
    assert len(received(node, first, bob, "presence")) == 1
    assert inbox(node, later, bob) == []


async def test_offline_goes_only_to_users_who_share_a_room(node: Node, clock: FakeClock) -> None:
    ann, bob, carol = connect(node, "ann"), connect(node, "bob"), connect(node, "carol")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    await join(node, carol, "r2")
    disconnect(node, ann)
    effects = advance(node, clock, GRACE_MS)
    assert len(received(node, effects, bob, "presence")) == 1
    assert inbox(node, effects, carol) == []


async def test_offline_reaches_a_user_sharing_several_rooms_once(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = connect(node, "ann"), connect(node, "bob")
    for room in ("r1", "r2"):
        await join(node, ann, room)
        await join(node, bob, room)
    disconnect(node, ann)
    effects = advance(node, clock, GRACE_MS)
    assert len(received(node, effects, bob, "presence")) == 1


async def test_a_user_in_no_room_goes_offline_without_a_broadcast(
    node: Node, clock: FakeClock
) -> None:
    ann = connect(node, "ann")
    connect(node, "bob")
    disconnect(node, ann)
    assert advance(node, clock, GRACE_MS) == []
    assert status_of(node, "ann") == "offline"


async def test_lingering_room_membership_is_purged_with_leave_room_after_grace(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    disconnect(node, ann)
    assert node.rooms.is_member(RoomId("r1"), UserId("ann"))  # lingers during the grace
    effects = advance(node, clock, GRACE_MS)
    assert received(node, effects, bob, "leave_room") == [
        {"roomId": "r1", "userId": "ann", "username": "Ann"}]
    assert not node.rooms.is_member(RoomId("r1"), UserId("ann"))


async def test_offline_is_sent_before_the_lingering_leave_room(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    effects = advance(node, clock, GRACE_MS)
    assert [t for t, _ in inbox(node, effects, bob)] == ["presence", "leave_room"]


async def test_reconnect_within_grace_sends_no_offline_and_no_leave_room(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    effects = disconnect(node, ann) + advance(node, clock, GRACE_MS - 1000)
    again = connect(node, "ann")
    effects += await join(node, again, "r1")
    effects += advance(node, clock, GRACE_MS * 3)
    assert inbox(node, effects, bob) == []
    assert status_of(node, "ann") == "online"
    assert node.rooms.is_member(RoomId("r1"), UserId("ann"))


async def test_reconnect_within_grace_keeps_the_chosen_status(
    node: Node, clock: FakeClock
) -> None:
    ann = connect(node, "ann")
    await asend(node, ann, "presence", {"status": "away"})
    disconnect(node, ann)
    advance(node, clock, 1000)
    connect(node, "ann")
    advance(node, clock, GRACE_MS * 2)
    assert status_of(node, "ann") == "away"


async def test_reconnect_without_rejoining_leaves_the_lingering_room_after_grace(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    connect(node, "ann")
    effects = advance(node, clock, GRACE_MS)
    assert [t for t, _ in inbox(node, effects, bob)] == ["leave_room"]
    assert status_of(node, "ann") == "online"


async def test_a_dropped_device_membership_lingers_while_another_device_stays_online(
    node: Node, clock: FakeClock
) -> None:
    ann_phone, ann_laptop, bob = connect(node, "ann"), connect(node, "ann"), connect(node, "bob")
    await join(node, ann_phone, "r1")
    await join(node, bob, "r1")
    assert ann_laptop.rooms == set()
    effects = disconnect(node, ann_phone) + advance(node, clock, GRACE_MS - 1)
    assert inbox(node, effects, bob) == []
    effects = advance(node, clock, 1)
    assert [p["userId"] for p in received(node, effects, bob, "leave_room")] == ["ann"]
    assert received(node, effects, bob, "presence") == []


async def test_presence_grace_setting_is_honoured(make: MakeNode, clock: FakeClock) -> None:
    node = await make(presence_grace=0.5)
    ann, bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    assert advance(node, clock, 499) == []
    assert len(received(node, advance(node, clock, 1), bob, "presence")) == 1


async def test_away_status_is_broadcast_to_users_sharing_a_room(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    effects = await asend(node, ann, "presence", {"status": "away"})
    assert received(node, effects, bob, "presence") == [
        {"userId": "ann", "username": "Ann", "status": "away", "lastSeen": clock.now}]


async def test_busy_status_is_broadcast_to_users_sharing_a_room(node: Node) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    effects = await asend(node, ann, "presence", {"status": "busy"})
    assert [p["status"] for p in received(node, effects, bob, "presence")] == ["busy"]


async def test_status_change_does_not_reach_users_without_a_shared_room(node: Node) -> None:
    ann, bob, carol = connect(node, "ann"), connect(node, "bob"), connect(node, "carol")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    await join(node, carol, "r2")
    effects = await asend(node, ann, "presence", {"status": "away"})
    assert inbox(node, effects, carol) == []


async def test_unchanged_status_is_not_broadcast_again(node: Node) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    await asend(node, ann, "presence", {"status": "away"})
    effects = await asend(node, ann, "presence", {"status": "away"})
    assert inbox(node, effects, bob) == []


async def test_online_status_while_online_is_not_broadcast(node: Node) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    effects = await asend(node, ann, "presence", {"status": "online"})
    assert inbox(node, effects, bob) == []


async def test_back_online_after_away_is_broadcast(node: Node) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    await asend(node, ann, "presence", {"status": "away"})
    effects = await asend(node, ann, "presence", {"status": "online"})
    assert [p["status"] for p in received(node, effects, bob, "presence")] == ["online"]


async def test_status_set_on_one_device_is_the_users_status(node: Node) -> None:
    ann1 = connect(node, "ann")
    connect(node, "ann")
    await asend(node, ann1, "presence", {"status": "busy"})
    assert status_of(node, "ann") == "busy"


async def test_presence_frame_with_an_id_is_acked_with_the_status(node: Node) -> None:
    ann = connect(node, "ann")
    effects = await asend(node, ann, "presence", {"status": "away"}, id="p1")
    ack = effects[0]
    assert isinstance(ack, Reply) and (ack.type, ack.id) == ("ack", "p1")
    assert payload(ack) == {"status": "away"}


async def test_presence_frame_without_an_id_gets_no_ack(node: Node) -> None:
    ann = connect(node, "ann")
    effects = await asend(node, ann, "presence", {"status": "away"})
    assert [e for e in effects if isinstance(e, Reply)] == []


async def test_offline_is_not_a_status_a_client_may_set(node: Node) -> None:
    ann = connect(node, "ann")
    effects = await asend(node, ann, "presence", {"status": "offline"}, id="p")
    assert error_code(effects) == "bad_request"
    assert status_of(node, "ann") == "online"


async def test_presence_with_another_users_id_is_forbidden_and_not_broadcast(
    node: Node,
) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    effects = await asend(node, ann, "presence", {"status": "away", "userId": "bob"}, id="p")
    assert error_code(effects) == "forbidden"
    assert inbox(node, effects, bob) == []
    assert status_of(node, "ann") == "online"
    assert status_of(node, "bob") == "online"


async def test_a_presence_flood_from_many_devices_is_rate_limited_and_not_broadcast(
    node: Node, clock: FakeClock
) -> None:
    """Each `presence` goes to every room of the user: one user's devices together get
    CHANGE_BURST of them, then `rate_limited` (docs/decisions/0041)."""
    from hubbub.core.presence import CHANGE_BURST
    devices = [connect(node, "ann") for _ in range(4)]
    bob = connect(node, "bob")
    await join(node, devices[0], "r1")
    await join(node, bob, "r1")
    statuses = ["away", "busy"]
    broadcasts, refused = 0, []
    for i in range(int(CHANGE_BURST) * 3):
        effects = await asend(node, devices[i % 4], "presence",
                              {"status": statuses[i % 2]}, id=f"p{i}")
        broadcasts += len(received(node, effects, bob, "presence"))
        refused += [e for e in effects if isinstance(e, Reply) and e.type == "error"]
    assert broadcasts == CHANGE_BURST
    assert {payload(e)["code"] for e in refused} == {"rate_limited"}
    assert all(payload(e)["retryAfterMs"] > 0 for e in refused)
    clock.advance(1000)
    effects = await asend(node, devices[0], "presence", {"status": "online"}, id="later")
    assert len(received(node, effects, bob, "presence")) == 1
