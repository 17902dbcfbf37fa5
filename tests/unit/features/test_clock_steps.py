"""A step of the system clock moves no deadline (docs/decisions/0090): the rules count
time on the monotonic clock, and only the instants that leave the process (`lastSeen`,
`...At`, call records) and a token's `exp` follow the wall clock.

`step` sets the fake wall clock alone, as NTP or an operator sets the system clock, and
runs the tick; `advance` is time passing (both clocks).
"""

import time
from typing import Any

from hubbub.core.calls import CallState
from hubbub.core.effects import LogCall
from hubbub.features.auth import mint_token
from hubbub.features.node import Node
from hubbub.features.system import open_session
from hubbub.ids import RoomId, UserId
from hubbub.protocol.codes import CloseCode
from tests.support.clock import FakeClock
from tests.support.node import advance, asend, connect, disconnect, error_code, status_of, step
from tests.unit.features.conftest import MakeNode
from tests.unit.features.helpers import closes, in_room, join, received

HOUR_MS = 3_600_000
RING_MS = 30_000  # --ring-timeout default
GRACE_MS = 5000  # --presence-grace default
TYPING_MS = 3000  # --typing-timeout default
AUTH_MS = 10_000  # --auth-timeout default
SDP = {"type": "offer", "sdp": "v=0"}
SECRET = "unit-test-secret-of-32-bytes-ok!"


async def ringing(node: Node) -> tuple[Any, Any]:
    ann, bob = await in_room(node, "ann", "bob")
    effects = await asend(node, ann, "webrtc", {"kind": "offer", "to": "bob", "callId": "c1",
                                                "roomId": "r1", "sdp": SDP}, id="o")
    assert len(received(node, effects, bob, "webrtc")) == 1, effects
    return ann, bob


# ---- ring timeout ---------------------------------------------------------------------


