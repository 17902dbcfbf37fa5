"""WebSocket conformance at the edges (RFC 6455), with a raw socket: what the server does
with frames no well-behaved client sends. hubbub's FrameGate (server/framegate.py) checks
every header before picows parses the frame; picows checks the rest.

Elsewhere: invalid UTF-8 in a text frame -> 1007 (test_bad_input.py::
test_invalid_utf8_in_a_text_frame_closes_the_connection_with_1007), a single frame over
--max-frame -> 1009 and a two-fragment message (test_bad_input.py).
"""

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

import pytest

from hubbub.server.app import Server
from tests.integration.helpers import dev_client
from tests.integration.rawws import OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Ended, RawWs
from tests.support.server import running_server, ws_url
from tests.support.wsframes import client_frame as frame


def text(obj: dict[str, Any], **kwargs: Any) -> bytes:
    return frame(OP_TEXT, json.dumps(obj).encode(), **kwargs)


async def authed(server: Server, user: str = "u1") -> RawWs:
    raw = await RawWs.connect(ws_url(server))
    await raw.send_json("auth", {"userId": user}, id="a")
    await raw.expect("welcome")
    return raw


async def send(raw: RawWs, *frames: bytes) -> None:
    """All the frames in one write."""
    await raw.loop.sock_sendall(raw.sock, b"".join(frames))


async def until_closed(raw: RawWs) -> tuple[list[dict[str, Any]], int | None, str]:
    """Text frames read before the server's close frame, its close code, and how the TCP
    connection then ended (the close is answered, as a client must)."""
    texts: list[dict[str, Any]] = []
    while True:
        try:
            opcode, payload = await raw.read_frame(timeout=10.0)
        except Ended as exc:
            return texts, None, str(exc)
        if opcode == OP_TEXT:
            texts.append(json.loads(payload))
        elif opcode == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            await raw.send_frame(OP_CLOSE, payload[:2])
            _, ended = await raw.read_until_end(timeout=10.0)
            return texts, code, ended


async def fails_with(server: Server, code: int, *frames: bytes) -> list[dict[str, Any]]:
    """Send the frames in one write after auth, then a ping with an id: the connection must
    close with `code` and the ping must not be answered. Returns the text frames seen."""
    raw = await authed(server)
    try:
        await send(raw, *frames, text({"type": "ping", "id": "after"}))
        texts, got, ended = await until_closed(raw)
        assert got == code, (got, texts)
        assert ended in ("eof", "reset")
        assert not [t for t in texts if t.get("id") == "after"], "a frame after it was handled"
        return texts
    finally:
        raw.close()


# ---- masking (RFC 6455 §5.1, §5.3) -------------------------------------------------------


async def test_an_unmasked_client_frame_closes_with_1002_and_is_not_handled():
    async with running_server() as server:
        texts = await fails_with(server, 1002,
                                 text({"type": "ping", "id": "bare"}, masked=False))
        assert texts == []


async def test_frames_before_an_unmasked_one_are_handled_and_answered_before_the_close():
    async with running_server() as server, await dev_client(server, "calm") as calm:
        await calm.join("r")
        raw = await authed(server)
        try:
            await send(raw, text({"type": "join_room", "id": "j", "payload": {"roomId": "r"}}))
            await raw.expect("ack")
            await calm.expect("join_room", userId="u1")
            await send(raw, text({"type": "chat", "id": "c", "payload": {
                "roomId": "r", "content": "before"}}),
                text({"type": "chat", "payload": {"roomId": "r", "content": "bare"}},
                     masked=False))
            texts, code, _ = await until_closed(raw)
            assert code == 1002
            assert [(t["type"], t.get("id")) for t in texts if t["type"] != "chat"] == [
                ("ack", "c")]
        finally:
            raw.close()
        assert (await calm.expect("chat"))["payload"]["content"] == "before"
        page = await calm.request("history", {"roomId": "r"}, id="h")
        assert [m["content"] for m in page["payload"]["messages"]] == ["before"]


async def test_an_unmasked_control_frame_closes_with_1002():
    async with running_server() as server:
        await fails_with(server, 1002, frame(OP_PING, b"hi", masked=False))


async def test_an_unmasked_frame_split_across_reads_closes_with_1002():
    async with running_server() as server:
        raw = await authed(server)
        try:
            bad = text({"type": "ping", "id": "bare"}, masked=False)
            for i in range(len(bad)):  # one byte per write
                await send(raw, bad[i:i + 1])
            _, code, _ = await until_closed(raw)
            assert code == 1002
        finally:
            raw.close()


