"""A call whose home node died: its parties hear `call_end`, and the reaping node writes the
call log record the home could not (features/calls.py, `calls_of_dead_nodes`)."""

from hubbub.core.effects import LogCall, ToUser
from hubbub.directory.base import CallInfo
from hubbub.features.calls import calls_of_dead_nodes
from hubbub.ids import UserId
from hubbub.protocol.frames import CallRecord

T0 = 1_700_000_000_000
ANN, BOB = UserId("ann"), UserId("bob")


def reaped(**fields: object) -> CallInfo:
    base: dict[str, object] = {"started_at": T0, "home_seen": T0 + 9_000}
    return CallInfo("c1", ANN, BOB, 1, "node-a", **{**base, **fields})  # type: ignore[arg-type]


def record_of(info: CallInfo, now_ms: int = T0 + 20_000) -> CallRecord | None:
    logs = [e for e in calls_of_dead_nodes([info], now_ms) if isinstance(e, LogCall)]
    assert len(logs) <= 1
    return logs[0].record if logs else None


def test_both_parties_hear_the_call_end_as_disconnected() -> None:
    effects = calls_of_dead_nodes([reaped()], T0 + 20_000)
    ends = [e for e in effects if isinstance(e, ToUser)]
    assert sorted(e.user for e in ends) == [ANN, BOB]
    assert {e.payload.reason for e in ends} == {"disconnected"}  # type: ignore[attr-defined]


def test_an_answered_call_is_logged_as_ending_at_the_homes_last_heartbeat() -> None:
    record = record_of(reaped(room="r1", answered_at=T0 + 2_000, state="active"))
    assert record == CallRecord(call_id="c1", caller="ann", callee="bob", room_id="r1",
                                started_at=T0, answered_at=T0 + 2_000, ended_at=T0 + 9_000,
                                end_reason="disconnected", duration_ms=7_000)


def test_a_call_answered_after_the_last_heartbeat_ends_when_it_was_answered() -> None:
    record = record_of(reaped(answered_at=T0 + 9_500, home_seen=T0 + 9_000))
    assert record is not None
    assert (record.ended_at, record.duration_ms) == (T0 + 9_500, 0)


def test_an_unanswered_call_has_no_duration() -> None:
    record = record_of(reaped())
    assert record is not None
    assert (record.answered_at, record.ended_at, record.duration_ms) == (None, T0 + 9_000, None)


def test_without_the_homes_last_heartbeat_the_call_ends_now() -> None:
    record = record_of(reaped(home_seen=None), now_ms=T0 + 20_000)
    assert record is not None and record.ended_at == T0 + 20_000


def test_a_call_claimed_without_its_start_gets_no_record() -> None:
    # A node from before the directory kept `started_at` claimed it: nothing true to log.
    assert record_of(reaped(started_at=0)) is None
