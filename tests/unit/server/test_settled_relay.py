"""The settled relay (`Hub.relay`, `calls.settled_relay`, ADR 0029) and the call lane behind
it (`Hub.lane_relay`, ADR 0032) send exactly what the general path (`handle_read`) sends:
two nodes in the same state get the same frames, one through the hub as the server runs
it (the lane first when the connection has one, as `Client.on_ws_frame` does), the other
through the general path only, and every connection must read the same bytes and the
metrics agree.

Ann calls Bob from A1; Bob answers on B1. A2 is Ann's other device, Carl is not in the call.
"""

import asyncio
import inspect
from typing import Any

import msgspec
import pytest

from hubbub.core.effects import Effects
from hubbub.features.dispatch import handle_read, read_frame
from hubbub.features.node import Node
from hubbub.features.system import open_session
from hubbub.protocol.frames import WebRTC
from hubbub.server.hub import Conn, Hub
from tests.support.clock import FakeClock
from tests.support.node import asettle, frame, open_node
from tests.unit.server.test_hub_flush import FakeTransport, _closer

CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
             "sdpMid": "0", "sdpMLineIndex": 0}


class Side:
    """One node, its hub, and its connections by name."""

    def __init__(self, node: Node, through_relay: bool) -> None:
        self.node = node
        self.hub = Hub(node, asyncio.get_running_loop())
        self.through_relay = through_relay
        self.conns: dict[str, Conn] = {}
        self.settled = 0  # frames the settled relay or the lane took
        self.laned = 0  # of those, the lane's

    def open(self, name: str) -> None:
        conn = Conn(open_session(self.node), FakeTransport(), _closer)
        self.hub.add(conn)
        self.conns[name] = conn

    async def send(self, name: str, type_: str, payload: dict[str, Any],
                   id: str | None = None) -> None:
        conn = self.conns[name]
        data = frame(type_, payload, id)
        if self.through_relay and conn.lane is not None:
            if self.hub.lane_relay(conn, conn.lane, data):
                self.settled += 1
                self.laned += 1
                self.hub.flush()
                return
            conn.lane = None
        parsed = read_frame(data)
        if self.through_relay and type(parsed) is WebRTC and self.hub.relay(conn, parsed):
            self.settled += 1
        else:
            result = handle_read(self.node, conn.session, parsed)
            effects: Effects = list(await result) if inspect.isawaitable(result) else result
            self.hub.run(await asettle(effects))
        self.hub.flush()

    async def close(self, name: str) -> None:
        self.hub.remove(self.conns.pop(name), 1000, "")
        while self.hub._background:  # the rules for a closed connection ask the directory
            await asyncio.wait(list(self.hub._background))

    def take(self) -> dict[str, list[bytes]]:
        """What each connection was written since the last take."""
        out = {}
        for name, conn in self.conns.items():
            writes: list[bytes] = conn.transport.writes  # type: ignore[attr-defined]
            out[name] = list(writes)
            writes.clear()
        return out


async def pair(**settings: Any) -> tuple[Side, Side]:
    """Two nodes in the same state: Ann (A1) and Bob (B1) in an answered call."""
    sides = []
    for through_relay in (True, False):
        side = Side(await open_node(FakeClock(), dev_identity=True, **settings), through_relay)
        for name, user in (("A1", "ann"), ("A2", "ann"), ("B1", "bob"), ("C1", "carl")):
            side.open(name)
            await side.send(name, "auth", {"userId": user, "username": user})
            await side.send(name, "join_room", {"roomId": "r1"}, id="j")
        await side.send("A1", "webrtc", {"kind": "offer", "to": "bob", "callId": "c1",
                                         "roomId": "r1", "sdp": {"type": "offer", "sdp": "v=0"}},
                        id="o")
        await side.send("B1", "webrtc", {"kind": "answer", "to": "ann", "callId": "c1",
                                         "sdp": {"type": "answer", "sdp": "v=0"}}, id="a")
        side.take()
        sides.append(side)
    return sides[0], sides[1]