async def _upgrade_with(server: Server, extra: bytes,
                        headers: dict[str, str] | None = None) -> tuple[bytes, RawWs]:
    """Upgrade by hand, with `extra` bytes in the same write as the request; returns the
    response head and a RawWs on the socket."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /ws HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode() + extra)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5.0)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, RawWs(sock, rest)


async def test_a_masked_frame_sent_with_the_upgrade_request_is_handled():
    async with running_server() as server:
        head, raw = await _upgrade_with(server, text(
            {"type": "auth", "id": "a", "payload": {"userId": "u1"}}))
        try:
            assert head.startswith(b"HTTP/1.1 101")
            assert (await raw.expect("welcome"))["id"] == "a"
        finally:
            raw.close()


async def test_an_unmasked_frame_sent_with_the_upgrade_request_closes_with_1002():
    async with running_server() as server:
        head, raw = await _upgrade_with(server, text(
            {"type": "auth", "id": "a", "payload": {"userId": "u1"}}, masked=False))
        try:
            assert head.startswith(b"HTTP/1.1 101")
            texts, code, _ = await until_closed(raw)
            assert code == 1002
            assert texts == []
        finally:
            raw.close()


# ---- control frames (§5.5) ----------------------------------------------------------------


async def test_a_ping_is_answered_with_a_pong_carrying_its_payload():
    async with running_server() as server:
        raw = await authed(server)
        try:
            await send(raw, frame(OP_PING, b"x" * 125))
            assert await raw.read_frame() == (OP_PONG, b"x" * 125)
        finally:
            raw.close()


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
async def test_a_control_frame_over_125_bytes_closes_with_1002(opcode):
    async with running_server() as server:
        await fails_with(server, 1002, frame(opcode, b"\x03\xe8" + b"x" * 124))


async def test_a_fragmented_control_frame_closes_with_1002():
    async with running_server() as server:
        await fails_with(server, 1002, frame(OP_PING, b"hi", fin=False))


# ---- fragmentation (§5.4) -------------------------------------------------------------------


async def test_a_message_in_many_fragments_with_pings_between_them_is_handled():
    async with running_server() as server:
        raw = await authed(server)
        try:
            data = json.dumps({"type": "join_room", "id": "j", "payload": {"roomId": "r"}})
            parts = [data[i:i + 5].encode() for i in range(0, len(data), 5)]
            frames = [frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
                      for i, p in enumerate(parts)]
            # Control frames may come between the fragments of a message.
            await send(raw, frames[0], frame(OP_PING, b"mid"), *frames[1:])
            assert await raw.read_frame() == (OP_PONG, b"mid")
            ack = await raw.expect("ack")
            assert ack["id"] == "j" and ack["payload"]["roomId"] == "r"
        finally:
            raw.close()


async def test_a_fragmented_message_over_max_frame_closes_with_1009():
    async with running_server(max_frame=1024) as server:
        # Each fragment is well under the limit; together they are over it.
        await fails_with(server, 1009, frame(OP_TEXT, b'{"type":"ping","x":"' + b"x" * 500,
                                             fin=False),
                         frame(OP_CONT, b"x" * 500, fin=False),
                         frame(OP_CONT, b"x" * 500 + b'"}'))


async def test_a_frame_declaring_a_huge_length_closes_with_1009_before_its_payload():
    async with running_server(max_frame=1024) as server:
        # 2**62 bytes announced, none sent: refused on the header, nothing is buffered.
        await fails_with(server, 1009, frame(OP_TEXT, b"", length=2**62)[:14])


async def test_a_continuation_without_a_started_message_closes_with_1002():
    async with running_server() as server:
        await fails_with(server, 1002, frame(OP_CONT, b"{}"))


async def test_a_new_message_inside_a_fragmented_one_closes_with_1002():
    async with running_server() as server:
        await fails_with(server, 1002, frame(OP_TEXT, b'{"type":', fin=False),
                         text({"type": "ping", "id": "inner"}))


# ---- reserved bits and opcodes, compression (§5.2, RFC 7692) ----------------------------------


@pytest.mark.parametrize("rsv", [0b100, 0b010, 0b001], ids=["rsv1", "rsv2", "rsv3"])
async def test_a_frame_with_a_reserved_bit_set_closes_with_1002(rsv):
    # RSV1 is what a permessage-deflate client sets on a compressed frame: with the
    # extension never negotiated, it is refused and nothing is ever inflated.
    async with running_server() as server:
        await fails_with(server, 1002, text({"type": "ping", "id": "r"}, rsv=rsv))


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_a_frame_with_a_reserved_opcode_closes_with_1002(opcode):
    async with running_server() as server:
        await fails_with(server, 1002, frame(opcode, b"x"))


async def test_permessage_deflate_is_never_negotiated():
    async with running_server() as server:
        head, raw = await _upgrade_with(server, b"", {
            "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
        raw.close()
        assert head.startswith(b"HTTP/1.1 101")
        assert b"sec-websocket-extensions" not in head.lower()
        assert b"deflate" not in head.lower()


# ---- the closing handshake (§5.5.1, §7) ------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\x03\xe8bye", b"\x03\xe9", b"\x0f\xa0app", b""],
                         ids=["1000", "1001", "4000", "no-code"])
async def test_a_client_close_is_answered_with_close_1000_then_the_server_ends_tcp(payload):
    # The server's answer is always 1000, whatever code the client sent (RFC 6455 §5.5.1
    # only says an endpoint "typically" echoes it).
    async with running_server() as server:
        raw = await authed(server)
        try:
            await send(raw, frame(OP_CLOSE, payload), text({"type": "ping", "id": "late"}))
            opcode, answer = await raw.read_frame()
            assert opcode == OP_CLOSE
            assert answer[:2] == b"\x03\xe8"
            # We do not close our side: the server must end the TCP connection itself.
            code, ended = await raw.read_until_end(timeout=10.0, reply_close=False)
            assert code is None and ended in ("eof", "reset")
        finally:
            raw.close()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
async def test_a_close_frame_with_an_invalid_code_closes_with_1002(code):
    async with running_server() as server:
        await fails_with(server, 1002, frame(OP_CLOSE, struct.pack("!H", code)))


async def test_a_close_frame_with_a_one_byte_payload_closes_with_1002():
    async with running_server() as server:
        await fails_with(server, 1002, frame(OP_CLOSE, b"\x03"))


async def test_a_close_reason_that_is_not_utf8_closes_with_1007():
    async with running_server() as server:
        await fails_with(server, 1007, frame(OP_CLOSE, b"\x03\xe8\xff\xfe"))


async def test_frames_before_a_client_close_are_answered_before_the_servers_close():
    async with running_server() as server:
        raw = await authed(server)
        try:
            await send(raw, text({"type": "ping", "id": "p1"}), text({"type": "ping", "id": "p2"}),
                       frame(OP_CLOSE, b"\x03\xe8"))
            texts, code, _ = await until_closed(raw)
            assert [t["id"] for t in texts] == ["p1", "p2"]
            assert code == 1000
        finally:
            raw.close()


@pytest.mark.parametrize(("bad", "code"), [
    (frame(OP_TEXT, b"{}", masked=False), 1002),
    (frame(OP_TEXT, b"", length=70_000), 1009),  # the header alone: refused on it
    (frame(0x3, b""), 1002),
], ids=["unmasked", "too-large", "reserved-opcode"])
async def test_answers_to_frames_before_a_bad_one_leave_before_the_close_frame(bad, code):
    async with running_server(max_frame=1024) as server:
        raw = await authed(server)
        try:
            await send(raw, text({"type": "ping", "id": "p1"}), bad)
            texts, got, _ = await until_closed(raw)
            assert [t["id"] for t in texts] == ["p1"]
            assert got == code
        finally:
            raw.close()


# ---- others keep their service --------------------------------------------------------------


async def test_protocol_errors_from_one_client_leave_the_others_served():
    async with running_server() as server, await dev_client(server, "calm") as calm:
        await calm.join("r")
        for bad in (frame(OP_TEXT, b"{}", masked=False), frame(OP_PING, b"x" * 126),
                    frame(0x3, b""), text({"type": "ping"}, rsv=0b100)):
            raw = await authed(server, "bad")
            try:
                await send(raw, bad)
                _, code, _ = await until_closed(raw)
                assert code == 1002
            finally:
                raw.close()
        assert (await calm.request("ping", {}, id="p"))["type"] == "pong"
        ack = await calm.request("chat", {"roomId": "r", "content": "still here"}, id="c")
        assert ack["type"] == "ack"


# ---- inbound backpressure (server/ws.py PAUSE_READING_AT) -----------------------------------


async def test_frames_waiting_behind_a_store_write_pause_reading_then_all_are_answered_in_order():
    from hubbub.server import ws as ws_module

    async with running_server() as server:
        store = server.node.store
        release = asyncio.Event()
        real_append = store.append_chat

        def slow_append(chat: Any) -> "asyncio.Future[Any]":
            async def held() -> Any:
                await release.wait()
                return await real_append(chat)

            return asyncio.ensure_future(held())  # a store hands back a future

        store.append_chat = slow_append  # type: ignore[method-assign]
        raw = await authed(server)
        try:
            await send(raw, text({"type": "join_room", "id": "j", "payload": {"roomId": "r"}}))
            await raw.expect("ack")
            n = ws_module.PAUSE_READING_AT + 16
            await send(raw, text({"type": "chat", "id": "c", "payload": {
                "roomId": "r", "content": "held"}}),
                *[text({"type": "ping", "id": f"p{i}"}) for i in range(n)])
            assert server.hub is not None
            (conn,) = server.hub.conns.values()
            transport: Any = conn.transport
            for _ in range(200):  # the frames behind the chat pile up, then reading stops
                if not transport.is_reading():
                    break
                await asyncio.sleep(0.01)
            assert not transport.is_reading()
            release.set()
            answers = []
            while len(answers) < n + 1:
                frame = json.loads((await raw.read_frame())[1])
                if frame["type"] != "chat":
                    answers.append(frame.get("id"))
            assert answers == ["c", *[f"p{i}" for i in range(n)]]
            assert transport.is_reading()
        finally:
            raw.close()
