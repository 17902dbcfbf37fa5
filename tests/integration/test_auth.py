"""PROTOCOL §Authentication against a real node: dev identity mode and JWT mode."""

import time

import jwt

from tests.integration.helpers import SECRET, clients, dev_client, token
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient

# ---- dev identity mode ---------------------------------------------------------------


async def test_dev_mode_auth_frame_is_answered_by_welcome_with_the_given_identity():
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"userId": "u1", "username": "Ann"}, id="a1")
        welcome = await c.recv()
        assert welcome["type"] == "welcome"
        assert welcome["id"] == "a1"
        p = welcome["payload"]
        assert (p["userId"], p["username"], p["protocol"]) == ("u1", "Ann", 1)
        assert isinstance(p["sessionId"], str) and p["sessionId"]
        assert isinstance(p["serverTime"], int)
        assert p["heartbeatMs"] == 20000
        assert isinstance(p["limits"], dict) and isinstance(p["iceServers"], list)


async def test_dev_mode_first_presence_frame_authenticates():
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        await c.send("presence", {"userId": "u1", "username": "Ann", "status": "online"})
        welcome = await c.expect("welcome")
        assert welcome["payload"]["userId"] == "u1"
        assert welcome["payload"]["username"] == "Ann"
        pong = await c.request("ping", {}, id="p")
        assert pong["type"] == "pong"


async def test_dev_mode_username_defaults_to_the_user_id():
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"userId": "u1"})
        welcome = await c.expect("welcome")
        assert welcome["payload"]["username"] == "u1"


async def test_dev_mode_frames_before_auth_get_unauthorized():
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        err = await c.request("join_room", {"roomId": "r"}, id="j1")
        assert err["type"] == "error"
        assert err["payload"]["code"] == "unauthorized"
        await c.auth("u1")  # the connection stays usable


async def test_ping_before_auth_gets_pong():
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        pong = await c.request("ping", {}, id="p0")
        assert pong["type"] == "pong"


# ---- JWT mode --------------------------------------------------------------------------


async def test_jwt_in_the_query_string_authenticates_without_any_frame():
    tok = token("u1", name="Ann")
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server, f"token={tok}")) as c:
        welcome = await c.expect("welcome")
        assert welcome["payload"]["userId"] == "u1"
        assert welcome["payload"]["username"] == "Ann"
        assert "id" not in welcome


async def test_jwt_in_an_auth_frame_authenticates():
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"token": token("u1")}, id="a1")
        welcome = await c.recv()
        assert welcome["type"] == "welcome"
        assert welcome["id"] == "a1"
        assert welcome["payload"]["userId"] == "u1"
        assert welcome["payload"]["username"] == "u1"


async def test_jwt_produced_by_pyjwt_directly_is_accepted():
    tok = jwt.encode({"sub": "u9", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"token": tok})
        assert (await c.expect("welcome"))["payload"]["userId"] == "u9"


async def test_jwt_mode_ignores_a_dev_identity_auth_frame():
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        err = await c.request("auth", {"userId": "u1", "username": "Ann"}, id="a1")
        assert err["type"] == "error"
        assert err["payload"]["code"] == "unauthorized"


async def test_jwt_mode_frames_before_auth_get_unauthorized():
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        for i, (type_, payload) in enumerate([
            ("join_room", {"roomId": "r"}),
            ("presence", {"status": "away"}),
            ("typing", {"roomId": "r", "isTyping": True}),
        ]):
            err = await c.request(type_, payload, id=f"x{i}")
            assert err["type"] == "error", err
            assert err["payload"]["code"] == "unauthorized"


async def test_bad_token_in_the_query_closes_with_4001():
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server, "token=not.a.jwt")) as c:
        assert await c.closed() == 4001


async def test_token_signed_with_another_secret_in_an_auth_frame_closes_with_4001():
    forged = jwt.encode({"sub": "u1"}, "other-secret", algorithm="HS256")
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"token": forged})
        assert await c.closed() == 4001


async def test_expired_token_in_the_query_closes_with_4001():
    tok = token("u1", now_s=int(time.time()) - 3600, ttl_s=60)
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server, f"token={tok}")) as c:
        assert await c.closed() == 4001


async def test_expired_token_in_an_auth_frame_closes_with_4001():
    tok = token("u1", now_s=int(time.time()) - 3600, ttl_s=60)
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"token": tok})
        assert await c.closed() == 4001


async def test_token_without_sub_closes_with_4001():
    tok = jwt.encode({"name": "nobody"}, SECRET, algorithm="HS256")
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"token": tok})
        assert await c.closed() == 4001


