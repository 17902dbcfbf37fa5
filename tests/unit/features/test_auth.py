"""Authentication and identity (PROTOCOL §Authentication and identity)."""

import asyncio
import time
from typing import Any

import jwt
import pytest

from hubbub.core.effects import Effects, Reply
from hubbub.core.session import Session
from hubbub.errors import CloseConnection
from hubbub.features.auth import authenticate_token, mint_token, verify_token
from hubbub.features.node import LocalOnly, Node
from hubbub.features.system import open_session
from hubbub.ids import UserId
from hubbub.protocol.codes import CloseCode
from tests.support.clock import FakeClock
from tests.support.node import advance, asend, connect, disconnect, error_code, payload, status_of
from tests.unit.features.conftest import MakeNode
from tests.unit.features.helpers import closes, inbox, join

SECRET = "unit-test-secret-of-32-bytes-ok!"  # PyJWT warns below 32 bytes

# A valid payload for every client frame type, to show each is refused before auth.
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "presence": {"status": "online"},
    "join_room": {"roomId": "r1"},
    "leave_room": {"roomId": "r1"},
    "chat": {"roomId": "r1", "content": "hi"},
    "message_edit": {"roomId": "r1", "messageId": "m1", "content": "hi"},
    "message_delete": {"roomId": "r1", "messageId": "m1"},
    "reaction": {"roomId": "r1", "messageId": "m1", "emoji": "+1", "op": "add"},
    "typing": {"roomId": "r1", "isTyping": True},
    "history": {"roomId": "r1"},
    "webrtc": {"kind": "offer", "to": "bob", "callId": "c1", "sdp": {"type": "offer", "sdp": ""}},
    "call_reject": {"callId": "c1"},
    "call_end": {"callId": "c1"},
}


