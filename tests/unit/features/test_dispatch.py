"""From raw frame to effects (PROTOCOL §Errors, §Authentication; DESIGN.md §5.6): every
refusal becomes one `error` frame here; abuse closes with 4008; rate limits answer
`rate_limited` with `retryAfterMs`; a foreign `userId`/`from` is `forbidden`."""

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.core.effects import Close, Effects, Reply
from hubbub.core.session import Session
from hubbub.features.dispatch import handle_frame
from hubbub.features.node import Node
from hubbub.features.system import open_session
from hubbub.ids import RoomId, UserId
from hubbub.protocol.codes import STRIKE_CODES, CloseCode, ErrorCode
from tests.support.clock import FakeClock
from tests.support.node import asend, connect, error_code, make_node, payload, status_of
from tests.unit.features.conftest import MakeNode
from tests.unit.features.helpers import closes, inbox, join, received


async def raw(node: Node, s: Session, data: bytes | str) -> Effects:
    result = handle_frame(node, s, data)
    return list(await result) if inspect.isawaitable(result) else list(result)


async def _awaited(result: Awaitable[Effects]) -> Effects:
    return await result


def only_error(effects: Effects) -> dict[str, Any]:
    assert len(effects) == 1 and isinstance(effects[0], Reply), effects
    assert effects[0].type == "error"
    return payload(effects[0])


# ---- errors ------------------------------------------------------------------------


async def test_a_frame_that_is_not_json_gets_bad_request_and_the_connection_stays(
    node: Node,
) -> None:
    s = connect(node, "ann")
    effects = await raw(node, s, b"{nope")
    assert only_error(effects)["code"] == "bad_request"
    assert isinstance(effects[0], Reply) and effects[0].id is None
    assert not s.closing


async def test_an_error_carries_a_message(node: Node) -> None:
    s = connect(node, "ann")
    err = only_error(await raw(node, s, b"[]"))
    assert err["code"] == "bad_request" and isinstance(err["message"], str) and err["message"]


async def test_an_unknown_type_gets_unknown_type_with_the_frame_id(node: Node) -> None:
    s = connect(node, "ann")
    effects = await raw(node, s, b'{"type":"teleport","id":"f9","payload":{}}')
    assert only_error(effects)["code"] == "unknown_type"
    assert isinstance(effects[0], Reply) and effects[0].id == "f9"


async def test_an_unknown_type_or_bad_payload_before_auth_is_unauthorized(node: Node) -> None:
    s = open_session(node)
    assert only_error(await raw(node, s, b'{"type":"teleport"}'))["code"] == "unauthorized"
    effects = await raw(node, s, b'{"type":"typing","id":"t1","payload":{"roomId":"r1"}}')
    assert only_error(effects)["code"] == "unauthorized"
    assert isinstance(effects[0], Reply) and effects[0].id == "t1"
    assert only_error(await raw(node, s, b'{"type":"ping","payload":[]}'))["code"] == "bad_request"
    assert only_error(await raw(node, s, b"[]"))["code"] == "bad_request"
    assert s.identity is None


async def test_a_bad_payload_is_bad_request_with_the_frame_id(node: Node) -> None:
    s = connect(node, "ann")
    effects = await raw(node, s, b'{"type":"typing","id":"t1","payload":{"roomId":"r1"}}')
    assert only_error(effects)["code"] == "bad_request"
    assert isinstance(effects[0], Reply) and effects[0].id == "t1"


async def test_an_invalid_frame_id_gets_an_error_without_id(node: Node) -> None:
    s = connect(node, "ann")
    effects = await raw(node, s, b'{"type":"ping","id":"' + b"x" * 65 + b'"}')
    assert only_error(effects)["code"] == "bad_request"
    assert isinstance(effects[0], Reply) and effects[0].id is None


async def test_a_refused_frame_without_id_still_gets_an_error(node: Node) -> None:
    s = connect(node, "ann")
    effects = await asend(node, s, "leave_room", {"roomId": "r1"})
    assert only_error(effects)["code"] == "not_in_room"


async def test_an_auth_frame_after_auth_is_bad_request(node: Node) -> None:
    s = connect(node, "ann")
    assert error_code(await asend(node, s, "auth", {"userId": "ann"})) == "bad_request"


async def test_errors_are_counted_by_code(node: Node) -> None:
    s = connect(node, "ann")
    await raw(node, s, b"nope")
    await raw(node, s, b"nope")
    await asend(node, s, "leave_room", {"roomId": "r1"})
    assert node.metrics.errors["bad_request"] == 2
    assert node.metrics.errors["not_in_room"] == 1


# ---- strikes ------------------------------------------------------------------------