async def test_connection_is_closed_with_4001_when_its_token_expires():
    # Valid for two more seconds: welcomed now, closed by the expiry deadline later.
    tok = token("u1", ttl_s=2, now_s=int(time.time()))
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server, f"token={tok}")) as c:
        await c.expect("welcome")
        assert await c.closed() == 4001


async def test_connection_that_never_authenticates_is_closed_with_4001():
    async with running_server(jwt_secret=SECRET, auth_timeout=0.3) as server, \
            await WsClient.open(ws_url(server)) as c:
        assert await c.closed() == 4001


async def test_auth_deadline_does_not_close_an_authenticated_connection():
    async with running_server(jwt_secret=SECRET, auth_timeout=0.3) as server, \
            await WsClient.open(ws_url(server)) as c:
        await c.send("auth", {"token": token("u1")})
        await c.expect("welcome")
        await c.nothing(within=0.8)
        assert (await c.request("ping", {}, id="p"))["type"] == "pong"


async def test_rooms_claim_allows_matching_rooms_and_forbids_others():
    tok = token("u1", rooms=["team-*"])
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server, f"token={tok}")) as c:
        await c.expect("welcome")
        ok = await c.request("join_room", {"roomId": "team-a"}, id="j1")
        assert ok["type"] == "ack"
        err = await c.request("join_room", {"roomId": "other"}, id="j2")
        assert err["type"] == "error"
        assert err["payload"]["code"] == "forbidden"


# ---- identity comes from the server, never from the payload ------------------------------


async def test_foreign_user_id_in_typing_is_forbidden_and_not_broadcast():
    async with running_server() as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.expect("join_room", userId="u2")
        err = await u1.request("typing", {"roomId": "r", "isTyping": True, "userId": "u2"},
                               id="t1")
        assert err["type"] == "error"
        assert err["payload"]["code"] == "forbidden"
        await u2.nothing(within=0.3)


async def test_foreign_from_is_forbidden_and_not_broadcast():
    async with running_server() as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.expect("join_room", userId="u2")
        err = await u1.request("typing", {"roomId": "r", "isTyping": True, "from": "u2"},
                               id="t1")
        assert err["payload"]["code"] == "forbidden"
        await u2.nothing(within=0.3)


async def test_foreign_user_id_in_presence_is_forbidden_and_not_broadcast():
    async with running_server() as server, \
            clients(server, "u1", "u2") as [u1, u2]:
        await u1.join("r")
        await u2.join("r")
        await u1.expect("join_room", userId="u2")
        err = await u1.request("presence", {"status": "away", "userId": "u2"}, id="p1")
        assert err["payload"]["code"] == "forbidden"
        await u2.nothing(within=0.3)


async def test_jwt_user_cannot_claim_another_user_id():
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server, f"token={token('u1')}")) as c:
        await c.expect("welcome")
        err = await c.request("join_room", {"roomId": "r", "userId": "admin"}, id="j1")
        assert err["payload"]["code"] == "forbidden"


async def test_auth_frame_claiming_another_user_than_its_token_is_forbidden():
    # PROTOCOL §Authentication: a payload's userId/from other than the authenticated user
    # is refused with `forbidden`; the token's `sub` is who the frame authenticates.
    async with running_server(jwt_secret=SECRET) as server, \
            await WsClient.open(ws_url(server)) as c:
        for i, claim in enumerate([{"userId": "u2"}, {"from": "u2"}]):
            err = await c.request("auth", {"token": token("u1"), **claim}, id=f"a{i}")
            assert err["type"] == "error", err
            assert err["payload"]["code"] == "forbidden"
        await c.send("auth", {"token": token("u1"), "userId": "u1"}, id="ok")
        welcome = await c.recv()
        assert (welcome["type"], welcome["id"]) == ("welcome", "ok")
        assert welcome["payload"]["userId"] == "u1"


async def test_dev_mode_auth_frame_whose_from_is_another_user_is_forbidden():
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        err = await c.request("auth", {"userId": "u1", "from": "u2"}, id="a1")
        assert err["type"] == "error", err
        assert err["payload"]["code"] == "forbidden"
        await c.auth("u1")  # the connection stays usable


async def test_own_user_id_in_the_payload_is_accepted():
    async with running_server() as server, await dev_client(server, "u1") as u1:
        ack = await u1.request("join_room", {"roomId": "r", "userId": "u1"}, id="j1")
        assert ack["type"] == "ack"
