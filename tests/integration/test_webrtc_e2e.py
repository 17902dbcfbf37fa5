"""A real WebRTC call through hubbub (PROTOCOL §Calls): two aiortc peers that signal only
through the server, then really connect, exchange a data-channel message and video.

Each side strips the ICE candidates out of its SDP and trickles them as `ice_candidate`
frames instead (ending with an empty candidate, the browsers' end-of-candidates), so
the call can only connect if hubbub relays every candidate, unchanged, to the right
connection. ICE stays on 127.0.0.1 with no STUN/TURN (docs: DESIGN §6 test tooling).
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

try:
    import aioice.ice
    import av
    from aiortc import (
        RTCConfiguration,
        RTCDataChannel,
        RTCPeerConnection,
        RTCSessionDescription,
        VideoStreamTrack,
    )
    from aiortc.mediastreams import MediaStreamTrack
    from aiortc.sdp import candidate_from_sdp
except ImportError as exc:  # pragma: no cover - CI installs the dev extras
    if os.environ.get("CI"):
        raise  # in CI a missing aiortc is a failure, never a skip
    pytest.skip(f"aiortc is not importable ({exc}); pip install -e '.[dev]'",
                allow_module_level=True)

from tests.integration.helpers import clients
from tests.support.server import running_server
from tests.support.wsclient import WsClient

WAIT_S = 20.0  # every wait is bounded: a broken call fails, it never hangs
CALL_ID = "e2e-call"
WIDTH, HEIGHT = 160, 120


class PatternTrack(VideoStreamTrack):
    """Small grey frames whose brightness changes with each frame."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        for i, plane in enumerate(frame.planes):
            value = (64 + self.sent * 8) % 256 if i == 0 else 128
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


