"""Properties of FrameGate (server/framegate.py), the RFC 6455 header checks in front of
picows's parser. However a stream of frames is cut into reads:
- a stream of good frames passes byte for byte, and nothing stops it;
- a stream with a bad frame passes the bytes before that frame, then stops with the
  frame's close code, and passes nothing after. (A read that ends one byte into the bad
  header may pass that byte: one byte cannot be judged, and the parser needs two to start
  a header, so it never sees the bad frame.);
- a client close frame is never passed to the parser: the stream stops before it with the
  close's code and reason.
"""

import itertools
import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.server.framegate import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Fail,
    FrameGate,
    PeerClose,
    Stop,
    close_code_valid,
)
from tests.support.wsframes import client_frame as frame

MAX = 70_000


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(stream) + 1) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def run(stream: bytes, points: list[int], max_frame: int = MAX) -> tuple[bytes, list[Stop]]:
    """What the parser got, and the stops (at most one)."""
    gate = FrameGate(max_frame)
    passed, stops = [], []
    for chunk in cut(stream, points):
        n, stop = gate.feed(memoryview(chunk))
        passed.append(chunk[:n])
        if stop is not None:
            stops.append(stop)
    return b"".join(passed), stops


sizes = st.one_of(st.integers(min_value=0, max_value=130),
                  st.sampled_from([125, 126, 127, 65535, 65536, 69_000]))
control = st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.integers(min_value=0, max_value=125))


@st.composite
def good_streams(draw: st.DrawFn) -> bytes:
    """Whole messages (some fragmented, with control frames between fragments)."""
    out = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if draw(st.booleans()):
            op, n = draw(control)
            out.append(frame(op, bytes(n)))
            continue
        parts = draw(st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=4))
        op = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
        for i, n in enumerate(parts):
            last = i == len(parts) - 1
            out.append(frame(op if i == 0 else OP_CONT, b"a" * n, fin=last))
            if not last and draw(st.booleans()):
                out.append(frame(OP_PING, b"p"))
    if draw(st.booleans()):
        n = draw(sizes)
        out.append(frame(OP_TEXT, bytes(n)))
    return b"".join(out)


points_st = st.lists(st.integers(min_value=0), max_size=20)


@settings(max_examples=300, deadline=None)
@given(stream=good_streams(), points=points_st)
def test_good_frames_pass_through_unchanged_however_they_are_cut(stream: bytes,
                                                                 points: list[int]) -> None:
    passed, stops = run(stream, points)
    assert passed == stream
    assert stops == []


bad_frames = st.sampled_from([
    (frame(OP_TEXT, b"{}", masked=False), 1002),
    (frame(OP_TEXT, b"{}", rsv=0b100), 1002),
    (frame(OP_TEXT, b"{}", rsv=0b001), 1002),
    (frame(0x3, b""), 1002),
    (frame(0xB, b""), 1002),
    (frame(OP_PING, b"x", fin=False), 1002),
    (frame(OP_PING, b"x" * 126), 1002),
    (frame(OP_CONT, b"x"), 1002),
    (frame(OP_TEXT, b"x" * (MAX + 1)), 1009),
    (frame(OP_CLOSE, b"\x03"), 1002),
    (frame(OP_CLOSE, struct.pack("!H", 1006)), 1002),
    (frame(OP_CLOSE, b"\x03\xe8\xff\xfe"), 1007),
])


@settings(max_examples=300, deadline=None)
@given(before=good_streams(), bad=bad_frames, after=good_streams(), points=points_st)
def test_a_bad_frame_stops_the_stream_exactly_at_its_start(
        before: bytes, bad: tuple[bytes, int], after: bytes, points: list[int]) -> None:
    bad_frame, code = bad
    passed, stops = run(before + bad_frame + after, points)
    # A read may end inside the bad frame's header, before the gate can judge it: those
    # bytes pass (the parser waits for more), but never as many as judging needs, the
    # first two bytes and the extended length.
    length = bad_frame[1] & 0x7F
    judged_at = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    assert passed.startswith(before)
    assert passed == before + bad_frame[:len(passed) - len(before)]
    assert len(passed) - len(before) < judged_at
    assert len(stops) == 1
    assert isinstance(stops[0], Fail) and stops[0].code == code


@settings(max_examples=200, deadline=None)
@given(before=good_streams(), after=good_streams(), points=points_st,
       code=st.sampled_from([1000, 1001, 1011, 3000, 4999]), reason=st.text(max_size=30))
def test_a_close_frame_stops_the_stream_before_it_and_carries_code_and_reason(
        before: bytes, after: bytes, points: list[int], code: int, reason: str) -> None:
    payload = struct.pack("!H", code) + reason.encode()[:123]
    passed, stops = run(before + frame(OP_CLOSE, payload) + after, points)
    assert passed == before
    assert stops == [PeerClose(code, payload[2:].decode())]


def test_a_close_frame_without_a_code_is_a_close_without_a_code() -> None:
    assert run(frame(OP_CLOSE, b""), [])[1] == [PeerClose(None, "")]


def test_a_message_over_the_limit_across_fragments_fails_on_the_fragment_that_passes_it(
        ) -> None:
    first = frame(OP_TEXT, b"a" * 600, fin=False)
    second = frame(OP_CONT, b"a" * 600, fin=False)
    third = frame(OP_CONT, b"a" * 600)
    passed, stops = run(first + second + third, [], max_frame=1000)
    assert passed == first
    assert stops == [Fail(1009, "message over 1000 bytes")]


def test_a_new_message_inside_a_fragmented_one_fails() -> None:
    first = frame(OP_TEXT, b"a", fin=False)
    passed, stops = run(first + frame(OP_TEXT, b"b"), [3])
    assert passed == first
    assert isinstance(stops[0], Fail) and stops[0].code == 1002


def test_a_length_not_in_its_shortest_form_fails() -> None:
    long_form = bytes([0x81, 0x80 | 126]) + struct.pack("!H", 5) + os.urandom(4) + b"hello"
    assert run(long_form, [])[1][0].code == 1002  # type: ignore[union-attr]


def test_nothing_passes_after_a_stop() -> None:
    gate = FrameGate(MAX)
    assert gate.feed(frame(OP_TEXT, b"x", masked=False))[0] == 0
    assert gate.feed(frame(OP_TEXT, b"ok")) == (0, None)


@given(st.integers(min_value=0, max_value=65535))
def test_close_codes_a_peer_may_send(code: int) -> None:
    # RFC 6455 §7.4.1-2: 1004-1006 and 1015 are reserved, below 1000 and 1016-2999 unused.
    expected = code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999
    assert close_code_valid(code) == expected
