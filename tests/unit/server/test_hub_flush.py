"""The hub's flush policy (server/hub.py, ADRs 0018 and 0036): one write per connection per
flush; the next flush waits for FLUSH_PERIOD_S after the last one began, and spreads its
chunks over it, only after a slow flush that carried several frames per write (fan-out
under load), never after a relay-like flush of one frame per write."""

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from hubbub.core.effects import Reply
from hubbub.features.system import open_session
from hubbub.server import hub as hub_module
from hubbub.server.hub import Conn, Hub
from tests.support.node import make_node


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _closer(code: int, reason: str) -> None:
    return None


def hub_with(n: int, loop: Any = None) -> tuple[Hub, list[Conn]]:
    node = make_node()
    hub = Hub(node, loop or asyncio.get_running_loop())
    conns = []
    for _ in range(n):
        conn = Conn(open_session(node), FakeTransport(), _closer)
        hub.add(conn)
        conns.append(conn)
    return hub, conns


class ManualLoop:
    """The part of an event loop the flush uses, on a clock that moves only when told:
    `run_until(t)` runs, in order, every callback due by `t`."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, int, Callable[[], Any]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], Any]) -> None:
        heapq.heappush(self._due, (when, next(self._order), callback))

    def call_soon(self, callback: Callable[[], Any]) -> None:
        self.call_at(self.now, callback)

    def run_until(self, t: float) -> None:
        while self._due and self._due[0][0] <= t:
            when, _, callback = heapq.heappop(self._due)
            self.now = max(self.now, when)
            callback()
        self.now = t


def queue_each(hub: Hub, conns: list[Conn], *frames: bytes) -> None:
    for conn in conns:
        for frame in frames:
            hub.queue(conn, frame)


def writes(conn: Conn) -> list[bytes]:
    return conn.transport.writes  # type: ignore[attr-defined, no-any-return]


async def test_frames_queued_in_one_turn_leave_in_one_write_per_connection() -> None:
    hub, conns = hub_with(3)
    queue_each(hub, conns, b"a", b"b")
    assert all(writes(c) == [] for c in conns)
    await asyncio.sleep(0)
    assert all(writes(c) == [b"ab"] for c in conns)


@pytest.mark.parametrize(("frames_per_conn", "waits"), [(1, False), (2, True)])
async def test_the_next_flush_waits_only_after_a_slow_coalescing_one(
        monkeypatch: pytest.MonkeyPatch, frames_per_conn: int, waits: bool) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_SLOW_S", -1.0)  # every flush counts as slow
    monkeypatch.setattr(hub_module, "FLUSH_PERIOD_S", 0.05)
    hub, conns = hub_with(4)
    for conn in conns:
        for _ in range(frames_per_conn):
            hub.queue(conn, b"x")
    await asyncio.sleep(0)
    assert all(len(writes(c)) == 1 for c in conns)
    hub.queue(conns[0], b"next")
    await asyncio.sleep(0)
    assert (writes(conns[0])[-1] == b"next") is not waits
    await asyncio.sleep(0.1)
    assert writes(conns[0])[-1] == b"next"


async def test_a_quick_flush_never_delays_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_SLOW_S", 3600.0)  # no flush is slow
    hub, conns = hub_with(2)
    queue_each(hub, conns, b"1", b"2")
    await asyncio.sleep(0)
    hub.queue(conns[1], b"3")
    await asyncio.sleep(0)
    assert writes(conns[1]) == [b"12", b"3"]


async def test_closing_writes_what_is_queued_before_the_close(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_SLOW_S", -1.0)
    monkeypatch.setattr(hub_module, "FLUSH_PERIOD_S", 3600.0)
    hub, conns = hub_with(1)
    conn = conns[0]
    hub.queue(conn, b"a")
    hub.queue(conn, b"b")
    await asyncio.sleep(0)
    hub.queue(conn, b"waiting")  # held by the flush wait
    hub.close(conn.id, 1000, "bye")
    assert writes(conn)[-1] == b"waiting"


async def test_a_flush_of_many_connections_goes_out_in_chunks_with_turns_between(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_CHUNK", 2)
    hub, conns = hub_with(5)
    for conn in conns:
        hub.queue(conn, b"a")
    written = []
    for _ in range(3):
        await asyncio.sleep(0)  # one loop turn: one chunk
        written.append(sum(1 for c in conns if writes(c)))
    assert written == [2, 4, 5]


async def test_frames_queued_during_a_chunked_flush_ride_in_it_or_in_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_CHUNK", 2)
    hub, conns = hub_with(4)
    for conn in conns:
        hub.queue(conn, b"a")
    await asyncio.sleep(0)  # conns 0 and 1 written
    hub.queue(conns[3], b"b")  # not written yet: joins this flush's write
    hub.queue(conns[0], b"c")  # already written: the next flush
    for _ in range(3):
        await asyncio.sleep(0)
    assert writes(conns[3]) == [b"ab"]
    assert writes(conns[0]) == [b"a", b"c"]


async def test_an_answer_does_not_wait_with_the_flush_but_keeps_its_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_SLOW_S", -1.0)
    monkeypatch.setattr(hub_module, "FLUSH_PERIOD_S", 3600.0)
    hub, conns = hub_with(2)
    queue_each(hub, conns, b"a", b"b")
    await asyncio.sleep(0)  # a coalescing flush: the next one waits an hour
    hub.queue(conns[0], b"broadcast")
    hub.queue(conns[1], b"broadcast")
    hub.run([Reply(conns[0].id, "ack", {"ok": True}, "c1")])
    await asyncio.sleep(0)
    assert writes(conns[0])[-1].startswith(b"broadcast\x81")  # before the ack, one write
    assert b'"type":"ack"' in writes(conns[0])[-1]
    assert writes(conns[1]) == [b"ab"]  # no answer: still waiting


def test_under_load_a_flush_starts_a_period_after_the_last_began_and_spreads_its_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_SLOW_S", -1.0)  # every flush counts as slow
    monkeypatch.setattr(hub_module, "FLUSH_PERIOD_S", 1.0)
    monkeypatch.setattr(hub_module, "FLUSH_CHUNK", 2)
    loop = ManualLoop()
    hub, conns = hub_with(4, loop)
    queue_each(hub, conns, b"a", b"b")
    loop.run_until(0.0)  # not under load yet: both chunks at once
    assert all(writes(c) == [b"ab"] for c in conns)
    loop.run_until(0.6)
    queue_each(hub, conns, b"c", b"d")
    loop.run_until(0.999)  # the period runs from the start of the last flush
    assert all(writes(c) == [b"ab"] for c in conns)
    loop.run_until(1.0)  # the first chunk
    assert [writes(c)[-1] for c in conns] == [b"cd", b"cd", b"ab", b"ab"]
    loop.run_until(1.499)
    assert writes(conns[2])[-1] == b"ab"
    loop.run_until(1.5)  # the second, half a period on
    assert all(writes(c) == [b"ab", b"cd"] for c in conns)
    queue_each(hub, conns, b"e", b"f")
    loop.run_until(2.0)  # a period after the last flush began, not after it ended
    assert [writes(c)[-1] for c in conns] == [b"ef", b"ef", b"cd", b"cd"]


def test_a_frame_for_a_connection_not_reached_yet_rides_in_its_paced_write(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_SLOW_S", -1.0)
    monkeypatch.setattr(hub_module, "FLUSH_PERIOD_S", 1.0)
    monkeypatch.setattr(hub_module, "FLUSH_CHUNK", 1)
    loop = ManualLoop()
    hub, conns = hub_with(2, loop)
    queue_each(hub, conns, b"a", b"b")
    loop.run_until(0.0)
    queue_each(hub, conns, b"c", b"d")
    loop.run_until(1.0)  # conns[0] written; conns[1] half a period later
    hub.queue(conns[1], b"e")
    hub.queue(conns[0], b"e")  # already written in this flush: the next one
    loop.run_until(1.5)
    assert writes(conns[1]) == [b"ab", b"cde"]
    assert writes(conns[0]) == [b"ab", b"cd"]
    loop.run_until(2.0)
    assert writes(conns[0]) == [b"ab", b"cd", b"e"]


def test_a_flush_that_overran_its_period_is_followed_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_SLOW_S", -1.0)
    monkeypatch.setattr(hub_module, "FLUSH_PERIOD_S", 1.0)
    loop = ManualLoop()
    hub, conns = hub_with(1, loop)
    conn = conns[0]
    queue_each(hub, conns, b"a", b"b")
    loop.run_until(0.0)
    loop.now = 5.0  # the loop was busy elsewhere long past the period
    queue_each(hub, conns, b"c", b"d")
    loop.run_until(5.0)
    assert writes(conn) == [b"ab", b"cd"]


async def test_a_close_that_drops_a_slow_reader_sends_one_close_frame_only() -> None:
    hub, conns = hub_with(1)
    conn = conns[0]
    conn.transport.get_write_buffer_size = lambda: hub.max_queue + 1  # type: ignore[method-assign]
    hub.queue(conn, b"data")
    assert hub.begin_close(conn) is False  # the flush itself dropped it with 1013
    closes = [w for w in writes(conn) if w[:1] == b"\x88"]
    assert [c[2:4] for c in closes] == [(1013).to_bytes(2, "big")]
    assert hub.begin_close(conn) is False


def test_a_long_close_reason_is_cut_at_a_character_boundary() -> None:
    from hubbub.server.framing import close_frame

    frame = close_frame(1013, "é" * 100)  # 200 bytes of UTF-8
    assert len(frame) <= 2 + 125
    frame[4:].decode()  # valid UTF-8: no half character at the end
    assert frame[4:] == ("é" * 61).encode()
