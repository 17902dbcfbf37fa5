"""Presence rules (core/presence.py; PROTOCOL §Presence)."""

from hubbub.core.presence import PresenceTracker
from hubbub.ids import UserId

ANN, BOB = UserId("ann"), UserId("bob")
T0 = 1_700_000_000_000
M0 = 5_000_000  # the monotonic clock
GRACE = 5000


def test_a_first_connection_brings_the_user_online() -> None:
    p = PresenceTracker(GRACE)
    assert p.connect(ANN, "Ann", T0) is True
    assert p.get(ANN) is not None


def test_another_device_does_not_bring_the_user_online_again() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    assert p.connect(ANN, "Ann", T0) is False
    assert p.online_count() == 1


def test_an_unknown_user_is_offline() -> None:
    assert PresenceTracker(GRACE).get(ANN) is None


def test_a_user_with_an_open_connection_never_expires() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0, T0)
    assert p.expire(T0 + GRACE * 100) == []
    assert p.get(ANN) is not None


def test_the_last_disconnect_starts_the_grace_period() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0 + 10, T0 + 10)
    assert p.next_deadline() == T0 + 10 + GRACE
    assert p.get(ANN) is not None


def test_the_user_stays_during_the_grace_period() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0, T0)
    assert p.expire(T0 + GRACE - 1) == []


def test_the_user_is_offline_at_the_end_of_the_grace_with_last_seen_at_disconnect() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0 + 42, T0 + 42)
    [(user, gone)] = p.expire(T0 + 42 + GRACE)
    assert (user, gone.last_seen_ms, gone.username) == (ANN, T0 + 42, "Ann")
    assert p.get(ANN) is None
    assert p.online_count() == 0


def test_the_grace_counts_on_the_monotonic_clock_and_last_seen_is_the_wall_clock() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0 + 42, M0)
    assert p.next_deadline() == M0 + GRACE
    assert p.expire(M0 + GRACE - 1) == []
    [(_, gone)] = p.expire(M0 + GRACE)
    assert gone.last_seen_ms == T0 + 42


def test_a_reconnect_during_the_grace_cancels_the_offline() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0, T0)
    assert p.connect(ANN, "Ann", T0 + 1000) is False
    assert p.expire(T0 + GRACE * 10) == []
    assert p.get(ANN) is not None


def test_a_second_disconnect_restarts_the_grace_from_then() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0, T0)
    p.connect(ANN, "Ann", T0 + 1000)
    p.disconnect(ANN, T0 + 2000, T0 + 2000)
    assert p.expire(T0 + GRACE) == []
    [(_, gone)] = p.expire(T0 + 2000 + GRACE)
    assert gone.last_seen_ms == T0 + 2000


def test_each_user_expires_on_their_own_deadline() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.connect(BOB, "Bob", T0)
    p.disconnect(ANN, T0, T0)
    p.disconnect(BOB, T0 + 1000, T0 + 1000)
    assert [u for u, _ in p.expire(T0 + GRACE)] == [ANN]
    assert [u for u, _ in p.expire(T0 + 1000 + GRACE)] == [BOB]


def test_a_user_expires_once() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.disconnect(ANN, T0, T0)
    assert len(p.expire(T0 + GRACE)) == 1
    assert p.expire(T0 + GRACE * 2) == []


def test_a_disconnect_of_an_unknown_user_is_ignored() -> None:
    p = PresenceTracker(GRACE)
    p.disconnect(ANN, T0, T0)
    assert p.next_deadline() is None


def test_a_reconnecting_device_updates_the_username() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.connect(ANN, "Ann B.", T0)
    ann = p.get(ANN)
    assert ann is not None and ann.username == "Ann B."


def test_presence_changes_are_budgeted_per_user_across_their_connections() -> None:
    p = PresenceTracker(GRACE, changes_per_second=2.0, change_burst=3.0)
    p.connect(ANN, "Ann", T0)
    p.connect(ANN, "Ann", T0)  # a second device shares the budget
    p.connect(BOB, "Bob", T0)
    assert [p.take_change(ANN, T0) for _ in range(3)] == [0, 0, 0]
    assert p.take_change(ANN, T0) == 500
    assert p.take_change(BOB, T0) == 0  # each user has their own
    assert p.take_change(ANN, T0 + 500) == 0


def test_a_change_budget_of_zero_per_second_is_unlimited() -> None:
    p = PresenceTracker(GRACE, changes_per_second=0.0)
    p.connect(ANN, "Ann", T0)
    assert all(p.take_change(ANN, T0) == 0 for _ in range(1000))


def test_in_grace_lists_the_users_held_without_a_connection_until_it_ends() -> None:
    p = PresenceTracker(GRACE)
    p.connect(ANN, "Ann", T0)
    p.connect(BOB, "Bob", T0)
    p.disconnect(ANN, T0 + 1, M0 + 1)
    assert p.in_grace() == [ANN]
    p.connect(ANN, "Ann", T0 + 2)  # back within the grace
    assert p.in_grace() == []
    p.disconnect(ANN, T0 + 3, M0 + 3)
    p.expire(M0 + 3 + GRACE)
    assert p.in_grace() == []
