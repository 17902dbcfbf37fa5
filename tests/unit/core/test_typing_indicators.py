"""Typing rules (core/typing_indicators.py; PROTOCOL §Typing)."""

from hubbub.core.typing_indicators import TypingTracker
from hubbub.ids import RoomId, UserId

R1, R2 = RoomId("r1"), RoomId("r2")
ANN, BOB = UserId("ann"), UserId("bob")
T0 = 1_700_000_000_000
TIMEOUT = 3000


def test_typing_true_is_sent_the_first_time() -> None:
    t = TypingTracker(TIMEOUT)
    assert t.start(R1, ANN, T0) is True
    assert t.is_typing(R1, ANN)


def test_typing_true_repeated_within_a_second_is_absorbed() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    assert t.start(R1, ANN, T0 + 999) is False


def test_typing_true_after_a_second_is_sent_again() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    assert t.start(R1, ANN, T0 + 1000) is True


def test_the_throttle_window_starts_at_the_last_true_sent() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    t.start(R1, ANN, T0 + 600)  # absorbed: does not move the window
    assert t.start(R1, ANN, T0 + 1000) is True
    assert t.start(R1, ANN, T0 + 1999) is False


def test_typing_expires_after_the_timeout_without_refresh() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    assert t.expire(T0 + TIMEOUT - 1) == []
    assert t.expire(T0 + TIMEOUT) == [(R1, ANN)]
    assert not t.is_typing(R1, ANN)


def test_typing_expires_once() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    t.expire(T0 + TIMEOUT)
    assert t.expire(T0 + TIMEOUT * 10) == []


def test_an_absorbed_refresh_extends_the_expiry() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    t.start(R1, ANN, T0 + 500)
    assert t.expire(T0 + TIMEOUT) == []
    assert t.expire(T0 + 500 + TIMEOUT) == [(R1, ANN)]


def test_stop_while_typing_asks_for_false() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    assert t.stop(R1, ANN) is True
    assert not t.is_typing(R1, ANN)


def test_stop_while_not_typing_is_absorbed() -> None:
    t = TypingTracker(TIMEOUT)
    assert t.stop(R1, ANN) is False
    t.start(R1, ANN, T0)
    t.stop(R1, ANN)
    assert t.stop(R1, ANN) is False


def test_a_stopped_indicator_does_not_expire() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    t.stop(R1, ANN)
    assert t.expire(T0 + TIMEOUT * 10) == []


def test_an_old_deadline_does_not_end_a_later_indicator() -> None:
    t = TypingTracker(TIMEOUT)
    t.start(R1, ANN, T0)
    t.stop(R1, ANN)
    assert t.start(R1, ANN, T0 + 1000) is True
    assert t.expire(T0 + TIMEOUT) == []
    assert t.expire(T0 + 1000 + TIMEOUT) == [(R1, ANN)]


def test_typing_is_tracked_per_room_and_per_user() -> None:
    t = TypingTracker(TIMEOUT)
    assert t.start(R1, ANN, T0) is True
    assert t.start(R2, ANN, T0) is True
    assert t.start(R1, BOB, T0) is True
    t.stop(R1, ANN)
    assert (t.is_typing(R1, ANN), t.is_typing(R2, ANN), t.is_typing(R1, BOB)) == (
        False, True, True)


def test_next_deadline_is_the_earliest_expiry() -> None:
    t = TypingTracker(TIMEOUT)
    assert t.next_deadline() is None
    t.start(R1, ANN, T0 + 10)
    t.start(R2, BOB, T0)
    assert t.next_deadline() == T0 + TIMEOUT


def test_timeout_and_throttle_are_configurable() -> None:
    t = TypingTracker(timeout_ms=500, throttle_ms=100)
    t.start(R1, ANN, T0)
    assert t.start(R1, ANN, T0 + 100) is True
    assert t.expire(T0 + 600) == [(R1, ANN)]


# ---- the user's other device typing on another node ----------------------------------------


def test_a_remote_true_is_news_once_per_window() -> None:
    t = TypingTracker(TIMEOUT)
    assert t.remote_true(R1, ANN, T0) is True
    assert t.remote_true(R1, ANN, T0 + 999) is False
    assert t.remote_true(R1, ANN, T0 + 1000) is True
    assert t.remote_true(R2, ANN, T0 + 1000) is True
    assert not t.is_typing(R1, ANN)  # typing on this node is only this node's devices'


def test_a_remote_true_right_after_a_local_one_is_dropped() -> None:
    t = TypingTracker(TIMEOUT)
    assert t.start(R1, ANN, T0) is True
    assert t.remote_true(R1, ANN, T0 + 200) is False


def test_a_local_true_right_after_a_remote_one_is_absorbed_and_ends_silently() -> None:
    t = TypingTracker(TIMEOUT)
    assert t.remote_true(R1, ANN, T0) is True
    assert t.start(R1, ANN, T0 + 200) is False
    assert t.stop(R1, ANN) is False  # its `true` never went out, so no `false` either
    assert t.start(R1, ANN, T0 + 1000) is True
    assert t.expire(T0 + 1000 + TIMEOUT) == [(R1, ANN)]
