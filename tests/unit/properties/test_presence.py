"""Properties of PresenceTracker (core/presence.py; PROTOCOL §Presence) under random
sequences of connects, disconnects, status changes and time passing.

A user is online iff they have an open connection or are within the grace period since
their last one closed; once the grace has passed with no connection, `expire` makes them
offline (once, with `lastSeen` = the moment the last connection closed).

`now` is the monotonic clock, which the grace counts on; `wall` is the wall clock, which
`lastSeen` carries and which steps back and forth at random without moving the grace.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hubbub.core.presence import PresenceTracker
from hubbub.errors import ProtocolError
from hubbub.ids import UserId

T0 = 1_700_000_000_000
USERS = [UserId(u) for u in ("ann", "bob", "carl")]
users = st.sampled_from(USERS)
steps = st.integers(min_value=0, max_value=3000)
MONO0 = 5_000_000


class PresenceMachine(RuleBasedStateMachine):
    @initialize(grace=st.integers(min_value=0, max_value=5000))
    def setup(self, grace: int) -> None:
        self.grace = grace
        self.p = PresenceTracker(grace)
        self.now = MONO0  # monotonic
        self.wall = T0
        self.conns = dict.fromkeys(USERS, 0)
        # The moment each user's last connection closed (None: never, or since reconnected),
        # on the monotonic clock, and on the wall clock (their `lastSeen`).
        self.closed_at: dict[UserId, int | None] = dict.fromkeys(USERS)
        self.closed_wall: dict[UserId, int | None] = dict.fromkeys(USERS)
        self.tracked: set[UserId] = set()  # the model: who the tracker should still know

    def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        try:
            return fn(*args)
        except ProtocolError:  # the only exception a rule may raise
            return None

    def _pass(self, dt: int) -> None:
        self.now += dt
        self.wall += dt

    @rule(dt=st.integers(min_value=-3_600_000, max_value=3_600_000))
    def the_system_clock_steps(self, dt: int) -> None:
        self.wall += dt

    @rule(user=users, dt=steps)
    def connect(self, user: UserId, dt: int) -> None:
        self._pass(dt)
        came_online = self._call(self.p.connect, user, user.title(), self.wall)
        assert came_online is (user not in self.tracked)
        self.tracked.add(user)
        self.conns[user] += 1
        self.closed_at[user] = None

    @precondition(lambda self: any(self.conns.values()))
    @rule(data=st.data(), dt=steps)
    def disconnect(self, data: st.DataObject, dt: int) -> None:
        user = data.draw(st.sampled_from([u for u in USERS if self.conns[u]]))
        self._pass(dt)
        self._call(self.p.disconnect, user, self.wall, self.now)
        self.conns[user] -= 1
        if not self.conns[user]:
            self.closed_at[user] = self.now
            self.closed_wall[user] = self.wall

    @rule(user=users)
    def disconnect_an_unknown_user_is_a_no_op(self, user: UserId) -> None:
        if user not in self.tracked:
            self._call(self.p.disconnect, user, self.wall, self.now)
            assert self.p.get(user) is None

    @rule(dt=steps)
    def time_passes_and_expire_runs(self, dt: int) -> None:
        self._pass(dt)
        gone = self._call(self.p.expire, self.now) or []
        gone_users = [u for u, _ in gone]
        assert len(gone_users) == len(set(gone_users)), "a user went offline twice"
        for user, pres in gone:
            assert user in self.tracked
            assert self.conns[user] == 0, "a user with an open connection went offline"
            closed = self.closed_at[user]
            assert closed is not None and self.now >= closed + self.grace
            assert pres.last_seen_ms == self.closed_wall[user]
            self.tracked.discard(user)
        # Everyone past the grace with no connection is gone now; everyone else is not.
        for user in USERS:
            closed = self.closed_at[user]
            due = self.conns[user] == 0 and closed is not None and self.now >= closed + self.grace
            if due:
                self.tracked.discard(user)
            assert (self.p.get(user) is not None) is (user in self.tracked), user

    @invariant()
    def online_iff_connected_or_within_grace(self) -> None:
        for user in USERS:
            closed = self.closed_at[user]
            within_grace = closed is not None and self.now < closed + self.grace
            if self.conns[user] or within_grace:
                assert self.p.get(user) is not None, user
            if user not in self.tracked:
                assert self.p.get(user) is None
        assert self.p.online_count() == len(self.tracked)

    @invariant()
    def the_timer_wakes_up_no_later_than_any_grace_end(self) -> None:
        ends = [c + self.grace for u, c in self.closed_at.items()
                if c is not None and u in self.tracked and not self.conns[u]]
        if ends:
            nxt = self.p.next_deadline()
            assert nxt is not None and nxt <= min(ends)


PresenceMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                             deadline=None)
TestPresence = PresenceMachine.TestCase
