"""Properties of Sequencer (core/sequencer.py; PROTOCOL §Ordering) under any arrival order,
duplicates, replays, late joiners, position checks and gap fills from the store (which may
fail).

Whatever happens, a room's events leave in strictly increasing seq order with no gap; once
every event has arrived (or been read from the store), every one has left, exactly once.
When the broker lost events for good, a position check and the fills after it deliver
every one of them.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hubbub.core.sequencer import Sequencer
from hubbub.ids import RoomId

T0 = 1_700_000_000_000
ROOM = RoomId("r")
MAX_WAIT = 200
LIMIT = 1000  # Store.events_since: all events after a seq, or none beyond the limit


class SequencerMachine(RuleBasedStateMachine):
    @initialize(total=st.integers(min_value=1, max_value=40),
                start=st.integers(min_value=0, max_value=5),
                tail_lost=st.booleans())
    def setup(self, total: int, start: int, tail_lost: bool) -> None:
        self.seq: Sequencer[int] = Sequencer(MAX_WAIT)
        self.now = T0
        self.first = start + 1
        self.total = start + total
        self.seq.start(ROOM, start)
        self.committed = start  # the store holds every seq up to here
        self.arrived: set[int] = set()
        self.delivered: list[int] = []
        self.pending_fill: int | None = None  # `after` of a fill that was asked for
        self.asked_at_commit = 0  # what the store held when that fill was asked for
        # Since when events have been held back behind a gap with no progress (None: none).
        self.gap_since: int | None = None
        self.hinted = 0  # the highest position a check read
        # At the end, the events that never arrived are lost for good (True) or come late.
        self.tail_lost = tail_lost

    def _last(self) -> int:
        return self.delivered[-1] if self.delivered else self.first - 1

    def _hole(self) -> bool:
        last = self._last()
        return self.hinted > last or any(s > last for s in self.arrived)

    def _deliver(self, items: list[int]) -> None:
        self.delivered += items
        if not self._hole():
            self.gap_since = None
        elif items or self.gap_since is None:
            self.gap_since = self.now

    @rule(data=st.data(), dt=st.integers(min_value=0, max_value=150))
    def an_event_arrives(self, data: st.DataObject, dt: int) -> None:
        """A live publish: any committed-or-about-to-be seq, a duplicate, or a replay."""
        seq = data.draw(st.integers(min_value=max(1, self.first - 3), max_value=self.total))
        self.now += dt
        self.committed = max(self.committed, seq)  # committed before it was published
        self.arrived.add(seq)
        self._deliver(self.seq.offer(ROOM, seq, seq, self.now))

    @rule(data=st.data(), dt=st.integers(min_value=0, max_value=150))
    def a_position_check_reads_the_store(self, data: st.DataObject, dt: int) -> None:
        self.now += dt
        position = data.draw(st.integers(min_value=0, max_value=self.committed))
        self.seq.hint(ROOM, position, self.now)
        if position > max(self.hinted, self._last()) and self.gap_since is None:
            self.gap_since = self.now
        self.hinted = max(self.hinted, position)

    @rule(last=st.integers(min_value=0, max_value=45))
    def another_local_connection_joins(self, last: int) -> None:
        # It joined at the store's position then; the room keeps its own order.
        self.seq.start(ROOM, min(last, self.committed))

    @rule(dt=st.integers(min_value=0, max_value=400))
    def the_gap_timer_runs(self, dt: int) -> None:
        self.now += dt
        was_pending = self.pending_fill is not None
        for room, after in self.seq.overdue(self.now):
            assert room == ROOM
            assert self.pending_fill is None, "a gap was reported twice before its fill"
            assert after == (self.delivered[-1] if self.delivered else self.first - 1)
            self.pending_fill = after
            self.asked_at_commit = self.committed
        if not was_pending and self.gap_since is not None \
                and self.now - self.gap_since >= MAX_WAIT:
            assert self.pending_fill is not None, "a gap outlived max_wait unreported"

    @precondition(lambda self: self.pending_fill is not None)
    @rule(data=st.data(), more=st.integers(min_value=0, max_value=5), fails=st.booleans())
    def the_store_answers_the_fill(self, data: st.DataObject, more: int, fails: bool) -> None:
        after = self.pending_fill
        assert after is not None
        self.pending_fill = None
        if fails:
            self.seq.fill_failed(ROOM, self.now)
            self._wait_again()
            return
        # Writes may have committed more since it was asked: the store was read at some
        # point in between, and held every seq up to its position then. Events published
        # after that point may have arrived live before the answer.
        self.committed = min(self.total, self.committed + more)
        read_at = data.draw(st.integers(min_value=self.asked_at_commit,
                                        max_value=self.committed))
        events = [(s, s) for s in range(after + 1, read_at + 1)]
        if len(events) > LIMIT:
            events = []
        self.arrived |= {s for s, _ in events}
        self._deliver(self.seq.filled(ROOM, events, read_at, self.now))
        self._wait_again()

    def _wait_again(self) -> None:
        """After a fill, it waits again before the next, if a hole is still there (the
        events behind it may have arrived live meanwhile, and left)."""
        self.gap_since = self.now if self._hole() else None

    @invariant()
    def delivered_in_strictly_increasing_order_with_no_gap(self) -> None:
        expected = list(range(self.first, self.first + len(self.delivered)))
        assert self.delivered == expected

    @invariant()
    def everything_that_arrived_in_order_has_left(self) -> None:
        # The longest run first, first+1, ... that arrived must have been delivered.
        n = self.first
        while n in self.arrived:
            n += 1
        assert len(self.delivered) >= n - self.first

    def teardown(self) -> None:
        if not hasattr(self, "seq"):
            return
        self.committed = self.total
        if self.tail_lost:
            # What has not arrived is lost: a position check, then fills, deliver it all.
            if self.pending_fill is not None:
                self.the_store_answers_the_fill_with_every_event()
            self.a_position_check_reads(self.total)
            for _ in range(3):
                self.now += MAX_WAIT
                due = self.seq.overdue(self.now)
                if not due:
                    break
                self.pending_fill = due[0][1]
                self.the_store_answers_the_fill_with_every_event()
        else:
            # Everything arrives in the end (each publish): all of it leaves.
            for s in range(self.first, self.total + 1):
                self._deliver(self.seq.offer(ROOM, s, s, self.now))
        assert self.delivered == list(range(self.first, self.total + 1))

    def a_position_check_reads(self, position: int) -> None:
        self.seq.hint(ROOM, position, self.now)
        self.hinted = max(self.hinted, position)

    def the_store_answers_the_fill_with_every_event(self) -> None:
        after = self.pending_fill
        assert after is not None
        self.pending_fill = None
        events = [(s, s) for s in range(after + 1, self.committed + 1)]
        self._deliver(self.seq.filled(ROOM, events, self.committed, self.now))


SequencerMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=60,
                                              deadline=None)
TestSequencer = SequencerMachine.TestCase
