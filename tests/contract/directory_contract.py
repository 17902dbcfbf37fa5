"""The contract suite of `hubbub.directory.base.Directory` (presence, membership
and calls across nodes), written against the abstract contract.

Every backend runs exactly these tests (DESIGN §5.4). A backend's test module provides one
fixture, `backend`, returning a `DirectoryBackend`: how to make the directory of one more
node on the backend's one shared state (a `MemoryDirectoryState`, a Redis server). Then it
subclasses `DirectoryContract`:

    @pytest.fixture
    def backend() -> DirectoryBackend: ...

    class TestMemoryDirectory(DirectoryContract): ...

Time is passed in (`now_ms`, and `mono_ms` where a node judges who is dead): the nodes get
a small node TTL and the tests move time by passing later values, so a dead node is reaped
without anybody sleeping (DESIGN §5.9). A node is reaped once a live node has *seen* its
heartbeat unchanged for the TTL (`NodeWatch`), so a test has the reaper look
(`reap`) when the heartbeat it will judge by is written.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from hubbub.directory.base import (
    CallInfo,
    Claim,
    Departure,
    Directory,
    PresenceInfo,
    Restore,
    ToldAgain,
)
from hubbub.ids import RoomId, UserId

T0 = 1_700_000_000_000
TTL = 1_000  # ms: the node TTL every directory of the suite is made with

U1, U2, U3 = UserId("u1"), UserId("u2"), UserId("u3")
R1, R2, R3 = RoomId("r1"), RoomId("r2"), RoomId("r3")


@dataclass
class DirectoryBackend:
    """`make(node_id, node_ttl_ms)` returns the unstarted directory of one more node, on the
    state every directory made by this backend shares; `forget_all()` empties that state,
    as a Redis restarted without persistence comes back."""

    name: str
    make: Callable[[str, int], Directory]
    forget_all: Callable[[], Awaitable[None]]


@dataclass
class Nodes:
    a: Directory
    b: Directory
    c: Directory

    @property
    def all(self) -> list[Directory]:
        return [self.a, self.b, self.c]

    async def heartbeat(self, now_ms: int, *nodes: Directory) -> None:
        for node in nodes or self.all:
            await node.heartbeat(now_ms)


def by_user(departures: list[Departure]) -> dict[UserId, Departure]:
    users = [d.user for d in departures]
    assert len(users) == len(set(users)), f"a user departed twice: {departures}"
    return {d.user: d for d in departures}


def left(d: Departure) -> list[RoomId]:
    return sorted(d.rooms_left)  # the contract gives no order for the rooms left


async def status(directory: Directory, user: UserId) -> PresenceInfo | None:
    return (await directory.presence([user])).get(user)


async def call_id_of(directory: Directory, user: UserId) -> str | None:
    info = await directory.call_of(user)
    return None if info is None else info.call_id


class DirectoryContract:
    """Subclass it in a `test_directory*.py` module that defines the `backend` fixture."""

    @pytest.fixture
    async def nodes(self, backend: DirectoryBackend) -> AsyncIterator[Nodes]:
        """The directories of three live nodes a, b, c (started, heartbeat at T0, and each
        has read the others' heartbeats, as its housekeeping does)."""
        made: list[Directory] = []
        try:
            for name in ("node-a", "node-b", "node-c"):
                directory = backend.make(name, TTL)
                await directory.start()
                made.append(directory)
                await directory.heartbeat(T0)
            for directory in made:
                assert await directory.reap(T0, T0) == []
            yield Nodes(*made)
        finally:
            for directory in made:
                await directory.close()

    # ---- presence: first and last holder -------------------------------------------------
    async def test_the_first_node_to_hold_a_user_brings_them_online(self, nodes: Nodes) -> None:
        assert await nodes.a.user_up(U1, "Ann", T0) is True
        assert await nodes.b.user_up(U1, "Ann", T0 + 1) is False
        assert await nodes.a.user_up(U1, "Ann", T0 + 2) is False  # idempotent per node
        for node in nodes.all:
            assert await node.is_online(U1) is True

    async def test_a_user_comes_online_with_status_online_and_their_username(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        for node in nodes.all:
            assert await status(node, U1) == PresenceInfo("Ann", "online", T0)

    async def test_a_user_held_by_two_nodes_goes_offline_only_when_the_last_lets_go(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.b.user_up(U1, "Ann", T0)
        assert await nodes.a.user_down(U1, T0 + 10) is False
        assert await nodes.c.is_online(U1) is True
        assert (await status(nodes.c, U1) or PresenceInfo("", "", 0)).status == "online"
        assert await nodes.b.user_down(U1, T0 + 20) is True
        assert await nodes.c.is_online(U1) is False
        assert await status(nodes.c, U1) == PresenceInfo("Ann", "offline", T0 + 20)

    async def test_user_down_from_a_node_that_does_not_hold_the_user_changes_nothing(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        assert await nodes.c.user_down(U1, T0 + 10) is False
        assert await nodes.b.is_online(U1) is True
        assert await status(nodes.b, U1) == PresenceInfo("Ann", "online", T0)

    async def test_user_down_of_a_user_the_directory_forgot_is_the_last(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        # Redis restarted empty, and the user's grace ended on node a before a told it
        # again: nobody else holds them, so their going offline is announced.
        await nodes.a.user_up(U1, "Ann", T0)
        await backend.forget_all()
        assert await nodes.a.heartbeat(T0 + 1) is True
        assert await nodes.a.user_down(U1, T0 + 10) is True
        assert await nodes.b.is_online(U1) is False
        info = await status(nodes.b, U1)
        assert info is not None and (info.status, info.last_seen_ms) == ("offline", T0 + 10)
        await nodes.a.user_up(U2, "Bo", T0 + 11)  # another node holds U2: not the last
        assert await nodes.b.user_down(U2, T0 + 12) is False
        assert await nodes.c.is_online(U2) is True

    async def test_user_down_says_true_once(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        assert await nodes.a.user_down(U1, T0 + 10) is True
        assert await nodes.a.user_down(U1, T0 + 20) is False
        assert await status(nodes.b, U1) == PresenceInfo("Ann", "offline", T0 + 10)

    async def test_an_idle_user_is_not_online_while_the_node_still_holds_them(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.user_idle(U1)
        assert await nodes.b.is_online(U1) is False
        # The grace period: not reachable, yet not offline for anybody.
        assert (await status(nodes.b, U1) or PresenceInfo("", "", 0)).status == "online"
        assert await nodes.b.user_up(U1, "Ann", T0 + 5) is False  # a still holds them
        assert await nodes.c.is_online(U1) is True

    async def test_the_idle_last_holder_still_decides_offline(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.user_idle(U1)
        assert await nodes.a.user_down(U1, T0 + 10) is True
        assert await status(nodes.b, U1) == PresenceInfo("Ann", "offline", T0 + 10)

    async def test_a_reconnect_during_the_grace_is_not_a_new_online(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.user_idle(U1)
        assert await nodes.a.user_up(U1, "Ann", T0 + 5) is False
        assert await nodes.b.is_online(U1) is True

    async def test_idle_on_one_node_leaves_the_user_reachable_through_another(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.b.user_up(U1, "Ann", T0)
        await nodes.a.user_idle(U1)
        assert await nodes.c.is_online(U1) is True
        await nodes.b.user_idle(U1)
        assert await nodes.c.is_online(U1) is False

    async def test_a_user_back_after_going_offline_is_online_again(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.set_status(U1, "away", T0 + 1)
        await nodes.a.user_down(U1, T0 + 2)
        assert await nodes.b.user_up(U1, "Ann", T0 + 3) is True
        assert await status(nodes.c, U1) == PresenceInfo("Ann", "online", T0 + 3)

    # ---- presence: status ----------------------------------------------------------------
    async def test_set_status_is_true_only_when_the_status_changes(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        assert await nodes.a.set_status(U1, "away", T0 + 1) is True
        assert await nodes.a.set_status(U1, "away", T0 + 2) is False
        assert await nodes.b.set_status(U1, "away", T0 + 3) is False  # from any node
        assert await status(nodes.c, U1) == PresenceInfo("Ann", "away", T0 + 1)
        assert await nodes.b.set_status(U1, "online", T0 + 4) is True
        assert await status(nodes.c, U1) == PresenceInfo("Ann", "online", T0 + 4)

    async def test_set_status_of_a_user_never_seen_changes_nothing(self, nodes: Nodes) -> None:
        assert await nodes.a.set_status(U1, "busy", T0) is False
        assert await nodes.b.presence([U1]) == {}

    async def test_a_second_device_on_another_node_keeps_the_chosen_status(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.set_status(U1, "busy", T0 + 1)
        assert await nodes.b.user_up(U1, "Ann", T0 + 2) is False
        assert (await status(nodes.c, U1) or PresenceInfo("", "", 0)).status == "busy"

    async def test_presence_answers_for_known_users_only(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.b.user_up(U2, "Bob", T0 + 1)
        await nodes.b.user_down(U2, T0 + 2)
        assert await nodes.c.presence([U1, U2, U3]) == {
            U1: PresenceInfo("Ann", "online", T0), U2: PresenceInfo("Bob", "offline", T0 + 2)}
        assert await nodes.c.presence([]) == {}

    # ---- membership ----------------------------------------------------------------------
    async def test_the_first_node_to_hold_a_user_in_a_room_adds_them(self, nodes: Nodes) -> None:
        assert await nodes.a.add_member(R1, U1) is True
        assert await nodes.b.add_member(R1, U1) is False
        assert await nodes.a.add_member(R1, U1) is False  # idempotent per node
        assert await nodes.a.add_member(R2, U1) is True  # rooms are independent
        assert await nodes.c.members(R1) == [U1]

    async def test_a_member_leaves_only_when_the_last_node_lets_go(self, nodes: Nodes) -> None:
        await nodes.a.add_member(R1, U1)
        await nodes.b.add_member(R1, U1)
        assert await nodes.a.remove_member(R1, U1) is False
        assert await nodes.c.members(R1) == [U1]
        assert await nodes.c.rooms_of(U1) == {R1}
        assert await nodes.b.remove_member(R1, U1) is True
        assert await nodes.c.members(R1) == []
        assert await nodes.c.rooms_of(U1) == set()

    async def test_remove_member_from_a_node_that_does_not_hold_them_changes_nothing(
            self, nodes: Nodes) -> None:
        await nodes.a.add_member(R1, U1)
        assert await nodes.c.remove_member(R1, U1) is False
        assert await nodes.b.members(R1) == [U1]
        assert await nodes.b.rooms_of(U1) == {R1}

    async def test_removing_a_member_the_directory_forgot_is_the_last(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        # Redis restarted empty, and U1 left R1 on node a before a told it again: nobody
        # else holds U1 there, so the leave is announced.
        await nodes.a.add_member(R1, U1)
        await nodes.a.add_member(R2, U1)
        await backend.forget_all()
        assert await nodes.a.heartbeat(T0 + 1) is True
        await nodes.b.add_member(R2, U1)  # b told it again first: U1 is in R2 through b
        assert await nodes.a.remove_member(R1, U1) is True
        assert await nodes.a.remove_member(R2, U1) is False
        assert await nodes.c.members(R1) == [] and await nodes.c.members(R2) == [U1]
        assert await nodes.c.rooms_of(U1) == {R2}

    async def test_members_lists_the_users_of_every_node_once_sorted(self, nodes: Nodes) -> None:
        await nodes.a.add_member(R1, U2)
        await nodes.b.add_member(R1, U3)
        await nodes.c.add_member(R1, U1)
        await nodes.a.add_member(R1, U1)
        for node in nodes.all:
            assert await node.members(R1) == [U1, U2, U3]

    async def test_rooms_of_lists_the_rooms_a_user_is_in_on_any_node(self, nodes: Nodes) -> None:
        await nodes.a.add_member(R1, U1)
        await nodes.b.add_member(R2, U1)
        await nodes.b.add_member(R3, U2)
        assert await nodes.c.rooms_of(U1) == {R1, R2}
        assert await nodes.c.rooms_of(U2) == {R3}

    async def test_an_empty_room_has_no_members_and_a_stranger_no_rooms(self, nodes: Nodes) -> None:
        assert await nodes.a.members(R1) == []
        assert await nodes.a.rooms_of(U1) == set()

    # ---- atomic decisions -----------------------------------------------------------------
    async def test_concurrent_add_member_from_two_nodes_is_first_exactly_once(
            self, nodes: Nodes) -> None:
        calls = [(nodes.a if i % 2 else nodes.b).add_member(R1, U1) for i in range(50)]
        firsts = await asyncio.gather(*calls)
        assert firsts.count(True) == 1
        assert await nodes.c.members(R1) == [U1]

    async def test_concurrent_remove_member_by_its_two_holders_is_last_exactly_once(
            self, nodes: Nodes) -> None:
        for round_ in range(20):
            room = RoomId(f"room{round_}")
            await nodes.a.add_member(room, U1)
            await nodes.b.add_member(room, U1)
            lasts = await asyncio.gather(nodes.a.remove_member(room, U1),
                                         nodes.b.remove_member(room, U1))
            assert sorted(lasts) == [False, True]
            assert await nodes.c.members(room) == []

    async def test_concurrent_user_up_from_two_nodes_is_first_exactly_once(
            self, nodes: Nodes) -> None:
        calls = [(nodes.a if i % 2 else nodes.b).user_up(U1, "Ann", T0) for i in range(50)]
        firsts = await asyncio.gather(*calls)
        assert firsts.count(True) == 1

    async def test_concurrent_user_down_by_its_two_holders_is_last_exactly_once(
            self, nodes: Nodes) -> None:
        for round_ in range(20):
            now = T0 + 10 * round_
            await nodes.a.user_up(U1, "Ann", now)
            await nodes.b.user_up(U1, "Ann", now)
            lasts = await asyncio.gather(nodes.a.user_down(U1, now + 1),
                                         nodes.b.user_down(U1, now + 1))
            assert sorted(lasts) == [False, True]

    # ---- dead nodes ------------------------------------------------------------------------
    async def test_a_node_silent_past_the_ttl_is_reaped_its_users_leave_and_go_offline(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.add_member(R1, U1)
        await nodes.a.add_member(R2, U1)
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)  # a stopped
        gone = by_user(await nodes.b.reap(now, now))
        assert set(gone) == {U1}
        d = gone[U1]
        assert (d.username, left(d), d.rooms_before, d.went_offline, d.last_seen_ms) == (
            "Ann", [R1, R2], [R1, R2], True, now)
        assert await nodes.c.members(R1) == []
        assert await nodes.c.rooms_of(U1) == set()
        assert await nodes.c.is_online(U1) is False
        assert await status(nodes.c, U1) == PresenceInfo("Ann", "offline", now)

    async def test_a_heartbeat_says_whether_the_directory_had_forgotten_the_node(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        fresh = backend.make("node-d", TTL)
        await fresh.start()
        try:
            assert await fresh.heartbeat(T0) is True  # never seen before
            assert await fresh.heartbeat(T0 + 1) is False
            await nodes.a.reap(T0 + 1, T0 + 1)  # a sees fresh's last heartbeat
            await nodes.heartbeat(T0 + TTL + 2, nodes.a)
            await nodes.a.reap(T0 + TTL + 2, T0 + TTL + 2)  # fresh was silent past the TTL
            assert await fresh.heartbeat(T0 + TTL + 3) is True  # reaped: tell it again
        finally:
            await fresh.close()

    async def test_a_node_is_not_reaped_before_its_ttl_has_passed(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.add_member(R1, U1)
        await nodes.heartbeat(T0 + TTL - 1, nodes.b)
        assert await nodes.b.reap(T0 + TTL - 1, T0 + TTL - 1) == []
        assert await nodes.c.members(R1) == [U1]
        assert await nodes.c.is_online(U1) is True

    async def test_a_node_that_keeps_heartbeating_is_never_reaped(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.add_member(R1, U1)
        for step in range(1, 21):  # ten TTLs, a heartbeat every half TTL
            now = T0 + step * TTL // 2
            await nodes.heartbeat(now)
            assert await nodes.b.reap(now, now) == []
            assert await nodes.c.reap(now, now) == []
        assert await nodes.c.members(R1) == [U1]
        assert await nodes.c.is_online(U1) is True

    async def test_a_node_whose_wall_clock_is_far_behind_is_not_reaped_while_it_heartbeats(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        for step in range(1, 21):  # a's clock is a hundred TTLs behind the others'
            now = T0 + step * TTL // 2
            await nodes.a.heartbeat(now - 100 * TTL)
            await nodes.heartbeat(now, nodes.b, nodes.c)
            assert await nodes.b.reap(now, now) == []
        assert await nodes.c.is_online(U1) is True

    async def test_a_dead_node_whose_wall_clock_was_ahead_is_reaped_all_the_same(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.heartbeat(T0 + 100 * TTL)  # its last, from a clock far ahead
        await nodes.b.reap(T0 + 1, T0 + 1)
        now = T0 + TTL + 2
        await nodes.heartbeat(now, nodes.b, nodes.c)
        assert set(by_user(await nodes.b.reap(now, now))) == {U1}

    async def test_a_step_of_the_reapers_wall_clock_reaps_nobody(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        stepped = T0 + 100 * TTL  # an hour of NTP correction, say; no time has passed
        await nodes.heartbeat(stepped, nodes.b)
        assert await nodes.b.reap(stepped, T0 + 1) == []
        assert await nodes.c.is_online(U1) is True

    async def test_the_ttl_counts_from_when_the_reaper_saw_the_last_heartbeat(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.heartbeat(T0 + TTL // 2)  # its last
        seen = T0 + TTL // 2 + 100  # b reads it a little later
        assert await nodes.b.reap(seen, seen) == []
        assert await nodes.b.reap(seen + TTL - 1, seen + TTL - 1) == []
        assert set(by_user(await nodes.b.reap(seen + TTL, seen + TTL))) == {U1}

    async def test_the_numbers_of_the_nodes_are_listed_until_they_are_reaped(
            self, nodes: Nodes) -> None:
        for number, node in enumerate(nodes.all, start=101):
            node.number = number
            await node.heartbeat(T0 + 1)
        assert await nodes.c.live_numbers() == {101, 102, 103}
        await nodes.b.reap(T0 + 1, T0 + 1)
        now = T0 + 1 + TTL
        await nodes.heartbeat(now, nodes.b, nodes.c)  # a stopped
        assert await nodes.c.live_numbers() == {101, 102, 103}  # dead, not reaped yet
        await nodes.b.reap(now, now)
        assert await nodes.c.live_numbers() == {102, 103}

    async def test_a_node_never_reaps_itself(self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        assert await nodes.a.reap(T0 + 10 * TTL, T0 + 10 * TTL) == []
        assert await nodes.b.is_online(U1) is True

    async def test_two_nodes_reaping_at_once_release_a_dead_nodes_holdings_once(
            self, nodes: Nodes) -> None:
        for user, name in ((U1, "Ann"), (U2, "Bob")):
            await nodes.a.user_up(user, name, T0)
            await nodes.a.add_member(R1, user)
        await nodes.a.add_member(R2, U2)
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)
        seen_by_b, seen_by_c = await asyncio.gather(nodes.b.reap(now, now),
                                                    nodes.c.reap(now, now))
        gone = by_user(seen_by_b + seen_by_c)  # nobody twice
        assert {u: (left(d), d.went_offline) for u, d in gone.items()} == {
            U1: ([R1], True), U2: ([R1, R2], True)}
        later = now + TTL
        await nodes.heartbeat(later, nodes.b, nodes.c)
        assert await nodes.b.reap(later, later) == []
        assert await nodes.c.reap(later, later) == []

    async def test_a_user_also_held_by_a_live_node_only_leaves_the_rooms_the_dead_node_held(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.add_member(R1, U1)
        await nodes.a.add_member(R2, U1)
        await nodes.b.user_up(U1, "Ann", T0)
        await nodes.b.add_member(R1, U1)
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)
        gone = by_user(await nodes.c.reap(now, now))
        assert set(gone) == {U1}
        assert (left(gone[U1]), gone[U1].rooms_before, gone[U1].went_offline) == (
            [R2], [R1, R2], False)
        assert await nodes.b.members(R1) == [U1]
        assert await nodes.b.members(R2) == []
        assert await nodes.b.is_online(U1) is True
        assert (await status(nodes.b, U1) or PresenceInfo("", "", 0)).status == "online"

    async def test_a_user_held_elsewhere_in_every_room_does_not_depart_at_all(
            self, nodes: Nodes) -> None:
        for node in (nodes.a, nodes.b):
            await node.user_up(U1, "Ann", T0)
            await node.add_member(R1, U1)
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)
        assert await nodes.c.reap(now, now) == []
        assert await nodes.c.members(R1) == [U1]

    async def test_a_user_in_their_grace_period_on_the_dead_node_goes_offline(
            self, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.add_member(R1, U1)
        await nodes.a.user_idle(U1)
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)
        gone = by_user(await nodes.b.reap(now, now))
        assert (left(gone[U1]), gone[U1].went_offline) == ([R1], True)
        assert await status(nodes.c, U1) == PresenceInfo("Ann", "offline", now)

    async def test_departures_say_who_left_which_rooms_and_who_went_offline(
            self, nodes: Nodes) -> None:
        # On the dead node a: u1 in r1 (only there); u2 in r1 and r2 but also on b in r2;
        # u3 only in a room (a membership lingering after their presence moved to c).
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.add_member(R1, U1)
        await nodes.a.user_up(U2, "Bob", T0)
        await nodes.a.add_member(R1, U2)
        await nodes.a.add_member(R2, U2)
        await nodes.b.user_up(U2, "Bob", T0)
        await nodes.b.add_member(R2, U2)
        await nodes.c.user_up(U3, "Cy", T0)
        await nodes.a.add_member(R3, U3)
        now = T0 + 5 * TTL
        await nodes.heartbeat(now, nodes.b, nodes.c)
        gone = by_user(await nodes.b.reap(now, now))
        summary = {u: (d.username, left(d), d.rooms_before, d.went_offline)
                   for u, d in gone.items()}
        assert summary == {
            U1: ("Ann", [R1], [R1], True),
            U2: ("Bob", [R1], [R1, R2], False),
            U3: ("Cy", [R3], [R3], False),
        }
        assert gone[U1].last_seen_ms == now
        assert await nodes.c.members(R1) == []
        assert await nodes.c.members(R2) == [U2]
        assert await nodes.c.is_online(U3) is True

    async def test_a_dead_node_that_held_nothing_causes_no_departures(self, nodes: Nodes) -> None:
        await nodes.b.user_up(U1, "Ann", T0)
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b)
        assert await nodes.b.reap(now, now) == []  # a and c are dead, holding nothing
        assert await nodes.b.is_online(U1) is True

    # ---- calls: one live call per user ---------------------------------------------------
    @staticmethod
    def call(call_id: str, caller: UserId, callee: UserId, home: Directory) -> CallInfo:
        return CallInfo(call_id, caller, callee, 7, home.node_id)

    async def test_a_call_claims_both_parties(self, nodes: Nodes) -> None:
        c1 = self.call("c1", U1, U2, nodes.a)
        assert (await nodes.a.claim_call(c1)).outcome == "ok"
        assert await nodes.b.call_of(U1) == c1
        assert await nodes.c.call_of(U2) == c1
        assert await nodes.b.call_info("c1") == c1

    async def test_a_call_id_in_use_is_taken(self, nodes: Nodes) -> None:
        await nodes.a.claim_call(self.call("c1", U1, U2, nodes.a))
        assert (await nodes.b.claim_call(self.call("c1", U3, UserId("u4"), nodes.b))
                ).outcome == "taken"
        assert await nodes.b.call_of(U3) is None

    async def test_a_caller_in_a_call_or_a_busy_callee_is_refused_with_that_call(
            self, nodes: Nodes) -> None:
        c1 = self.call("c1", U1, U2, nodes.a)
        await nodes.a.claim_call(c1)
        mine = await nodes.b.claim_call(self.call("c2", U2, U3, nodes.b))
        assert (mine.outcome, mine.other) == ("caller_busy", c1)
        theirs = await nodes.b.claim_call(self.call("c3", U3, U1, nodes.b))
        assert (theirs.outcome, theirs.other) == ("callee_busy", c1)
        assert await nodes.c.call_of(U3) is None

    async def test_two_nodes_claiming_calls_with_one_user_at_once_get_one_ok(
            self, nodes: Nodes) -> None:
        claims = await asyncio.gather(*(
            (nodes.a if i % 2 else nodes.b).claim_call(
                self.call(f"c{i}", UserId(f"caller{i}"), U1, nodes.a if i % 2 else nodes.b))
            for i in range(20)))
        assert sorted(c.outcome for c in claims).count("ok") == 1

    async def test_a_released_call_frees_both_parties_and_is_gone(self, nodes: Nodes) -> None:
        await nodes.a.claim_call(self.call("c1", U1, U2, nodes.a))
        await nodes.a.set_call_state("c1", "active", T0 + 5)
        assert (await nodes.b.call_info("c1")).state == "active"  # type: ignore[union-attr]
        await nodes.b.release_call("c1", ended=True)
        await nodes.b.release_call("c1", ended=True)  # idempotent
        assert await nodes.c.call_info("c1") is None
        assert await nodes.c.call_of(U1) is None
        assert (await nodes.c.claim_call(self.call("c2", U2, U1, nodes.c))).outcome == "ok"

    async def test_a_reaped_call_carries_what_its_call_log_record_needs(
            self, nodes: Nodes) -> None:
        # The reaper writes the record the dead home would have: when the call started and
        # was answered, its room, and when the home was last heard from.
        await nodes.a.claim_call(CallInfo("c1", U1, U2, 7, nodes.a.node_id,
                                          started_at=T0 + 10, room="r1"))
        await nodes.a.claim_call(CallInfo("c2", U3, UserId("u4"), 7, nodes.a.node_id,
                                          started_at=T0 + 20))
        await nodes.a.set_call_state("c1", "active", T0 + 30)
        await nodes.a.heartbeat(T0 + 40)  # its last
        await nodes.b.reap_calls(T0 + 40, T0 + 40)
        now = T0 + 40 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)
        reaped = {c.call_id: c for c in await nodes.b.reap_calls(now, now)}
        assert (reaped["c1"].started_at, reaped["c1"].room, reaped["c1"].answered_at,
                reaped["c1"].home_seen) == (T0 + 10, "r1", T0 + 30, T0 + 40)
        assert (reaped["c2"].started_at, reaped["c2"].room, reaped["c2"].answered_at,
                reaped["c2"].home_seen) == (T0 + 20, None, None, T0 + 40)

    async def test_the_calls_of_a_dead_home_node_are_released_once(self, nodes: Nodes) -> None:
        c1 = self.call("c1", U1, U2, nodes.a)
        await nodes.a.claim_call(c1)
        await nodes.b.claim_call(self.call("c2", U3, UserId("u4"), nodes.b))
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)  # a stopped
        first, second = await asyncio.gather(nodes.b.reap_calls(now, now),
                                             nodes.c.reap_calls(now, now))
        assert sorted([c.call_id for c in first + second]) == ["c1"]
        assert await nodes.b.call_of(U1) is None
        assert await nodes.b.call_of(U3) is not None  # b is alive: its call stays

    async def test_an_ended_calls_id_is_not_claimed_again_from_any_node(
            self, nodes: Nodes) -> None:
        # A late offer naming it (an ICE restart racing the hang-up) must not start a new
        # call under the old id: its home refuses it, and so does every other node.
        await nodes.a.claim_call(self.call("c1", U1, U2, nodes.a))
        await nodes.a.release_call("c1", ended=True)
        assert await nodes.b.claim_call(self.call("c1", U2, U1, nodes.b)) == Claim("ended")
        assert await nodes.c.claim_call(self.call("c1", U3, U1, nodes.c)) == Claim("ended")
        assert await nodes.b.call_of(U1) is None and await nodes.b.call_of(U2) is None
        assert (await nodes.b.claim_call(self.call("c2", U2, U1, nodes.b))).outcome == "ok"

    async def test_a_busy_calls_id_is_not_claimed_again_from_any_node(
            self, nodes: Nodes) -> None:
        # Refused busy at its claim, the call ends on its home at once (`busy`): the
        # directory never held it, and its release still keeps the id from a new call.
        await nodes.a.claim_call(self.call("c1", U1, U2, nodes.a))
        busy = await nodes.b.claim_call(self.call("c2", U3, U2, nodes.b))
        assert busy.outcome == "callee_busy"
        await nodes.b.release_call("c2", ended=True)
        assert await nodes.c.claim_call(self.call("c2", U1, U3, nodes.c)) == Claim("ended")
        assert await nodes.c.call_of(U1) is not None  # c1 untouched
        await nodes.a.release_call("c1", ended=True)
        assert await nodes.c.claim_call(self.call("c2", U1, U3, nodes.c)) == Claim("ended")

    async def test_a_call_released_before_it_took_place_leaves_its_id_free(
            self, nodes: Nodes) -> None:
        # The rules refused it right after its claim: it never rang, so a retry may use it.
        await nodes.a.claim_call(self.call("c1", U1, U2, nodes.a))
        await nodes.a.release_call("c1", ended=False)
        assert (await nodes.b.claim_call(self.call("c1", U1, U2, nodes.b))).outcome == "ok"

    async def test_a_reaped_calls_id_is_not_claimed_again(self, nodes: Nodes) -> None:
        await nodes.a.claim_call(self.call("c1", U1, U2, nodes.a))
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)  # a stopped
        assert [c.call_id for c in await nodes.b.reap_calls(now, now)] == ["c1"]
        assert await nodes.c.claim_call(self.call("c1", U1, U2, nodes.c)) == Claim("ended")

    async def test_telling_again_writes_back_users_idle_users_and_members(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        await nodes.a.user_up(U1, "Ann", T0)
        await nodes.a.add_member(R1, U1)
        await backend.forget_all()
        assert await nodes.a.heartbeat(T0 + 1) is True
        # b told it again first: U2, away, in R2 through b.
        await nodes.b.user_up(U2, "Bo", T0 + 2)
        await nodes.b.add_member(R2, U2)
        await nodes.b.set_status(U2, "away", T0 + 2)
        told = await nodes.a.tell_again([(U1, "Ann"), (U2, "Bo")], [(U3, "Cy")],
                                        [(R1, U1), (R2, U2), (R1, U3), (R2, U3)], T0 + 3)
        assert told.came_online == {U1: set()}  # U2 was b's already
        assert told.joined == [(R1, U1, "online"), (R1, U3, "online"), (R2, U3, "online")]
        assert await nodes.c.is_online(U1) and await nodes.c.is_online(U2)
        assert not await nodes.c.is_online(U3)  # held in a grace period, not reachable
        assert await nodes.c.members(R1) == [U1, U3] and await nodes.c.members(R2) == [U2, U3]
        assert await status(nodes.c, U2) == PresenceInfo("Bo", "away", T0 + 3)
        assert await status(nodes.c, U3) == PresenceInfo("Cy", "online", T0 + 3)
        # Told again: every write is idempotent, and nothing is new.
        again = await nodes.a.tell_again([(U1, "Ann")], [(U3, "Cy")], [(R1, U1)], T0 + 4)
        assert (again.came_online, again.joined) == ({}, [])
        assert await nodes.a.user_down(U3, T0 + 5) is True  # a was U3's last holder

    async def test_telling_again_about_many_users_writes_back_each(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        many = [(UserId(f"user{i}"), f"User {i}") for i in range(1_234)]
        members = [(RoomId(f"room{i % 3}"), user) for i, (user, _) in enumerate(many)]
        await backend.forget_all()
        await nodes.a.heartbeat(T0 + 1)
        told = await nodes.a.tell_again(many, [], members, T0 + 2)
        assert told.came_online == {user: set() for user, _ in many}
        assert told.joined == [(room, user, "online") for room, user in members]
        assert len(await nodes.c.members(RoomId("room1"))) == 411
        assert await status(nodes.c, UserId("user1233")) == PresenceInfo("User 1233", "online",
                                                                         T0 + 2)

    async def test_telling_again_gathers_its_answer_in_the_one_it_is_given(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        # A write-back that breaks off still says what it wrote before (features/system.py).
        await backend.forget_all()
        await nodes.a.heartbeat(T0 + 1)
        told = ToldAgain(came_online={U3: set()})
        answer = await nodes.a.tell_again([(U1, "Ann")], [], [(R1, U1)], T0 + 2, told)
        assert answer is told
        assert told.came_online == {U3: set(), U1: set()}
        assert told.joined == [(R1, U1, "online")]

    async def test_ended_call_ids_written_back_are_not_claimed_again(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        # Redis restarted empty after c1 ended on its home a: a tells it again (ADR 0072).
        await nodes.a.claim_call(self.call("c1", U1, U2, nodes.a))
        await nodes.a.release_call("c1", ended=True)
        await backend.forget_all()
        assert await nodes.a.heartbeat(T0 + 1) is True
        assert (await nodes.b.claim_call(self.call("c9", U1, U2, nodes.b))).outcome == "ok"
        await nodes.a.remember_ended({"c1": 30_000, "c9": 30_000, "c0": 0}, T0 + 1)
        assert await nodes.b.claim_call(self.call("c1", U2, U3, nodes.b)) == Claim("ended")
        assert (await nodes.c.call_info("c9")) is not None  # a live call keeps its id
        await nodes.b.release_call("c9", ended=False)
        assert (await nodes.c.claim_call(self.call("c9", U2, U3, nodes.c))).outcome == "ok"
        assert (await nodes.c.claim_call(self.call("c0", U1, UserId("u4"), nodes.c))
                ).outcome == "ok"  # nothing left of its retention

    # ---- calls written back to a directory that forgot them (ADR 0071) ------------------
    @staticmethod
    def live(call_id: str, caller: UserId, callee: UserId, home: Directory,
             answered_at: int | None = None) -> CallInfo:
        """A call as its home holds it: what `restore_call` is given."""
        return CallInfo(call_id, caller, callee, 7, home.node_id,
                        state="ringing" if answered_at is None else "active",
                        started_at=T0 + 10, room="r1", answered_at=answered_at)

    async def test_a_written_back_call_is_as_its_claim_and_answer_wrote_it(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        await nodes.a.claim_call(CallInfo("c1", U1, U2, 7, nodes.a.node_id,
                                          started_at=T0 + 10, room="r1"))
        await nodes.a.set_call_state("c1", "active", T0 + 20)
        claimed = await nodes.b.call_info("c1")
        await backend.forget_all()
        assert await nodes.a.heartbeat(T0 + 30) is True
        assert await nodes.b.call_of(U1) is None  # forgotten: U1 could be called again
        live = self.live("c1", U1, U2, nodes.a, answered_at=T0 + 20)
        assert await nodes.a.restore_call(live) == Restore("restored")
        assert await nodes.a.restore_call(live) == Restore("restored")  # idempotent
        assert await nodes.b.call_info("c1") == claimed
        assert await nodes.b.call_of(U1) == await nodes.c.call_of(U2) == claimed
        busy = await nodes.b.claim_call(self.call("c2", U3, U1, nodes.b))
        assert (busy.outcome, busy.other) == ("callee_busy", claimed)

    async def test_a_written_back_ringing_call_has_no_answer_time(self, nodes: Nodes) -> None:
        await nodes.a.restore_call(self.live("c1", U1, U2, nodes.a))
        info = await nodes.b.call_info("c1")
        assert info is not None and (info.state, info.answered_at) == ("ringing", None)
        await nodes.a.set_call_state("c1", "active", T0 + 20)  # answered later, as usual
        info = await nodes.b.call_info("c1")
        assert info is not None and (info.state, info.answered_at) == ("active", T0 + 20)

    async def test_a_written_back_call_is_held_by_its_home_and_reaped_with_it(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        await nodes.a.claim_call(self.live("c1", U1, U2, nodes.a))
        await backend.forget_all()
        await nodes.heartbeat(T0 + 1)
        await nodes.a.restore_call(self.live("c1", U1, U2, nodes.a))
        await nodes.b.reap_calls(T0 + 1, T0 + 1)
        now = T0 + 1 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)  # a stopped
        reaped = await nodes.b.reap_calls(now, now)
        assert [(c.call_id, c.home_seen) for c in reaped] == [("c1", T0 + 1)]
        assert await nodes.c.call_of(U1) is None and await nodes.c.call_of(U2) is None

    async def test_writing_back_keeps_a_partys_newer_call_and_fills_them_in_once_it_ends(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        await nodes.a.claim_call(self.live("c1", U1, U2, nodes.a))
        await backend.forget_all()
        await nodes.heartbeat(T0 + 1)
        # Before a writes it back, U3 calls U1 through b: the directory knew no call of U1.
        newer = self.call("c2", U3, U1, nodes.b)
        assert (await nodes.b.claim_call(newer)).outcome == "ok"
        live = self.live("c1", U1, U2, nodes.a)
        assert await nodes.a.restore_call(live) == Restore("restored", (U1,))
        assert await nodes.c.call_of(U1) == newer  # kept
        assert await call_id_of(nodes.c, U2) == "c1"
        await nodes.b.release_call("c2", ended=True)
        assert await nodes.c.call_of(U1) is None
        assert await nodes.a.restore_call(live) == Restore("restored")
        assert await call_id_of(nodes.c, U1) == "c1"

    async def test_a_write_back_racing_a_claim_leaves_each_user_in_one_call(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        for i in range(10):
            caller = UserId(f"caller{i}")
            live = self.live(f"w{i}", U1, U2, nodes.a)
            restored, claim = await asyncio.gather(
                nodes.a.restore_call(live),
                nodes.b.claim_call(self.call(f"n{i}", caller, U1, nodes.b)))
            if claim.outcome == "ok":  # the claim went first: U1 stays in it
                assert restored == Restore("restored", (U1,))
                assert await call_id_of(nodes.c, U1) == f"n{i}"
            else:
                assert (restored, claim.outcome) == (Restore("restored"), "callee_busy")
                assert await call_id_of(nodes.c, U1) == f"w{i}"
            assert await call_id_of(nodes.c, U2) == f"w{i}"
            await nodes.a.release_call(f"w{i}", ended=True)
            await nodes.b.release_call(f"n{i}", ended=True)

    async def test_writing_back_many_calls_answers_for_each_in_order(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        await backend.forget_all()
        await nodes.heartbeat(T0 + 1)
        x, y, z = UserId("x"), UserId("y"), UserId("z")
        await nodes.b.claim_call(self.call("t1", x, y, nodes.b))  # takes a's callId t1
        await nodes.b.claim_call(self.call("n1", z, U3, nodes.b))  # a newer call of U3's
        many = [self.live(f"m{i}", UserId(f"p{i}"), UserId(f"q{i}"), nodes.a)
                for i in range(1_100)]
        calls = [self.live("t1", U1, U2, nodes.a), self.live("w1", U3, UserId("u4"), nodes.a),
                 *many]
        assert await nodes.a.restore_calls(calls) == [
            Restore("taken"), Restore("restored", (U3,)), *[Restore("restored")] * 1_100]
        assert await call_id_of(nodes.c, U3) == "n1"
        assert await call_id_of(nodes.c, UserId("u4")) == "w1"
        assert await call_id_of(nodes.c, UserId("q1099")) == "m1099"
        assert await nodes.c.call_of(U1) is None

    async def test_a_call_reaped_with_its_home_is_not_written_back(self, nodes: Nodes) -> None:
        await nodes.a.claim_call(self.live("c1", U1, U2, nodes.a))
        now = T0 + TTL + 1
        await nodes.heartbeat(now, nodes.b, nodes.c)  # a is cut off
        assert [c.call_id for c in await nodes.b.reap_calls(now, now)] == ["c1"]
        await nodes.b.reap(now, now)
        assert await nodes.a.heartbeat(now + 1) is True  # a is back: it was forgotten
        assert await nodes.a.restore_call(self.live("c1", U1, U2, nodes.a)) == Restore("reaped")
        assert await nodes.c.call_info("c1") is None
        assert await nodes.c.call_of(U1) is None and await nodes.c.call_of(U2) is None

    async def test_a_call_id_that_is_another_calls_is_not_written_back(
            self, backend: DirectoryBackend, nodes: Nodes) -> None:
        await backend.forget_all()
        await nodes.heartbeat(T0 + 1)
        other = self.call("c1", U3, UserId("u4"), nodes.b)
        await nodes.b.claim_call(other)
        assert await nodes.a.restore_call(self.live("c1", U1, U2, nodes.a)) == Restore("taken")
        assert await nodes.c.call_info("c1") == other
        assert await nodes.c.call_of(U1) is None and await nodes.c.call_of(U2) is None
