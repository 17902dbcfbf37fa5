"""HTTP on the WebSocket's port: health, metrics, announcements, the demo page."""

import asyncio
import json
import logging

import aiohttp
import pytest

from tests.integration.helpers import SECRET, clients, dev_client, http_get, metric, token
from tests.integration.rawws import RawWs
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient

ADMIN = "admin-secret"


async def _post(server, body: bytes | str, auth: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    async with aiohttp.ClientSession() as http, http.post(
            server.url + "/api/announcements", data=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_healthz_is_ok():
    async with running_server() as server:
        status, ctype, body = await http_get(server, "/healthz")
        assert status == 200
        assert ctype.startswith("application/json")
        assert json.loads(body) == {"status": "ok"}


async def test_root_serves_the_demo_page():
    async with running_server() as server:
        status, ctype, body = await http_get(server, "/")
        assert status == 200
        assert ctype.startswith("text/html")
        assert "<html" in body.lower()


async def test_every_answer_forbids_sniffing_and_referrers_and_the_page_has_a_policy():
    async with running_server() as server, aiohttp.ClientSession() as http:
        for path in ("/", "/hubbub.js", "/demo/app.js", "/healthz", "/metrics",
                     "/api/calls", "/no-such-page"):
            async with http.get(server.url + path) as resp:
                assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
                assert resp.headers.get("Referrer-Policy") == "no-referrer", path
                policy = resp.headers.get("Content-Security-Policy")
                if resp.content_type == "text/html":
                    assert policy is not None and "default-src 'self'" in policy, path
                    assert "'unsafe-inline'" not in policy, path
                else:
                    assert policy is None, path


async def test_metrics_is_prometheus_text():
    async with running_server() as server:
        status, ctype, body = await http_get(server, "/metrics")
        assert status == 200
        assert ctype.startswith("text/plain")
        assert "# TYPE hubbub_connections gauge" in body
        assert "# HELP hubbub_connections" in body


async def test_metrics_count_open_connections():
    async with running_server() as server:
        assert await metric(server, "hubbub_connections") == 0
        async with await dev_client(server, "u1"), await dev_client(server, "u2"):
            assert await metric(server, "hubbub_connections") == 2


async def test_metrics_count_frames_in_and_out_by_type():
    async with running_server() as server, await dev_client(server, "u1") as c:
        for i in range(3):
            await c.request("ping", {}, id=f"p{i}")
        assert await metric(server, "hubbub_frames_in_total", type="ping") == 3
        assert await metric(server, "hubbub_frames_in_total", type="auth") == 1
        assert await metric(server, "hubbub_frames_out_total", type="pong") == 3
        assert await metric(server, "hubbub_frames_out_total", type="welcome") == 1


async def test_metrics_time_each_store_commit_and_size_each_socket_write():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.join("r")
        before = await metric(server, "hubbub_store_commit_seconds_count")
        for i in range(3):
            assert (await c.request("chat", {"roomId": "r", "content": f"m{i}"},
                                    id=f"c{i}"))["type"] == "ack"
        commits = await metric(server, "hubbub_store_commits_total")
        timed = await metric(server, "hubbub_store_commit_seconds_count")
        assert before is not None and timed == commits and timed > before
        assert await metric(server, "hubbub_store_commit_seconds_bucket", le="+Inf") == timed
        assert (await metric(server, "hubbub_store_commit_seconds_sum") or 0) > 0
        flushes = await metric(server, "hubbub_flush_bytes_count")
        assert flushes is not None and flushes >= 4  # welcome, join ack, chat acks
        assert await metric(server, "hubbub_flush_bytes_bucket", le="+Inf") == flushes
        assert (await metric(server, "hubbub_flush_bytes_sum") or 0) > 0


async def test_metrics_count_errors_by_code():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.ws.send_str("not json")
        await c.recv()
        await c.request("teleport", {}, id="t")
        await c.request("leave_room", {"roomId": "r"}, id="l")
        assert await metric(server, "hubbub_errors_total", code="bad_request") == 1
        assert await metric(server, "hubbub_errors_total", code="unknown_type") == 1
        assert await metric(server, "hubbub_errors_total", code="not_in_room") == 1
        assert await metric(server, "hubbub_frames_in_total", type="invalid") == 2


async def test_metrics_count_closes_by_code():
    async with running_server(jwt_secret=SECRET) as server:
        async with await WsClient.open(ws_url(server, "token=garbage")) as c:
            assert await c.closed() == 4001
        for _ in range(100):  # the server records the close once its side has finished
            if await metric(server, "hubbub_connections") == 0:
                break
            await asyncio.sleep(0.05)
        assert await metric(server, "hubbub_connections_closed_total", code="4001") == 1


async def test_announcement_with_admin_token_is_accepted_with_202():
    async with running_server(admin_token=ADMIN) as server:
        status, _ = await _post(server, '{"content": "hello"}', f"Bearer {ADMIN}")
        assert status == 202


async def test_announcement_reaches_every_connected_client():
    async with running_server(admin_token=ADMIN) as server, \
            clients(server, "u1", "u2", "u2") as [u1, u2, u2_again]:
        await u1.join("a")
        await u2.join("b")  # rooms do not matter; u2_again is in none
        status, _ = await _post(server, '{"content": "maintenance at 5"}', f"Bearer {ADMIN}")
        assert status == 202
        for c in (u1, u2, u2_again):
            frame = await c.expect("announcement")
            assert frame["payload"]["content"] == "maintenance at 5"
            assert isinstance(frame["payload"]["createdAt"], int)
            assert set(frame["payload"]) == {"content", "createdAt"}


async def test_announcement_by_a_jwt_with_the_admin_claim_is_accepted():
    async with running_server(jwt_secret=SECRET) as server:
        tok = token("boss", admin=True)
        status, _ = await _post(server, '{"content": "hi"}', f"Bearer {tok}")
        assert status == 202


async def test_announcement_by_a_jwt_without_the_admin_claim_is_401():
    async with running_server(jwt_secret=SECRET) as server:
        status, _ = await _post(server, '{"content": "hi"}', f"Bearer {token('pleb')}")
        assert status == 401


async def test_announcement_without_a_token_is_401():
    async with running_server(admin_token=ADMIN) as server:
        status, _ = await _post(server, '{"content": "hi"}', None)
        assert status == 401


async def test_announcement_with_a_wrong_token_is_401_and_sends_nothing():
    async with running_server(admin_token=ADMIN) as server, await dev_client(server, "u1") as c:
        status, _ = await _post(server, '{"content": "hi"}', "Bearer wrong")
        assert status == 401
        status, _ = await _post(server, '{"content": "hi"}', f"Basic {ADMIN}")
        assert status == 401
        await c.nothing()


async def test_announcement_when_no_admin_token_is_configured_is_401():
    async with running_server() as server:
        status, _ = await _post(server, '{"content": "hi"}', "Bearer ")
        assert status == 401


async def test_announcement_with_a_bad_body_is_400():
    async with running_server(admin_token=ADMIN) as server, await dev_client(server, "u1") as c:
        for body in ("not json", "[]", '{"text": "hi"}', '{"content": 5}', '{"content": ""}',
                     '{"content": "   "}', '{"content": "\\u200b\\ufeff"}'):
            status, _ = await _post(server, body, f"Bearer {ADMIN}")
            assert status == 400, body
        status, body = await _post(server, json.dumps({"content": "x" * 4001}), f"Bearer {ADMIN}")
        assert status == 413 and json.loads(body)["error"] == "too_large"
        await c.nothing()


async def test_unknown_path_is_404():
    async with running_server() as server:
        status, _, _ = await http_get(server, "/nope")
        assert status == 404


async def test_plain_http_get_on_ws_is_not_a_server_error():
    async with running_server() as server:
        status, _, _ = await http_get(server, "/ws")
        assert 400 <= status < 500


async def test_one_client_session_can_open_ws_after_http_requests():
    # aiohttp's ClientSession reuses a pooled connection for ws_connect; a connection is
    # routed by its first request, so every HTTP answer must end its connection.
    async with running_server() as server, aiohttp.ClientSession() as http:
        for path in ("/healthz", "/nope", "/api/rooms/1/messages"):
            async with http.get(f"{server.url}{path}") as resp:
                assert resp.headers.get("Connection", "").lower() == "close", path
                await resp.read()
            async with http.ws_connect(ws_url(server)) as ws:
                await ws.send_json({"type": "ping", "id": "p"})
                assert (await ws.receive_json(timeout=5))["type"] == "pong"


async def test_announcement_is_not_sent_to_unauthenticated_connections():
    async with running_server(admin_token=ADMIN) as server, \
            await WsClient.open(ws_url(server)) as anon:
        status, _ = await _post(server, '{"content": "hi"}', f"Bearer {ADMIN}")
        assert status == 202
        await anon.nothing()


async def test_metrics_count_users_online_rooms_and_announcements():
    async with running_server(admin_token=ADMIN) as server, \
            clients(server, "u1", "u1", "u2") as [a, b, c]:
        await a.join("r1")
        await b.join("r2")
        await c.join("r1")
        await _post(server, '{"content": "hi"}', f"Bearer {ADMIN}")
        assert await metric(server, "hubbub_users_online") == 2
        assert await metric(server, "hubbub_rooms") == 2
        assert await metric(server, "hubbub_announcements_total") == 1
        assert await metric(server, "hubbub_connections_opened_total") == 3


async def test_metrics_count_store_commits_and_operations():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.join("r1")
        commits = await metric(server, "hubbub_store_commits_total")
        operations = await metric(server, "hubbub_store_operations_total")
        assert commits is not None and operations is not None
        for i in range(3):  # one at a time: each chat is a transaction of its own
            await c.request("chat", {"roomId": "r1", "content": f"m{i}"}, id=f"c{i}")
        assert await metric(server, "hubbub_store_commits_total") == commits + 3
        assert await metric(server, "hubbub_store_operations_total") == operations + 3


# ---- one port: the router in front of picows and aiohttp (server/port.py) -----------------


async def _raw_request(server, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10.0)
    finally:
        writer.close()


async def test_a_request_head_over_16_kib_gets_431_and_the_server_goes_on():
    async with running_server() as server:
        answer = await _raw_request(
            server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
        assert answer.startswith(b"HTTP/1.1 431")
        status, _, _ = await http_get(server, "/healthz")
        assert status == 200


async def test_a_post_to_ws_is_refused_with_400_by_the_http_side():
    async with running_server() as server:
        answer = await _raw_request(
            server, b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                    b"Connection: close\r\n\r\n{}")
        assert answer.startswith(b"HTTP/1.1 400")
        assert b"WebSocket upgrade" in answer


@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff",
                                    b"Authorization: Bearer a.\xc3\x28.c",
                                    b"X-Hubbub-User: \xff", b"X-Hubbub-User: \xc3\x28"])
@pytest.mark.parametrize("path", [b"/api/calls", b"/api/rooms/r1/messages"])
async def test_undecodable_identity_headers_are_401_not_500(header: bytes, path: bytes):
    jwt_mode = header.startswith(b"Authorization")
    async with running_server(jwt_secret=SECRET if jwt_mode else None,
                              admin_token=ADMIN) as server:
        status = await _raw_request(server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                    + header + b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 401"), status[:200][:200]


async def test_an_undecodable_admin_token_is_401_not_500():
    async with running_server(admin_token=ADMIN) as server:
        status = await _raw_request(server, b"POST /api/announcements HTTP/1.1\r\nHost: x\r\n"
                                    b"Authorization: Bearer \xff\r\nContent-Length: 2\r\n\r\n{}")
        assert status.startswith(b"HTTP/1.1 401"), status[:200][:200]


@pytest.mark.parametrize("path", [b"/healthz", b"/ws"])
async def test_a_request_head_over_16_kib_in_one_read_is_431(path: bytes):
    async with running_server() as server:
        head = (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"X-Pad: " + b"p" * 20_000 + b"\r\n\r\n")
        assert (await _raw_request(server, head)).startswith(b"HTTP/1.1 431")


async def test_an_http_answer_ends_its_connection():
    async with running_server() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"\r\nconnection: close\r\n" in head.lower()
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            assert await asyncio.wait_for(reader.read(), 10.0) == b""  # the server hung up
        finally:
            writer.close()


async def test_a_connection_dropped_without_a_close_frame_is_counted_as_1006():
    async with running_server() as server:
        raw = await RawWs.connect(ws_url(server))
        await raw.send_json("auth", {"userId": "gone"}, id="a")
        await raw.expect("welcome")
        raw.close()  # the TCP connection ends, with no close frame
        for _ in range(100):
            if await metric(server, "hubbub_connections_closed_total", code="1006"):
                break
            await asyncio.sleep(0.05)
        assert await metric(server, "hubbub_connections_closed_total", code="1006") == 1


async def test_a_close_frame_without_a_code_is_counted_as_1005_and_answered_with_1000():
    async with running_server() as server:
        raw = await RawWs.connect(ws_url(server))
        await raw.send_json("auth", {"userId": "bye"}, id="a")
        await raw.expect("welcome")
        await raw.send_frame(0x8, b"")  # RFC 6455 §7.1.5: no code in it means 1005
        code, _ = await raw.read_until_end(reply_close=False)
        assert code == 1000
        for _ in range(100):
            if await metric(server, "hubbub_connections_closed_total", code="1005"):
                break
            await asyncio.sleep(0.05)
        assert await metric(server, "hubbub_connections_closed_total", code="1005") == 1
        assert not await metric(server, "hubbub_connections_closed_total", code="1006")
        raw.close()


async def test_a_goodbye_is_logged_at_debug_and_a_lost_connection_at_info(caplog):
    caplog.set_level(logging.DEBUG, logger="hubbub")
    async with running_server() as server:
        for user, goodbye in (("polite", True), ("vanished", False)):
            raw = await RawWs.connect(ws_url(server))
            await raw.send_json("auth", {"userId": user}, id="a")
            await raw.expect("welcome")
            if goodbye:
                await raw.send_frame(0x8, (1000).to_bytes(2, "big"))
                await raw.read_until_end()
            raw.close()
        for _ in range(100):
            if sum("close conn=" in r.getMessage() for r in caplog.records) == 2:
                break
            await asyncio.sleep(0.05)
    closes = {r.getMessage().split("user=")[1].split()[0]: r.levelno
              for r in caplog.records if "close conn=" in r.getMessage()}
    assert closes == {"polite": logging.DEBUG, "vanished": logging.INFO}
    opens = [r.levelno for r in caplog.records
             if r.getMessage().startswith(("open conn=", "authenticated conn="))]
    assert opens and set(opens) == {logging.DEBUG}


async def test_http_reads_beyond_a_users_budget_get_429_with_retry_after():
    from hubbub.features.node import HTTP_READ_BURST

    async with running_server() as server:
        statuses = []
        for _ in range(int(HTTP_READ_BURST)):
            status, _, _ = await http_get(server, "/api/calls", headers={"X-Hubbub-User": "ann"})
            statuses.append(status)
        assert statuses == [200] * int(HTTP_READ_BURST)
        async with aiohttp.ClientSession() as http, http.get(
                server.url + "/api/rooms/r1/messages",
                headers={"X-Hubbub-User": "ann"}) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            body = await resp.json()
        assert body["error"] == "rate_limited" and body["retryAfterMs"] > 0
        # Another user's budget is their own.
        status, _, _ = await http_get(server, "/api/calls", headers={"X-Hubbub-User": "bob"})
        assert status == 200


async def test_http_reads_are_not_limited_with_rate_limit_0():
    async with running_server(rate_limit=0) as server:
        for _ in range(40):
            status, _, _ = await http_get(server, "/api/calls", headers={"X-Hubbub-User": "ann"})
            assert status == 200
