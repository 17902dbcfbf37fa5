"""The call state machine (core/calls.py; PROTOCOL §Calls), one transition per test.

Time is passed in as ints (`now_ms`, `mono_ms`); nothing sleeps. Effects are resolved to the
connections that would receive them with a fixed map of users to connections:
ann has A1 and A2, bob has B1 and B2, carl has C1.
"""

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from hubbub.core.calls import ENDED_RETENTION_MS, Calls, CallState
from hubbub.core.effects import Effects, LogCall, ToConns, ToUser
from hubbub.errors import ProtocolError
from hubbub.ids import ConnId, RoomId, UserId
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import SessionDescription

T0 = 1_700_000_000_000
M0 = 5_000_000  # the monotonic clock, for the tests that move it apart from the wall clock
RING_MS = 30_000
ANN, BOB, CARL = UserId("ann"), UserId("bob"), UserId("carl")
A1, A2, B1, B2, C1 = ConnId(1), ConnId(2), ConnId(11), ConnId(12), ConnId(21)
CONNS: dict[UserId, tuple[ConnId, ...]] = {ANN: (A1, A2), BOB: (B1, B2), CARL: (C1,)}
ALL = (A1, A2, B1, B2, C1)
ROOM = RoomId("r1")
OFFER = SessionDescription(type="offer", sdp="v=0 offer")
ANSWER = SessionDescription(type="answer", sdp="v=0 answer")
CANDIDATE: dict[str, object] = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
                                "sdpMid": "0", "sdpMLineIndex": 0}
Inbox = dict[ConnId, list[tuple[str, dict[str, Any]]]]


# ---- helpers -----------------------------------------------------------------------------


def at(ms: int) -> dict[str, int]:
    """Both clocks at `ms`: most tests here move the wall and the monotonic clock together
    (tests/unit/features/test_clock_steps.py and the property tests move them apart)."""
    return {"now_ms": ms, "mono_ms": ms}


def inbox(effects: Effects) -> Inbox:
    """What each connection receives: (type, wire payload), in order."""
    out: Inbox = {c: [] for c in ALL}
    for e in effects:
        if isinstance(e, ToUser):
            targets: tuple[ConnId, ...] = tuple(c for c in CONNS[e.user] if c != e.exclude_conn)
        elif isinstance(e, ToConns):
            targets = e.conns
        else:
            continue
        for conn in targets:
            out[conn].append((e.type, msgspec.to_builtins(e.payload)))
    return out


def only(effects: Effects, *conns: ConnId) -> list[tuple[str, dict[str, Any]]]:
    """The frames these connections receive, asserting every other connection gets none
    and that all of `conns` get the same frames."""
    box = inbox(effects)
    for c in ALL:
        if c not in conns:
            assert box[c] == [], f"conn {c} should receive nothing, got {box[c]}"
    first = box[conns[0]]
    for c in conns[1:]:
        assert box[c] == first, f"conn {c} got {box[c]}, conn {conns[0]} got {first}"
    return first


def refused(code: ErrorCode, action: Callable[[], object]) -> str:
    with pytest.raises(ProtocolError) as info:
        action()
    assert info.value.code == code, info.value.message
    return info.value.message


def offer(calls: Calls, *, caller: UserId = ANN, conn: ConnId = A1, callee: UserId = BOB,
          call_id: str = "c1", room: RoomId | None = None,
          candidate: dict[str, object] | None = None, now_ms: int = T0) -> Effects:
    return calls.offer(call_id=call_id, caller=caller, conn=conn, callee=callee, room=room,
                       sdp=OFFER, candidate=candidate, **at(now_ms))


def answer(calls: Calls, *, user: UserId = BOB, conn: ConnId = B1, call_id: str = "c1",
           now_ms: int = T0 + 1000) -> Effects:
    return calls.answer(call_id=call_id, user=user, conn=conn, sdp=ANSWER, **at(now_ms))


def ice(calls: Calls, user: UserId, conn: ConnId, call_id: str = "c1") -> Effects:
    return calls.ice(call_id=call_id, user=user, conn=conn, candidate=CANDIDATE)


