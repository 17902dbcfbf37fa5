"""`typing` frames (PROTOCOL §Typing)."""

from hubbub.core.effects import Effects, Reply
from hubbub.core.session import Session
from hubbub.features.node import Node
from hubbub.ids import RoomId, UserId
from tests.support.clock import FakeClock
from tests.support.node import advance, asend, connect, disconnect, error_code, payload
from tests.unit.features.conftest import MakeNode
from tests.unit.features.helpers import inbox, join, received

TIMEOUT_MS = 3000  # --typing-timeout default


def flags(node: Node, effects: Effects, s: Session) -> list[bool]:
    """The `isTyping` values connection `s` receives from these effects."""
    return [p["isTyping"] for p in received(node, effects, s, "typing")]


async def typing(node: Node, s: Session, is_typing: bool, room: str | int = "r1",
                 id: str | None = None) -> Effects:
    return await asend(node, s, "typing", {"roomId": room, "isTyping": is_typing}, id=id)


async def ann_and_bob(node: Node) -> tuple[Session, Session]:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob", "Bob")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    return ann, bob


async def test_typing_true_is_broadcast_to_the_other_members(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    effects = await typing(node, ann, True)
    assert received(node, effects, bob, "typing") == [
        {"roomId": "r1", "userId": "ann", "username": "Ann", "isTyping": True}]


async def test_typing_is_not_sent_to_any_device_of_the_typing_user(node: Node) -> None:
    ann, _bob = await ann_and_bob(node)
    ann_laptop = connect(node, "ann", "Ann")
    await join(node, ann_laptop, "r1")
    effects = await typing(node, ann, True)
    assert flags(node, effects, ann) == []
    assert flags(node, effects, ann_laptop) == []


async def test_typing_does_not_reach_other_rooms(node: Node) -> None:
    ann, _bob = await ann_and_bob(node)
    carol = connect(node, "carol")
    await join(node, carol, "r2")
    effects = await typing(node, ann, True)
    assert inbox(node, effects, carol) == []


async def test_typing_true_repeated_within_a_second_is_absorbed(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    clock.advance(999)
    effects = await typing(node, ann, True, id="t2")
    assert flags(node, effects, bob) == []
    assert error_code(effects) is None


async def test_typing_true_after_a_second_is_broadcast_again(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    clock.advance(1000)
    effects = await typing(node, ann, True)
    assert flags(node, effects, bob) == [True]


async def test_typing_expires_after_the_timeout_with_one_false_from_the_server(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    assert flags(node, advance(node, clock, TIMEOUT_MS - 1), bob) == []
    effects = advance(node, clock, 1)
    assert received(node, effects, bob, "typing") == [
        {"roomId": "r1", "userId": "ann", "username": "Ann", "isTyping": False}]
    assert flags(node, advance(node, clock, TIMEOUT_MS * 10), bob) == []


async def test_typing_refresh_inside_the_throttle_window_extends_the_expiry(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    clock.advance(500)
    await typing(node, ann, True)  # absorbed, but a refresh
    assert flags(node, advance(node, clock, TIMEOUT_MS - 500), bob) == []
    assert flags(node, advance(node, clock, 500), bob) == [False]


async def test_typing_refresh_after_the_throttle_window_extends_the_expiry(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    clock.advance(2000)
    await typing(node, ann, True)
    assert flags(node, advance(node, clock, TIMEOUT_MS - 1), bob) == []
    assert flags(node, advance(node, clock, 1), bob) == [False]


async def test_typing_timeout_setting_is_honoured(make: MakeNode, clock: FakeClock) -> None:
    node = await make(typing_timeout=1.5)
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    assert flags(node, advance(node, clock, 1499), bob) == []
    assert flags(node, advance(node, clock, 1), bob) == [False]


async def test_typing_false_after_true_is_broadcast_once(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    assert flags(node, await typing(node, ann, False), bob) == [False]
    assert flags(node, await typing(node, ann, False), bob) == []


async def test_typing_false_when_not_typing_is_absorbed(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    effects = await typing(node, ann, False, id="f")
    assert flags(node, effects, bob) == []
    assert error_code(effects) is None


async def test_typing_false_cancels_the_server_expiry(node: Node, clock: FakeClock) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    await typing(node, ann, False)
    assert flags(node, advance(node, clock, TIMEOUT_MS * 2), bob) == []


async def test_typing_again_within_a_second_of_the_last_true_is_absorbed_even_after_false(
    node: Node, clock: FakeClock
) -> None:
    # PROTOCOL §Typing: `true` at most once per user per room per second, toggling or not.
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    await typing(node, ann, False)
    clock.advance(10)
    assert flags(node, await typing(node, ann, True), bob) == []
    assert flags(node, await typing(node, ann, False), bob) == []  # nothing to take back
    clock.advance(990)
    assert flags(node, await typing(node, ann, True), bob) == [True]


async def test_an_absorbed_true_is_shown_by_the_first_refresh_after_the_second(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    await typing(node, ann, False)
    clock.advance(500)
    assert flags(node, await typing(node, ann, True), bob) == []
    clock.advance(500)
    assert flags(node, await typing(node, ann, True), bob) == [True]
    assert flags(node, await typing(node, ann, False), bob) == [False]


async def test_typing_again_after_false_expires_on_its_own_schedule(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    await typing(node, ann, False)
    clock.advance(1000)
    await typing(node, ann, True)
    # The first indicator's deadline (3000) must not end the second one (4000).
    assert flags(node, advance(node, clock, TIMEOUT_MS - 1), bob) == []
    assert flags(node, advance(node, clock, 1), bob) == [False]


async def test_leaving_the_room_ends_typing_with_false_once(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    effects = await asend(node, ann, "leave_room", {"roomId": "r1"})
    assert flags(node, effects, bob) == [False]
    assert flags(node, advance(node, clock, TIMEOUT_MS * 2), bob) == []


async def test_disconnecting_ends_typing_with_false_once(node: Node, clock: FakeClock) -> None:
    ann, bob = await ann_and_bob(node)
    await typing(node, ann, True)
    effects = disconnect(node, ann)
    assert received(node, effects, bob, "typing") == [
        {"roomId": "r1", "userId": "ann", "username": "Ann", "isTyping": False}]
    assert flags(node, advance(node, clock, TIMEOUT_MS * 2), bob) == []


async def test_disconnecting_while_not_typing_sends_no_typing(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    assert flags(node, disconnect(node, ann), bob) == []


async def test_disconnecting_ends_typing_in_every_room(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    await join(node, ann, "r2")
    await join(node, bob, "r2")
    await typing(node, ann, True, room="r1")
    await typing(node, ann, True, room="r2")
    effects = disconnect(node, ann)
    assert sorted(p["roomId"] for p in received(node, effects, bob, "typing")) == ["r1", "r2"]


async def test_typing_is_tracked_per_room(node: Node, clock: FakeClock) -> None:
    ann, bob = await ann_and_bob(node)
    await join(node, ann, "r2")
    await join(node, bob, "r2")
    await typing(node, ann, True, room="r1")
    effects = await typing(node, ann, True, room="r2")
    assert [(p["roomId"], p["isTyping"]) for p in received(node, effects, bob, "typing")] == [
        ("r2", True)]
    assert node.typing.is_typing(RoomId("r1"), UserId("ann"))


async def test_typing_in_a_room_not_joined_is_not_in_room(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    effects = await typing(node, ann, True, room="elsewhere", id="t")
    assert error_code(effects) == "not_in_room"
    assert inbox(node, effects, bob) == []


async def test_typing_in_a_room_only_another_device_joined_is_not_in_room(node: Node) -> None:
    _ann, _bob = await ann_and_bob(node)
    ann_laptop = connect(node, "ann")
    effects = await typing(node, ann_laptop, True)
    assert error_code(effects) == "not_in_room"


async def test_typing_with_an_id_is_acked(node: Node) -> None:
    ann, _bob = await ann_and_bob(node)
    effects = await typing(node, ann, True, id="t1")
    ack = effects[0]
    assert isinstance(ack, Reply) and (ack.type, ack.id) == ("ack", "t1")
    assert payload(ack) == {}


async def test_typing_with_an_integer_room_id_is_broadcast_with_the_string_id(
    node: Node,
) -> None:
    ann, bob = connect(node, "ann"), connect(node, "bob")
    await join(node, ann, 5)
    await join(node, bob, "5")
    effects = await typing(node, ann, True, room=5)
    assert [p["roomId"] for p in received(node, effects, bob, "typing")] == ["5"]


async def test_typing_with_another_users_id_is_forbidden_and_not_broadcast(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    effects = await asend(node, ann, "typing",
                          {"roomId": "r1", "isTyping": True, "userId": "bob"})
    assert error_code(effects) == "forbidden"
    assert inbox(node, effects, bob) == []
    assert not node.typing.is_typing(RoomId("r1"), UserId("ann"))
    assert not node.typing.is_typing(RoomId("r1"), UserId("bob"))


async def test_typing_without_is_typing_is_bad_request(node: Node) -> None:
    ann, bob = await ann_and_bob(node)
    effects = await asend(node, ann, "typing", {"roomId": "r1"}, id="t")
    assert error_code(effects) == "bad_request"
    assert inbox(node, effects, bob) == []