@pytest.fixture
def clock() -> FakeClock:
    # PyJWT judges `exp` by the system clock (jwt.decode takes no `now`) while the node
    # judges it by its own clock: start the fake clock at the real time, on a whole
    # second, so that both agree and `exp * 1000` is an exact fake-clock instant.
    return FakeClock(start_ms=time.time_ns() // 1_000_000_000 * 1000)


@pytest.fixture
async def jwt_node(make: MakeNode) -> Node:
    return await make(jwt_secret=SECRET)


def token(clock: FakeClock, user: str = "ann", **claims: Any) -> str:
    return mint_token(SECRET, user, now_s=clock.now // 1000, **claims)


def welcome_of(effects: Effects) -> dict[str, Any]:
    assert len(effects) >= 1 and isinstance(effects[0], Reply), effects
    assert effects[0].type == "welcome", effects
    return payload(effects[0])


def assert_closed_4001(effects: Effects, s: Session) -> None:
    assert [(c.conn, c.code) for c in closes(effects)] == [(s.conn, CloseCode.AUTH_FAILED)]
    assert int(CloseCode.AUTH_FAILED) == 4001
    assert s.identity is None


# ---- dev identity mode ---------------------------------------------------------------


async def test_dev_mode_auth_frame_sends_welcome_with_user_id_and_username(
    node: Node, clock: FakeClock
) -> None:
    s = open_session(node)
    effects = await asend(node, s, "auth", {"userId": "u1", "username": "Ann"}, id="a1")
    assert len(effects) == 1 and isinstance(effects[0], Reply) and effects[0].id == "a1"
    w = welcome_of(effects)
    assert (w["userId"], w["username"], w["protocol"], w["serverTime"]) == (
        "u1", "Ann", 1, clock.now)
    assert isinstance(w["sessionId"], str) and w["sessionId"]
    assert w["heartbeatMs"] == 20000
    assert w["iceServers"] == []
    assert w["limits"] == {"maxFrameBytes": 65536, "maxRoomsPerConnection": 100,
                           "maxContentChars": 4000, "framesPerSecond": 100.0,
                           "chatsPerSecond": 20.0, "chatBurst": 40,
                           "typingTimeoutMs": 3000}
    assert s.identity is not None and s.identity.user_id == "u1"


async def test_dev_mode_username_defaults_to_the_user_id(node: Node) -> None:
    s = open_session(node)
    w = welcome_of(await asend(node, s, "auth", {"userId": "u1"}))
    assert w["username"] == "u1"


async def test_dev_mode_long_username_is_cut_like_a_tokens_name(node: Node) -> None:
    s = open_session(node)
    name = "b" * 127 + "👨\u200d👩\u200d👧\u200d👦"
    w = welcome_of(await asend(node, s, "auth", {"userId": "u1", "username": name}, id="a"))
    assert w["username"] == "b" * 127


LONG_NAME = "Ana María " + "ñ" * 150  # a token's name may be longer than the 128 shown


@pytest.mark.parametrize(("type_", "extra"), [("typing", {"roomId": "r1", "isTyping": True}),
                                             ("presence", {"status": "away"})])
async def test_a_long_username_in_a_payload_that_ignores_it_is_not_refused(
    jwt_node: Node, clock: FakeClock, type_: str, extra: dict[str, Any]
) -> None:
    """The original client sends the app's username with every presence and typing frame
    (`setPresence(userId, username, status)`); the server ignores it there."""
    s = open_session(jwt_node)
    welcome_of(await asend(jwt_node, s, "auth", {"token": token(clock, "ann", name=LONG_NAME)}))
    await join(jwt_node, s, "r1")
    effects = await asend(jwt_node, s, type_, {**extra, "userId": "ann", "username": LONG_NAME},
                          id="x")
    assert isinstance(effects[0], Reply) and effects[0].type == "ack", effects


async def test_dev_mode_empty_username_defaults_to_the_user_id(node: Node) -> None:
    s = open_session(node)
    w = welcome_of(await asend(node, s, "auth", {"userId": "u1", "username": ""}))
    assert w["username"] == "u1"


async def test_dev_mode_welcome_without_a_frame_id_has_no_id(node: Node) -> None:
    s = open_session(node)
    effects = await asend(node, s, "auth", {"userId": "u1"})
    assert isinstance(effects[0], Reply) and effects[0].id is None


async def test_dev_mode_first_presence_frame_authenticates(node: Node) -> None:
    s = open_session(node)
    effects = await asend(node, s, "presence", {"userId": "u1", "username": "Ann",
                                                "status": "online"}, id="p1")
    w = welcome_of(effects)
    assert (w["userId"], w["username"]) == ("u1", "Ann")
    assert s.identity is not None and s.identity.user_id == "u1"


async def test_dev_mode_first_presence_frame_sets_its_status(node: Node) -> None:
    s = open_session(node)
    welcome_of(await asend(node, s, "presence", {"userId": "u1", "status": "away"}))
    assert status_of(node, "u1") == "away"


async def test_dev_mode_auth_marks_the_user_online(node: Node) -> None:
    s = open_session(node)
    await asend(node, s, "auth", {"userId": "u1"})
    assert status_of(node, "u1") == "online"
    assert node.user_conns[UserId("u1")] == {s.conn}


async def test_dev_mode_auth_without_a_user_id_is_bad_request(node: Node) -> None:
    s = open_session(node)
    effects = await asend(node, s, "auth", {"username": "Ann"}, id="a")
    assert error_code(effects) == "bad_request"
    assert s.identity is None


async def test_dev_mode_auth_with_an_invalid_user_id_is_bad_request(node: Node) -> None:
    s = open_session(node)
    effects = await asend(node, s, "auth", {"userId": "two words"}, id="a")
    assert error_code(effects) == "bad_request"
    assert s.identity is None


async def test_dev_mode_integer_user_id_becomes_its_string(node: Node) -> None:
    s = open_session(node)
    assert welcome_of(await asend(node, s, "auth", {"userId": 42}))["userId"] == "42"


async def test_dev_mode_refuses_a_token(node: Node, clock: FakeClock) -> None:
    s = open_session(node)
    effects = await asend(node, s, "auth", {"token": token(clock)}, id="a")
    assert error_code(effects) == "bad_request"
    assert s.identity is None


async def test_a_second_auth_frame_is_refused(node: Node) -> None:
    s = connect(node, "ann")
    effects = await asend(node, s, "auth", {"userId": "ann"}, id="a2")
    assert error_code(effects) == "bad_request"


async def test_a_second_auth_frame_for_another_user_is_forbidden(node: Node) -> None:
    s = connect(node, "ann")
    effects = await asend(node, s, "auth", {"userId": "mallory"}, id="a2")
    assert error_code(effects) == "forbidden"
    assert s.identity is not None and s.identity.user_id == "ann"


async def test_each_connection_gets_its_own_session_id(node: Node) -> None:
    ids = {welcome_of(await asend(node, open_session(node), "auth", {"userId": "ann"}))[
        "sessionId"] for _ in range(3)}
    assert len(ids) == 3


async def test_welcome_lists_stun_and_turn_servers_with_turn_credentials(
    make: MakeNode, clock: FakeClock
) -> None:
    node = await make(stun=["stun:stun.example:3478"], turn=["turn:turn.example:3478"],
                      turn_secret="ts", turn_ttl=600)
    s = open_session(node)
    servers = welcome_of(await asend(node, s, "auth", {"userId": "ann"}))["iceServers"]
    assert servers[0] == {"urls": ["stun:stun.example:3478"]}
    assert servers[1]["urls"] == ["turn:turn.example:3478"]
    assert servers[1]["username"] == f"{clock.now // 1000 + 600}:ann"
    assert servers[1]["credential"]


# ---- JWT mode -------------------------------------------------------------------------


async def test_jwt_auth_frame_with_a_valid_token_sends_welcome(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    effects = await asend(jwt_node, s, "auth", {"token": token(clock, "ann", name="Ann")},
                          id="a1")
    w = welcome_of(effects)
    assert (w["userId"], w["username"]) == ("ann", "Ann")
    assert isinstance(effects[0], Reply) and effects[0].id == "a1"
    assert s.identity is not None and s.identity.user_id == "ann"


async def test_jwt_username_is_the_name_claim(jwt_node: Node, clock: FakeClock) -> None:
    s = open_session(jwt_node)
    w = welcome_of(await asend(jwt_node, s, "auth",
                               {"token": token(clock, "u7", name="Ann Example")}))
    assert w["username"] == "Ann Example"


async def test_jwt_username_defaults_to_the_subject(jwt_node: Node, clock: FakeClock) -> None:
    s = open_session(jwt_node)
    assert welcome_of(await asend(jwt_node, s, "auth", {"token": token(clock, "u7")}))[
        "username"] == "u7"


async def test_jwt_identity_ignores_user_id_and_username_in_the_auth_payload(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    w = welcome_of(await asend(jwt_node, s, "auth",
                               {"token": token(clock, "ann"), "username": "Someone Else"}))
    assert (w["userId"], w["username"]) == ("ann", "ann")


async def test_jwt_admin_claim_is_granted(jwt_node: Node, clock: FakeClock) -> None:
    s = open_session(jwt_node)
    w = welcome_of(await asend(jwt_node, s, "auth", {"token": token(clock, admin=True)}))
    assert w["admin"] is True
    assert s.identity is not None and s.identity.admin


async def test_jwt_without_admin_claim_is_not_admin(jwt_node: Node, clock: FakeClock) -> None:
    s = open_session(jwt_node)
    w = welcome_of(await asend(jwt_node, s, "auth", {"token": token(clock)}))
    assert w.get("admin", False) is False
    assert s.identity is not None and not s.identity.admin


async def test_jwt_admin_claim_must_be_true_not_truthy(jwt_node: Node, clock: FakeClock) -> None:
    tok = jwt.encode({"sub": "ann", "admin": "yes", "exp": clock.now // 1000 + 60}, SECRET,
                     algorithm="HS256")
    s = open_session(jwt_node)
    welcome_of(await asend(jwt_node, s, "auth", {"token": tok}))
    assert s.identity is not None and not s.identity.admin


async def test_jwt_mode_refuses_a_dev_mode_user_id_auth_frame(jwt_node: Node) -> None:
    s = open_session(jwt_node)
    effects = await asend(jwt_node, s, "auth", {"userId": "ann", "username": "Ann"}, id="a")
    assert error_code(effects) == "unauthorized"
    assert s.identity is None
    assert not [e for e in effects if isinstance(e, Reply) and e.type == "welcome"]


async def test_jwt_mode_first_presence_frame_is_unauthorized(jwt_node: Node) -> None:
    s = open_session(jwt_node)
    effects = await asend(jwt_node, s, "presence", {"userId": "ann", "status": "online"})
    assert error_code(effects) == "unauthorized"
    assert s.identity is None


async def test_jwt_token_with_a_wrong_signature_closes_with_4001(
    jwt_node: Node, clock: FakeClock
) -> None:
    bad = mint_token("another-secret-of-32-bytes-length", "ann", now_s=clock.now // 1000)
    s = open_session(jwt_node)
    effects = await asend(jwt_node, s, "auth", {"token": bad}, id="a")
    assert_closed_4001(effects, s)


async def test_jwt_expired_token_closes_with_4001(jwt_node: Node, clock: FakeClock) -> None:
    old = mint_token(SECRET, "ann", now_s=clock.now // 1000 - 7200, ttl_s=3600)
    s = open_session(jwt_node)
    assert_closed_4001(await asend(jwt_node, s, "auth", {"token": old}), s)


@pytest.mark.parametrize("bad", ["", "not-a-jwt", "a.b.c", "x" * 8000])
async def test_jwt_garbage_token_is_refused(jwt_node: Node, bad: str) -> None:
    s = open_session(jwt_node)
    effects = await asend(jwt_node, s, "auth", {"token": bad}, id="a")
    # An empty token is a missing token (unauthorized); anything else fails verification.
    if bad:
        assert_closed_4001(effects, s)
    else:
        assert error_code(effects) == "unauthorized"
    assert s.identity is None


async def test_jwt_token_without_sub_closes_with_4001(jwt_node: Node, clock: FakeClock) -> None:
    tok = jwt.encode({"name": "Ann", "exp": clock.now // 1000 + 60}, SECRET, algorithm="HS256")
    s = open_session(jwt_node)
    assert_closed_4001(await asend(jwt_node, s, "auth", {"token": tok}), s)


async def test_jwt_unsigned_alg_none_token_closes_with_4001(
    jwt_node: Node, clock: FakeClock
) -> None:
    tok = jwt.encode({"sub": "ann", "exp": clock.now // 1000 + 60}, "", algorithm="none")
    s = open_session(jwt_node)
    assert_closed_4001(await asend(jwt_node, s, "auth", {"token": tok}), s)


async def test_jwt_token_signed_with_another_algorithm_closes_with_4001(
    jwt_node: Node, clock: FakeClock
) -> None:
    tok = jwt.encode({"sub": "ann", "exp": clock.now // 1000 + 60}, SECRET * 2,
                     algorithm="HS512")
    s = open_session(jwt_node)
    assert_closed_4001(await asend(jwt_node, s, "auth", {"token": tok}), s)


@pytest.mark.parametrize("rooms", ["team-*", [1, 2], {"a": 1}])
async def test_jwt_rooms_claim_that_is_not_a_list_of_strings_closes_with_4001(
    jwt_node: Node, clock: FakeClock, rooms: object
) -> None:
    tok = jwt.encode({"sub": "ann", "rooms": rooms, "exp": clock.now // 1000 + 60}, SECRET,
                     algorithm="HS256")
    s = open_session(jwt_node)
    assert_closed_4001(await asend(jwt_node, s, "auth", {"token": tok}), s)


async def test_jwt_rooms_claim_allows_joining_a_matching_room(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    await asend(jwt_node, s, "auth", {"token": token(clock, rooms=["team-*", "lobby"])})
    await join(jwt_node, s, "team-7")
    await join(jwt_node, s, "lobby")
    assert s.rooms == {"team-7", "lobby"}


async def test_jwt_rooms_claim_forbids_joining_another_room(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    await asend(jwt_node, s, "auth", {"token": token(clock, rooms=["team-*"])})
    bob = open_session(jwt_node)
    await asend(jwt_node, bob, "auth", {"token": token(clock, "bob")})
    await join(jwt_node, bob, "secret")
    effects = await asend(jwt_node, s, "join_room", {"roomId": "secret"}, id="j")
    assert error_code(effects) == "forbidden"
    assert s.rooms == set()
    assert inbox(jwt_node, effects, bob) == []


async def test_jwt_rooms_claim_is_matched_against_the_normalised_room_id(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    await asend(jwt_node, s, "auth", {"token": token(clock, rooms=["1*"])})
    await join(jwt_node, s, 12)
    assert s.rooms == {"12"}


async def test_jwt_without_rooms_claim_may_join_any_room(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    await asend(jwt_node, s, "auth", {"token": token(clock)})
    await join(jwt_node, s, "anything")
    assert s.rooms == {"anything"}


async def test_token_from_the_query_string_authenticates_without_a_frame_id(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    effects = await authenticate_token(jwt_node, s, token(clock, name="Ann"), None)
    assert welcome_of(effects)["username"] == "Ann"
    assert isinstance(effects[0], Reply) and effects[0].id is None


async def test_bad_token_from_the_query_string_closes_with_4001(jwt_node: Node) -> None:
    s = open_session(jwt_node)
    assert_closed_4001(await authenticate_token(jwt_node, s, "nope", None), s)


async def test_token_expiry_closes_a_live_connection_with_4001_at_exp(
    jwt_node: Node, clock: FakeClock
) -> None:
    s = open_session(jwt_node)
    welcome_of(await asend(jwt_node, s, "auth", {"token": token(clock, ttl_s=60)}))
    assert closes(advance(jwt_node, clock, 60_000 - 1)) == []
    effects = advance(jwt_node, clock, 1)
    assert [(c.conn, c.code) for c in closes(effects)] == [(s.conn, CloseCode.AUTH_FAILED)]


async def test_token_expiry_closes_only_the_connection_whose_token_expired(
    jwt_node: Node, clock: FakeClock
) -> None:
    short, long = open_session(jwt_node), open_session(jwt_node)
    await asend(jwt_node, short, "auth", {"token": token(clock, "ann", ttl_s=60)})
    await asend(jwt_node, long, "auth", {"token": token(clock, "ann", ttl_s=3600)})
    effects = advance(jwt_node, clock, 60_000)
    assert {c.conn for c in closes(effects)} == {short.conn}


async def test_closed_connections_leave_no_token_deadlines_behind(
    jwt_node: Node, clock: FakeClock
) -> None:
    # A token valid for a day gives its connection an expiry deadline a day away; the
    # deadlines of connections that closed must not pile up until then.
    for i in range(1000):
        s = open_session(jwt_node)
        welcome_of(await asend(jwt_node, s, "auth", {"token": token(clock, f"u{i}",
                                                                      ttl_s=86_400)}))
        disconnect(jwt_node, s)
    assert len(jwt_node.deadlines) <= 64 + 2
    assert len(jwt_node.expiries) <= 64 + 2
    live = open_session(jwt_node)
    await asend(jwt_node, live, "auth", {"token": token(clock, "ann", ttl_s=60)})
    for _ in range(200):
        disconnect(jwt_node, open_session(jwt_node))
    effects = advance(jwt_node, clock, 60_000)
    assert {(c.conn, c.code) for c in closes(effects)} == {(live.conn, CloseCode.AUTH_FAILED)}


class Subscriptions(LocalOnly):
    """The fan-out's user topics; a subscription completes once `gate` is set."""

    def __init__(self) -> None:
        self.users: set[UserId] = set()
        self.gate = asyncio.Event()
        self.waiting = 0
        self.asked = asyncio.Event()

    async def user_opened(self, user: UserId) -> None:
        self.users.add(user)
        self.waiting += 1
        self.asked.set()
        await self.gate.wait()

    def user_closed(self, user: UserId) -> None:
        self.users.discard(user)


async def authenticating(node: Node, *sessions: Session) -> list["asyncio.Task[Effects]"]:
    """Dev-mode `auth` of "ann" on each session, all waiting for the user's topic."""
    tasks = [asyncio.ensure_future(asend(node, s, "auth", {"userId": "ann"}))
             for s in sessions]
    assert isinstance(node.fanout, Subscriptions)
    while node.fanout.waiting < len(sessions):
        await node.fanout.asked.wait()
        node.fanout.asked.clear()
    return tasks


async def test_a_connection_closed_while_authenticating_lets_its_user_topic_go(
    node: Node,
) -> None:
    # With several nodes, authenticating subscribes to the user's topic. A connection the
    # server closes meanwhile (its auth deadline passed) never becomes the user's, and
    # nothing else would unsubscribe it.
    fanout = node.fanout = Subscriptions()
    s = open_session(node)
    [auth] = await authenticating(node, s)
    s.closing = True  # as the hub's close does
    fanout.gate.set()
    assert await auth == []
    assert disconnect(node, s) == []
    assert fanout.users == set()
    assert status_of(node, "ann") == "offline"


async def test_a_connection_closed_while_another_of_its_user_authenticates_keeps_the_topic(
    node: Node,
) -> None:
    fanout = node.fanout = Subscriptions()
    first, second = open_session(node), open_session(node)
    auths = await authenticating(node, second, first)
    second.closing = True
    fanout.gate.set()
    assert await auths[0] == []
    welcome_of(await auths[1])
    assert fanout.users == {"ann"}
    assert status_of(node, "ann") == "online"
    disconnect(node, second)
    disconnect(node, first)
    assert fanout.users == set()


async def test_token_without_exp_never_expires(jwt_node: Node, clock: FakeClock) -> None:
    s = open_session(jwt_node)
    welcome_of(await asend(jwt_node, s, "auth", {"token": token(clock, ttl_s=None)}))
    assert closes(advance(jwt_node, clock, 10 * 24 * 3600 * 1000)) == []


def test_verify_token_turns_claims_into_an_identity(clock: FakeClock) -> None:
    tok = token(clock, "ann", name="Ann", rooms=["a*"], admin=True, ttl_s=60)
    ident = verify_token(SECRET, tok)
    assert (ident.user_id, ident.username, ident.admin, ident.room_globs) == (
        "ann", "Ann", True, ("a*",))
    assert ident.expires_at_ms == clock.now + 60_000


@pytest.mark.parametrize("exp", ["EXP", float("nan"), float("inf"), 1e307, 10**400, True],
                         ids=["string", "nan", "inf", "1e307", "10**400", "true"])
def test_an_exp_that_is_not_a_sane_number_is_refused(clock: FakeClock, exp: Any) -> None:
    # PyJWT takes a numeric string; this one would otherwise never get its deadline.
    exp = str(clock.now // 1000 + 3) if exp == "EXP" else exp
    tok = jwt.encode({"sub": "ann", "exp": exp}, SECRET, algorithm="HS256")
    with pytest.raises(CloseConnection) as err:
        verify_token(SECRET, tok)
    assert err.value.code == CloseCode.AUTH_FAILED


def test_a_fractional_exp_gets_its_deadline(clock: FakeClock) -> None:
    tok = jwt.encode({"sub": "ann", "exp": clock.now / 1000 + 2.5}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, tok).expires_at_ms == clock.now + 2500


@pytest.mark.parametrize("bad", ["\udcff", "a.\udcff.c", "é.é.é"])
def test_a_token_a_jwt_cannot_hold_is_refused_not_raised(bad: str) -> None:
    with pytest.raises(CloseConnection) as err:
        verify_token(SECRET, bad)
    assert err.value.code == CloseCode.AUTH_FAILED


def test_a_name_with_nul_falls_back_to_the_user_id(clock: FakeClock) -> None:
    tok = jwt.encode({"sub": "ann", "name": "A\x00nn"}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, tok).username == "ann"


@pytest.mark.parametrize("name", ["A\ud800nn", "\udfff", "\ud83d"])
async def test_a_name_with_a_lone_surrogate_falls_back_to_the_user_id(
    jwt_node: Node, clock: FakeClock, name: str
) -> None:
    """No UTF-8 frame can carry it: the welcome itself failed to encode, and the
    connection hung without one."""
    tok = jwt.encode({"sub": "ann", "name": name}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, tok).username == "ann"
    s = open_session(jwt_node)
    w = welcome_of(await asend(jwt_node, s, "auth", {"token": tok}))
    assert w["username"] == "ann"


@pytest.mark.parametrize(("name", "kept"), [
    ("a" * 127 + "😀", "a" * 127 + "😀"),  # 128 code points (129 UTF-16 units): whole
    ("b" * 127 + "👨\u200d👩\u200d👧\u200d👦", "b" * 127),  # not a lone man
    ("c" * 127 + "e\u0301", "c" * 127),  # not an e without its accent
    ("d" * 126 + "🇺🇦🇵🇱", "d" * 126 + "🇺🇦"),
    ("e" * 127 + "🇺🇦", "e" * 127),  # not half a flag
    ("f" * 126 + "👍🏽x", "f" * 126 + "👍🏽"),
    ("g" * 127 + "❤\ufe0f", "g" * 127),
    ("a" + "\u0301" * 300, "a" + "\u0301" * 127),  # one character longer than 128
])
def test_a_long_name_is_cut_to_128_characters_between_characters(name: str, kept: str) -> None:
    tok = jwt.encode({"sub": "ann", "name": name}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, tok).username == kept


# ---- the authentication deadline and frames before auth -------------------------------


async def test_unauthenticated_connection_is_closed_4001_at_the_auth_timeout(
    node: Node, clock: FakeClock
) -> None:
    s = open_session(node)
    assert closes(advance(node, clock, 10_000 - 1)) == []
    effects = advance(node, clock, 1)
    assert [(c.conn, c.code) for c in closes(effects)] == [(s.conn, CloseCode.AUTH_FAILED)]


async def test_authenticated_connection_is_not_closed_at_the_auth_timeout(
    node: Node, clock: FakeClock
) -> None:
    connect(node, "ann")
    assert closes(advance(node, clock, 60_000)) == []


async def test_auth_timeout_setting_is_honoured(make: MakeNode, clock: FakeClock) -> None:
    node = await make(auth_timeout=2)
    s = open_session(node)
    assert closes(advance(node, clock, 1999)) == []
    assert [c.conn for c in closes(advance(node, clock, 1))] == [s.conn]


async def test_unauthenticated_connection_already_gone_is_not_closed_again(
    node: Node, clock: FakeClock
) -> None:
    s = open_session(node)
    assert disconnect(node, s) == []
    assert closes(advance(node, clock, 10_000)) == []


@pytest.mark.parametrize("type_", sorted(VALID_PAYLOADS))
async def test_every_frame_but_auth_and_ping_before_auth_is_unauthorized(
    jwt_node: Node, type_: str
) -> None:
    s = open_session(jwt_node)
    effects = await asend(jwt_node, s, type_, VALID_PAYLOADS[type_], id="f1")
    assert error_code(effects) == "unauthorized"
    assert [(e.type, e.id) for e in effects if isinstance(e, Reply)] == [("error", "f1")]
    assert s.identity is None and s.rooms == set()


@pytest.mark.parametrize("type_", sorted(set(VALID_PAYLOADS) - {"presence"}))
async def test_every_frame_but_auth_presence_and_ping_is_unauthorized_in_dev_mode(
    node: Node, type_: str
) -> None:
    s = open_session(node)
    effects = await asend(node, s, type_, VALID_PAYLOADS[type_])
    assert error_code(effects) == "unauthorized"
    assert s.identity is None


async def test_ping_before_auth_gets_pong(jwt_node: Node, clock: FakeClock) -> None:
    s = open_session(jwt_node)
    effects = await asend(jwt_node, s, "ping", {}, id="p1")
    assert [(e.type, e.id) for e in effects if isinstance(e, Reply)] == [("pong", "p1")]
    assert payload(effects[0]) == {"serverTime": clock.now}
    assert s.identity is None
