"""Call signaling end to end (PROTOCOL §Calls): real servers, real sockets, one rule a test.

"Nothing else arrived" is checked with a marker where possible: after the frame under
test was answered, a party sends something known, and the next call frame the other
side sees must be that marker. The hub handles one frame at a time, so anything the
refused frame had caused would have arrived first.
"""

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.helpers import clients, dev_client, http_get, metric
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n"}
CANDIDATE = {
    "candidate": "candidate:842163049 1 udp 1677729535 127.0.0.1 49203 typ srflx "
                 "raddr 0.0.0.0 rport 0 generation 0 ufrag sK4m network-cost 999",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "sK4m",
}
CALL_FRAMES = ("webrtc", "call_end", "call_reject")
RING = 0.5  # --ring-timeout where a test waits for it


# ---- helpers ---------------------------------------------------------------------------


async def offer(c: WsClient, to: str, call_id: str = "c1", id: str = "o1",
                **extra: Any) -> dict[str, Any]:
    return await c.request("webrtc", {"kind": "offer", "to": to, "callId": call_id,
                                      "sdp": OFFER, **extra}, id=id)


async def answer(c: WsClient, to: str, call_id: str = "c1", id: str = "a1",
                 sdp: dict[str, str] = ANSWER) -> dict[str, Any]:
    return await c.request("webrtc", {"kind": "answer", "to": to, "callId": call_id,
                                      "sdp": sdp}, id=id)


async def ice(c: WsClient, to: str, call_id: str = "c1", id: str = "i1",
              candidate: dict[str, Any] = CANDIDATE) -> dict[str, Any]:
    return await c.request("webrtc", {"kind": "ice_candidate", "to": to, "callId": call_id,
                                      "candidate": candidate}, id=id)


async def next_call_frame(c: WsClient) -> dict[str, Any]:
    """The next `webrtc` / `call_end` / `call_reject` frame, skipping room and presence
    traffic."""
    while True:
        frame = await c.recv()
        if frame["type"] in CALL_FRAMES:
            return frame


def acked(frame: dict[str, Any], state: str | None = None) -> dict[str, Any]:
    assert frame["type"] == "ack", frame
    if state is not None:
        assert frame["payload"]["state"] == state, frame
    return frame


def refused(frame: dict[str, Any], code: str) -> None:
    assert frame["type"] == "error", frame
    assert frame["payload"]["code"] == code, frame


