"""The directory forgot this node (Redis restarted empty, or the node was reaped while cut
off): the heartbeat writes back the calls living here too, and a call's release that
failed while the directory was down is tried again (features/calls.py `written_back`,
`directory_retries`; docs/decisions/0071). A write-back that breaks off is done again at
the next round (features/system.py `_tell_again`)."""

from collections.abc import Awaitable, Callable

import pytest

from hubbub.core.effects import LogCall
from hubbub.core.session import Session
from hubbub.directory.base import CallInfo, Restore
from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.features.node import Node
from hubbub.ids import RoomId, UserId
from tests.support.clock import FakeClock
from tests.support.directory import forget_all
from tests.support.node import asend, connect
from tests.unit.features.helpers import in_room, join, keep_house, received

ANN, BOB, CY = UserId("ann"), UserId("bob"), UserId("cy")
OFFER = {"type": "offer", "sdp": "v=0 offer"}
ANSWER = {"type": "answer", "sdp": "v=0 answer"}


class FlakyDirectory(MemoryDirectory):
    """A MemoryDirectory that can be down (every call fails as on a Redis that is away) and
    can run something of the test's just before it writes a call back."""

    def __init__(self, state: MemoryDirectoryState) -> None:
        super().__init__(state, node_id="home")
        self.down = False
        self.before_restore: Callable[[], Awaitable[object]] | None = None
        self.add_member_fails = 0  # the next so many fail (Redis gone again)

    async def heartbeat(self, now_ms: int) -> bool:
        if self.down:
            raise ConnectionError("Redis is down")
        return await super().heartbeat(now_ms)

    async def release_call(self, call_id: str, *, ended: bool) -> None:
        if self.down:
            raise ConnectionError("Redis is down")
        await super().release_call(call_id, ended=ended)

    async def add_member(self, room: RoomId, user: UserId) -> bool:
        if self.add_member_fails:
            self.add_member_fails -= 1
            raise ConnectionError("Redis went away again")
        return await super().add_member(room, user)

    async def restore_call(self, call: CallInfo) -> Restore:
        if self.before_restore is not None:
            await self.before_restore()
        return await super().restore_call(call)


@pytest.fixture
def state() -> MemoryDirectoryState:
    return MemoryDirectoryState()


@pytest.fixture
def home(node: Node, state: MemoryDirectoryState) -> FlakyDirectory:
    node.directory = directory = FlakyDirectory(state)
    return directory


@pytest.fixture
def other(state: MemoryDirectoryState) -> MemoryDirectory:
    """The directory of another node on the same state."""
    return MemoryDirectory(state, node_id="other")


async def answered_call(node: Node, clock: FakeClock) -> tuple[Session, Session]:
    """ann calls bob (call c1, in r1), who answers; the node heartbeats once."""
    ann, bob = await in_room(node, "ann", "bob")
    await keep_house(node)
    await asend(node, ann, "webrtc", {"kind": "offer", "to": "bob", "callId": "c1",
                                      "roomId": "r1", "sdp": OFFER})
    clock.advance(1_000)
    await asend(node, bob, "webrtc", {"kind": "answer", "to": "ann", "callId": "c1",
                                      "sdp": ANSWER})
    return ann, bob


async def test_an_answered_call_is_written_back_as_it_was_claimed_and_answered(
        node: Node, clock: FakeClock, home: FlakyDirectory, state: MemoryDirectoryState,
        other: MemoryDirectory) -> None:
    await answered_call(node, clock)
    claimed = await other.call_info("c1")
    assert claimed is not None and claimed.state == "active"
    forget_all(state)
    clock.advance(2_500)
    await keep_house(node)
    assert await other.call_info("c1") == claimed
    assert await other.call_of(ANN) == await other.call_of(BOB) == claimed
    assert node.unrestored_calls == set()


@pytest.mark.parametrize("came_back_empty", [True, False])
async def test_a_call_that_ended_while_the_directory_was_down_is_released_once_it_is_back(
        node: Node, clock: FakeClock, home: FlakyDirectory, state: MemoryDirectoryState,
        other: MemoryDirectory, came_back_empty: bool) -> None:
    ann, bob = await answered_call(node, clock)
    home.down = True
    ended = await asend(node, ann, "call_end", {"callId": "c1"})
    assert received(node, ended, bob, "call_end")  # the call ends all the same
    assert node.unreleased_calls == {"c1"}
    with pytest.raises(ConnectionError):
        await keep_house(node)
    if came_back_empty:
        forget_all(state)
    home.down = False
    await keep_house(node)
    assert await other.call_info("c1") is None
    assert await other.call_of(ANN) is None and await other.call_of(BOB) is None
    assert node.unreleased_calls == set()


async def test_a_call_that_ends_while_it_is_written_back_is_not_left_in_the_directory(
        node: Node, clock: FakeClock, home: FlakyDirectory, state: MemoryDirectoryState,
        other: MemoryDirectory) -> None:
    ann, _ = await answered_call(node, clock)
    forget_all(state)

    async def hang_up_first() -> None:
        # The hang-up, and its release, reach the directory before the write-back does.
        home.before_restore = None
        await asend(node, ann, "call_end", {"callId": "c1"})

    home.before_restore = hang_up_first
    await keep_house(node)
    assert node.calls.live_call_of(ANN) is None
    assert await other.call_info("c1") is None
    assert await other.call_of(ANN) is None and await other.call_of(BOB) is None


