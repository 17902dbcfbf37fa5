"""Per-room ordering of persisted events arriving from several nodes (PROTOCOL §Ordering:
clients see a room's events in seq order).

Two nodes commit seq 5 and 6 of one room; their publishes may cross on the way, so a
third node can receive 6 first. It holds 6 back until 5 arrives, or until `max_wait_ms`
passes — then the gap is filled from the store, which has every committed event. The
wait counts on the monotonic clock (`mono_ms`).

A hole shows only when a later event arrives. When the broker lost a room's *last* events,
nothing later may come for a long time: a position check (`hint`) tells the sequencer how
far the store has the room, and a hole up to there waits and is filled like any other.
"""

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hubbub.ids import RoomId

T = TypeVar("T")


@dataclass
class _Room(Generic[T]):
    last: int
    held: dict[int, T] = field(default_factory=dict)
    gap_since_mono: int | None = None
    filling: bool = False
    fill_after: int = 0  # `last` when the fill under way was asked for
    known: int = 0  # the store had every event up to here (a position check)


class Sequencer(Generic[T]):
    def __init__(self, max_wait_ms: int = 200) -> None:
        self.max_wait_ms = max_wait_ms
        self._rooms: dict[RoomId, _Room[T]] = {}
        # The rooms holding events back behind a gap: `overdue` runs every tick and looks
        # at these only, not at every room this node orders.
        self._gapped: set[RoomId] = set()

    def last(self, room: RoomId) -> int | None:
        r = self._rooms.get(room)
        return r.last if r else None

    def start(self, room: RoomId, last_seq: int) -> None:
        """The first local connection joined `room` at `last_seq`: order from there. A
        room already ordered keeps its position: events between it and a later joiner's
        `last_seq` may still be on their way, and the connections already in the room
        need them (the joiner's client skips seqs it already has)."""
        if room not in self._rooms:
            self._rooms[room] = _Room(last_seq)

    def rooms(self) -> list[RoomId]:
        """The rooms this node orders: those with a local connection."""
        return list(self._rooms)

    def hint(self, room: RoomId, seq: int, mono_ms: int) -> bool:
        """A position check read that the store has `room`'s events up to `seq`. Anything
        above what was delivered is a hole, even with nothing held behind it (the broker
        may have lost the room's last events). It waits `max_wait_ms`, as the events may
        still be on their way, then `overdue` reports it. True if the hole is new."""
        r = self._rooms.get(room)
        if r is None or seq <= r.last or seq <= r.known:
            return False
        r.known = seq
        if r.gap_since_mono is not None:
            return False
        r.gap_since_mono = mono_ms
        self._gapped.add(room)
        return True

    def stop(self, room: RoomId) -> None:
        self._rooms.pop(room, None)
        self._gapped.discard(room)

    def offer(self, room: RoomId, seq: int, item: T, mono_ms: int) -> list[T]:
        """An event arrived; returns the events that may now be delivered, in order."""
        r = self._rooms.get(room)
        if r is None:
            return [item]  # not ordering this room (nobody local joined through us)
        if seq <= r.last or seq in r.held:
            return []  # a duplicate (a replay, or live and filled both)
        if seq != r.last + 1:
            r.held[seq] = item
            if r.gap_since_mono is None:
                r.gap_since_mono = mono_ms
                self._gapped.add(room)
            return []
        r.last = seq
        ready = [item, *self._release(r)]
        self._rewait(room, r, mono_ms)
        return ready

    @staticmethod
    def _release(r: _Room[T]) -> list[T]:
        """The held events that now follow `r.last` without a hole."""
        ready = []
        while r.last + 1 in r.held:
            r.last += 1
            ready.append(r.held.pop(r.last))
        return ready

    def _rewait(self, room: RoomId, r: _Room[T], mono_ms: int) -> None:
        """After progress: a hole still left waits `max_wait_ms` from now."""
        if r.held or r.known > r.last:
            r.gap_since_mono = mono_ms
            self._gapped.add(room)
        else:
            r.gap_since_mono = None
            self._gapped.discard(room)

    def overdue(self, mono_ms: int) -> list[tuple[RoomId, int]]:
        """Rooms whose gap outlived `max_wait_ms`: (room, last delivered seq) to fill from.
        Each is reported once until `filled()`."""
        due = []
        for room in self._gapped:
            r = self._rooms[room]
            if r.gap_since_mono is not None and not r.filling \
                    and mono_ms - r.gap_since_mono >= self.max_wait_ms:
                r.filling = True
                r.fill_after = r.last
                due.append((room, r.last))
        return due

    def fill_failed(self, room: RoomId, mono_ms: int) -> None:
        """Reading the gap from the store failed: try again after another wait, if a hole
        is still there (live events may have closed it while the read was out)."""
        r = self._rooms.get(room)
        if r is not None:
            r.filling = False
            self._rewait(room, r, mono_ms)

    def filled(self, room: RoomId, events: list[tuple[int, T]], through: int,
               mono_ms: int) -> list[T]:
        """Events read from the store after a gap, when it held every seq up to `through`:
        deliver them and what they unblock. A hole up to `through` that the store did not
        return is skipped: the clients page `history` for it (the fan-out reads a long hole
        a page at a time, each page's end as `through`, so it does not happen there). A
        hole above `through` was not committed when the store was read (or is beyond the
        page), so its event is still to come: it waits again."""
        r = self._rooms.get(room)
        if r is None:
            return []
        r.filling = False
        ready: list[T] = []
        for seq, item in events:
            ready += self.offer(room, seq, item, mono_ms)
        if not r.held and r.known <= r.last:
            return ready
        if through < r.fill_after:
            # The store is behind what this node had delivered when it asked: nothing it
            # could send will come. Deliver what is held, in order; a position it gave
            # before is void.
            r.known = 0
            through = max(r.held, default=r.last)
        for seq in sorted(s for s in r.held if s <= through):
            ready.append(r.held.pop(seq))
        r.last = max(r.last, through)
        ready += self._release(r)
        self._rewait(room, r, mono_ms)
        return ready
