"""Every kind of bad input gets a coded error and leaves the connection usable
(PROTOCOL §Transport, §Errors), except a frame over --max-frame (close 1009)."""

import json

import aiohttp
import pytest

from tests.integration.helpers import dev_client
from tests.integration.rawws import OP_BINARY, OP_TEXT, RawWs
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient


async def _still_alive(c: WsClient) -> None:
    pong = await c.request("ping", {}, id="alive")
    assert pong["type"] == "pong"


async def _error_after(c: WsClient, raw: str) -> dict:
    await c.ws.send_str(raw)
    frame = await c.recv()
    assert frame["type"] == "error", frame
    return frame


async def test_binary_frame_gets_bad_request_and_the_connection_stays():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.ws.send_bytes(b'{"type":"ping"}')
        err = await c.recv()
        assert err["type"] == "error"
        assert err["payload"]["code"] == "bad_request"
        await _still_alive(c)


async def test_text_that_is_not_json_gets_bad_request_and_the_connection_stays():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await _error_after(c, "hello, server")
        assert err["payload"]["code"] == "bad_request"
        assert "id" not in err
        await _still_alive(c)


@pytest.mark.parametrize("raw", ["[1, 2, 3]", '"ping"', "42", "null", "true"])
async def test_json_that_is_not_an_object_gets_bad_request(raw):
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await _error_after(c, raw)
        assert err["payload"]["code"] == "bad_request"
        await _still_alive(c)


async def test_object_without_a_type_gets_bad_request_with_its_id():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await _error_after(c, '{"id": "x1", "payload": {}}')
        assert err["payload"]["code"] == "bad_request"
        assert err["id"] == "x1"


async def test_unknown_type_gets_unknown_type_with_the_id_echoed():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await c.request("teleport", {"to": "mars"}, id="u-1")
        assert err["type"] == "error"
        assert err["id"] == "u-1"
        assert err["payload"]["code"] == "unknown_type"
        await _still_alive(c)


async def test_any_type_but_auth_and_ping_before_auth_is_unauthorized_even_when_malformed():
    # PROTOCOL §Authentication: "Every frame but auth/ping sent before authentication
    # gets unauthorized", an unknown type or a bad payload included.
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        for i, (type_, payload) in enumerate((("teleport", {}), ("join_room", {}),
                                              ("chat", {"roomId": 5.5}),
                                              ("join_room", {"roomId": "r"}))):
            err = await c.request(type_, payload, id=f"u-{i}")
            assert err["type"] == "error" and err["id"] == f"u-{i}"
            assert err["payload"]["code"] == "unauthorized", type_


async def test_a_malformed_auth_or_ping_before_auth_is_a_bad_request():
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        for i, type_ in enumerate(("auth", "ping")):
            err = await c.request(type_, {"userId": ["not", "a", "string"]}, id=f"b-{i}")
            assert err["payload"]["code"] == "bad_request", type_
        assert (await c.auth("u1"))["payload"]["userId"] == "u1"


async def test_wrong_payload_field_type_gets_bad_request_with_its_id():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await c.request("join_room", {"roomId": ["r"]}, id="j1")
        assert err["type"] == "error"
        assert err["payload"]["code"] == "bad_request"


async def test_missing_payload_gets_bad_request():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await c.request("join_room", None, id="j1")
        assert err["payload"]["code"] == "bad_request"


async def test_frame_over_max_frame_closes_with_1009():
    async with running_server(max_frame=1024) as server, await dev_client(server, "u1") as c:
        await c.send("ping", {"junk": "x" * 4096}, id="big")
        assert await c.closed() == 1009


async def test_frame_just_under_max_frame_is_accepted():
    async with running_server(max_frame=1024) as server, await dev_client(server, "u1") as c:
        frame = {"type": "ping", "id": "p", "payload": {"junk": ""}}
        frame["payload"]["junk"] = "x" * (1000 - len(json.dumps(frame)))
        await c.ws.send_str(json.dumps(frame))
        assert (await c.recv())["type"] == "pong"