async def test_a_party_in_a_newer_call_keeps_it_and_is_filled_in_once_it_ends(
        node: Node, clock: FakeClock, home: FlakyDirectory, state: MemoryDirectoryState,
        other: MemoryDirectory) -> None:
    await answered_call(node, clock)
    forget_all(state)
    await other.heartbeat(clock.now_ms())
    # Before the write-back, cy calls ann through the other node, which found her free.
    newer = CallInfo("c2", CY, ANN, 2, "other", started_at=clock.now_ms())
    assert (await other.claim_call(newer)).outcome == "ok"
    await keep_house(node)
    assert await other.call_of(ANN) == newer
    assert (await other.call_of(BOB) or newer).call_id == "c1"
    assert node.unrestored_calls == {"c1"}
    await other.release_call("c2", ended=True)
    clock.advance(2_500)
    await keep_house(node)
    assert (await other.call_of(ANN) or newer).call_id == "c1"
    assert node.unrestored_calls == set()


async def test_a_call_reaped_while_its_home_was_cut_off_ends_there_and_is_not_logged_again(
        node: Node, clock: FakeClock, home: FlakyDirectory, other: MemoryDirectory) -> None:
    ann, bob = await answered_call(node, clock)
    await other.reap(clock.now_ms(), clock.mono_ms())  # other sees the home's last heartbeat
    now = clock.advance(home.node_ttl_ms + 1)  # the home was silent past the node TTL
    await other.heartbeat(now)
    assert [c.call_id for c in await other.reap_calls(now, clock.mono_ms())] == ["c1"]
    await other.reap(now, clock.mono_ms())
    effects = await keep_house(node)  # the home is back: the directory forgot it
    for party in (ann, bob):
        assert received(node, effects, party, "call_end") == [
            {"callId": "c1", "by": "bob", "reason": "disconnected"}]
    assert not [e for e in effects if isinstance(e, LogCall)]  # the reaper logged it
    assert node.calls.live_call_of(ANN) is None and node.calls.live_call_of(BOB) is None
    assert await other.call_info("c1") is None


async def ringing_call_to_a_remote_bob(node: Node, other: MemoryDirectory,
                                       clock: FakeClock) -> Session:
    """ann (here) calls bob, who is connected through the other node only."""
    ann = connect(node, "ann")
    await join(node, ann, "r1")
    await keep_house(node)
    await other.heartbeat(clock.now_ms())
    await other.user_up(BOB, "bob", clock.now_ms())
    await other.add_member(RoomId("r1"), BOB)
    await asend(node, ann, "webrtc", {"kind": "offer", "to": "bob", "callId": "c1",
                                      "roomId": "r1", "sdp": OFFER})
    assert node.calls.live_call_of(BOB) is not None
    return ann


@pytest.mark.parametrize("bob_is_told_again", [True, False])
async def test_a_party_the_emptied_directory_does_not_know_yet_is_not_taken_for_gone(
        node: Node, clock: FakeClock, home: FlakyDirectory, state: MemoryDirectoryState,
        other: MemoryDirectory, bob_is_told_again: bool) -> None:
    # Redis came back empty; the other node tells it again about bob at its own next
    # heartbeat, maybe after this one's. Until a node TTL has passed, bob's absence does
    # not end the call (`orphaned`); past it, a party nobody told it about is gone.
    await ringing_call_to_a_remote_bob(node, other, clock)
    forget_all(state)
    clock.advance(2_500)
    await keep_house(node)  # the directory forgot this node, and bob for now
    assert node.calls.live_call_of(BOB) is not None
    if bob_is_told_again:
        await other.heartbeat(clock.now_ms())
        await other.user_up(BOB, "bob", clock.now_ms())
    for _ in range(5):  # past a node TTL, one housekeeping round after another
        await other.heartbeat(clock.advance(2_500))
        await keep_house(node)
    assert (node.calls.live_call_of(BOB) is not None) is bob_is_told_again


async def test_the_wait_after_the_directory_forgot_this_node_counts_on_the_monotonic_clock(
        node: Node, clock: FakeClock, home: FlakyDirectory, state: MemoryDirectoryState,
        other: MemoryDirectory) -> None:
    # A step of the wall clock right after Redis came back empty does not cut the node
    # TTL that the other nodes have to tell it again about bob (ADR 0090).
    await ringing_call_to_a_remote_bob(node, other, clock)
    forget_all(state)
    clock.advance(2_500)
    await keep_house(node)
    clock.step(3_600_000)
    await keep_house(node)
    assert node.calls.live_call_of(BOB) is not None
    for _ in range(5):  # past a node TTL of time passing, nobody told it about bob
        await other.heartbeat(clock.advance(2_500))
        await keep_house(node)
    assert node.calls.live_call_of(BOB) is None


async def test_a_write_back_that_broke_off_is_finished_at_the_next_round(
        node: Node, home: FlakyDirectory, state: MemoryDirectoryState,
        other: MemoryDirectory) -> None:
    # The heartbeat that found the directory forgetful listed this node again: the next
    # one does not say it forgot, yet the rooms are still to be written back.
    ann, _ = await in_room(node, "ann", "bob")
    await join(node, ann, "r2")
    await keep_house(node)
    forget_all(state)
    home.add_member_fails = 1
    first = await keep_house(node)
    assert await other.is_online(ANN) and await other.is_online(BOB)
    assert await other.members(RoomId("r1")) == []
    assert received(node, first, ann, "join_room") == []
    assert node.tell_again_owed
    second = await keep_house(node)
    assert not node.tell_again_owed
    assert sorted(await other.members(RoomId("r1"))) == [ANN, BOB]
    assert await other.members(RoomId("r2")) == [ANN]
    assert [p["userId"] for p in received(node, second, ann, "join_room")] == ["bob"]
    assert await keep_house(node) == []
