"""A killed server loses no acked message (PROTOCOL §Ordering, persistence and delivery:
"A message that was acked is never lost, across restarts"; clientMsgId retries).

A real `hubbub serve` on a SQLite file takes a burst of chats from several clients and is
killed with SIGKILL in the middle of it; a new process on the same file must hold every
acked message exactly once, in a gapless seq order, and accept the clients' retries of
what was never acked without duplicating anything.
"""

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.server import Process, start_process

ROOM = "crash"
CLIENTS = 5
WINDOW = 8  # chats each client keeps in flight
KILL_AFTER = 400  # acks across all clients before the SIGKILL
HANG_GUARD = 60.0  # seconds; only so a broken server fails the test instead of hanging it


@contextlib.contextmanager
def server_on(db: Path) -> Iterator[Process]:
    # sqlite:/// + an absolute path ("/tmp/...") = sqlite:////tmp/...: absolute.
    proc = start_process("--store", "sqlite:///" + str(db), "--rate-limit", "0",
                         "--log-level", "warning")
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
        proc.proc.wait(15)
        for pipe in (proc.proc.stdout, proc.proc.stderr):
            if pipe is not None:
                pipe.close()


async def connect(http: aiohttp.ClientSession, proc: Process,
                  user: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(proc.ws)
    await ws.send_json({"type": "auth", "id": "a", "payload": {"userId": user}})
    await ws.send_json({"type": "join_room", "id": "j", "payload": {"roomId": ROOM}})
    while True:
        frame = await ws.receive_json(timeout=HANG_GUARD)
        if frame.get("id") == "j":
            assert frame["type"] == "ack", frame
            return ws


def chat(cid: str, frame_id: str) -> str:
    return json.dumps({"type": "chat", "id": frame_id,
                       "payload": {"roomId": ROOM, "content": f"content of {cid}",
                                   "clientMsgId": cid}})


class Burst:
    """Clients sending chats as fast as their acks come back, until the server dies."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self.sent: dict[str, list[str]] = {}  # user -> clientMsgIds in sending order
        self.acked: dict[str, dict[str, Any]] = {}  # clientMsgId -> ack payload
        self.killed = False

    async def client(self, http: aiohttp.ClientSession, user: str) -> None:
        ws = await connect(http, self.proc, user)
        sent = self.sent.setdefault(user, [])
        in_flight: dict[str, str] = {}
        try:
            while True:
                while len(in_flight) < WINDOW:
                    cid = f"{user}-{len(sent)}"
                    sent.append(cid)
                    in_flight[f"f{len(sent)}"] = cid
                    await ws.send_str(chat(cid, f"f{len(sent)}"))
                msg = await ws.receive(timeout=HANG_GUARD)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    assert self.killed, f"connection ended before the kill: {msg!r}"
                    return
                frame = json.loads(msg.data)
                if frame.get("id") in in_flight:
                    assert frame["type"] == "ack", frame
                    self.acked[in_flight.pop(frame["id"])] = frame["payload"]
                    if len(self.acked) >= KILL_AFTER and not self.killed:
                        self.killed = True
                        self.proc.proc.kill()  # SIGKILL: no shutdown, no flush, nothing
        except (ConnectionError, aiohttp.ClientError):
            assert self.killed
        finally:
            await ws.close()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(self.client(http, f"u{i}") for i in range(CLIENTS)))


async def full_history(proc: Process) -> list[dict[str, Any]]:
    """Every message of the room over REST, paging forward with afterSeq."""
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        while True:
            params = {"afterSeq": str(out[-1]["seq"] if out else 0), "limit": "100"}
            async with http.get(f"{proc.url}/api/rooms/{ROOM}/messages", params=params,
                                headers={"X-Hubbub-User": "auditor"}) as resp:
                assert resp.status == 200
                page = await resp.json()
            out += page["messages"]
            if not page["hasMore"]:
                return out


def assert_log_is_sound(messages: list[dict[str, Any]]) -> None:
    """Seqs 1..N without gaps, each message and each clientMsgId exactly once."""
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert len({m["messageId"] for m in messages}) == len(messages)
    cids = [m["clientMsgId"] for m in messages]
    assert len(set(cids)) == len(cids)


async def test_a_killed_server_keeps_every_acked_message_exactly_once(tmp_path: Path):
    db = tmp_path / "db.sqlite"
    with server_on(db) as first:
        burst = Burst(first)
        async with asyncio.timeout(HANG_GUARD):
            await burst.run()
        assert burst.killed
    assert len(burst.acked) >= KILL_AFTER

    with server_on(db) as second:
        messages = await full_history(second)
        assert_log_is_sound(messages)
        by_cid = {m["clientMsgId"]: m for m in messages}
        all_sent = {cid for cids in burst.sent.values() for cid in cids}
        assert set(by_cid) <= all_sent
        for cid, ack in burst.acked.items():
            m = by_cid.get(cid)
            assert m is not None, f"acked message {cid} was lost"
            assert (m["messageId"], m["seq"], m["createdAt"]) == (
                ack["messageId"], ack["seq"], ack["createdAt"])
            assert m["content"] == f"content of {cid}"


async def test_retries_after_a_crash_store_each_unacked_message_exactly_once(tmp_path: Path):
    db = tmp_path / "db.sqlite"
    with server_on(db) as first:
        burst = Burst(first)
        async with asyncio.timeout(HANG_GUARD):
            await burst.run()

    with server_on(db) as second:
        before = {m["clientMsgId"]: m for m in await full_history(second)}
        async with aiohttp.ClientSession() as http, asyncio.timeout(HANG_GUARD):
            for user, cids in burst.sent.items():
                ws = await connect(http, second, user)
                unacked = [cid for cid in cids if cid not in burst.acked]
                # Everything not acked, plus one that was acked: the client cannot tell
                # which of its last frames made it, so it retries all it is unsure of.
                retries = [*unacked, cids[0]]
                for n, cid in enumerate(retries):
                    await ws.send_str(chat(cid, f"retry{n}"))
                    frame = await ws.receive_json()
                    while frame.get("id") != f"retry{n}":
                        frame = await ws.receive_json()
                    assert frame["type"] == "ack", frame
                    ack = frame["payload"]
                    if cid in before:  # stored before the crash: the original comes back
                        assert ack.get("duplicate") is True
                        assert (ack["messageId"], ack["seq"]) == (
                            before[cid]["messageId"], before[cid]["seq"])
                    else:
                        assert not ack.get("duplicate")
                await ws.close()
        messages = await full_history(second)
    assert_log_is_sound(messages)
    all_sent = {cid for cids in burst.sent.values() for cid in cids}
    assert {m["clientMsgId"] for m in messages} == all_sent