def split_sdp(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """The SDP without its candidates, and the candidates as browsers trickle them:
    `{candidate: "candidate:...", sdpMid, sdpMLineIndex}`, then an empty one per media
    section (end-of-candidates)."""
    kept: list[str] = []
    found: list[tuple[int, str]] = []
    mids: dict[int, str] = {}
    index = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
        elif line.startswith("a=mid:"):
            mids[index] = line[len("a=mid:"):]
        if line.startswith("a=candidate:"):
            found.append((index, line[len("a="):]))
            continue
        if line == "a=end-of-candidates":
            continue
        kept.append(line)
    candidates = [{"candidate": text, "sdpMid": mids[i], "sdpMLineIndex": i}
                  for i, text in found]
    candidates += [{"candidate": "", "sdpMid": mids[i], "sdpMLineIndex": i}
                   for i in sorted(mids)]
    return "\r\n".join(kept) + "\r\n", candidates


async def add_candidate(pc: RTCPeerConnection, c: dict[str, Any]) -> None:
    if not c["candidate"]:
        await pc.addIceCandidate(None)  # end-of-candidates
        return
    candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
    candidate.sdpMid, candidate.sdpMLineIndex = c["sdpMid"], c["sdpMLineIndex"]
    await pc.addIceCandidate(candidate)


async def send_description(ws: WsClient, pc: RTCPeerConnection, to: str, id: str) -> int:
    """Send our local description through hubbub, then trickle its candidates.
    Returns how many real candidates went out."""
    sdp, candidates = split_sdp(pc.localDescription.sdp)
    kind = pc.localDescription.type
    await ws.send("webrtc", {"kind": kind, "to": to, "callId": CALL_ID,
                             "sdp": {"type": kind, "sdp": sdp}}, id=id)
    for n, candidate in enumerate(candidates):
        await ws.send("webrtc", {"kind": "ice_candidate", "to": to, "callId": CALL_ID,
                                 "candidate": candidate}, id=f"{id}-ice{n}")
    return sum(1 for c in candidates if c["candidate"])


async def wait_connected(pc: RTCPeerConnection, tasks: list[asyncio.Task[None]]) -> None:
    """Until `pc` is connected; fails at once if it fails or a signaling loop died."""
    while pc.connectionState != "connected":
        assert pc.connectionState not in ("failed", "closed"), pc.connectionState
        for task in tasks:
            if task.done():
                task.result()  # raises the signaling loop's error
                raise AssertionError("a signaling loop ended before the call connected")
        await asyncio.sleep(0.05)


class Peer:
    """One side of the call: a peer connection plus the frames hubbub sent it."""

    def __init__(self, ws: WsClient, peer_user: str) -> None:
        self.ws = ws
        self.peer_user = peer_user
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.errors: list[dict[str, Any]] = []
        self.relayed_candidates = 0
        self.sent_candidates = 0
        self.ended: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def signal(self) -> None:
        """Handle hubbub frames in arrival order until `call_end`."""
        while True:
            frame = await self.ws.recv(timeout=WAIT_S)
            t, p = frame["type"], frame.get("payload") or {}
            if t == "error":
                self.errors.append(frame)
            elif t == "call_end":
                self.ended.set_result(p)
                return
            elif t == "webrtc":
                assert p["callId"] == CALL_ID and p["from"] == self.peer_user, p
                await self.on_webrtc(p)

    async def on_webrtc(self, p: dict[str, Any]) -> None:
        if p["kind"] == "ice_candidate":
            self.relayed_candidates += bool(p["candidate"]["candidate"])
            await add_candidate(self.pc, p["candidate"])
            return
        await self.pc.setRemoteDescription(RTCSessionDescription(**p["sdp"]))
        if p["kind"] == "offer":
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            self.sent_candidates = await send_description(self.ws, self.pc, self.peer_user,
                                                          "answer")


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers host candidates from every interface except loopback; here it is
    loopback only, so the test needs no network and cannot wander onto eth0."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@contextlib.asynccontextmanager
async def closing(*peers: Peer) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for peer in peers:
            await peer.pc.close()


@pytest.mark.usefixtures("loopback_ice")
async def test_two_aiortc_peers_connect_through_hubbub_signaling():
    async with running_server() as server, clients(server, "ann", "bob") as [ann_ws, bob_ws]:
        await ann_ws.join("r")
        await bob_ws.join("r")
        caller, callee = Peer(ann_ws, "bob"), Peer(bob_ws, "ann")
        async with closing(caller, callee), asyncio.timeout(WAIT_S * 3):
            # The callee's media and data arrive through these.
            video: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
            message: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            @callee.pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                if track.kind == "video" and not video.done():
                    video.set_result(track)

            @callee.pc.on("datachannel")
            def on_datachannel(channel: RTCDataChannel) -> None:
                @channel.on("message")
                def on_message(data: str) -> None:
                    if not message.done():
                        message.set_result(data)

            # The caller: a data channel and a video track, then the offer via hubbub.
            channel = caller.pc.createDataChannel("chat")
            opened = asyncio.Event()
            channel.on("open", opened.set)
            caller.pc.addTrack(PatternTrack())
            await caller.pc.setLocalDescription(await caller.pc.createOffer())
            caller.sent_candidates = await send_description(ann_ws, caller.pc, "bob", "offer")
            assert caller.sent_candidates > 0

            tasks = [asyncio.create_task(p.signal()) for p in (caller, callee)]
            try:
                async with asyncio.timeout(WAIT_S):
                    await wait_connected(caller.pc, tasks)
                    await wait_connected(callee.pc, tasks)
                # Every candidate went through hubbub: the SDPs carried none.
                assert callee.relayed_candidates == caller.sent_candidates
                assert caller.relayed_candidates == callee.sent_candidates > 0

                async with asyncio.timeout(WAIT_S):
                    await opened.wait()
                channel.send("hello over webrtc")
                assert await asyncio.wait_for(message, WAIT_S) == "hello over webrtc"

                track = await asyncio.wait_for(video, WAIT_S)
                frame = await asyncio.wait_for(track.recv(), WAIT_S)
                assert isinstance(frame, av.VideoFrame)
                assert (frame.width, frame.height) == (WIDTH, HEIGHT)

                # Hanging up goes through hubbub too.
                await ann_ws.send("call_end", {"callId": CALL_ID}, id="bye")
                end = await asyncio.wait_for(callee.ended, WAIT_S)
                assert end == {"callId": CALL_ID, "by": "ann", "reason": "hangup"}
                assert caller.errors == [] and callee.errors == []
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