def ringing() -> Calls:
    """ann (A1) rings bob: call c1, ringing on B1 and B2."""
    calls = Calls(RING_MS)
    offer(calls)
    return calls


def active() -> Calls:
    """ann (A1) called bob; bob answered on B1 at T0 + 1000."""
    calls = ringing()
    answer(calls)
    return calls


def webrtc(kind: str, frm: UserId, to: UserId, **extra: Any) -> tuple[str, dict[str, Any]]:
    return "webrtc", {"kind": kind, "from": frm, "to": to, "callId": "c1", **extra}


def ended(by: UserId, reason: str, call_id: str = "c1") -> dict[str, Any]:
    return {"callId": call_id, "by": by, "reason": reason}


ICE = {"candidate": CANDIDATE}
SDP_OFFER = {"sdp": {"type": "offer", "sdp": "v=0 offer"}}
SDP_ANSWER = {"sdp": {"type": "answer", "sdp": "v=0 answer"}}


# ---- offer: a call starts ringing --------------------------------------------------------


def test_an_offer_with_a_new_call_id_starts_a_ringing_call() -> None:
    calls = ringing()
    call = calls.calls["c1"]
    assert (call.state, call.caller, call.callee, call.caller_conn, call.callee_conn) == (
        CallState.RINGING, ANN, BOB, A1, None)
    assert calls.live_call_of(ANN) is call and calls.live_call_of(BOB) is call


def test_an_offer_rings_every_connection_of_the_callee() -> None:
    effects = offer(Calls(RING_MS))
    assert [(type(e), getattr(e, "user", None)) for e in effects] == [(ToUser, BOB)]
    assert only(effects, B1, B2) == [webrtc("offer", ANN, BOB, **SDP_OFFER)]


def test_an_offer_carries_its_room_and_candidate_unchanged() -> None:
    effects = offer(Calls(RING_MS), room=ROOM, candidate=CANDIDATE)
    assert only(effects, B1, B2) == [webrtc("offer", ANN, BOB, roomId="r1", **SDP_OFFER, **ICE)]


def test_calling_yourself_is_a_bad_request() -> None:
    refused(ErrorCode.BAD_REQUEST, lambda: offer(Calls(RING_MS), callee=ANN))


def test_a_re_offer_while_ringing_rings_every_callee_connection_again() -> None:
    calls = ringing()
    effects = offer(calls, now_ms=T0 + 500)
    assert only(effects, B1, B2) == [webrtc("offer", ANN, BOB, **SDP_OFFER)]
    assert calls.calls["c1"].state is CallState.RINGING
    assert calls.stats.started == 1


def test_a_re_offer_from_another_connection_of_the_caller_is_forbidden() -> None:
    calls = ringing()
    refused(ErrorCode.FORBIDDEN, lambda: offer(calls, conn=A2))


def test_a_re_offer_addressed_to_someone_other_than_the_callee_is_a_bad_request() -> None:
    calls = ringing()
    refused(ErrorCode.BAD_REQUEST, lambda: offer(calls, callee=CARL))


def test_a_re_offer_addressed_to_the_caller_themself_is_a_bad_request() -> None:
    calls = ringing()
    refused(ErrorCode.BAD_REQUEST, lambda: offer(calls, callee=ANN))


def test_the_callee_cannot_offer_on_a_ringing_call() -> None:
    calls = ringing()
    message = refused(ErrorCode.CONFLICT,
                      lambda: offer(calls, caller=BOB, conn=B1, callee=ANN))
    assert "ringing" in message


# ---- answer: first answer wins -----------------------------------------------------------


def test_the_callees_answer_makes_the_call_active_and_binds_the_answering_connection() -> None:
    calls = active()
    call = calls.calls["c1"]
    assert (call.state, call.callee_conn, call.answered_at_ms) == (
        CallState.ACTIVE, B1, T0 + 1000)


def test_the_answer_goes_only_to_the_callers_owning_connection() -> None:
    effects = answer(ringing())
    relays = [e for e in effects if isinstance(e, ToConns) and e.type == "webrtc"]
    assert [r.conns for r in relays] == [(A1,)]
    box = inbox(effects)
    assert box[A1] == [webrtc("answer", BOB, ANN, **SDP_ANSWER)]
    assert box[A2] == [] and box[B1] == [] and box[C1] == []


