"""Properties of MaskCheck (server/ws.py): the RFC 6455 §5.1 guard in front of aiohttp's
frame reader. However a stream of frames is cut into reads, the reader behind it gets
exactly the same bytes while every frame is masked; at the first unmasked frame it gets the
bytes before that frame and then a header it fails with 1002, and nothing after."""

import itertools
import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.server.ws import _FAIL_1002, MaskCheck


class Recorder:
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data.append(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.eof = True


def frame(opcode: int, size: int, masked: bool) -> bytes:
    if size < 126:
        head = bytes([0x80 | opcode, (0x80 if masked else 0) | size])
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, (0x80 if masked else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, (0x80 if masked else 0) | 127, size)
    return head + (os.urandom(4) if masked else b"") + bytes(size)


sizes = st.one_of(st.integers(min_value=0, max_value=130),
                  st.sampled_from([125, 126, 127, 65535, 65536, 70_000]))
frames = st.lists(st.tuples(st.sampled_from([0x1, 0x2, 0x0, 0x8, 0x9, 0xA]), sizes),
                  min_size=1, max_size=12)


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(stream) + 1) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(frames=frames, points=st.lists(st.integers(min_value=0), max_size=20))
def test_masked_frames_pass_through_unchanged_however_they_are_cut(
        frames: list[tuple[int, int]], points: list[int]) -> None:
    stream = b"".join(frame(op, n, True) for op, n in frames)
    inner = Recorder()
    check = MaskCheck(inner)
    for chunk in cut(stream, points):
        assert check.feed_data(chunk) == (False, b"")
    assert b"".join(inner.data) == stream
    assert not check.unmasked


@settings(max_examples=300, deadline=None)
@given(frames=frames, bad=st.integers(min_value=0), points=st.lists(st.integers(min_value=0),
                                                                    max_size=20))
def test_the_first_unmasked_frame_fails_the_connection_and_nothing_after_it_passes(
        frames: list[tuple[int, int]], bad: int, points: list[int]) -> None:
    bad %= len(frames)
    parts = [frame(op, n, i != bad) for i, (op, n) in enumerate(frames)]
    before = b"".join(parts[:bad])
    stream = b"".join(parts)
    inner = Recorder()
    check = MaskCheck(inner)
    for chunk in cut(stream, points):
        check.feed_data(chunk)
    assert check.unmasked
    assert b"".join(inner.data) == before + _FAIL_1002


def test_eof_reaches_the_reader() -> None:
    inner = Recorder()
    MaskCheck(inner).feed_eof()
    assert inner.eof