async def test_repeated_bad_frames_close_the_connection_with_4008(node: Node) -> None:
    s = connect(node, "ann")
    burst = int(node.limits.strike_burst)
    for _ in range(burst):
        effects = await raw(node, s, b"nope")
        assert closes(effects) == []
    effects = await raw(node, s, b"nope")
    assert error_code(effects) == "bad_request"
    assert [(c.conn, c.code) for c in closes(effects)] == [(s.conn, CloseCode.TOO_MANY_BAD_FRAMES)]
    assert int(CloseCode.TOO_MANY_BAD_FRAMES) == 4008
    assert s.closing


async def test_the_error_is_sent_before_the_4008_close(node: Node) -> None:
    s = connect(node, "ann")
    for _ in range(int(node.limits.strike_burst)):
        await raw(node, s, b"nope")
    effects = await raw(node, s, b"nope")
    assert [type(e) for e in effects] == [Reply, Close]


async def test_strikes_are_forgiven_over_time(node: Node, clock: FakeClock) -> None:
    s = connect(node, "ann")
    for _ in range(int(node.limits.strike_burst)):
        await raw(node, s, b"nope")
    clock.advance(int(1000 / node.limits.strike_refill_per_second))
    assert closes(await raw(node, s, b"nope")) == []


@pytest.mark.parametrize("frame", [b"nope", b'{"type":"teleport"}'])
async def test_unknown_types_and_bad_frames_are_strikes(node: Node, frame: bytes) -> None:
    s = connect(node, "ann")
    effects: Effects = []
    for _ in range(int(node.limits.strike_burst) + 1):
        effects = await raw(node, s, frame)
    assert closes(effects) != []


async def test_unauthorized_frames_are_strikes(node: Node) -> None:
    s = open_session(node)
    effects: Effects = []
    for _ in range(int(node.limits.strike_burst) + 1):
        effects = await asend(node, s, "typing", {"roomId": "r1", "isTyping": True})
    assert error_code(effects) == "unauthorized"
    assert closes(effects) != []


async def test_not_in_room_and_forbidden_are_not_strikes(node: Node) -> None:
    s = connect(node, "ann")
    effects: Effects = []
    for _ in range(int(node.limits.strike_burst) * 2):
        effects += await asend(node, s, "leave_room", {"roomId": "r1"})
        effects += await asend(node, s, "presence", {"status": "away", "userId": "bob"})
    assert closes(effects) == []
    assert not s.closing


def test_strike_codes_are_the_client_misbehaviour_codes() -> None:
    assert {
        ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_TYPE, ErrorCode.UNAUTHORIZED,
        ErrorCode.TOO_LARGE, ErrorCode.RATE_LIMITED} == STRIKE_CODES


# ---- rate limits ---------------------------------------------------------------------


async def test_frames_over_the_rate_limit_get_rate_limited_with_retry_after_ms(
    make: MakeNode,
) -> None:
    node = await make(rate_limit=1)  # 1 frame/s, burst 2
    s = connect(node, "ann")  # the auth frame took one
    await asend(node, s, "ping", {})
    effects = await asend(node, s, "ping", {}, id="p3")
    err = only_error(effects)
    assert (err["code"], err["retryAfterMs"]) == ("rate_limited", 1000)
    assert isinstance(effects[0], Reply) and effects[0].id == "p3"


async def test_a_rate_below_half_a_frame_a_second_still_lets_a_frame_through(
    make: MakeNode, clock: FakeClock
) -> None:
    # A burst of 2 x 0.25 would be half a frame: every frame refused, the auth included.
    node = await make(rate_limit=0.25, chat_rate=0.25)
    s = connect(node, "ann")  # the auth frame took the one frame of the burst
    assert s.identity is not None
    clock.advance(4_000)
    assert error_code(await asend(node, s, "ping", {})) is None
    assert error_code(await asend(node, s, "ping", {})) == "rate_limited"


async def test_a_rate_limited_frame_is_not_handled(make: MakeNode) -> None:
    node = await make(rate_limit=1)
    ann = connect(node, "ann")
    await asend(node, ann, "presence", {"status": "busy"})
    effects = await asend(node, ann, "presence", {"status": "away"})
    assert error_code(effects) == "rate_limited"
    assert status_of(node, "ann") == "busy"


async def test_a_rate_limited_client_is_served_again_after_retry_after_ms(
    make: MakeNode, clock: FakeClock
) -> None:
    node = await make(rate_limit=1)
    s = connect(node, "ann")
    await asend(node, s, "ping", {})
    wait = only_error(await asend(node, s, "ping", {}))["retryAfterMs"]
    clock.advance(wait - 1)
    assert error_code(await asend(node, s, "ping", {})) == "rate_limited"
    clock.advance(1)
    assert error_code(await asend(node, s, "ping", {})) is None


