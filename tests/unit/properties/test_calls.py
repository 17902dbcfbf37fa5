"""Properties of Calls (core/calls.py; PROTOCOL §Calls) under random sequences of offers,
answers, ICE, rejects, hang-ups, connections opening and closing, and time passing.

- Nothing raises but ProtocolError.
- A user is in at most one live (ringing or active) call.
- Each side of a call has at most one owner, an open connection of that party; a ringing
  callee side has none. Once owned, a side's other connections are refused.
- Every live call ends: a ringing one by the ring timeout, any by an explicit end or its
  party's last connection closing.
- Anything a third user sends about a call is refused (`forbidden`) and changes nothing.

`now` is the monotonic clock, which the ring timeout counts on; `wall` is the wall clock,
which the call records carry and which steps back and forth at random.
"""

import copy
import itertools

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hubbub.core.calls import ENDED_RETENTION_MS, Call, Calls, CallState
from hubbub.core.effects import Effects, ToConns, ToUser
from hubbub.errors import ProtocolError
from hubbub.ids import ConnId, RoomId, UserId
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import SessionDescription

T0 = 1_700_000_000_000
MONO0 = 5_000_000
RING_MS = 30_000
USERS = [UserId(u) for u in ("ann", "bob", "carl", "eve")]
OFFER = SessionDescription(type="offer", sdp="v=0 offer")
ANSWER = SessionDescription(type="answer", sdp="v=0 answer")
CANDIDATE: dict[str, object] = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host"}
users = st.sampled_from(USERS)
steps = st.one_of(st.integers(min_value=0, max_value=2_000),
                  st.sampled_from([RING_MS // 2, RING_MS, ENDED_RETENTION_MS]))


def refused(fn, **kwargs) -> ProtocolError | None:  # type: ignore[no-untyped-def]
    """Run a transition; its ProtocolError if refused. Any other exception fails the test."""
    try:
        fn(**kwargs)
    except ProtocolError as exc:
        return exc
    return None


class CallsMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.calls = Calls(RING_MS)
        self.now = MONO0  # monotonic
        self.wall = T0
        self.ids = itertools.count(1)
        self.open: dict[UserId, list[ConnId]] = {u: [] for u in USERS}
        for user in USERS:
            self._open(user)
        self.call_ids: list[str] = []

    def _open(self, user: UserId) -> ConnId:
        conn = ConnId(next(self.ids))
        self.open[user].append(conn)
        return conn

    def _conn(self, data: st.DataObject, user: UserId) -> ConnId:
        return data.draw(st.sampled_from(self.open[user]))

    def _call(self, data: st.DataObject) -> Call | None:
        """One of the calls started so far, unless it ended long enough ago to be forgotten."""
        return self.calls.calls.get(data.draw(st.sampled_from(self.call_ids)))

    # ---- connections and time -----------------------------------------------------------
    @rule(user=users)
    def a_connection_opens(self, user: UserId) -> None:
        self._open(user)

    @precondition(lambda self: any(self.open.values()))
    @rule(data=st.data())
    def a_connection_closes(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from([u for u in USERS if self.open[u]]))
        conn = self._conn(data, user)
        self.open[user].remove(conn)
        live = self.calls.live_call_of(user)
        self.calls.connection_closed(user, conn, len(self.open[user]), self.wall, self.now)
        if live is not None and not self.open[user]:
            assert live.state is CallState.ENDED and live.end_reason == "disconnected"

    @rule(dt=steps)
    def time_passes(self, dt: int) -> None:
        self.now += dt
        self.wall += dt
        if self.calls.expire(self.wall, self.now):
            event("a ringing call timed out")
        for call in self.calls.calls.values():
            if call.state is CallState.RINGING:
                assert self.now < call.started_mono + RING_MS, "a call rang past its timeout"

    @rule(dt=st.integers(min_value=-3_600_000, max_value=3_600_000))
    def the_system_clock_steps(self, dt: int) -> None:
        self.wall += dt

    # ---- the parties ----------------------------------------------------------------------
    @rule(data=st.data(), caller=users, callee=users,
          busy=st.sampled_from([False, False, False, True]))
    def offer_a_new_call(self, data: st.DataObject, caller: UserId, callee: UserId,
                         busy: bool) -> None:
        if not self.open[caller]:
            return
        call_id = f"c{len(self.call_ids) + 1}"
        conn = self._conn(data, caller)
        before = self.calls.live_call_of(caller)
        err = refused(self.calls.offer, call_id=call_id, caller=caller, conn=conn,
                      callee=callee, room=RoomId("r"), sdp=OFFER, candidate=None,
                      now_ms=self.wall, mono_ms=self.now, callee_busy=busy)
        if err is None:
            self.call_ids.append(call_id)
            call = self.calls.calls[call_id]
            assert call.state is (CallState.ENDED if call.end_reason == "busy"
                                  else CallState.RINGING)
        else:
            assert call_id not in self.calls.calls
            assert before is not None or caller == callee, err

    @precondition(lambda self: self.call_ids)
    @rule(data=st.data(), kind=st.sampled_from(["offer", "answer", "ice"]),
          user=users)
    def a_party_sends_a_frame(self, data: st.DataObject, kind: str, user: UserId) -> None:
        call = self._call(data)
        if call is None or not call.is_party(user) or not self.open[user]:
            return
        conn = self._conn(data, user)
        state, owner = call.state, call.owner_of(user)
        peer_owner = call.owner_of(call.peer_of(user))
        effects: Effects = []

        def run() -> None:
            nonlocal effects
            if kind == "offer":
                effects = self.calls.offer(call_id=call.call_id, caller=user, conn=conn,
                                           callee=call.peer_of(user), room=call.room,
                                           sdp=OFFER, candidate=None, now_ms=self.wall,
                                           mono_ms=self.now)
            elif kind == "answer":
                effects = self.calls.answer(call_id=call.call_id, user=user, conn=conn,
                                            sdp=ANSWER, now_ms=self.wall, mono_ms=self.now)
            else:
                effects = self.calls.ice(call_id=call.call_id, user=user, conn=conn,
                                         candidate=CANDIDATE)

        err = refused(run)
        if state is CallState.ACTIVE and owner is not None and owner != conn:
            assert err is not None and err.code is ErrorCode.FORBIDDEN, \
                "a connection that does not own its side spoke for it"
        if err is None and state is CallState.ACTIVE and peer_owner is not None:
            assert effects and all(isinstance(e, ToConns) and e.conns == (peer_owner,)
                                   for e in effects), "an answered call leaked to a non-owner"
        if err is None and kind == "answer" and state is CallState.RINGING:
            assert call.state is CallState.ACTIVE and call.callee_conn == conn
            event("a call was answered")

    @precondition(lambda self: any(c.state is CallState.RINGING
                                   for c in self.calls.calls.values()))
    @rule(data=st.data())
    def the_callee_answers_a_ringing_call(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from([c for c in self.calls.calls.values()
                                          if c.state is CallState.RINGING]))
        if not self.open[call.callee]:
            return
        conn = self._conn(data, call.callee)
        caller_owner = call.caller_conn
        effects = self.calls.answer(call_id=call.call_id, user=call.callee, conn=conn,
                                    sdp=ANSWER, now_ms=self.wall, mono_ms=self.now)
        assert call.state is CallState.ACTIVE and call.callee_conn == conn
        # The caller's owner (every device of the caller's while unowned) hears the answer;
        # the callee's other devices stop ringing.
        to_caller, to_callee = effects
        if caller_owner is None:
            assert isinstance(to_caller, ToUser) and to_caller.user == call.caller
        else:
            assert isinstance(to_caller, ToConns) and to_caller.conns == (caller_owner,)
        assert isinstance(to_callee, ToUser) and to_callee.user == call.callee
        assert to_callee.exclude_conn == conn and to_callee.type == "call_end"
        event("a call was answered")

    @precondition(lambda self: self.call_ids)
    @rule(data=st.data(), user=users, hang_up=st.booleans())
    def a_party_ends_the_call(self, data: st.DataObject, user: UserId, hang_up: bool) -> None:
        call = self._call(data)
        if call is None or not call.is_party(user):
            return
        was_live = call.state is not CallState.ENDED
        if hang_up:
            err = refused(self.calls.hang_up, call_id=call.call_id, user=user, reason=None,
                          now_ms=self.wall, mono_ms=self.now)
        else:
            err = refused(self.calls.reject, call_id=call.call_id, user=user, reason=None,
                          now_ms=self.wall, mono_ms=self.now)
        if err is None:
            assert call.state is CallState.ENDED
        if hang_up and was_live and call.call_id in self.calls.calls:
            assert err is None and call.state is CallState.ENDED

    @precondition(lambda self: self.call_ids)
    @rule(data=st.data())
    def a_settled_ice_candidate_is_what_ice_would_send(self, data: st.DataObject) -> None:
        """`settled_ice` (the server's hot path) changes nothing, and when it answers,
        `ice` agrees: the same single connection, the same event, no state change."""
        active = [c for c in self.calls.calls.values() if c.state is CallState.ACTIVE]
        call = data.draw(st.sampled_from(active)) if active else self._call(data)
        if call is None:
            return
        # Mostly a party, from the connection owning its side, to the other party.
        user = data.draw(st.sampled_from([call.caller, call.callee, *USERS]))
        owner = call.owner_of(user)
        conn = data.draw(st.sampled_from(
            ([owner] if owner is not None else []) + self.open[user]
            + [c for conns in self.open.values() for c in conns] + [ConnId(999_999)]))
        to = data.draw(st.sampled_from([call.peer_of(user), *USERS]))
        before = copy.copy(call)
        settled = self.calls.settled_ice(call.call_id, user, conn, to, CANDIDATE)
        for field in Call.__slots__:  # type: ignore[attr-defined]
            assert getattr(call, field) == getattr(before, field), field
        if settled is None:
            return
        event("an ice candidate was settled")
        assert to == call.peer_of(user), "settled a frame naming the wrong peer"
        effects = self.calls.ice(call_id=call.call_id, user=user, conn=conn,
                                 candidate=CANDIDATE)
        assert effects == [ToConns((settled[0],), "webrtc", settled[1])]
        for field in Call.__slots__:  # type: ignore[attr-defined]
            assert getattr(call, field) == getattr(before, field), field

    # ---- anyone else ------------------------------------------------------------------------
    @precondition(lambda self: self.call_ids)
    @rule(data=st.data(), user=users,
          kind=st.sampled_from(["offer", "answer", "ice", "reject", "hang_up"]))
    def a_third_user_is_refused(self, data: st.DataObject, user: UserId, kind: str) -> None:
        live = [c for c in self.calls.calls.values() if c.state is not CallState.ENDED]
        call = data.draw(st.sampled_from(live)) if live else self._call(data)
        if call is None or call.is_party(user):
            return
        before = copy.copy(call)
        conn = self.open[user][0] if self.open[user] else ConnId(999_999)
        args: dict[str, object] = {"call_id": call.call_id, "now_ms": self.wall,
                                   "mono_ms": self.now}
        if kind == "offer":
            err = refused(self.calls.offer, caller=user, conn=conn, callee=call.caller,
                          room=call.room, sdp=OFFER, candidate=None, **args)
        elif kind == "answer":
            err = refused(self.calls.answer, user=user, conn=conn, sdp=ANSWER, **args)
        elif kind == "ice":
            err = refused(self.calls.ice, call_id=call.call_id, user=user, conn=conn,
                          candidate=CANDIDATE)
        elif kind == "reject":
            err = refused(self.calls.reject, user=user, reason=None, **args)
        else:
            err = refused(self.calls.hang_up, user=user, reason=None, **args)
        assert err is not None and err.code is ErrorCode.FORBIDDEN, (kind, err)
        event(f"a third user was refused ({call.state})")
        for field in Call.__slots__:  # type: ignore[attr-defined]
            assert getattr(call, field) == getattr(before, field), field

    # ---- invariants -------------------------------------------------------------------------
    @invariant()
    def a_user_is_in_at_most_one_live_call(self) -> None:
        for user in USERS:
            live = [c for c in self.calls.calls.values()
                    if c.state is not CallState.ENDED and c.is_party(user)]
            assert len(live) <= 1, (user, [c.call_id for c in live])
            assert self.calls.live_call_of(user) is (live[0] if live else None)

    @invariant()
    def each_side_has_at_most_one_owner_an_open_connection_of_that_party(self) -> None:
        for call in self.calls.calls.values():
            if call.state is CallState.ENDED:
                continue
            if call.caller_conn is not None:
                assert call.caller_conn in self.open[call.caller]
            if call.callee_conn is not None:
                assert call.callee_conn in self.open[call.callee]
            if call.state is CallState.RINGING:
                assert call.callee_conn is None

    def teardown(self) -> None:
        # Every live call ends once its parties' connections close (or it times out).
        if not hasattr(self, "calls"):
            return
        for user in USERS:
            while self.open[user]:
                conn = self.open[user].pop()
                self.calls.connection_closed(user, conn, len(self.open[user]), self.wall,
                                             self.now)
        assert self.calls.live_count() == 0
        assert all(self.calls.live_call_of(u) is None for u in USERS)


CallsMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=50,
                                          deadline=None)
TestCalls = CallsMachine.TestCase


def test_to_user_effects_name_a_party() -> None:
    # A sanity check of the helpers above: a fresh offer rings only the callee.
    calls = Calls(RING_MS)
    effects = calls.offer(call_id="x", caller=USERS[0], conn=ConnId(1), callee=USERS[1],
                          room=None, sdp=OFFER, candidate=None, now_ms=T0, mono_ms=MONO0)
    assert [(type(e), getattr(e, "user", None)) for e in effects] == [(ToUser, USERS[1])]