def test_the_callees_other_connections_hear_answered_elsewhere() -> None:
    box = inbox(answer(ringing()))
    assert box[B2] == [("call_end", ended(BOB, "answered_elsewhere"))]
    assert box[B1] == []


def test_an_answer_from_the_second_callee_device_after_the_first_is_forbidden() -> None:
    calls = active()
    refused(ErrorCode.FORBIDDEN, lambda: answer(calls, conn=B2, now_ms=T0 + 2000))
    assert calls.calls["c1"].callee_conn == B1


def test_the_caller_cannot_answer_a_ringing_call() -> None:
    calls = ringing()
    refused(ErrorCode.FORBIDDEN, lambda: answer(calls, user=ANN, conn=A1))
    assert calls.calls["c1"].state is CallState.RINGING


# ---- ice while ringing -------------------------------------------------------------------


def test_caller_ice_while_ringing_goes_to_every_callee_connection_unchanged() -> None:
    effects = ice(ringing(), ANN, A1)
    assert only(effects, B1, B2) == [webrtc("ice_candidate", ANN, BOB, **ICE)]


def test_caller_ice_while_ringing_from_a_non_owning_connection_is_forbidden() -> None:
    calls = ringing()
    refused(ErrorCode.FORBIDDEN, lambda: ice(calls, ANN, A2))


def test_callee_ice_while_ringing_goes_to_the_callers_owning_connection() -> None:
    effects = ice(ringing(), BOB, B2)
    assert only(effects, A1) == [webrtc("ice_candidate", BOB, ANN, **ICE)]


def test_callee_ice_while_ringing_claims_nothing_so_another_device_may_answer() -> None:
    calls = ringing()
    ice(calls, BOB, B2)
    answer(calls, conn=B1)
    assert calls.calls["c1"].callee_conn == B1


# ---- after the answer: only the two owners -----------------------------------------------


@pytest.mark.parametrize(("sender", "conn", "receiver"), [(ANN, A1, B1), (BOB, B1, A1)])
def test_ice_in_an_active_call_passes_only_between_the_owners(
    sender: UserId, conn: ConnId, receiver: ConnId
) -> None:
    effects = ice(active(), sender, conn)
    peer = BOB if sender == ANN else ANN
    assert only(effects, receiver) == [webrtc("ice_candidate", sender, peer, **ICE)]


@pytest.mark.parametrize(("sender", "conn", "receiver"), [(ANN, A1, B1), (BOB, B1, A1)])
def test_a_renegotiation_offer_and_answer_pass_only_between_the_owners(
    sender: UserId, conn: ConnId, receiver: ConnId
) -> None:
    calls = active()
    peer, peer_conn = (BOB, B1) if sender == ANN else (ANN, A1)
    effects = offer(calls, caller=sender, conn=conn, callee=peer, now_ms=T0 + 5000)
    assert only(effects, receiver) == [webrtc("offer", sender, peer, **SDP_OFFER)]
    effects = answer(calls, user=peer, conn=peer_conn, now_ms=T0 + 5100)
    assert only(effects, conn) == [webrtc("answer", peer, sender, **SDP_ANSWER)]
    assert calls.calls["c1"].state is CallState.ACTIVE
    assert calls.calls["c1"].answered_at_ms == T0 + 1000  # renegotiation is not an answer
    assert calls.stats.answered == 1


@pytest.mark.parametrize(("user", "conn"), [(ANN, A2), (BOB, B2)])
def test_a_non_owning_connection_of_a_party_is_forbidden_after_the_answer(
    user: UserId, conn: ConnId
) -> None:
    calls = active()
    peer = BOB if user == ANN else ANN
    refused(ErrorCode.FORBIDDEN, lambda: ice(calls, user, conn))
    refused(ErrorCode.FORBIDDEN, lambda: offer(calls, caller=user, conn=conn, callee=peer))
    refused(ErrorCode.FORBIDDEN, lambda: answer(calls, user=user, conn=conn))


