"""A client's burst of chats joins one group commit (dispatch.OVERLAPPING, server/ws.py):
the chats right behind a chat start at once, and still take effect in the order sent."""

import json
from pathlib import Path
from typing import Any

import pytest

from hubbub.server import ws
from hubbub.store.sqlite import SqliteStore
from tests.integration.rawws import OP_TEXT, RawWs
from tests.support.server import running_server, ws_url
from tests.support.wsframes import client_frame


def burst(*frames: tuple[str, str, dict[str, Any]]) -> bytes:
    """(type, id, payload) frames, back to back, for one socket write."""
    return b"".join(client_frame(OP_TEXT, json.dumps(
        {"type": type_, "id": id_, "payload": payload}).encode()) for type_, id_, payload in frames)


async def member(url: str) -> RawWs:
    raw = await RawWs.connect(url)
    await raw.send_json("auth", {"userId": "u", "username": "U"}, id="a")
    await raw.expect("welcome")
    await raw.send_json("join_room", {"roomId": "1"}, id="j")
    await raw.expect("ack")
    return raw


async def answers(raw: RawWs, n: int) -> list[dict[str, Any]]:
    """The next n acks and errors, in the order they came (broadcasts skipped)."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        frame = await raw.recv_json()
        if frame["type"] in ("ack", "error"):
            out.append(frame)
    return out


async def test_a_burst_of_chats_is_committed_together_and_acked_in_order(
        tmp_path: Path) -> None:
    # Rate limits off: 300 chats at once are over the default per-user chat rate.
    async with running_server(store=f"sqlite:///{tmp_path}/hub.db", rate_limit=0) as server:
        store = server.node.store
        assert isinstance(store, SqliteStore)
        raw = await member(ws_url(server))
        try:
            # More than one read, and more than the frames that may queue before the
            # socket stops being read (PAUSE_READING_AT).
            n = 300
            before = store.commits
            await raw.loop.sock_sendall(raw.sock, burst(
                *(("chat", f"c{i}", {"roomId": "1", "content": f"m{i}"}) for i in range(n))))
            acks = await answers(raw, n)
            assert [a["id"] for a in acks] == [f"c{i}" for i in range(n)]
            assert all(a["type"] == "ack" for a in acks)
            seqs = [a["payload"]["seq"] for a in acks]
            assert seqs == list(range(seqs[0], seqs[0] + n))
            # One chat at a time would take n commits: each waited for the one before.
            commits = store.commits - before
            assert commits <= n // 10
            history = await store.history("1", None, None, 100)
            assert [m.content for m in history[0]] == [f"m{i}" for i in range(n - 100, n)]
        finally:
            raw.close()


async def test_a_frame_behind_the_chats_waits_for_them(tmp_path: Path) -> None:
    # A leave is not a chat: it takes effect after the chats before it, and the chat after
    # it is refused, although all seven frames arrived in one read.
    async with running_server(store=f"sqlite:///{tmp_path}/hub.db") as server:
        raw = await member(ws_url(server))
        try:
            await raw.loop.sock_sendall(raw.sock, burst(
                *(("chat", f"c{i}", {"roomId": "1", "content": f"m{i}"}) for i in range(5)),
                ("leave_room", "l", {"roomId": "1"}),
                ("chat", "late", {"roomId": "1", "content": "after leaving"})))
            got = await answers(raw, 7)
            assert [(a["id"], a["type"]) for a in got] == [
                *((f"c{i}", "ack") for i in range(5)), ("l", "ack"), ("late", "error")]
            assert got[-1]["payload"]["code"] == "not_in_room"
        finally:
            raw.close()


async def test_chats_behind_a_frame_that_closes_the_connection_are_void(
        tmp_path: Path) -> None:
    # The 51st bad chat in a row uses up the strikes: 4008. The good chats behind it came
    # in the same read and may have been started, but none of them is stored.
    async with running_server(store=f"sqlite:///{tmp_path}/hub.db", rate_limit=0) as server:
        store = server.node.store
        raw = await member(ws_url(server))
        try:
            await raw.loop.sock_sendall(raw.sock, burst(
                ("chat", "first", {"roomId": "1", "content": "kept"}),
                *(("chat", f"bad{i}", {"roomId": "1", "content": " "}) for i in range(60)),
                *(("chat", f"late{i}", {"roomId": "1", "content": f"void {i}"})
                  for i in range(5))))
            code, _ = await raw.read_until_end()
            assert code == 4008
            messages, _ = await store.history("1", None, None, 100)
            assert [m.content for m in messages] == ["kept"]
        finally:
            raw.close()


async def test_a_frame_right_behind_a_chat_is_parsed_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The typing frame arrives while the chat before it waits on the store: it is parsed
    # then, to see whether it may start too (only chats may), and waits for its turn as
    # parsed. Three frames, three parses.
    parsed: list[bytes | str] = []
    read_frame = ws.read_frame

    def counting(data: bytes | str, utf8_checked: bool = False) -> Any:
        parsed.append(data)
        return read_frame(data, utf8_checked)

    monkeypatch.setattr(ws, "read_frame", counting)
    async with running_server(store=f"sqlite:///{tmp_path}/hub.db") as server:
        raw = await member(ws_url(server))
        try:
            parsed.clear()
            await raw.loop.sock_sendall(raw.sock, burst(
                ("chat", "c0", {"roomId": "1", "content": "m0"}),
                ("typing", "t", {"roomId": "1", "isTyping": True}),
                ("chat", "c1", {"roomId": "1", "content": "m1"})))
            got = await answers(raw, 3)
            assert [(a["id"], a["type"]) for a in got] == [
                ("c0", "ack"), ("t", "ack"), ("c1", "ack")]
            assert len(parsed) == 3
        finally:
            raw.close()


async def test_chats_around_a_frame_that_waits_on_a_read_are_answered_in_order(
        tmp_path: Path) -> None:
    # A chat waits on its write by a callback; a history read waits in a task, which then
    # takes the chats behind it too. One read brings all of them: the answers come in the
    # order sent, and the history sees the chats before it and none after.
    async with running_server(store=f"sqlite:///{tmp_path}/hub.db") as server:
        raw = await member(ws_url(server))
        try:
            await raw.loop.sock_sendall(raw.sock, burst(
                ("chat", "c0", {"roomId": "1", "content": "m0"}),
                ("chat", "c1", {"roomId": "1", "content": "m1"}),
                ("history", "h", {"roomId": "1"}),
                ("chat", "c2", {"roomId": "1", "content": "m2"}),
                ("chat", "c3", {"roomId": "1", "content": "m3"})))
            got = await answers(raw, 5)
            assert [(a["id"], a["type"]) for a in got] == [
                ("c0", "ack"), ("c1", "ack"), ("h", "ack"), ("c2", "ack"), ("c3", "ack")]
            assert [m["content"] for m in got[2]["payload"]["messages"]] == ["m0", "m1"]
            seqs = [a["payload"]["seq"] for a in got if a["id"].startswith("c")]
            assert seqs == [1, 2, 3, 4]
            # Nothing is left waiting: the next chat is answered at once.
            await raw.send_json("chat", {"roomId": "1", "content": "m4"}, id="c4")
            assert [(a["id"], a["payload"]["seq"]) for a in await answers(raw, 1)] == [("c4", 5)]
        finally:
            raw.close()