def ice(to: str, call_id: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"kind": "ice_candidate", "to": to, "callId": call_id, "candidate": CANDIDATE,
            **extra}


def metrics(node: Node) -> tuple[dict[str, int], ...]:
    m = node.metrics
    return dict(m.frames_in), dict(m.frames_out), dict(m.errors)


async def check(relay: Side, general: Side, name: str, payload: dict[str, Any],
                id: str | None, settled: bool) -> dict[str, list[bytes]]:
    before = relay.settled
    await relay.send(name, "webrtc", payload, id)
    await general.send(name, "webrtc", payload, id)
    assert relay.settled - before == int(settled), "the frame took the other path"
    got = relay.take()
    assert got == general.take()
    assert metrics(relay.node) == metrics(general.node)
    return got


def types(writes: list[bytes]) -> list[tuple[str, Any]]:
    """(type, payload kind or error code) of each frame written (one frame per write)."""
    out = []
    for data in writes:
        body = msgspec.json.decode(data[4:] if data[1] == 126 else data[2:])
        p = body.get("payload") or {}
        out.append((body["type"], p.get("kind") or p.get("code") or p.get("state")))
    return out


@pytest.mark.parametrize(("name", "payload", "id", "settled", "expect"), [
    ("A1", ice("bob"), None, True, {"B1": [("webrtc", "ice_candidate")]}),
    ("A1", ice("bob"), "i1", True, {"B1": [("webrtc", "ice_candidate")],
                                    "A1": [("ack", "active")]}),
    ("B1", ice("ann", **{"from": "bob", "userId": "bob"}), "i2", True,
     {"A1": [("webrtc", "ice_candidate")], "B1": [("ack", "active")]}),
    ("A1", {"kind": "ice_candidate", "to": "bob", "callId": "c1"}, None, True,
     {"B1": [("webrtc", "ice_candidate")]}),
    ("A1", ice("bob", **{"from": "bob"}), "i3", False, {"A1": [("error", "forbidden")]}),
    ("A1", ice("bob", userId=7), "i3", False, {"A1": [("error", "forbidden")]}),
    ("A1", ice("carl"), "i4", False, {"A1": [("error", "bad_request")]}),
    ("A2", ice("bob"), "i5", False, {"A2": [("error", "forbidden")]}),
    ("C1", ice("bob"), "i6", False, {"C1": [("error", "forbidden")]}),
    ("A1", ice("bob", call_id="c2"), "i7", False, {"A1": [("error", "not_found")]}),
    ("A1", {**ice("bob"), "kind": "answer"}, "i8", False, {"A1": [("error", "bad_request")]}),
    ("A1", {**ice("bob"), "candidate": {"candidate": "x\x00"}}, "i9", False,
     {"A1": [("error", "bad_request")]}),
])
@pytest.mark.parametrize("lanes", [False, True], ids=["first-frame", "lanes-open"])
async def test_each_frame_reads_the_same_through_the_settled_relay(
        name: str, payload: dict[str, Any], id: str | None, settled: bool,
        expect: dict[str, list[tuple[str, Any]]], lanes: bool) -> None:
    relay, general = await pair()
    if lanes:  # a candidate each way first: A1 and B1 have a lane for the next ones
        await check(relay, general, "A1", ice("bob"), None, settled=True)
        await check(relay, general, "B1", ice("ann"), None, settled=True)
        assert relay.conns["A1"].lane is not None and relay.conns["B1"].lane is not None
    laned = relay.laned
    got = await check(relay, general, name, payload, id, settled)
    assert {n: types(w) for n, w in got.items() if w} == expect
    # Once open, the lane takes every candidate (not a bare `ice_candidate`) of its call
    # from its connection, acked or not; the settled relay takes the others it settles.
    assert relay.laned - laned == int(lanes and settled and "candidate" in payload
                                      and name in ("A1", "B1"))


