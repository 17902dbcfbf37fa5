"""Departures the directory could not be told (Redis away when a grace period ended or a
room was left) are owed, and told at the next housekeeping round that reaches it, minus
what the user holds here again (features/presence.py `released`, `departures_owed`;
docs/decisions/0011)."""

import asyncio

import pytest

from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.features.node import Node
from hubbub.features.presence import released
from hubbub.ids import RoomId, UserId
from tests.support.clock import FakeClock
from tests.support.node import (
    advance,
    asend,
    asettle,
    connect,
    disconnect,
    replies,
    status_of,
)
from tests.unit.features.helpers import in_room, join, keep_house, received

GRACE_MS = 5000
ANN, R1, R2 = UserId("ann"), RoomId("r1"), RoomId("r2")


class AwayDirectory(MemoryDirectory):
    """A MemoryDirectory whose departures fail while `away` (Redis unreachable); with
    `rooms_away` only room departures fail."""

    def __init__(self, state: MemoryDirectoryState) -> None:
        super().__init__(state, node_id="here")
        self.away = False
        self.rooms_away = False
        self.calls = 0  # departures asked of it
        self.round_trips = False  # a failure takes a loop turn: other work runs meanwhile

    async def _check(self) -> None:
        self.calls += 1
        if self.away:
            if self.round_trips:
                await asyncio.sleep(0)
            raise ConnectionError("Redis is away")

    async def rooms_of(self, user: UserId) -> set[RoomId]:
        await self._check()
        return await super().rooms_of(user)

    async def user_down(self, user: UserId, now_ms: int) -> bool:
        await self._check()
        return await super().user_down(user, now_ms)

    async def remove_member(self, room: RoomId, user: UserId) -> bool:
        await self._check()
        if self.rooms_away:
            raise ConnectionError("Redis is away")
        return await super().remove_member(room, user)


@pytest.fixture
def directory(node: Node) -> AwayDirectory:
    node.directory = d = AwayDirectory(MemoryDirectoryState())
    return d


async def members(node: Node, room: RoomId) -> list[UserId]:
    return sorted(await node.directory.members(room))


async def test_a_grace_that_ended_while_redis_was_away_is_told_at_the_next_round(
        node: Node, clock: FakeClock, directory: AwayDirectory) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    directory.away = True
    assert advance(node, clock, GRACE_MS) == []  # nothing told, nothing announced
    assert status_of(node, "ann") == "online"  # what Redis, away, still says
    assert await keep_house(node) == []  # still away: still owed
    directory.away = False
    effects = await keep_house(node)
    assert [(p["userId"], p["status"]) for p in received(node, effects, bob, "presence")] \
        == [("ann", "offline")]
    assert received(node, effects, bob, "leave_room") == [
        {"roomId": "r1", "userId": "ann", "username": "ann"}]
    assert status_of(node, "ann") == "offline"
    assert await keep_house(node) == []  # told once
    assert node.unreleased_users == {}


async def test_a_user_back_here_before_it_is_told_was_online_all_along(
        node: Node, clock: FakeClock, directory: AwayDirectory) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    directory.away = True
    advance(node, clock, GRACE_MS)
    directory.away = False
    again = connect(node, "ann")
    effects = await join(node, again, "r1")
    effects += await keep_house(node)
    assert received(node, effects, bob, "presence") == []
    assert received(node, effects, bob, "leave_room") == []
    assert status_of(node, "ann") == "online"
    assert await members(node, R1) == ["ann", "bob"]
    assert node.unreleased_users == {}


async def test_a_room_joined_again_keeps_its_membership_and_the_others_are_left(
        node: Node, clock: FakeClock, directory: AwayDirectory) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    await join(node, ann, "r2")
    await join(node, bob, "r2")
    directory.rooms_away = True
    for room in ("r1", "r2"):
        effects = await asettle(await asend(node, ann, "leave_room", {"roomId": room},
                                            id=f"l-{room}"))
        assert received(node, effects, bob, "leave_room") == []  # owed, not told
        assert [r.type for r in replies(effects)] == ["ack"]  # the leave is done here
    directory.rooms_away = False
    effects = await join(node, ann, "r2")  # back in r2 before the round
    effects += await keep_house(node)
    assert received(node, effects, bob, "leave_room") == [
        {"roomId": "r1", "userId": "ann", "username": "ann"}]
    assert (await members(node, R1), await members(node, R2)) == (["bob"], ["ann", "bob"])


async def test_what_was_told_before_the_failure_is_announced_and_only_the_rest_owed(
        node: Node, clock: FakeClock, directory: AwayDirectory) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    directory.rooms_away = True
    effects = advance(node, clock, GRACE_MS)
    assert [p["status"] for p in received(node, effects, bob, "presence")] == ["offline"]
    assert received(node, effects, bob, "leave_room") == []
    owed = node.unreleased_users[ANN]
    assert (owed.rooms, owed.last_seen_ms) == ({R1}, None)
    directory.rooms_away = False
    effects = await keep_house(node)
    assert received(node, effects, bob, "presence") == []  # offline was told already
    assert received(node, effects, bob, "leave_room") == [
        {"roomId": "r1", "userId": "ann", "username": "ann"}]



async def test_two_releases_failing_at_once_owe_both_and_a_round_stops_at_a_failure(
        node: Node, clock: FakeClock, directory: AwayDirectory) -> None:
    await in_room(node, "ann", "bob", "cy")
    for s in list(node.sessions.values()):
        if s.identity is not None and s.identity.user_id in ("ann", "cy"):
            disconnect(node, s)
    advance(node, clock, GRACE_MS)  # both grace periods end: told
    directory.away = directory.round_trips = True
    # Two releases of ann under way together (a leave and a room's lingering end, say).
    await asyncio.gather(released(node, ANN, "ann", [R1], None),
                         released(node, ANN, "ann", [R2], clock.now_ms()))
    owed = node.unreleased_users[ANN]
    assert (owed.rooms, owed.last_seen_ms) == ({R1, R2}, clock.now_ms())
    await released(node, UserId("cy"), "cy", [R2], None)
    calls = directory.calls
    assert await keep_house(node) == []
    assert directory.calls - calls == 1  # the round stopped at its first failure
    assert set(node.unreleased_users) == {ANN, UserId("cy")}
