"""A node on PostgreSQL end to end (PROTOCOL §Ordering, persistence and delivery): chat,
history and recovery through a real server, across a restart, and two nodes sharing one
database. Skips without PostgreSQL locally; fails in CI (tests/support/services.py)."""

import importlib.util
import json
from typing import Any

import pytest

from hubbub.server.app import Server
from tests.integration.helpers import metric
from tests.integration.rawws import OP_TEXT, RawWs
from tests.support.server import running_server, ws_url
from tests.support.services import unavailable
from tests.support.wsclient import WsClient
from tests.support.wsframes import client_frame


@pytest.fixture
def store_url(postgres_dsn: str) -> str:
    if importlib.util.find_spec("asyncpg") is None:
        unavailable("asyncpg is not installed (pip install -e '.[dev]' or hubbub[postgres])")
    return postgres_dsn


async def member(server: Server, user: str, room: str = "1") -> WsClient:
    client = await WsClient.open(ws_url(server))
    await client.auth(user, user.upper())
    await client.join(room)
    return client


async def send_chat(client: WsClient, content: str, **extra: Any) -> dict[str, Any]:
    ack = await client.request("chat", {"roomId": "1", "content": content, **extra}, id="c")
    assert ack["type"] == "ack", ack
    payload: dict[str, Any] = ack["payload"]
    return payload


async def history(client: WsClient) -> list[dict[str, Any]]:
    ack = await client.request("history", {"roomId": "1", "limit": 100}, id="h")
    assert ack["type"] == "ack", ack
    assert ack["payload"]["hasMore"] is False
    messages: list[dict[str, Any]] = ack["payload"]["messages"]
    return messages


async def test_a_chat_is_persisted_broadcast_and_read_back_in_history(store_url: str) -> None:
    async with (running_server(store=store_url) as server,
                await member(server, "u1") as u1, await member(server, "u2") as u2):
        ack = await send_chat(u1, "hello postgres", clientMsgId="k1")
        assert ack["seq"] == 1
        event = await u2.expect("chat")
        assert event["payload"]["content"] == "hello postgres"
        again = await send_chat(u1, "hello postgres", clientMsgId="k1")  # a retry
        assert (again["messageId"], again["seq"]) == (ack["messageId"], 1)
        assert [(m["seq"], m["content"]) for m in await history(u2)] == [(1, "hello postgres")]


async def test_messages_survive_a_restart_of_the_node(store_url: str) -> None:
    async with running_server(store=store_url) as server, await member(server, "u1") as u1:
        for text in ("one", "two"):
            await send_chat(u1, text)
    async with running_server(store=store_url) as server, await member(server, "u2") as u2:
        assert [m["content"] for m in await history(u2)] == ["one", "two"]
        rejoin = await u2.request("join_room", {"roomId": "1", "since": 1}, id="j")
        assert rejoin["payload"]["recovered"] is True
        assert [e["payload"]["content"] for e in rejoin["payload"]["missed"]] == ["two"]
        assert (await send_chat(u2, "three"))["seq"] == 3


async def test_two_nodes_on_one_database_continue_one_room_log(store_url: str) -> None:
    # Without a broker the nodes do not relay each other's broadcasts, but the order and
    # the history are the database's: one seq per room across both nodes.
    async with (running_server(store=store_url) as a, running_server(store=store_url) as b,
                await member(a, "u1") as on_a, await member(b, "u2") as on_b):
        seqs = []
        for i in range(3):
            seqs.append((await send_chat(on_a, f"a{i}"))["seq"])
            seqs.append((await send_chat(on_b, f"b{i}"))["seq"])
        assert seqs == [1, 2, 3, 4, 5, 6]
        expected = ["a0", "b0", "a1", "b1", "a2", "b2"]
        assert [m["content"] for m in await history(on_a)] == expected
        assert [m["content"] for m in await history(on_b)] == expected


async def test_metrics_count_a_batch_run_again_for_a_retry_inside_it(store_url: str) -> None:
    # Two chats with one clientMsgId in one socket write land in one batch: the statement
    # shared by the run of chats comes back short, and the batch runs again write by write
    # (ADR 0028), which /metrics counts.
    async with running_server(store=store_url, rate_limit=0) as server:
        raw = await RawWs.connect(ws_url(server))
        try:
            await raw.send_json("auth", {"userId": "u1", "username": "U1"}, id="a")
            await raw.expect("welcome")
            await raw.send_json("join_room", {"roomId": "1"}, id="j")
            await raw.expect("ack")
            before = await metric(server, "hubbub_store_redone_batches_total")
            assert await metric(server, "hubbub_store_retried_writes_total") == 0
            chat = {"roomId": "1", "content": "twice", "clientMsgId": "k1"}
            await raw.loop.sock_sendall(raw.sock, b"".join(
                client_frame(OP_TEXT, json.dumps({"type": "chat", "id": f"c{i}",
                                                  "payload": chat}).encode())
                for i in range(2)))
            acks = [await raw.expect("ack") for _ in range(2)]
            assert [a["payload"].get("duplicate", False) for a in acks] == [False, True]
            assert acks[0]["payload"]["messageId"] == acks[1]["payload"]["messageId"]
            assert await metric(server, "hubbub_store_redone_batches_total") == before + 1
        finally:
            raw.close()