async def test_deeply_nested_json_gets_bad_request_and_the_connection_stays():
    async with running_server() as server, await dev_client(server, "u1") as c:
        deep = '{"type":"ping","id":"d","payload":{"x":' + "[" * 5000 + "]" * 5000 + "}}"
        err = await _error_after(c, deep)
        assert err["payload"]["code"] == "bad_request"
        await _still_alive(c)


async def test_deeply_nested_array_gets_bad_request():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await _error_after(c, "[" * 20000)
        assert err["payload"]["code"] == "bad_request"
        await _still_alive(c)


async def test_huge_integer_gets_bad_request_and_the_connection_stays():
    async with running_server() as server, await dev_client(server, "u1") as c:
        huge = "1" + "0" * 5000
        err = await _error_after(
            c, '{"type":"join_room","id":"h","payload":{"roomId":' + huge + "}}")
        assert err["payload"]["code"] == "bad_request"
        await _still_alive(c)


async def test_integer_room_id_too_long_for_a_room_id_gets_bad_request():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await _error_after(
            c, '{"type":"join_room","id":"h","payload":{"roomId":1' + "0" * 400 + "}}")
        assert err["payload"]["code"] == "bad_request"
        assert err["id"] == "h"
        await _still_alive(c)


async def test_huge_integer_in_since_gets_bad_request():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await c.request("join_room", {"roomId": "r", "since": 10**30}, id="s")
        assert err["payload"]["code"] == "bad_request"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_get_bad_request_and_the_connection_stays(literal):
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await _error_after(c, '{"type":"ping","id":"n","payload":{"x":' + literal + "}}")
        assert err["payload"]["code"] == "bad_request"
        await _still_alive(c)


async def test_lone_surrogate_gets_bad_request_and_the_connection_stays():
    async with running_server() as server, await dev_client(server, "u1") as c:
        err = await _error_after(c, '{"type":"join_room","id":"s","payload":{"roomId":"\\ud800"}}')
        assert err["payload"]["code"] == "bad_request"
        await _still_alive(c)


async def test_lone_surrogate_in_a_dev_username_gets_bad_request():
    async with running_server() as server, await WsClient.open(ws_url(server)) as c:
        err = await _error_after(
            c, '{"type":"auth","id":"a","payload":{"userId":"u1","username":"\\udc00"}}')
        assert err["payload"]["code"] == "bad_request"
        await c.auth("u1")


async def test_invalid_utf8_in_a_text_frame_closes_the_connection_with_1007():
    # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection.
    async with running_server() as server:
        raw = await RawWs.connect(ws_url(server))
        try:
            await raw.send_json("auth", {"userId": "u1"})
            await raw.expect("welcome")
            await raw.send_frame(OP_TEXT, b'{"type":"ping","id":"\xff\xfe"}')
            opcode, payload = await raw.read_frame()
            assert opcode == 0x8
            assert payload[:2] == (1007).to_bytes(2, "big")
        finally:
            raw.close()


async def test_binary_frame_over_the_raw_socket_gets_bad_request():
    async with running_server() as server:
        raw = await RawWs.connect(ws_url(server))
        try:
            await raw.send_json("auth", {"userId": "u1"})
            await raw.expect("welcome")
            await raw.send_frame(OP_BINARY, b"\x00\x01\x02")
            err = await raw.recv_json()
            assert err["payload"]["code"] == "bad_request"
        finally:
            raw.close()


async def test_id_longer_than_64_chars_gets_an_error_without_id():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.send("ping", {}, id="x" * 65)
        err = await c.recv()
        assert err["type"] == "error"
        assert err["payload"]["code"] == "bad_request"
        assert "id" not in err
        await _still_alive(c)


async def test_id_of_exactly_64_chars_is_echoed():
    async with running_server() as server, await dev_client(server, "u1") as c:
        pong = await c.request("ping", {}, id="x" * 64)
        assert pong["id"] == "x" * 64


