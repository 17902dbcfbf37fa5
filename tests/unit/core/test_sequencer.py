"""Sequencer (core/sequencer.py): gap fills racing live events, case by case. The
properties under any order are in tests/unit/properties/test_sequencer.py."""

from hubbub.core.sequencer import Sequencer
from hubbub.ids import RoomId

R = RoomId("r")
T0 = 1_700_000_000_000
WAIT = 200


def room_at(last: int) -> Sequencer[int]:
    seq: Sequencer[int] = Sequencer(WAIT)
    seq.start(R, last)
    return seq


def offer(seq: Sequencer[int], n: int, now: int) -> list[int]:
    return seq.offer(R, n, n, now)


def fill_asked(last: int, held: int) -> Sequencer[int]:
    """A room at `last` that got `held` at T0, and whose fill was asked for at T0 + WAIT."""
    seq = room_at(last)
    assert offer(seq, held, T0) == []
    assert seq.overdue(T0 + WAIT) == [(R, last)]
    return seq


def test_a_gap_that_opens_after_a_failed_fill_is_reported_when_its_wait_is_over() -> None:
    seq = fill_asked(5, 7)
    assert offer(seq, 6, T0 + WAIT) == [6, 7]  # live, while the store was read
    seq.fill_failed(R, T0 + WAIT)
    assert offer(seq, 9, T0 + WAIT + 10) == []  # a new gap: 8 is late
    assert seq.overdue(T0 + 2 * WAIT) == []
    assert seq.overdue(T0 + 2 * WAIT + 10) == [(R, 7)]


def test_a_fill_does_not_skip_a_hole_above_what_the_store_held_when_it_was_read() -> None:
    seq = fill_asked(5, 7)
    assert offer(seq, 6, T0 + WAIT) == [6, 7]
    assert offer(seq, 9, T0 + WAIT) == []  # 8 and 9 were committed after the read
    assert seq.filled(R, [(6, 6), (7, 7)], 7, T0 + WAIT + 5) == []
    assert offer(seq, 8, T0 + WAIT + 6) == [8, 9]
    # The hole waits again from the fill's answer, and is filled again if it lasts.
    assert offer(seq, 11, T0 + WAIT + 7) == []
    assert seq.overdue(T0 + 2 * WAIT + 6) == []
    assert seq.overdue(T0 + 2 * WAIT + 7) == [(R, 9)]


def test_a_hole_the_store_held_but_did_not_return_is_skipped() -> None:
    seq = fill_asked(5, 2000)
    # More than a fill reads: the store sends nothing, its position is 2000.
    assert seq.filled(R, [], 2000, T0 + WAIT) == [2000]
    assert seq.overdue(T0 + 10 * WAIT) == []
    assert offer(seq, 2001, T0 + 10 * WAIT) == [2001]


def test_a_skip_stops_at_the_stores_position() -> None:
    seq = fill_asked(5, 1500)
    assert offer(seq, 1503, T0 + WAIT) == []  # committed after the read
    # Up to 1501 is skipped; 1502, committed after the read, is waited for.
    assert seq.filled(R, [], 1501, T0 + WAIT) == [1500]
    assert offer(seq, 1501, T0 + WAIT + 1) == []  # the store had it: skipped
    assert offer(seq, 1502, T0 + WAIT + 2) == [1502, 1503]
    assert seq.overdue(T0 + 10 * WAIT) == []


def test_a_store_behind_this_node_gets_what_is_held_delivered() -> None:
    seq = fill_asked(5, 8)
    assert seq.filled(R, [], 3, T0 + WAIT) == [8]
    assert seq.overdue(T0 + 10 * WAIT) == []


def test_live_events_past_the_stores_position_do_not_make_the_fill_skip() -> None:
    seq = fill_asked(1, 3)
    assert offer(seq, 28, T0 + WAIT) == []
    assert offer(seq, 30, T0 + WAIT) == []
    # The store was read at 27; 28 is held, 29 is on its way.
    events = [(n, n) for n in range(2, 28)]
    assert seq.filled(R, events, 27, T0 + WAIT + 5) == list(range(2, 29))
    assert offer(seq, 29, T0 + WAIT + 6) == [29, 30]


