"""Each new call makes every device of the callee ring, so a user's new calls draw on one
budget on a node, shared by all of their connections (docs/decisions/0042)."""

from hubbub.core.presence import CALL_BURST
from hubbub.features.node import Node
from tests.support.clock import FakeClock
from tests.support.node import asend, connect
from tests.unit.features.helpers import errors, in_room, join, received

SDP = {"type": "offer", "sdp": "v=0"}


async def test_new_calls_beyond_the_burst_are_rate_limited_and_do_not_ring(
        node: Node, clock: FakeClock) -> None:
    devices = [connect(node, "ann") for _ in range(3)]
    bob = connect(node, "bob")
    await join(node, devices[0], "r1")
    await join(node, bob, "r1")
    rang = 0
    for i in range(int(CALL_BURST) + 3):
        offer = await asend(node, devices[i % 3], "webrtc", {
            "kind": "offer", "to": "bob", "callId": f"c{i}", "roomId": "r1", "sdp": SDP},
            id=f"o{i}")
        rang += len(received(node, offer, bob, "webrtc"))
        if not errors(offer):
            end = await asend(node, devices[i % 3], "call_end", {"callId": f"c{i}"})
            assert not errors(end), end
    assert rang == CALL_BURST
    clock.advance(5000)
    later = await asend(node, devices[0], "webrtc", {
        "kind": "offer", "to": "bob", "callId": "later", "roomId": "r1", "sdp": SDP}, id="l")
    assert len(received(node, later, bob, "webrtc")) == 1


async def test_a_refused_new_call_says_when_to_try_again(node: Node) -> None:
    ann, _bob = await in_room(node, "ann", "bob")
    for i in range(int(CALL_BURST)):
        await asend(node, ann, "webrtc", {"kind": "offer", "to": "bob", "callId": f"c{i}",
                                          "roomId": "r1", "sdp": SDP}, id=f"o{i}")
        await asend(node, ann, "call_end", {"callId": f"c{i}"})
    refused = errors(await asend(node, ann, "webrtc", {
        "kind": "offer", "to": "bob", "callId": "one-more", "roomId": "r1", "sdp": SDP},
        id="x"))
    assert [e["code"] for e in refused] == ["rate_limited"]
    assert refused[0]["retryAfterMs"] > 0
    assert "one-more" not in node.calls.calls