# ---- who may act on a call at all --------------------------------------------------------


def _third_party_actions(calls: Calls) -> dict[str, Callable[[], object]]:
    return {
        "offer": lambda: offer(calls, caller=CARL, conn=C1, callee=BOB),
        "answer": lambda: answer(calls, user=CARL, conn=C1),
        "ice_candidate": lambda: ice(calls, CARL, C1),
        "call_reject": lambda: calls.reject(call_id="c1", user=CARL, reason=None, **at(T0)),
        "call_end": lambda: calls.hang_up(call_id="c1", user=CARL, reason=None, **at(T0)),
    }


@pytest.mark.parametrize("kind", ["offer", "answer", "ice_candidate", "call_reject", "call_end"])
@pytest.mark.parametrize("setup", [ringing, active, "ended"])
def test_a_third_user_is_forbidden_on_every_frame_type(
    kind: str, setup: Callable[[], Calls] | str
) -> None:
    if setup == "ended":
        calls = active()
        calls.hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 2000))
    else:
        assert callable(setup)
        calls = setup()
    state = calls.calls["c1"].state
    refused(ErrorCode.FORBIDDEN, _third_party_actions(calls)[kind])
    assert calls.calls["c1"].state is state


@pytest.mark.parametrize("kind", ["answer", "ice_candidate", "call_reject", "call_end"])
def test_an_unknown_call_id_is_not_found(kind: str) -> None:
    calls = ringing()
    action: Callable[[], object] = {
        "answer": lambda: answer(calls, call_id="nope"),
        "ice_candidate": lambda: ice(calls, BOB, B1, call_id="nope"),
        "call_reject": lambda: calls.reject(call_id="nope", user=BOB, reason=None, **at(T0)),
        "call_end": lambda: calls.hang_up(call_id="nope", user=BOB, reason=None, **at(T0)),
    }[kind]
    assert "nope" in refused(ErrorCode.NOT_FOUND, action)


@pytest.mark.parametrize("kind", ["offer", "answer", "ice_candidate", "call_reject", "call_end"])
def test_frames_about_an_ended_call_are_a_conflict_naming_the_state(kind: str) -> None:
    calls = active()
    calls.hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 2000))
    action: Callable[[], object] = {
        "offer": lambda: offer(calls, now_ms=T0 + 3000),
        "answer": lambda: answer(calls, now_ms=T0 + 3000),
        "ice_candidate": lambda: ice(calls, ANN, A1),
        "call_reject": lambda: calls.reject(call_id="c1", user=BOB, reason=None,
                                            **at(T0 + 3000)),
        "call_end": lambda: calls.hang_up(call_id="c1", user=BOB, reason=None,
                                          **at(T0 + 3000)),
    }[kind]
    message = refused(ErrorCode.CONFLICT, action)
    assert "ended" in message and "hangup" in message


def test_an_ended_call_is_forgotten_after_the_retention_period() -> None:
    calls = active()
    calls.hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 2000))
    calls.expire(**at(T0 + 2000 + ENDED_RETENTION_MS - 1))
    assert "c1" in calls.calls
    calls.expire(**at(T0 + 2000 + ENDED_RETENTION_MS))
    assert "c1" not in calls.calls
    refused(ErrorCode.NOT_FOUND, lambda: ice(calls, ANN, A1))


# ---- reject ------------------------------------------------------------------------------


def test_the_callee_rejects_a_ringing_call() -> None:
    calls = ringing()
    effects = calls.reject(call_id="c1", user=BOB, reason=None, **at(T0 + 800))
    box = inbox(effects)
    assert box[A1] == [("call_reject", ended(BOB, "rejected"))]
    assert box[A2] == []
    # Every ringing device of the callee stops ringing.
    assert box[B1] == box[B2] == [("call_end", ended(BOB, "rejected"))]
    call = calls.calls["c1"]
    assert (call.state, call.end_reason, call.ended_by) == (CallState.ENDED, "rejected", BOB)
    assert calls.live_call_of(ANN) is None and calls.live_call_of(BOB) is None


