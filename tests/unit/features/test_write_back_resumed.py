"""A write-back to a directory that forgot this node (features/system.py `_tell_again`)
that breaks off, because Redis went away again, is done again at the next housekeeping
round: the heartbeat already listed the node again, so it would not say a second time
that the directory forgot it (docs/decisions/0071)."""

import pytest

from hubbub.core.effects import Effects
from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.features.node import Node
from hubbub.features.system import housekeeping
from hubbub.ids import RoomId, UserId
from tests.support.clock import FakeClock
from tests.support.directory import forget_all
from tests.support.node import asettle
from tests.unit.features.helpers import in_room, join, received


class BreaksOff(MemoryDirectory):
    """A MemoryDirectory whose `add_member` fails `fails` times (Redis gone again)."""

    def __init__(self, state: MemoryDirectoryState) -> None:
        super().__init__(state, node_id="here")
        self.fails = 0

    async def add_member(self, room: RoomId, user: UserId) -> bool:
        if self.fails:
            self.fails -= 1
            raise ConnectionError("Redis went away again")
        return await super().add_member(room, user)


@pytest.fixture
def state() -> MemoryDirectoryState:
    return MemoryDirectoryState()


@pytest.fixture
def here(node: Node, state: MemoryDirectoryState) -> BreaksOff:
    node.directory = d = BreaksOff(state)
    return d


async def keep_house(node: Node) -> Effects:
    return await asettle(await housekeeping(node, node.clock.now_ms(), node.clock.mono_ms()))


async def test_a_write_back_that_broke_off_is_finished_at_the_next_round(
        node: Node, clock: FakeClock, here: BreaksOff, state: MemoryDirectoryState) -> None:
    ann, _ = await in_room(node, "ann", "bob")
    await join(node, ann, "r2")
    other = MemoryDirectory(state, node_id="other")
    await keep_house(node)
    forget_all(state)
    here.fails = 1
    first = await keep_house(node)
    # ann and bob were written back, their rooms not yet.
    assert await other.is_online(UserId("ann")) and await other.is_online(UserId("bob"))
    assert await other.members(RoomId("r1")) == []
    assert received(node, first, ann, "join_room") == []
    assert node.tell_again_owed
    second = await keep_house(node)
    assert not node.tell_again_owed
    assert sorted(await other.members(RoomId("r1"))) == ["ann", "bob"]
    assert await other.members(RoomId("r2")) == ["ann"]
    assert [p["userId"] for p in received(node, second, ann, "join_room")] == ["bob"]
    assert await keep_house(node) == []