# ---- position checks: the room's last events lost, nothing later to show the hole --------

def test_a_lost_last_event_is_filled_after_a_position_check_shows_it() -> None:
    seq = room_at(5)
    assert seq.overdue(T0 + 10 * WAIT) == []  # nothing shows the hole yet
    assert seq.hint(R, 7, T0) is True  # a new hole
    assert seq.hint(R, 7, T0 + 5) is False
    assert seq.overdue(T0 + WAIT - 1) == []  # 6 and 7 may still be on their way
    assert seq.overdue(T0 + WAIT) == [(R, 5)]
    assert seq.filled(R, [(6, 6), (7, 7)], 7, T0 + WAIT + 3) == [6, 7]
    assert seq.overdue(T0 + 10 * WAIT) == []
    assert offer(seq, 7, T0 + 10 * WAIT) == []  # the lost publish, late: a duplicate
    assert offer(seq, 8, T0 + 10 * WAIT) == [8]


def test_events_arriving_live_after_a_position_check_close_the_hole() -> None:
    seq = room_at(5)
    seq.hint(R, 7, T0)
    assert offer(seq, 6, T0 + 50) == [6]
    assert offer(seq, 7, T0 + 60) == [7]
    assert seq.overdue(T0 + 10 * WAIT) == []


def test_a_position_at_or_below_what_was_delivered_is_no_hole() -> None:
    seq = room_at(5)
    assert not seq.hint(R, 5, T0)
    assert not seq.hint(R, 3, T0)
    assert not seq.hint(RoomId("not-ordered-here"), 9, T0)
    assert seq.overdue(T0 + 10 * WAIT) == []
    assert offer(seq, 6, T0) == [6]


def test_a_position_hole_waits_again_when_its_fill_fails() -> None:
    seq = room_at(5)
    seq.hint(R, 6, T0)
    assert seq.overdue(T0 + WAIT) == [(R, 5)]
    seq.fill_failed(R, T0 + WAIT + 10)
    assert seq.overdue(T0 + 2 * WAIT + 9) == []
    assert seq.overdue(T0 + 2 * WAIT + 10) == [(R, 5)]
    assert seq.filled(R, [(6, 6)], 6, T0 + 2 * WAIT + 20) == [6]
    assert seq.overdue(T0 + 10 * WAIT) == []


def test_a_position_beyond_what_a_fill_reads_is_skipped_to() -> None:
    seq = room_at(5)
    seq.hint(R, 2000, T0)
    assert seq.overdue(T0 + WAIT) == [(R, 5)]
    assert seq.filled(R, [], 2000, T0 + WAIT) == []  # the clients page `history` for it
    assert seq.overdue(T0 + 10 * WAIT) == []
    assert offer(seq, 2001, T0 + 10 * WAIT) == [2001]


def test_a_position_from_a_store_now_behind_this_node_is_dropped() -> None:
    seq = room_at(5)
    seq.hint(R, 9, T0)
    assert seq.overdue(T0 + WAIT) == [(R, 5)]
    # The store answers from behind this node (a failover to a lagging replica, say).
    assert seq.filled(R, [], 4, T0 + WAIT) == []
    assert seq.overdue(T0 + 10 * WAIT) == []
    assert offer(seq, 6, T0 + 10 * WAIT) == [6]


def test_a_position_check_during_a_fill_is_filled_after_it() -> None:
    seq = fill_asked(5, 7)
    seq.hint(R, 9, T0 + WAIT + 1)  # the check read 9 while the fill of 6 was out
    assert seq.filled(R, [(6, 6), (7, 7)], 7, T0 + WAIT + 2) == [6, 7]
    assert seq.overdue(T0 + 2 * WAIT + 1) == []
    assert seq.overdue(T0 + 2 * WAIT + 2) == [(R, 7)]
    assert seq.filled(R, [(8, 8), (9, 9)], 9, T0 + 2 * WAIT + 3) == [8, 9]