def test_a_reject_reason_from_the_callee_is_passed_on() -> None:
    effects = ringing().reject(call_id="c1", user=BOB, reason="in a meeting", **at(T0))
    assert inbox(effects)[A1] == [("call_reject", ended(BOB, "in a meeting"))]


def test_the_caller_cannot_reject_their_own_call() -> None:
    calls = ringing()
    refused(ErrorCode.FORBIDDEN,
            lambda: calls.reject(call_id="c1", user=ANN, reason=None, **at(T0)))
    assert calls.calls["c1"].state is CallState.RINGING


def test_an_active_call_cannot_be_rejected() -> None:
    calls = active()
    message = refused(ErrorCode.CONFLICT,
                      lambda: calls.reject(call_id="c1", user=BOB, reason=None, **at(T0)))
    assert "active" in message
    assert calls.calls["c1"].state is CallState.ACTIVE


# ---- hang up -----------------------------------------------------------------------------


def test_the_caller_hanging_up_a_ringing_call_stops_every_callee_device() -> None:
    calls = ringing()
    effects = calls.hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 500))
    assert only(effects, B1, B2) == [("call_end", ended(ANN, "hangup"))]
    assert calls.calls["c1"].end_reason == "hangup"
    assert calls.live_call_of(BOB) is None


def test_the_callee_hanging_up_a_ringing_call_tells_the_caller() -> None:
    calls = ringing()
    effects = calls.hang_up(call_id="c1", user=BOB, reason=None, **at(T0 + 500))
    box = inbox(effects)
    assert box[A1] == [("call_end", ended(BOB, "hangup"))]
    assert box[A2] == [] and box[C1] == []
    assert calls.calls["c1"].state is CallState.ENDED


def test_the_callee_hanging_up_a_ringing_call_stops_their_other_devices_ringing() -> None:
    effects = ringing().hang_up(call_id="c1", user=BOB, reason=None, **at(T0 + 500))
    box = inbox(effects)
    assert box[B1] == box[B2] == [("call_end", ended(BOB, "hangup"))]


def test_the_callee_hanging_up_an_active_call_does_not_echo_to_their_devices() -> None:
    effects = active().hang_up(call_id="c1", user=BOB, reason=None, **at(T0 + 5000))
    box = inbox(effects)
    assert box[B1] == [] and box[B2] == []


@pytest.mark.parametrize(("user", "receiver"), [(ANN, B1), (BOB, A1)])
def test_hanging_up_an_active_call_tells_only_the_other_owner(
    user: UserId, receiver: ConnId
) -> None:
    calls = active()
    effects = calls.hang_up(call_id="c1", user=user, reason=None, **at(T0 + 9000))
    assert only(effects, receiver) == [("call_end", ended(user, "hangup"))]
    call = calls.calls["c1"]
    assert (call.state, call.end_reason, call.ended_by, call.ended_at_ms) == (
        CallState.ENDED, "hangup", user, T0 + 9000)
    assert calls.live_call_of(ANN) is None and calls.live_call_of(BOB) is None


def test_the_caller_hanging_up_from_another_device_tells_the_device_that_rings() -> None:
    """ann rang bob from A1 and hangs up on A2: A1, which holds the call, hears it."""
    effects = ringing().hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 500), conn=A2)
    box = inbox(effects)
    assert box[A1] == box[B1] == box[B2] == [("call_end", ended(ANN, "hangup"))]
    assert box[A2] == [] and box[C1] == []


@pytest.mark.parametrize(("user", "device", "owner", "peer"),
                         [(ANN, A2, A1, B1), (BOB, B2, B1, A1)])
def test_hanging_up_an_active_call_from_another_device_tells_the_owning_one(
    user: UserId, device: ConnId, owner: ConnId, peer: ConnId
) -> None:
    effects = active().hang_up(call_id="c1", user=user, reason=None, **at(T0 + 9000),
                               conn=device)
    assert only(effects, owner, peer) == [("call_end", ended(user, "hangup"))]


