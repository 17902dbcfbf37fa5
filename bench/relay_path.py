"""The S3 relay path in process: µs of CPU per relayed `ice_candidate`, from the bytes a
read hands over to the `transport.write` of the peer's frame.

Method
  Two connections of one node (in-memory SQLite, no rate limit, dev identity) are upgraded
  through the real `/ws` protocol object (`server/ws.py`: the frame gate, picows's parser)
  on fake transports, authenticate, join a room and set up a call (offer, answer). Then
  each side in turn hands one masked 1 KB-class `ice_candidate` frame to the protocol the
  way uvloop does (`GatedProtocol.feed`: `get_buffer`, copy, `buffer_updated`), and the
  hub flushes: the frame is gated, parsed, checked, relayed by the settled relay (ADR
  0029), encoded, queued and written to the peer's fake transport. No socket and no
  kernel: what is left is the Python (and C-extension) work per frame that S3 pays on top
  of its `recv` and `send`. Every relayed frame is checked to have reached the peer.

What the numbers mean
  µs per frame is the fastest of `--repeat` rounds of `--frames` relayed frames (the
  fastest round is the one least disturbed by the rest of the machine), less the time of
  an empty loop turn (`asyncio.sleep(0)`, measured the same way): each frame is read in a
  loop turn of its own, whose end runs the hub's flush. S3 pays this per frame, two frames
  per round trip, with the kernel's cost on top. One flush per frame is more than S3 pays
  (a loop turn there flushes several connections at once).

Run: .venv/bin/python bench/relay_path.py [--frames 20000] [--repeat 9] [--payload 1024]
     [--profile]
Not run by the tests; prints one line (and, with --profile, cProfile's top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import os
import pstats
import socket
import time
from typing import Any

import uvloop

from hubbub import config
from hubbub.core.clock import SystemClock
from hubbub.features.node import Node
from hubbub.server.hub import Hub
from hubbub.server.ws import GatedProtocol
from hubbub.store.sqlite import SqliteStore

_KEY = b"\x37\xfa\x21\x3d"


class FakeTransport:
    """What picows and the hub ask of a transport; counts and keeps what is written."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""
        self._sock = socket.socket()  # picows sets TCP_NODELAY on the real one

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        self._sock.close()

    def abort(self) -> None:
        self._sock.close()


def masked(payload: bytes) -> bytes:
    """A client's text frame (RFC 6455 §5.2), masked as clients must."""
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    mask = int.from_bytes((_KEY * (n // 4 + 1))[:n], "big")
    return head + _KEY + (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")


def ice(to: str, size: int) -> bytes:
    candidate = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0 "
    body = ('{"type":"webrtc","payload":{"kind":"ice_candidate","to":"%s","callId":"c1",'
            '"candidate":{"candidate":"%s","sdpMid":"0","sdpMLineIndex":0}}}')
    pad = max(0, size - len(body % (to, candidate)))
    return masked((body % (to, candidate + "x" * pad)).encode())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.005)


async def main(args: argparse.Namespace) -> None:
    node = Node(config.load(env={}, store="sqlite://:memory:", rate_limit=0), SystemClock())
    node.store = SqliteStore(":memory:")
    await node.store.open()
    hub = Hub(node, asyncio.get_running_loop())
    sides: list[tuple[GatedProtocol, FakeTransport]] = []
    for user in ("alice", "bob"):
        protocol, transport = GatedProtocol(hub), FakeTransport()
        protocol.connection_made(transport)
        key = base64.b64encode(os.urandom(16)).decode()
        protocol.upgrade((f"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          f"Sec-WebSocket-Version: 13\r\n\r\n").encode(), b"")
        protocol.feed(masked(b'{"type":"auth","payload":{"userId":"%s","username":"%s"}}'
                              % (user.encode(), user.encode())))
        sides.append((protocol, transport))
    await settle()
    for protocol, _ in sides:
        protocol.feed(masked(b'{"type":"join_room","payload":{"roomId":"r1"}}'))
    await settle()
    (a, ta), (b, tb) = sides
    a.feed(masked(b'{"type":"webrtc","payload":{"kind":"offer","to":"bob","callId":"c1",'
                   b'"roomId":"r1","sdp":{"type":"offer","sdp":"v=0"}}}'))
    await settle()
    b.feed(masked(b'{"type":"webrtc","payload":{"kind":"answer","to":"alice","callId":"c1",'
                   b'"sdp":{"type":"answer","sdp":"v=0"}}}'))
    await settle()
    to_bob, to_alice = ice("bob", args.payload), ice("alice", args.payload)
    turn = asyncio.sleep

    async def relay(n: int) -> None:
        """Each frame in a loop turn of its own: the hub's flush, scheduled by the queued
        frame, runs in that turn, as in the server."""
        for _ in range(n):
            a.feed(to_bob)
            await turn(0)
            b.feed(to_alice)
            await turn(0)

    async def idle(n: int) -> None:
        for _ in range(n):
            await turn(0)
            await turn(0)

    before = tb.writes
    await relay(1)
    if tb.writes == before or b'"from":"alice"' not in tb.last:
        raise SystemExit(f"the candidate was not relayed: {tb.last[:200]!r}")
    await relay(args.frames // 10)  # warm up
    best = best_idle = float("inf")
    for _ in range(args.repeat):
        writes = ta.writes + tb.writes
        start = time.perf_counter()
        await relay(args.frames // 2)
        best = min(best, time.perf_counter() - start)
        if ta.writes + tb.writes - writes != args.frames // 2 * 2:
            raise SystemExit("a frame was not relayed")
        start = time.perf_counter()
        await idle(args.frames // 2)
        best_idle = min(best_idle, time.perf_counter() - start)
    frames = args.frames // 2 * 2
    print(f"{(best - best_idle) / frames * 1e6:.2f} µs per relayed frame "
          f"({len(to_bob)}-byte frames, fastest of {args.repeat} rounds of {frames}; "
          f"an empty loop turn, {best_idle / frames * 1e6:.2f} µs, taken off)")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        await relay(args.frames // 2)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    for _, transport in sides:
        transport.close()
    await node.store.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--payload", type=int, default=1024, help="frame size, bytes")
    ap.add_argument("--profile", action="store_true")
    uvloop.run(main(ap.parse_args()))
