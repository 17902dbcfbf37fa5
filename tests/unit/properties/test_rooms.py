"""Properties of RoomRegistry (core/rooms.py) under random joins, leaves, dropped
connections (detach: memberships linger) and purges.

- conns(room) is always the union of its members' connections.
- purge_lingering removes exactly the memberships no connection holds, nothing else.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hubbub.core.rooms import RoomRegistry
from hubbub.ids import ConnId, RoomId, UserId

ROOMS = [RoomId(r) for r in ("r1", "r2", "r3")]
OWNER = {ConnId(1): UserId("ann"), ConnId(2): UserId("ann"), ConnId(3): UserId("bob"),
         ConnId(4): UserId("bob"), ConnId(5): UserId("carl")}
USERS = sorted(set(OWNER.values()))
rooms = st.sampled_from(ROOMS)
conns = st.sampled_from(sorted(OWNER))


class RoomsMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.reg = RoomRegistry()
        # The model: room -> user -> conns; an empty set is a lingering membership.
        self.model: dict[RoomId, dict[UserId, set[ConnId]]] = {r: {} for r in ROOMS}

    @rule(room=rooms, conn=conns)
    def join(self, room: RoomId, conn: ConnId) -> None:
        user = OWNER[conn]
        assert self.reg.join(room, user, conn) is (user not in self.model[room])
        self.model[room].setdefault(user, set()).add(conn)

    @rule(room=rooms, conn=conns)
    def leave(self, room: RoomId, conn: ConnId) -> None:
        user = OWNER[conn]
        members = self.model[room]
        expected = user in members and not (members[user] - {conn})
        assert self.reg.leave(room, user, conn) is expected
        if user in members:
            members[user].discard(conn)
            if not members[user]:
                del members[user]

    @rule(conn=conns, extra=st.lists(rooms, max_size=2))
    def a_connection_drops(self, conn: ConnId, extra: list[RoomId]) -> None:
        user = OWNER[conn]
        joined = [r for r in ROOMS if conn in self.model[r].get(user, ())]
        self.reg.detach([*joined, *extra], user, conn)
        for r in ROOMS:
            self.model[r].get(user, set()).discard(conn)

    @rule(user=st.sampled_from(USERS))
    def purge_lingering(self, user: UserId) -> None:
        lingering = {r for r in ROOMS if user in self.model[r] and not self.model[r][user]}
        assert set(self.reg.purge_lingering(user)) == lingering
        for r in lingering:
            del self.model[r][user]

    @invariant()
    def membership_matches_the_model(self) -> None:
        for r in ROOMS:
            assert self.reg.members(r) == self.model[r]
            for user in USERS:
                assert self.reg.is_member(r, user) is (user in self.model[r])
        for user in USERS:
            assert self.reg.rooms_of(user) == {r for r in ROOMS if user in self.model[r]}
        assert set(self.reg) == {r for r in ROOMS if self.model[r]}
        assert self.reg.room_count() == sum(1 for r in ROOMS if self.model[r])

    @invariant()
    def conns_of_a_room_is_the_union_of_its_members_conns(self) -> None:
        for r in ROOMS:
            union: set[ConnId] = set().union(*self.reg.members(r).values())
            assert self.reg.conns(r) == union


RoomsMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50,
                                          deadline=None)
TestRooms = RoomsMachine.TestCase