def test_a_hang_up_reason_is_passed_on_but_the_log_says_hangup() -> None:
    calls = active()
    effects = calls.hang_up(call_id="c1", user=ANN, reason="battery", **at(T0 + 9000))
    assert only(effects, B1) == [("call_end", ended(ANN, "battery"))]
    assert calls.calls["c1"].end_reason == "hangup"


# ---- ring timeout ------------------------------------------------------------------------


def test_a_call_rings_until_the_ring_timeout() -> None:
    calls = ringing()
    assert calls.expire(**at(T0 + RING_MS - 1)) == []
    assert calls.calls["c1"].state is CallState.RINGING


def test_no_answer_within_the_ring_timeout_ends_the_call_on_both_sides() -> None:
    calls = ringing()
    box = inbox(calls.expire(**at(T0 + RING_MS)))
    assert box[A1] == [("call_end", ended(BOB, "timeout"))]
    assert box[B1] == box[B2] == [("call_end", ended(BOB, "timeout"))]
    assert box[A2] == [] and box[C1] == []
    assert calls.calls["c1"].end_reason == "timeout"
    assert calls.live_call_of(ANN) is None and calls.live_call_of(BOB) is None


def test_the_ring_timeout_counts_on_the_monotonic_clock_not_the_wall_clock() -> None:
    calls = Calls(RING_MS)
    calls.offer(call_id="c1", caller=ANN, conn=A1, callee=BOB, room=None, sdp=OFFER,
                candidate=None, now_ms=T0, mono_ms=M0)
    assert calls.expire(now_ms=T0 + RING_MS * 10, mono_ms=M0 + RING_MS - 1) == []
    assert calls.calls["c1"].state is CallState.RINGING
    assert inbox(calls.expire(now_ms=T0 - 3_600_000, mono_ms=M0 + RING_MS))[A1] == [
        ("call_end", ended(BOB, "timeout"))]
    call = calls.calls["c1"]
    assert (call.started_at_ms, call.ended_at_ms) == (T0, T0 - 3_600_000)  # as read


def test_an_answered_call_does_not_time_out() -> None:
    calls = active()
    assert calls.expire(**at(T0 + RING_MS * 3)) == []
    assert calls.calls["c1"].state is CallState.ACTIVE


def test_a_call_that_ended_while_ringing_does_not_time_out_later() -> None:
    calls = ringing()
    calls.hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 100))
    assert calls.expire(**at(T0 + RING_MS)) == []
    assert calls.calls["c1"].end_reason == "hangup"


# ---- busy, glare, one call at a time -----------------------------------------------------


def test_calling_a_user_in_an_active_call_gives_the_caller_call_reject_busy() -> None:
    calls = Calls(RING_MS)
    offer(calls, caller=CARL, conn=C1, callee=BOB, call_id="c0")
    answer(calls, call_id="c0")
    effects = offer(calls, call_id="c1", now_ms=T0 + 2000)
    assert only(effects, A1) == [("call_reject", ended(BOB, "busy"))]
    assert calls.calls["c1"].state is CallState.ENDED
    assert calls.calls["c1"].end_reason == "busy"
    assert calls.live_call_of(ANN) is None
    assert calls.live_call_of(BOB) is calls.calls["c0"]
    assert calls.calls["c0"].state is CallState.ACTIVE


def test_a_user_whose_phone_is_ringing_is_busy_too() -> None:
    calls = Calls(RING_MS)
    offer(calls, caller=CARL, conn=C1, callee=BOB, call_id="c0")
    effects = offer(calls, call_id="c1")
    assert only(effects, A1) == [("call_reject", ended(BOB, "busy"))]
    assert calls.calls["c0"].state is CallState.RINGING


def test_glare_the_second_offer_is_a_conflict_naming_the_ringing_call() -> None:
    calls = ringing()  # ann rings bob: c1
    message = refused(ErrorCode.CONFLICT, lambda: offer(
        calls, caller=BOB, conn=B1, callee=ANN, call_id="c2", now_ms=T0 + 10))
    assert "c1" in message
    assert "c2" not in calls.calls
    assert calls.calls["c1"].state is CallState.RINGING