async def test_empty_or_non_string_id_gets_an_error_without_id():
    async with running_server() as server, await dev_client(server, "u1") as c:
        for bad_id in ('""', "7", '["a"]'):
            err = await _error_after(c, '{"type":"ping","id":' + bad_id + "}")
            assert err["payload"]["code"] == "bad_request", bad_id
            assert "id" not in err


async def test_every_frame_with_an_id_gets_exactly_one_ack_or_error():
    async with running_server(rate_limit=0) as server, await dev_client(server, "u1") as c:
        frames = [
            ("join_room", {"roomId": "r"}),
            ("join_room", {"roomId": "r"}),            # again: ack again
            ("join_room", {"roomId": "bad room"}),
            ("presence", {"status": "away"}),
            ("presence", {"status": "away"}),          # no change: still one ack
            ("presence", {"status": "sleeping"}),
            ("typing", {"roomId": "r", "isTyping": True}),
            ("typing", {"roomId": "nowhere", "isTyping": True}),
            ("leave_room", {"roomId": "r"}),
            ("leave_room", {"roomId": "r"}),
            ("auth", {"userId": "u1"}),                # already authenticated
            ("teleport", {}),
            ("typing", {"roomId": "r", "isTyping": True, "userId": "u2"}),
        ]
        for i, (type_, payload) in enumerate(frames):
            await c.send(type_, payload, id=f"k{i}")
        await c.send("ping", {}, id="end")
        answers: dict[str, list[str]] = {}
        while True:
            frame = await c.recv()
            if frame.get("id") == "end":
                break
            if "id" in frame:
                answers.setdefault(frame["id"], []).append(frame["type"])
        assert sorted(answers) == sorted(f"k{i}" for i in range(len(frames)))
        for fid, types in answers.items():
            assert len(types) == 1 and types[0] in ("ack", "error"), (fid, types)


async def test_null_id_counts_as_no_id():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.ws.send_str('{"type":"ping","id":null}')
        pong = await c.recv()
        assert pong["type"] == "pong"
        assert "id" not in pong


@pytest.mark.parametrize(("type_", "payload"), [
    ("presence", {"status": "away"}),
    ("typing", {"roomId": "r", "isTyping": True}),
    ("join_room", {"roomId": "r2"}),
    ("leave_room", {"roomId": "r"}),
])
async def test_frame_without_id_gets_no_ack(type_, payload):
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.join("r")
        await c.send(type_, payload)
        await c.send("ping", {}, id="end")
        while (frame := await c.recv())["type"] != "pong":
            assert frame["type"] != "ack", frame


async def test_frame_without_id_still_gets_an_error_on_failure():
    async with running_server() as server, await dev_client(server, "u1") as c:
        await c.send("leave_room", {"roomId": "r"})
        err = await c.recv()
        assert err["type"] == "error"
        assert err["payload"]["code"] == "not_in_room"
        assert "id" not in err


async def test_a_few_bad_frames_do_not_close_the_connection():
    async with running_server() as server, await dev_client(server, "u1") as c:
        for _ in range(10):
            await _error_after(c, "not json")
        await _still_alive(c)
        assert not c.ws.closed


async def test_fragmented_text_frame_is_reassembled():
    async with running_server() as server:
        raw = await RawWs.connect(ws_url(server))
        try:
            data = json.dumps({"type": "auth", "id": "a", "payload": {"userId": "u1"}}).encode()
            await raw.send_frame(OP_TEXT, data[:10], fin=False)
            await raw.send_frame(0x0, data[10:])
            assert (await raw.recv_json())["type"] == "welcome"
        finally:
            raw.close()


async def test_server_survives_a_client_that_vanishes_mid_frame():
    async with running_server() as server:
        raw = await RawWs.connect(ws_url(server))
        await raw.loop.sock_sendall(raw.sock, b"\x81\xfe\x10\x00abcd" + b"x" * 10)
        raw.close()
        async with await dev_client(server, "u2") as c:
            await _still_alive(c)
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as r:
            assert r.status == 200