async def test_a_wall_clock_step_forward_of_30_s_does_not_end_a_ringing_call(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ringing(node)
    effects = step(node, clock, RING_MS) + step(node, clock, HOUR_MS)
    assert received(node, effects, ann, "call_end") == []
    assert received(node, effects, bob, "call_end") == []
    assert node.calls.calls["c1"].state is CallState.RINGING


async def test_a_ringing_call_times_out_after_the_ring_timeout_of_monotonic_time(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await ringing(node)
    started = clock.now
    clock.step(-HOUR_MS)  # a step back does not hold it either
    assert received(node, advance(node, clock, RING_MS - 1), ann, "call_end") == []
    effects = advance(node, clock, 1)
    end = {"callId": "c1", "by": "bob", "reason": "timeout"}
    assert received(node, effects, ann, "call_end") == [end]
    assert received(node, effects, bob, "call_end") == [end]
    # The call log keeps the wall clock's instants, as they were read.
    [record] = [e.record for e in effects if isinstance(e, LogCall)]
    assert (record.started_at, record.ended_at) == (started, clock.now)


async def test_call_durations_count_on_the_monotonic_clock(node: Node, clock: FakeClock) -> None:
    ann, bob = await ringing(node)
    clock.advance(2000)
    clock.step(-HOUR_MS)
    await asend(node, bob, "webrtc", {"kind": "answer", "to": "ann", "callId": "c1",
                                      "sdp": {"type": "answer", "sdp": "v=0"}})
    clock.advance(5000)
    clock.step(2 * HOUR_MS)
    await asend(node, ann, "call_end", {"callId": "c1"})
    assert (node.calls.stats.ring_ms_total, node.calls.stats.talk_ms_total) == (2000, 5000)


# ---- presence grace, lingering rooms -----------------------------------------------------


async def test_a_wall_clock_step_back_of_an_hour_does_not_keep_a_departed_user_online(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = connect(node, "ann", "Ann"), connect(node, "bob")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    closed_at = clock.now
    disconnect(node, ann)
    assert step(node, clock, -HOUR_MS) == []
    assert advance(node, clock, GRACE_MS - 1) == []
    effects = advance(node, clock, 1)
    # `lastSeen` is the wall clock when the connection closed, before the step.
    assert received(node, effects, bob, "presence") == [
        {"userId": "ann", "username": "Ann", "status": "offline", "lastSeen": closed_at}]
    assert [p["userId"] for p in received(node, effects, bob, "leave_room")] == ["ann"]
    assert status_of(node, "ann") == "offline"


async def test_a_wall_clock_step_forward_does_not_end_the_presence_grace(
    node: Node, clock: FakeClock
) -> None:
    ann, _bob = await in_room(node, "ann", "bob")
    disconnect(node, ann)
    assert step(node, clock, HOUR_MS) == []
    assert status_of(node, "ann") == "online"
    assert node.rooms.is_member(RoomId("r1"), UserId("ann"))


async def test_a_lingering_membership_ends_after_the_grace_whatever_the_wall_clock_does(
    node: Node, clock: FakeClock
) -> None:
    ann_phone, _ann_laptop, bob = connect(node, "ann"), connect(node, "ann"), connect(node, "bob")
    await join(node, ann_phone, "r1")
    await join(node, bob, "r1")
    disconnect(node, ann_phone)
    assert step(node, clock, HOUR_MS) == []  # forward: the membership still lingers
    assert node.rooms.is_member(RoomId("r1"), UserId("ann"))
    assert step(node, clock, -2 * HOUR_MS) == []
    assert advance(node, clock, GRACE_MS - 1) == []
    effects = advance(node, clock, 1)
    assert [p["userId"] for p in received(node, effects, bob, "leave_room")] == ["ann"]
    assert not node.rooms.is_member(RoomId("r1"), UserId("ann"))


# ---- typing -------------------------------------------------------------------------------


async def typing(node: Node, s: Any, on: bool) -> Any:
    return await asend(node, s, "typing", {"roomId": "r1", "isTyping": on})


async def test_a_wall_clock_step_back_of_an_hour_does_not_mute_typing_true(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    await typing(node, ann, True)
    await typing(node, ann, False)
    clock.step(-HOUR_MS)
    clock.advance(1000)  # the throttle's second
    effects = await typing(node, ann, True)
    assert [p["isTyping"] for p in received(node, effects, bob, "typing")] == [True]


async def test_typing_expires_after_the_timeout_whatever_the_wall_clock_does(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = await in_room(node, "ann", "bob")
    await typing(node, ann, True)
    assert step(node, clock, HOUR_MS) == []  # forward: not ended early
    clock.step(-2 * HOUR_MS)
    assert advance(node, clock, TYPING_MS - 1) == []  # back: not held
    effects = advance(node, clock, 1)
    assert [p["isTyping"] for p in received(node, effects, bob, "typing")] == [False]


# ---- rate limits -----------------------------------------------------------------------


async def test_a_wall_clock_step_forward_does_not_refill_a_rate_limit(
    make: MakeNode, clock: FakeClock
) -> None:
    node = await make(rate_limit=5.0)  # a burst of 10 frames
    ann = connect(node, "ann")  # its auth frame was the first
    for _ in range(9):
        assert error_code(await asend(node, ann, "ping")) is None
    clock.step(HOUR_MS)
    assert error_code(await asend(node, ann, "ping")) == "rate_limited"
    clock.advance(200)  # one frame's worth at 5/s
    assert error_code(await asend(node, ann, "ping")) is None


# ---- authentication deadline, token expiry -------------------------------------------------


async def test_a_wall_clock_step_forward_does_not_cut_the_authentication_deadline(
    node: Node, clock: FakeClock
) -> None:
    s = open_session(node)
    assert closes(step(node, clock, HOUR_MS)) == []
    assert closes(advance(node, clock, AUTH_MS - 1)) == []
    assert [(c.conn, c.code) for c in closes(advance(node, clock, 1))] == [
        (s.conn, CloseCode.AUTH_FAILED)]


async def test_a_wall_clock_step_back_does_not_hold_the_authentication_deadline(
    node: Node, clock: FakeClock
) -> None:
    s = open_session(node)
    assert closes(step(node, clock, -HOUR_MS)) == []
    effects = advance(node, clock, AUTH_MS)
    assert [(c.conn, c.code, c.reason) for c in closes(effects)] == [
        (s.conn, CloseCode.AUTH_FAILED, "authentication timeout")]


async def jwt_conn(make: MakeNode, clock: FakeClock, ttl_s: int) -> tuple[Node, Any]:
    node = await make(clock=clock, jwt_secret=SECRET)
    s = open_session(node)
    token = mint_token(SECRET, "ann", now_s=clock.now // 1000, ttl_s=ttl_s)
    effects = await asend(node, s, "auth", {"token": token})
    assert effects and getattr(effects[0], "type", None) == "welcome", effects
    return node, s


def real_time_clock() -> FakeClock:
    # PyJWT checks `exp` at authentication against the system clock: start at real time.
    return FakeClock(start_ms=time.time_ns() // 1_000_000_000 * 1000)


async def test_a_token_expires_at_exp_by_the_wall_clock(make: MakeNode) -> None:
    clock = real_time_clock()
    node, s = await jwt_conn(make, clock, ttl_s=60)
    assert closes(step(node, clock, 60_000 - 1)) == []
    # No monotonic time passed: `exp` is an instant on the wall clock (ADR 0014).
    effects = step(node, clock, 1)
    assert [(c.conn, c.code, c.reason) for c in closes(effects)] == [
        (s.conn, CloseCode.AUTH_FAILED, "token expired")]


async def test_a_token_is_not_expired_while_the_wall_clock_is_before_exp(
    make: MakeNode,
) -> None:
    # After a step back, the wall clock reaches `exp` later; the token is judged as it
    # would be at authentication, against the wall clock.
    clock = real_time_clock()
    node, s = await jwt_conn(make, clock, ttl_s=60)
    clock.step(-HOUR_MS)
    assert closes(advance(node, clock, 60_000)) == []
    assert closes(advance(node, clock, HOUR_MS - 1)) == []
    assert [c.conn for c in closes(advance(node, clock, 1))] == [s.conn]