def test_a_caller_already_in_a_call_cannot_start_another() -> None:
    calls = active()
    message = refused(ErrorCode.CONFLICT, lambda: offer(
        calls, callee=CARL, call_id="c2", now_ms=T0 + 5000))
    assert "c1" in message
    assert "c2" not in calls.calls


def test_after_a_call_ends_both_parties_may_call_again() -> None:
    calls = active()
    calls.hang_up(call_id="c1", user=BOB, reason=None, **at(T0 + 5000))
    effects = offer(calls, caller=BOB, conn=B2, callee=ANN, call_id="c2", now_ms=T0 + 6000)
    assert inbox(effects)[A1] == [("webrtc", {"kind": "offer", "from": BOB, "to": ANN,
                                              "callId": "c2", **SDP_OFFER})]


# ---- connections closing -----------------------------------------------------------------


@pytest.mark.parametrize("setup", [ringing, active])
def test_the_callers_last_connection_closing_tells_the_callee_disconnected(
    setup: Callable[[], Calls],
) -> None:
    calls = setup()
    callee_conns = (B1, B2) if calls.calls["c1"].state is CallState.RINGING else (B1,)
    effects = calls.connection_closed(ANN, A1, 0, **at(T0 + 3000))
    assert only(effects, *callee_conns) == [("call_end", ended(ANN, "disconnected"))]
    call = calls.calls["c1"]
    assert (call.state, call.end_reason, call.ended_by) == (
        CallState.ENDED, "disconnected", ANN)
    assert calls.live_call_of(BOB) is None


@pytest.mark.parametrize("setup", [ringing, active])
def test_the_callees_last_connection_closing_tells_the_caller_disconnected(
    setup: Callable[[], Calls],
) -> None:
    calls = setup()
    effects = calls.connection_closed(BOB, B1, 0, **at(T0 + 3000))
    assert only(effects, A1) == [("call_end", ended(BOB, "disconnected"))]
    assert calls.calls["c1"].end_reason == "disconnected"


def test_a_non_owning_connection_closing_changes_nothing() -> None:
    calls = active()
    assert calls.connection_closed(BOB, B2, 1, **at(T0 + 3000)) == []
    assert calls.calls["c1"].callee_conn == B1
    assert calls.calls["c1"].state is CallState.ACTIVE


def test_a_connection_closing_without_a_call_changes_nothing() -> None:
    calls = ringing()
    assert calls.connection_closed(CARL, C1, 0, **at(T0)) == []
    assert calls.calls["c1"].state is CallState.RINGING


def test_the_callers_owning_connection_closing_with_siblings_left_unbinds_the_caller_side() -> None:
    calls = ringing()
    assert calls.connection_closed(ANN, A1, 1, **at(T0 + 100)) == []
    call = calls.calls["c1"]
    assert call.state is CallState.RINGING and call.caller_conn is None
    # The answer now reaches every connection the caller has left...
    answer_box = inbox(answer(calls))
    assert answer_box[A2] == [webrtc("answer", BOB, ANN, **SDP_ANSWER)]
    # ...and the sibling that speaks next owns the caller side.
    assert only(ice(calls, ANN, A2), B1) == [webrtc("ice_candidate", ANN, BOB, **ICE)]
    assert calls.calls["c1"].caller_conn == A2


def test_the_callees_owning_connection_closing_with_siblings_left_lets_one_take_over() -> None:
    calls = active()
    assert calls.connection_closed(BOB, B1, 1, **at(T0 + 2000)) == []
    call = calls.calls["c1"]
    assert call.state is CallState.ACTIVE and call.callee_conn is None
    # Unowned: the caller's frames reach every remaining callee connection.
    assert inbox(ice(calls, ANN, A1))[B2] == [webrtc("ice_candidate", ANN, BOB, **ICE)]
    # The sibling restarts ICE with a renegotiation offer and owns the side from then on.
    effects = offer(calls, caller=BOB, conn=B2, callee=ANN, now_ms=T0 + 3000)
    assert only(effects, A1) == [webrtc("offer", BOB, ANN, **SDP_OFFER)]
    assert calls.calls["c1"].callee_conn == B2
    assert only(ice(calls, ANN, A1), B2) == [webrtc("ice_candidate", ANN, BOB, **ICE)]