async def test_the_lane_carries_every_candidate_after_the_first_byte_for_byte() -> None:
    relay, general = await pair()
    odd = {"candidate": "candidate:2 1 tcp 1 ::1 9 typ host \u00e9 \"q\" </script>",
           "sdpMid": "audio", "sdpMLineIndex": 1, "usernameFragment": None, "n": 2 ** 70}
    for _ in range(5):
        await check(relay, general, "A1", ice("bob"), None, settled=True)
        await check(relay, general, "B1", {**ice("ann"), "candidate": odd}, None, settled=True)
        await check(relay, general, "A1", {**ice("bob"), "candidate": {}}, None, settled=True)
    assert relay.laned == 13  # all but each connection's first


async def test_a_frame_the_lane_does_not_take_drops_it_and_goes_the_general_way() -> None:
    relay, general = await pair()
    await check(relay, general, "A1", ice("bob"), None, settled=True)
    for side in (relay, general):
        await side.send("A1", "chat", {"roomId": "r1", "content": "hi"}, id="m")
        await asyncio.sleep(0)
        assert side.take()  # the chat is answered (ack, broadcast) on both
    assert relay.conns["A1"].lane is None
    await check(relay, general, "A1", ice("bob"), None, settled=True)  # settles again
    await check(relay, general, "A1", ice("bob"), None, settled=True)  # and lanes again
    assert relay.laned == 1


async def test_a_peer_that_is_gone_closes_the_lane() -> None:
    relay, general = await pair()
    await check(relay, general, "A1", ice("bob"), None, settled=True)
    for side in (relay, general):
        side.open("B2")
        await side.send("B2", "auth", {"userId": "bob", "username": "bob"})
        await side.close("B1")
        side.take()
    laned = relay.laned
    got = await check(relay, general, "A1", ice("bob"), None, settled=False)
    assert types(got["B2"]) == [("webrtc", "ice_candidate")]
    assert relay.laned == laned


@pytest.mark.parametrize("id_prefix", ["i", None], ids=["acked", "unacked"])
async def test_over_the_rate_limit_both_paths_refuse_the_same_frames(
        id_prefix: str | None) -> None:
    relay, general = await pair(rate_limit=5.0)  # a burst of 10; the clock stands still
    sent: list[tuple[str, Any]] = []
    for i in range(14):
        # A1's auth, join and offer spent 3 of the burst.
        fid = None if id_prefix is None else f"{id_prefix}{i}"
        got = await check(relay, general, "A1", ice("bob"), fid, settled=i < 7)
        sent += types(got["A1"]) + types(got["B1"])
    assert sent.count(("error", "rate_limited")) == 7
    assert sent.count(("webrtc", "ice_candidate")) == 7
    assert relay.laned == 6  # the first candidate settles; the lane takes the next six


async def test_a_side_left_unowned_takes_the_general_path_until_claimed_again() -> None:
    relay, general = await pair()
    for side in (relay, general):
        side.open("B2")
        await side.send("B2", "auth", {"userId": "bob", "username": "bob"})
        await side.close("B1")  # Bob's owning device drops; B2 remains: the call goes on
        side.take()
    # Bob's side has no owner: Ann's candidate goes to every device of Bob's.
    got = await check(relay, general, "A1", ice("bob"), None, settled=False)
    assert types(got["B2"]) == [("webrtc", "ice_candidate")]
    # B2 speaks for Bob and owns the side from now on; then the relay settles again.
    await check(relay, general, "B2", ice("ann"), None, settled=False)
    got = await check(relay, general, "A1", ice("bob"), None, settled=True)
    assert types(got["B2"]) == [("webrtc", "ice_candidate")]


@pytest.mark.parametrize("lanes", [False, True], ids=["first-frame", "lanes-open"])
async def test_an_ended_call_takes_the_general_path(lanes: bool) -> None:
    relay, general = await pair()
    if lanes:
        await check(relay, general, "A1", ice("bob"), None, settled=True)
    for side in (relay, general):
        await side.send("B1", "call_end", {"callId": "c1"}, id="e")
        side.take()
    got = await check(relay, general, "A1", ice("bob"), "i1", settled=False)
    assert types(got["A1"]) == [("error", "conflict")]