async def eventually(fetch: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool],
                     timeout: float = 5.0) -> Any:
    """Poll `fetch` until `ok` holds: the call log is written just after the call ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await fetch()
        if ok(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout}s")
        await asyncio.sleep(0.02)


async def in_room(room: str, *members: WsClient) -> None:
    for m in members:
        await m.join(room)


async def ringing(ann: WsClient, *bob_devices: WsClient) -> None:
    """ann calls bob (call c1); every device of bob hears the offer."""
    acked(await offer(ann, "bob"), "ringing")
    for device in bob_devices:
        await device.expect("webrtc", kind="offer", callId="c1")


async def talking(ann: WsClient, bob: WsClient) -> None:
    """ann and bob in call c1, answered by this `bob` connection."""
    await ringing(ann, bob)
    acked(await answer(bob, "ann"), "active")
    await ann.expect("webrtc", kind="answer", callId="c1")


# ---- offer, answer, ice --------------------------------------------------------------------


async def test_an_offer_is_relayed_to_the_callee_with_from_to_and_call_id():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        ack = acked(await offer(ann, "bob"))
        assert ack["payload"] == {"callId": "c1", "state": "ringing"}
        event = await bob.expect("webrtc")
        assert event["payload"] == {"kind": "offer", "from": "ann", "to": "bob",
                                    "callId": "c1", "sdp": OFFER}


async def test_an_offer_without_a_call_id_gets_one_from_the_server():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        ack = await ann.request("webrtc", {"kind": "offer", "to": "bob", "sdp": OFFER}, id="o")
        call_id = acked(ack, "ringing")["payload"]["callId"]
        assert call_id
        event = await bob.expect("webrtc")
        assert event["payload"]["callId"] == call_id


async def test_the_answer_is_relayed_back_to_the_caller():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await ringing(ann, bob)
        ack = acked(await answer(bob, "ann"))
        assert ack["payload"] == {"callId": "c1", "state": "active"}
        event = await ann.expect("webrtc")
        assert event["payload"] == {"kind": "answer", "from": "bob", "to": "ann",
                                    "callId": "c1", "sdp": ANSWER}


async def test_ice_candidates_are_relayed_unchanged_both_ways():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await ringing(ann, bob)
        acked(await ice(ann, "bob"))  # trickled right after the offer, while ringing
        event = await bob.expect("webrtc", kind="ice_candidate")
        assert event["payload"] == {"kind": "ice_candidate", "from": "ann", "to": "bob",
                                    "callId": "c1", "candidate": CANDIDATE}
        await answer(bob, "ann")
        other = {**CANDIDATE, "candidate": CANDIDATE["candidate"].replace("49203", "50000")}
        acked(await ice(bob, "ann", candidate=other))
        event = await ann.expect("webrtc", kind="ice_candidate")
        assert event["payload"] == {"kind": "ice_candidate", "from": "bob", "to": "ann",
                                    "callId": "c1", "candidate": other}


async def test_a_stream_of_candidates_arrives_whole_and_in_order_until_the_call_ends():
    """Past the first candidate of an answered call, the next ones take the call lane
    (ADR 0032): each arrives unchanged, in order with the sender's other frames, and the
    lane ends with the call."""
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await talking(ann, bob)
        sent = [{**CANDIDATE, "candidate": f"candidate:{k} 1 udp 1 10.0.0.{k} 9 typ host"}
                for k in range(6)]
        for k, candidate in enumerate(sent):  # every other one asks for an ack
            await ann.send("webrtc", {"kind": "ice_candidate", "to": "bob", "callId": "c1",
                                      "candidate": candidate}, id=f"i{k}" if k % 2 else None)
            if k == 2:
                await ann.send("chat", {"roomId": "r", "content": "between"})
        order, candidates = [], []
        while len(order) < len(sent) + 1:
            frame = await bob.recv()
            if frame["type"] == "webrtc":
                candidates.append(frame["payload"].pop("candidate"))
                assert frame["payload"] == {"kind": "ice_candidate", "from": "ann",
                                            "to": "bob", "callId": "c1"}
            if frame["type"] in ("webrtc", "chat"):
                order.append(frame["type"])
        assert candidates == sent
        assert order == ["webrtc"] * 3 + ["chat"] + ["webrtc"] * 3
        for k in (1, 3, 5):
            ack = await ann.expect("ack")
            assert (ack["id"], ack["payload"]) == (f"i{k}", {"callId": "c1", "state": "active"})
        acked(await bob.request("call_end", {"callId": "c1"}, id="e"), "ended")
        await ann.expect("call_end")
        await ann.send("webrtc", {"kind": "ice_candidate", "to": "bob", "callId": "c1",
                                  "candidate": CANDIDATE})
        error = await ann.expect("error")
        assert error["payload"]["code"] == "conflict"
        await bob.nothing()


async def test_a_frame_naming_the_wrong_peer_is_a_bad_request():
    async with running_server() as server, \
            clients(server, "ann", "bob", "carl") as [ann, bob, _carl]:
        await in_room("r", ann, bob)
        await ringing(ann, bob)
        refused(await ice(ann, "carl"), "bad_request")


# ---- who may call whom -------------------------------------------------------------------


async def test_a_callee_who_shares_no_room_is_forbidden_and_hears_nothing():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await ann.join("r1")
        await bob.join("r2")
        refused(await offer(ann, "bob"), "forbidden")
        # Marker: the next call frame bob sees is a later, allowed call.
        await ann.join("r2")
        acked(await offer(ann, "bob", call_id="c2", id="o2"))
        assert (await next_call_frame(bob))["payload"]["callId"] == "c2"


async def test_an_offer_naming_a_room_both_are_in_is_relayed_with_the_room():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        acked(await offer(ann, "bob", roomId="r"))
        event = await bob.expect("webrtc")
        assert event["payload"]["roomId"] == "r"


async def test_an_offer_naming_a_room_the_callee_is_not_in_is_forbidden():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await ann.join("ann-only")
        refused(await offer(ann, "bob", roomId="ann-only"), "forbidden")


async def test_calling_an_offline_user_is_not_found():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await bob.close()
        refused(await offer(ann, "bob"), "not_found")


async def test_calling_a_user_gone_offline_after_the_grace_is_not_found():
    # Past the presence grace bob has left every room; he is offline, not a stranger.
    async with running_server(presence_grace=0) as server, \
            clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await bob.close()
        assert (await ann.expect("presence"))["payload"]["status"] == "offline"
        refused(await offer(ann, "bob"), "not_found")


async def test_calling_an_online_stranger_is_forbidden_and_an_unknown_user_not_found():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, _bob]:
        refused(await offer(ann, "bob"), "forbidden")
        refused(await offer(ann, "nobody", call_id="c2", id="o2"), "not_found")


async def test_calling_a_user_in_another_call_gives_call_reject_busy():
    async with running_server() as server, \
            clients(server, "ann", "bob", "carl") as [ann, bob, carl]:
        await in_room("r", ann, bob, carl)
        acked(await offer(carl, "bob", call_id="c0"))
        await bob.expect("webrtc", callId="c0")
        acked(await answer(bob, "carl", call_id="c0"))
        acked(await offer(ann, "bob"), "ended")
        reject = await ann.expect("call_reject")
        assert reject["payload"] == {"callId": "c1", "by": "bob", "reason": "busy"}
        # bob's phone did not ring: his next call frame is carl's.
        acked(await ice(carl, "bob", call_id="c0"))
        assert (await next_call_frame(bob))["payload"]["callId"] == "c0"


async def test_glare_the_second_offer_is_a_conflict_naming_the_ringing_call():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        acked(await offer(ann, "bob", call_id="from-ann"))
        error = await offer(bob, "ann", call_id="from-bob", id="o2")
        refused(error, "conflict")
        assert "from-ann" in error["payload"]["message"]
        # The advice works: bob answers ann's call instead.
        acked(await answer(bob, "ann", call_id="from-ann"), "active")


# ---- several devices ------------------------------------------------------------------------


async def test_every_device_rings_the_first_answer_owns_the_call():
    async with running_server() as server, clients(server, "ann") as [ann], \
            await dev_client(server, "bob") as phone, await dev_client(server, "bob") as laptop:
        await in_room("r", ann, phone, laptop)
        await ringing(ann, phone, laptop)
        acked(await ice(ann, "bob", id="i0"))  # while ringing: every device
        for device in (phone, laptop):
            await device.expect("webrtc", kind="ice_candidate")

        acked(await answer(phone, "ann"), "active")
        await ann.expect("webrtc", kind="answer")
        elsewhere = await next_call_frame(laptop)
        assert (elsewhere["type"], elsewhere["payload"]) == (
            "call_end", {"callId": "c1", "by": "bob", "reason": "answered_elsewhere"})
        refused(await answer(laptop, "ann", id="a2"), "forbidden")

        acked(await ice(ann, "bob"))  # after the answer: the owner only
        event = await next_call_frame(phone)
        assert event["payload"]["kind"] == "ice_candidate"
        refused(await ice(laptop, "ann", id="i2"), "forbidden")
        acked(await ann.request("chat", {"roomId": "r", "content": "marker"}, id="m"))
        frame = await laptop.expect("chat")  # the marker, with no ice before it
        assert frame["payload"]["content"] == "marker"


# ---- only the two parties ------------------------------------------------------------------


INJECTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "ice_candidate": ("webrtc", {"kind": "ice_candidate", "to": "bob", "callId": "c1",
                                 "candidate": CANDIDATE}),
    "answer": ("webrtc", {"kind": "answer", "to": "ann", "callId": "c1", "sdp": ANSWER}),
    "offer": ("webrtc", {"kind": "offer", "to": "bob", "callId": "c1", "sdp": OFFER}),
    "call_end": ("call_end", {"callId": "c1"}),
    "call_reject": ("call_reject", {"callId": "c1"}),
}


@pytest.mark.parametrize("active", [False, True], ids=["ringing", "active"])
@pytest.mark.parametrize("what", sorted(INJECTIONS))
async def test_a_third_user_cannot_inject_anything_into_a_call(what: str, active: bool):
    async with running_server() as server, \
            clients(server, "ann", "bob", "mallory") as [ann, bob, mallory]:
        await in_room("r", ann, bob, mallory)
        if active:
            await talking(ann, bob)
        else:
            await ringing(ann, bob)
        type_, payload = INJECTIONS[what]
        refused(await mallory.request(type_, payload, id="evil"), "forbidden")
        # Markers both ways: the call is intact and nothing reached either party first.
        acked(await ice(ann, "bob", id="m1"))
        marker = await next_call_frame(bob)
        assert (marker["payload"]["from"], marker["payload"]["kind"]) == ("ann", "ice_candidate")
        acked(await ice(bob, "ann", id="m2"))
        marker = await next_call_frame(ann)
        assert (marker["payload"]["from"], marker["payload"]["kind"]) == ("bob", "ice_candidate")


async def test_a_frame_about_an_unknown_call_is_not_found():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        refused(await ice(ann, "bob", call_id="nope"), "not_found")
        refused(await ann.request("call_end", {"callId": "nope"}, id="e"), "not_found")


async def test_a_frame_about_an_ended_call_is_a_conflict():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await talking(ann, bob)
        acked(await ann.request("call_end", {"callId": "c1"}, id="e"), "ended")
        error = await ice(bob, "ann")
        refused(error, "conflict")
        assert "ended" in error["payload"]["message"]


# ---- how calls end ------------------------------------------------------------------------


async def test_an_unanswered_call_times_out_on_both_sides():
    async with running_server(ring_timeout=RING) as server, \
            clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await ringing(ann, bob)
        for side in (ann, bob):
            end = await side.expect("call_end")
            assert end["payload"] == {"callId": "c1", "by": "bob", "reason": "timeout"}


async def test_an_answered_call_does_not_time_out():
    async with running_server(ring_timeout=RING) as server, \
            clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await talking(ann, bob)
        await asyncio.sleep(RING * 3)  # let several ring timeouts pass
        acked(await ice(ann, "bob"), "active")
        assert (await next_call_frame(bob))["payload"]["kind"] == "ice_candidate"


@pytest.mark.parametrize("active", [False, True], ids=["ringing", "active"])
async def test_when_a_partys_last_connection_drops_the_other_hears_disconnected(active: bool):
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await (talking(ann, bob) if active else ringing(ann, bob))
        await bob.close()
        end = await ann.expect("call_end")
        assert end["payload"] == {"callId": "c1", "by": "bob", "reason": "disconnected"}


async def test_a_device_dropping_while_another_remains_does_not_end_the_call():
    async with running_server() as server, clients(server, "ann") as [ann], \
            await dev_client(server, "bob") as phone, await dev_client(server, "bob") as laptop:
        await in_room("r", ann, phone)
        await ringing(ann, phone, laptop)
        await laptop.close()
        acked(await answer(phone, "ann"), "active")
        assert (await next_call_frame(ann))["payload"]["kind"] == "answer"


async def test_the_callee_rejects_and_the_caller_gets_call_reject():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await ringing(ann, bob)
        acked(await bob.request("call_reject", {"callId": "c1"}, id="x"), "ended")
        reject = await ann.expect("call_reject")
        assert reject["payload"] == {"callId": "c1", "by": "bob", "reason": "rejected"}


async def test_the_caller_may_not_reject_their_own_call():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await ringing(ann, bob)
        refused(await ann.request("call_reject", {"callId": "c1"}, id="x"), "forbidden")


@pytest.mark.parametrize("who", ["ann", "bob"])
async def test_hanging_up_sends_call_end_hangup_to_the_other_party(who: str):
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await talking(ann, bob)
        me, other = (ann, bob) if who == "ann" else (bob, ann)
        acked(await me.request("call_end", {"callId": "c1"}, id="e"), "ended")
        end = await other.expect("call_end")
        assert end["payload"] == {"callId": "c1", "by": who, "reason": "hangup"}


async def test_the_caller_cancelling_a_ringing_call_stops_every_device():
    async with running_server() as server, clients(server, "ann") as [ann], \
            await dev_client(server, "bob") as phone, await dev_client(server, "bob") as laptop:
        await in_room("r", ann, phone)
        await ringing(ann, phone, laptop)
        acked(await ann.request("call_end", {"callId": "c1"}, id="e"))
        for device in (phone, laptop):
            end = await device.expect("call_end")
            assert end["payload"] == {"callId": "c1", "by": "ann", "reason": "hangup"}


async def test_the_callee_declining_on_one_device_stops_the_others():
    async with running_server() as server, clients(server, "ann") as [ann], \
            await dev_client(server, "bob") as phone, await dev_client(server, "bob") as laptop:
        await in_room("r", ann, phone)
        await ringing(ann, phone, laptop)
        acked(await phone.request("call_end", {"callId": "c1"}, id="e"))
        assert (await ann.expect("call_end"))["payload"]["reason"] == "hangup"
        assert (await laptop.expect("call_end"))["payload"]["by"] == "bob"


# ---- renegotiation -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["ann", "bob"])
async def test_either_party_may_renegotiate_an_active_call(who: str):
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await talking(ann, bob)
        me, other, peer = (ann, bob, "bob") if who == "ann" else (bob, ann, "ann")
        restart = {"type": "offer", "sdp": OFFER["sdp"] + "a=ice-options:trickle\r\n"}
        ack = await me.request("webrtc", {"kind": "offer", "to": peer, "callId": "c1",
                                          "sdp": restart}, id="re")
        acked(ack, "active")
        event = await next_call_frame(other)
        assert event["payload"] == {"kind": "offer", "from": who, "to": peer,
                                    "callId": "c1", "sdp": restart}
        acked(await answer(other, who, id="re-a"), "active")
        event = await next_call_frame(me)
        assert (event["payload"]["kind"], event["payload"]["from"]) == ("answer", peer)


# ---- the call log and metrics ----------------------------------------------------------------


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("callId", "caller", "callee", "roomId", "endReason",
                                        "endedBy")}


async def _finished_calls(ann: WsClient, bob: WsClient) -> None:
    """c1: ann -> bob in room r, answered, ann hangs up. c2: ann -> bob, bob rejects."""
    acked(await offer(ann, "bob", roomId="r"))
    await bob.expect("webrtc", callId="c1")
    acked(await answer(bob, "ann"))
    await ann.expect("webrtc", kind="answer")
    acked(await ann.request("call_end", {"callId": "c1"}, id="e1"))
    await bob.expect("call_end")
    acked(await offer(ann, "bob", call_id="c2", id="o2"))
    await bob.expect("webrtc", callId="c2")
    acked(await bob.request("call_reject", {"callId": "c2"}, id="x2"))
    await ann.expect("call_reject")


def _check_log(calls: list[dict[str, Any]]) -> None:
    by_id = {c["callId"]: c for c in calls}
    assert _fields(by_id["c1"]) == {"callId": "c1", "caller": "ann", "callee": "bob",
                                    "roomId": "r", "endReason": "hangup", "endedBy": "ann"}
    c1 = by_id["c1"]
    assert c1["startedAt"] <= c1["answeredAt"] <= c1["endedAt"]
    assert c1["durationMs"] == c1["endedAt"] - c1["answeredAt"]
    assert _fields(by_id["c2"]) == {"callId": "c2", "caller": "ann", "callee": "bob",
                                    "roomId": None, "endReason": "rejected", "endedBy": "bob"}
    assert by_id["c2"].get("answeredAt") is None and by_id["c2"].get("durationMs") is None
    starts = [c["startedAt"] for c in calls]
    assert starts == sorted(starts, reverse=True)  # newest first


async def test_call_history_lists_the_finished_calls_of_the_user():
    async with running_server() as server, \
            clients(server, "ann", "bob", "carl") as [ann, bob, carl]:
        await in_room("r", ann, bob)
        await _finished_calls(ann, bob)

        async def history(c: WsClient) -> list[dict[str, Any]]:
            ack = await c.request("call_history", {}, id="h")
            calls: list[dict[str, Any]] = acked(ack)["payload"]["calls"]
            return calls

        for who in (ann, bob):
            _check_log(await eventually(lambda who=who: history(who), lambda c: len(c) == 2))
        assert await history(carl) == []


async def test_get_api_calls_lists_the_finished_calls_of_the_user():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await _finished_calls(ann, bob)

        async def fetch() -> tuple[int, str, str]:
            return await http_get(server, "/api/calls", headers={"X-Hubbub-User": "bob"})

        def two(result: tuple[int, str, str]) -> bool:
            return result[0] == 200 and result[2].count('"callId"') == 2

        status, content_type, body = await eventually(fetch, two)
        assert content_type.startswith("application/json")
        _check_log(json.loads(body)["calls"])
        status, _, _ = await http_get(server, "/api/calls")
        assert status == 401


async def test_metrics_count_calls():
    async with running_server() as server, clients(server, "ann", "bob") as [ann, bob]:
        await in_room("r", ann, bob)
        await ringing(ann, bob)
        assert await metric(server, "hubbub_calls_live") == 1
        acked(await ann.request("call_end", {"callId": "c1"}, id="e0"))
        await bob.expect("call_end")
        await _two_more_calls(ann, bob)
        assert await metric(server, "hubbub_calls_started_total") == 3
        assert await metric(server, "hubbub_calls_answered_total") == 1
        assert await metric(server, "hubbub_calls_rejected_total") == 1
        assert await metric(server, "hubbub_calls_ended_total", reason="hangup") == 2
        assert await metric(server, "hubbub_calls_ended_total", reason="rejected") == 1
        assert await metric(server, "hubbub_calls_live") == 0
        ring = await metric(server, "hubbub_call_ring_seconds_total")
        talk = await metric(server, "hubbub_call_talk_seconds_total")
        assert ring is not None and ring >= 0 and talk is not None and talk >= 0
        assert await metric(server, "hubbub_calls_busy_total") == 0
        assert await metric(server, "hubbub_calls_timed_out_total") == 0


async def _two_more_calls(ann: WsClient, bob: WsClient) -> None:
    """Two more calls: c1b answered then hung up, c2 rejected."""
    acked(await offer(ann, "bob", call_id="c1b", id="o1b"))
    await bob.expect("webrtc", callId="c1b")
    acked(await answer(bob, "ann", call_id="c1b"))
    acked(await bob.request("call_end", {"callId": "c1b"}, id="e1b"))
    await ann.expect("call_end", callId="c1b")
    acked(await offer(ann, "bob", call_id="c2", id="o2"))
    await bob.expect("webrtc", callId="c2")
    acked(await bob.request("call_reject", {"callId": "c2"}, id="x2"))
    await ann.expect("call_reject")


# ---- ICE servers ---------------------------------------------------------------------------


async def test_welcome_carries_stun_and_turn_with_turn_rest_credentials():
    async with running_server(stun=["stun:stun.example.org"], turn=["turn:turn.example.org"],
                              turn_secret="s") as server, \
            await WsClient.open(ws_url(server)) as ann:
        welcome = (await ann.auth("ann"))["payload"]
    servers = welcome["iceServers"]
    assert servers[0] == {"urls": ["stun:stun.example.org"]}
    turn = servers[1]
    assert turn["urls"] == ["turn:turn.example.org"]
    expiry, user = turn["username"].split(":", 1)
    assert user == "ann"
    assert int(expiry) == welcome["serverTime"] // 1000 + 3600  # --turn-ttl default
    expected = hmac.new(b"s", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(expected).decode()