# ---- stats and the call log --------------------------------------------------------------


def test_stats_count_every_outcome_with_ring_and_talk_time() -> None:
    calls = Calls(RING_MS)
    # c1: answered after 1 s, talked 9 s, hung up.
    offer(calls, call_id="c1")
    answer(calls, call_id="c1", now_ms=T0 + 1000)
    calls.hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 10_000))
    # c2: rejected.
    offer(calls, call_id="c2", now_ms=T0 + 20_000)
    calls.reject(call_id="c2", user=BOB, reason=None, **at(T0 + 21_000))
    # c3: rings out.
    offer(calls, call_id="c3", now_ms=T0 + 30_000)
    calls.expire(**at(T0 + 30_000 + RING_MS))
    # c4 (carl -> bob) answered after 2 s; c5 (ann -> bob) is busy; carl drops after 5 s.
    offer(calls, caller=CARL, conn=C1, callee=BOB, call_id="c4", now_ms=T0 + 100_000)
    answer(calls, call_id="c4", now_ms=T0 + 102_000)
    offer(calls, call_id="c5", now_ms=T0 + 103_000)
    calls.connection_closed(CARL, C1, 0, **at(T0 + 107_000))

    st = calls.stats
    assert (st.started, st.answered, st.rejected, st.timed_out, st.busy) == (5, 2, 1, 1, 1)
    assert st.ended == {"hangup": 1, "rejected": 1, "timeout": 1, "busy": 1, "disconnected": 1}
    assert st.ring_ms_total == 1000 + 2000
    assert st.talk_ms_total == 9000 + 5000
    assert calls.live_count() == 0


def test_live_count_counts_ringing_and_active_calls() -> None:
    calls = active()
    assert calls.live_count() == 1
    offer(calls, caller=CARL, conn=C1, callee=BOB, call_id="c2")  # busy: ends at once
    assert calls.live_count() == 1
    calls.hang_up(call_id="c1", user=ANN, reason=None, **at(T0 + 2000))
    assert calls.live_count() == 0


def test_drain_log_yields_each_finished_call_once_with_its_duration() -> None:
    calls = active()
    assert calls.drain_log() == []
    calls.hang_up(call_id="c1", user=BOB, reason=None, **at(T0 + 61_000))
    log = calls.drain_log()
    assert len(log) == 1 and isinstance(log[0], LogCall)
    assert msgspec.to_builtins(log[0].record) == {
        "callId": "c1", "caller": "ann", "callee": "bob", "startedAt": T0,
        "answeredAt": T0 + 1000, "endedAt": T0 + 61_000, "endReason": "hangup",
        "endedBy": "bob", "durationMs": 60_000}
    assert calls.drain_log() == []


def test_drain_log_records_unanswered_calls_without_a_duration() -> None:
    calls = Calls(RING_MS)
    offer(calls, room=ROOM)
    calls.expire(**at(T0 + RING_MS))
    offer(calls, call_id="c2", now_ms=T0 + RING_MS + 1)
    calls.reject(call_id="c2", user=BOB, reason=None, **at(T0 + RING_MS + 2))
    records = [e.record for e in calls.drain_log() if isinstance(e, LogCall)]
    assert [(r.call_id, r.end_reason, r.room_id, r.answered_at, r.duration_ms)
            for r in records] == [("c1", "timeout", "r1", None, None),
                                  ("c2", "rejected", None, None, None)]


def test_drain_log_records_busy_and_disconnected_calls() -> None:
    calls = active()
    offer(calls, caller=CARL, conn=C1, callee=ANN, call_id="c2", now_ms=T0 + 1500)
    calls.connection_closed(BOB, B1, 0, **at(T0 + 4000))
    records = [e.record for e in calls.drain_log() if isinstance(e, LogCall)]
    assert [(r.call_id, r.end_reason, r.ended_by, r.duration_ms) for r in records] == [
        ("c2", "busy", "ann", None), ("c1", "disconnected", "bob", 3000)]