async def test_retry_after_ms_is_what_remains_of_the_wait(
    make: MakeNode, clock: FakeClock
) -> None:
    node = await make(rate_limit=4)  # burst 8, one token every 250 ms
    s = connect(node, "ann")
    for _ in range(7):
        await asend(node, s, "ping", {})
    clock.advance(100)
    assert only_error(await asend(node, s, "ping", {}))["retryAfterMs"] == 150


async def test_frames_before_auth_are_rate_limited_too(make: MakeNode) -> None:
    node = await make(rate_limit=1)
    s = open_session(node)
    await asend(node, s, "ping", {})
    await asend(node, s, "ping", {})
    assert error_code(await asend(node, s, "ping", {})) == "rate_limited"


async def test_rate_limit_zero_turns_limits_off(make: MakeNode) -> None:
    node = await make(rate_limit=0)
    s = connect(node, "ann")
    for _ in range(1000):
        assert error_code(await asend(node, s, "ping", {})) is None


async def test_joins_over_their_own_rate_limit_get_rate_limited(node: Node) -> None:
    s = connect(node, "ann")
    burst = int(node.limits.join_burst)
    for i in range(burst):
        await join(node, s, f"r{i}")
    effects = await asend(node, s, "join_room", {"roomId": "one-more"}, id="j")
    err = only_error(effects)
    assert err["code"] == "rate_limited" and err["retryAfterMs"] > 0
    assert "one-more" not in s.rooms


@pytest.mark.parametrize("max_rooms", [100, 150])
async def test_a_reconnecting_client_can_rejoin_all_its_rooms_at_once(
        make: MakeNode, max_rooms: int) -> None:
    node = await make(max_rooms=max_rooms)  # the frame burst is 200
    s = connect(node, "ann")
    await asend(node, s, "presence", {"status": "away"})
    for i in range(max_rooms):
        assert error_code(await asend(node, s, "join_room", {"roomId": f"r{i}", "since": 0},
                                      id=f"j{i}")) is None, i
    assert len(s.rooms) == max_rooms


# ---- identity: a foreign userId / from -----------------------------------------------

FOREIGN: list[tuple[str, dict[str, Any]]] = [
    ("presence", {"status": "away", "userId": "bob"}),
    ("presence", {"status": "away", "from": "bob"}),
    ("typing", {"roomId": "r1", "isTyping": True, "userId": "bob"}),
    ("typing", {"roomId": "r1", "isTyping": True, "from": "bob"}),
    ("join_room", {"roomId": "r2", "userId": "bob"}),
    ("leave_room", {"roomId": "r1", "userId": "bob"}),
    ("chat", {"roomId": "r1", "content": "hi from bob", "userId": "bob"}),
    ("webrtc", {"kind": "offer", "to": "carol", "from": "bob", "callId": "c1",
                "sdp": {"type": "offer", "sdp": "v=0"}}),
    ("ping", {"userId": "bob"}),
]


@pytest.mark.parametrize(("type_", "body"), FOREIGN, ids=[f"{t}-{sorted(b)}" for t, b in FOREIGN])
async def test_a_foreign_user_id_or_from_is_forbidden_and_nothing_is_broadcast(
    node: Node, type_: str, body: dict[str, Any]
) -> None:
    ann, bob, carol = connect(node, "ann"), connect(node, "bob"), connect(node, "carol")
    for s in (ann, bob, carol):
        await join(node, s, "r1")
    effects = await asend(node, ann, type_, body, id="x1")
    assert only_error(effects)["code"] == "forbidden"
    assert isinstance(effects[0], Reply) and effects[0].id == "x1"
    assert inbox(node, effects, bob) == [] and inbox(node, effects, carol) == []
    assert ann.rooms == {"r1"}
    assert node.rooms.is_member(RoomId("r1"), UserId("ann"))
    assert status_of(node, "ann") == "online"
    assert not node.typing.is_typing(RoomId("r1"), UserId("ann"))


@pytest.mark.parametrize("claimed", ["ann", 0])
async def test_the_callers_own_user_id_in_a_payload_is_accepted(
    node: Node, claimed: str | int
) -> None:
    me = str(claimed)
    ann, bob = connect(node, me), connect(node, "bob")
    await join(node, ann, "r1")
    await join(node, bob, "r1")
    effects = await asend(node, ann, "typing",
                          {"roomId": "r1", "isTyping": True, "userId": claimed, "from": me})
    assert error_code(effects) is None
    assert [p["userId"] for p in received(node, effects, bob, "typing")] == [me]


# ---- never an exception ----------------------------------------------------------------


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512) | st.text(max_size=256))
def test_arbitrary_input_gives_effects_never_an_exception(data: bytes | str) -> None:
    node = make_node(rate_limit=0)
    s = connect(node, "ann")
    result = handle_frame(node, s, data)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    assert isinstance(result, list)
    for e in result:
        if isinstance(e, Reply) and e.type == "error":
            assert payload(e)["code"] in {c.value for c in ErrorCode}

