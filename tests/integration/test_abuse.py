"""Faults and abuse with real servers and clients: whatever a few clients do, the others
keep their service and no acknowledged message is lost.

Every test runs two bystanders, `talker` and `listener`, in the room the abuse targets.
While the abuse goes on, the talker chats without pause (each chat waits for its ack).
Afterwards: both answer a ping, a new chat is acked and broadcast, the listener heard every
acked chat, and the room's history holds every acked chat (the bystanders' and the
abusers'). Numbers are printed (`pytest -s`) for docs/topics/security.md.

Covered elsewhere, not repeated here: cross-site WebSocket hijacking
(test_origin.py::test_foreign_origin_gets_403_before_the_upgrade), a token expiring on a
live connection (test_auth.py::test_connection_is_closed_with_4001_when_its_token_expires),
slow readers (test_slow_reader.py), slowloris (test_slowloris.py), a flood of pings
(test_flood.py), a failing store (test_store_faults.py), crashes (test_crash_recovery.py).
"""

import asyncio
import contextlib
import json
import resource
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from hubbub.server.app import Server
from tests.integration.helpers import metric
from tests.integration.rawws import OP_BINARY, OP_CLOSE, OP_TEXT, Ended, RawWs
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient

ROOM = "lobby"
# A hang guard for polls and answers, never a performance threshold.
PATIENCE = 60.0


# ---- clients that never stop reading ----------------------------------------------------


class Peer:
    """A dev-mode client with a reader task: every frame is kept, requests wait for the
    frame with their id. It reads all the time, so it is never a slow reader."""

    def __init__(self, client: WsClient, user: str) -> None:
        self.client = client
        self.user = user
        self.frames: list[dict[str, Any]] = []
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._new = asyncio.Event()
        self.closed_with: int | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, server: Server, user: str) -> "Peer":
        peer = cls(await WsClient.open(ws_url(server)), user)
        await peer.request("auth", {"userId": user}, "auth")
        return peer

    async def _read(self) -> None:
        ws = self.client.ws
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                self.closed_with = ws.close_code
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError(f"closed {ws.close_code}"))
                self._new.set()
                return
            frame = json.loads(msg.data)
            self.frames.append(frame)
            fut = self._waiting.pop(frame.get("id") or "", None)
            if fut is not None and not fut.done():
                fut.set_result(frame)
            self._new.set()

    async def request(self, type_: str, payload: dict[str, Any] | None,
                      id: str) -> dict[str, Any]:
        fut = self._waiting[id] = asyncio.get_running_loop().create_future()
        await self.client.send(type_, payload, id)
        return await asyncio.wait_for(fut, PATIENCE)

    async def until(self, predicate: Any, what: str) -> None:
        """Wait until `predicate()` holds, re-checking on every new frame."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while not predicate():
            self._new.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"{self.user}: never saw {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), min(left, 0.5))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [f["payload"] for f in self.frames if f["type"] == type_]

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.client.close()


# ---- the bystanders and the one invariant ----------------------------------------------------


@dataclass
class Ledger:
    """Every chat that was acked: messageId -> content."""

    acked: dict[str, str] = field(default_factory=dict)

    def record(self, answer: dict[str, Any], content: str) -> None:
        if answer["type"] == "ack":
            self.acked[answer["payload"]["messageId"]] = content


@dataclass
class Bystanders:
    talker: Peer
    listener: Peer
    ledger: Ledger
    stop: asyncio.Event
    chats: int = 0
    task: "asyncio.Task[None] | None" = None


async def _talk(b: Bystanders) -> None:
    """The talker chats until told to stop, each chat waiting for its answer."""
    while not b.stop.is_set():
        n = b.chats
        content = f"bystander {n}"
        answer = await b.talker.request("chat", {"roomId": ROOM, "content": content,
                                                 "clientMsgId": f"by-{n}"}, f"c{n}")
        assert answer["type"] == "ack", answer  # the talker is within every limit
        b.ledger.record(answer, content)
        b.chats += 1
        await asyncio.sleep(0.06)  # under --chat-rate (20 a second)


@contextlib.asynccontextmanager
async def bystanders(server: Server) -> AsyncIterator[Bystanders]:
    talker = await Peer.open(server, "talker")
    listener = await Peer.open(server, "listener")
    for peer in (talker, listener):
        assert (await peer.request("join_room", {"roomId": ROOM}, "join"))["type"] == "ack"
    b = Bystanders(talker, listener, Ledger(), asyncio.Event())
    task = b.task = asyncio.get_running_loop().create_task(_talk(b))
    try:
        yield b
    finally:
        b.stop.set()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await talker.close()
        await listener.close()


async def history(peer: Peer, room: str = ROOM) -> dict[str, dict[str, Any]]:
    """Every message of the room, paging forward from the start."""
    out: dict[str, dict[str, Any]] = {}
    after, page_no = 0, 0
    while True:
        page_no += 1
        answer = await peer.request("history", {"roomId": room, "afterSeq": after,
                                                "limit": 100}, f"h{page_no}")
        assert answer["type"] == "ack", answer
        for m in answer["payload"]["messages"]:
            out[m["messageId"]] = m
            after = max(after, m["seq"])
        if not answer["payload"]["hasMore"]:
            return out


async def check_service(b: Bystanders) -> dict[str, int]:
    """The bystanders are served and nothing acked is lost. Returns numbers to report."""
    b.stop.set()
    assert b.task is not None
    await asyncio.wait_for(b.task, PATIENCE)  # its last chat answered (and checked: ack)
    for peer in (b.talker, b.listener):
        pong = await peer.request("ping", {}, "still-there")
        assert pong["type"] == "pong"
    answer = await b.talker.request("chat", {"roomId": ROOM, "content": "after",
                                             "clientMsgId": "by-after"}, "after")
    assert answer["type"] == "ack", answer
    b.ledger.record(answer, "after")
    after_id = answer["payload"]["messageId"]
    await b.listener.until(lambda: any(c["messageId"] == after_id
                                       for c in b.listener.of("chat")), "the last chat")
    stored = await history(b.listener)
    missing = {m: c for m, c in b.ledger.acked.items() if m not in stored}
    assert not missing, f"{len(missing)} acked messages missing from history: {missing}"
    for message_id, content in b.ledger.acked.items():
        assert stored[message_id]["content"] == content
    heard = {c["messageId"] for c in b.listener.of("chat")}
    not_heard = [m for m in b.ledger.acked if m not in heard]
    assert not not_heard, f"{len(not_heard)} acked messages never broadcast to the listener"
    return {"bystander chats acked": b.chats + 1, "acked in all": len(b.ledger.acked),
            "found in history": sum(1 for m in b.ledger.acked if m in stored),
            "messages in history": len(stored)}


def report(name: str, numbers: dict[str, Any]) -> None:
    print(f"\n[abuse] {name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, need))
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < need:
        pytest.skip(f"needs {need} file descriptors, the hard limit allows {soft}")


async def settle(server: Server, connections: int, users: int | None = None) -> None:
    """Poll /metrics until the node holds exactly this many connections (and users)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        conns = await metric(server, "hubbub_connections")
        online = await metric(server, "hubbub_users_online")
        if conns == connections and users in (None, online):
            return
        assert loop.time() < deadline, f"still {conns} connections, {online} users online"
        await asyncio.sleep(0.1)


# ---- typing storm --------------------------------------------------------------------------


TYPISTS = 16
STORM_S = 3.0
PACE = 90  # frames per second per typist: just under --rate-limit 100


async def _type_storm(server: Server, user: str, ledger: Ledger) -> dict[str, int]:
    client = await WsClient.open(ws_url(server))
    sent, errors = 0, Counter[str]()
    try:
        await client.send("auth", {"userId": user}, "auth")
        await client.expect("welcome")
        ack = await client.request("join_room", {"roomId": ROOM}, "join")
        assert ack["type"] == "ack"
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        reader = loop.create_task(_count_answers(client, user, errors, ledger, done))
        start = loop.time()
        while (elapsed := loop.time() - start) < STORM_S:
            if sent % 100 == 50:  # now and then a chat too: it ends typing, and is acked
                await client.send("chat", {"roomId": ROOM, "content": f"{user} {sent}",
                                           "clientMsgId": f"{user}-{sent}"}, f"chat:{sent}")
            else:
                await client.send("typing", {"roomId": ROOM, "isTyping": sent % 2 == 0})
            sent += 1
            await asyncio.sleep(max(0.0, sent / PACE - elapsed))  # always yield
        await client.send("typing", {"roomId": ROOM, "isTyping": False})
        await client.send("ping", {}, "done")
        await asyncio.wait_for(done.wait(), PATIENCE)
        closed = client.ws.close_code
        reader.cancel()
    finally:
        await client.close()
    return {"sent": sent + 1, "rate_limited": errors["rate_limited"],
            "other_errors": sum(errors.values()) - errors["rate_limited"],
            "closed": int(closed is not None)}


async def _count_answers(client: WsClient, user: str, errors: Counter[str], ledger: Ledger,
                         done: asyncio.Event) -> None:
    """A typist's reader: counts errors, records acked chats, sets `done` at the last pong."""
    try:
        while True:
            msg = await client.ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            frame = json.loads(msg.data)
            fid = frame.get("id") or ""
            if frame["type"] == "error":
                errors[frame["payload"]["code"]] += 1
            elif frame["type"] == "ack" and fid.startswith("chat:"):
                ledger.record(frame, f"{user} {fid[5:]}")
            elif frame["type"] == "pong" and fid == "done":
                return
    finally:
        done.set()


@pytest.mark.slow
async def test_a_typing_storm_leaves_bystanders_served_and_every_typing_ends():
    async with running_server(typing_timeout=1.0) as server, bystanders(server) as b:
        storm_ledger = Ledger()
        results = await asyncio.gather(*(_type_storm(server, f"typist{i}", storm_ledger)
                                         for i in range(TYPISTS)))
        numbers = await check_service(b)
        # The typists' acked chats are in the history too.
        stored = await history(b.listener)
        assert all(m in stored for m in storm_ledger.acked)
        # Typing always ends: the last typing event of every typist says false.
        typists = {f"typist{i}" for i in range(TYPISTS)}

        def all_ended() -> bool:
            last: dict[str, bool] = {}
            for t in b.listener.of("typing"):
                last[t["userId"]] = t["isTyping"]
            return set(last) == typists and not any(last.values())

        await b.listener.until(all_ended, "every typist stop typing")
        assert not any(r["closed"] for r in results), results
        trues = Counter(t["userId"] for t in b.listener.of("typing") if t["isTyping"])
        report("typing storm", {
            "typists": TYPISTS, "frames sent": sum(r["sent"] for r in results),
            "rate_limited": sum(r["rate_limited"] for r in results),
            "other errors": sum(r["other_errors"] for r in results),
            "typists closed": sum(r["closed"] for r in results),
            "typing events at the listener": len(b.listener.of("typing")),
            "true per typist per second (max)": round(max(trues.values()) / STORM_S, 1),
            "typist chats acked": len(storm_ledger.acked), **numbers})


# ---- join/leave churn ---------------------------------------------------------------------------


CHURNERS = 10
CYCLES = 40  # per churner, within the join burst (50)
DROPPERS = 4  # churners that vanish without a close frame while in the room


async def _churn(server: Server, user: str, ledger: Ledger, drop: bool) -> Counter[str]:
    """CYCLES joins and leaves, each waiting for its ack (as the clients do), a chat now and
    then; then a last join, and a leave, or (`drop`) the socket shut without a close frame."""
    client = await WsClient.open(ws_url(server))
    answers = Counter[str]()
    try:
        await client.auth(user)
        for n in range(CYCLES + 1):
            answers["join " + (await client.request("join_room", {"roomId": ROOM},
                                                    f"j{n}"))["type"]] += 1
            if n % 10 == 0:
                content = f"{user} {n}"
                answer = await client.request("chat", {"roomId": ROOM, "content": content,
                                                       "clientMsgId": f"{user}-{n}"}, f"c{n}")
                ledger.record(answer, content)
            if n == CYCLES and drop:  # still in the room: gone without a close frame
                client.ws.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
                break
            answers["leave " + (await client.request("leave_room", {"roomId": ROOM},
                                                     f"l{n}"))["type"]] += 1
    finally:
        await client.close()
    return answers


def joins_and_leaves(listener: Peer, user: str) -> list[str]:
    return [f["type"] for f in listener.frames if f["type"] in ("join_room", "leave_room")
            and f["payload"]["userId"] == user]


@pytest.mark.slow
async def test_join_leave_churn_leaves_bystanders_served_and_no_ghost_members():
    async with running_server(presence_grace=0.3) as server, bystanders(server) as b:
        ledger = Ledger()
        results = await asyncio.gather(*(
            _churn(server, f"churner{i}", ledger, drop=i < DROPPERS) for i in range(CHURNERS)))
        b.ledger.acked.update(ledger.acked)
        numbers = await check_service(b)
        total = sum(results, Counter())
        assert total == Counter({"join ack": CHURNERS * (CYCLES + 1),
                                 "leave ack": CHURNERS * (CYCLES + 1) - DROPPERS}), total
        # What the listener saw of each churner: join, leave, join ... leave, every one.
        churners = [f"churner{i}" for i in range(CHURNERS)]
        await b.listener.until(lambda: all(
            len(joins_and_leaves(b.listener, u)) == 2 * (CYCLES + 1) for u in churners),
            "every churner's joins and leaves")
        for user in churners:
            assert joins_and_leaves(b.listener, user) == ["join_room", "leave_room"] * (
                CYCLES + 1), user
        # No ghost: a newcomer sees exactly the bystanders.
        newcomer = await Peer.open(server, "newcomer")
        try:
            ack = await newcomer.request("join_room", {"roomId": ROOM}, "j")
            members = sorted(m["userId"] for m in ack["payload"]["members"])
            assert members == ["listener", "newcomer", "talker"]
        finally:
            await newcomer.close()
        report("join/leave churn", {
            "churners": CHURNERS, "join/leave cycles": CHURNERS * (CYCLES + 1),
            "dropped while joined": DROPPERS, **total,
            "churner chats acked": len(ledger.acked),
            "join/leave events at the listener": sum(
                len(joins_and_leaves(b.listener, u)) for u in churners), **numbers})


async def test_pipelined_joins_and_leaves_are_announced_in_order():
    async with running_server() as server:
        listener = await Peer.open(server, "listener")
        client = await WsClient.open(ws_url(server))
        try:
            await listener.request("join_room", {"roomId": ROOM}, "j")
            await client.auth("quick")
            for n in range(5):  # without waiting for the acks
                await client.send("join_room", {"roomId": ROOM}, f"j{n}")
                await client.send("leave_room", {"roomId": ROOM}, f"l{n}")
            await client.request("ping", {}, "end")
            # A marker from another member: everything about `quick` was sent before it.
            marker = await Peer.open(server, "marker")
            await marker.request("join_room", {"roomId": ROOM}, "j")
            await listener.until(lambda: any(p["userId"] == "marker"
                                             for p in listener.of("join_room")), "the marker")
            assert joins_and_leaves(listener, "quick") == ["join_room", "leave_room"] * 5
            await marker.close()
        finally:
            await client.close()
            await listener.close()


# ---- thousands of connections dropped without a close frame ------------------------------------


MASS = 4000
GROUPS = 40  # rooms m0..m39, ~50 users each (the listener is in m0)


async def _mass_open(server: Server, i: int) -> RawWs | socket.socket:
    """Connection i: 1 in 10 stops half-way through its HTTP request; of the rest, one in
    three never authenticates, the others authenticate and join m{i % GROUPS}, and some of
    those leave half a frame unsent."""
    if i % 10 == 9:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        await asyncio.get_running_loop().sock_sendall(sock, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        return sock
    raw = await RawWs.connect(ws_url(server))
    if i % 3 == 0:
        return raw
    await raw.send_json("auth", {"userId": f"mass{i}"}, id="a")
    await raw.send_json("join_room", {"roomId": f"m{i % GROUPS}"}, id="j")
    while (await raw.recv_json(timeout=PATIENCE)).get("id") != "j":
        pass
    if i % 3 == 2:  # half a frame: a header announcing 1000 bytes, then 10 of them
        await raw.loop.sock_sendall(raw.sock, b"\x81\xfe\x03\xe8abcd" + b"x" * 10)
    return raw


@pytest.mark.slow
async def test_thousands_of_connections_dropped_without_a_close_frame_are_all_released():
    raise_fd_limit(2 * MASS + 200)  # both ends live in this process
    # No heartbeat and a long auth deadline: only the drops may end these connections.
    async with running_server(presence_grace=0.5, heartbeat=0, auth_timeout=PATIENCE) \
            as server, bystanders(server) as b:
        assert (await b.listener.request("join_room", {"roomId": "m0"}, "m0"))["type"] == "ack"
        opened: list[RawWs | socket.socket] = []
        for start in range(0, MASS, 100):
            opened += await asyncio.gather(*(_mass_open(server, i)
                                             for i in range(start, min(MASS, start + 100))))
        held = await metric(server, "hubbub_connections")
        online = await metric(server, "hubbub_users_online")
        for n, conn in enumerate(opened):  # half reset, half FIN; never a close frame
            sock = conn.sock if isinstance(conn, RawWs) else conn
            if n % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        await settle(server, connections=2, users=2)
        authed = [i for i in range(MASS) if i % 10 != 9 and i % 3 != 0]
        in_m0 = {f"mass{i}" for i in authed if i % GROUPS == 0}

        def all_offline() -> bool:
            gone = {p["userId"] for p in b.listener.of("presence") if p["status"] == "offline"}
            left = {p["userId"] for p in b.listener.of("leave_room") if p["roomId"] == "m0"}
            return in_m0 <= gone and in_m0 <= left

        await b.listener.until(all_offline, "every m0 user go offline and leave")
        assert await metric(server, "hubbub_rooms") == 2  # lobby and m0: the bystanders'
        numbers = await check_service(b)
        report("connections dropped without a close frame", {
            "opened": MASS, "held at once (hubbub_connections)": int(held or 0),
            "users online at once": int(online or 0), "authenticated": len(authed),
            "after: connections": 2, "after: users online": 2,
            "offline presence heard for m0": len(in_m0), **numbers})
        assert held == MASS - MASS // 10 + 2


# ---- malformed and oversize frames from several clients ---------------------------------------


MAX_FRAME = 4096
ABUSERS = 6
ROUNDS = 8
# How each abuser's connection ends, round after round, and the close code it earns.
ENDINGS = {0: 1009, 1: 1007, 2: 4008, 3: 1002}


def _junk(user: str, n: int) -> list[tuple[int, bytes]]:
    """One round of bad frames, each answered with an error that keeps the connection,
    and one good chat."""
    js = json.dumps
    return [
        (OP_TEXT, b"not json at all"),
        (OP_BINARY, b"\x00\x01binary"),
        (OP_TEXT, b'{"type":"ping","payload":{"x":' + b"[" * 1500 + b"]" * 1500 + b"}}"),
        (OP_TEXT, b"[" * 2000),
        (OP_TEXT, b'{"type":"join_room","id":"h","payload":{"roomId":1' + b"0" * 500 + b"}}"),
        (OP_TEXT, b'{"type":"ping","id":"n","payload":{"x":NaN}}'),
        (OP_TEXT, js({"type": "teleport", "id": f"t{n}"}).encode()),
        (OP_TEXT, js({"type": "chat", "id": f"w{n}", "payload": {"roomId": ["x"]}}).encode()),
        (OP_TEXT, js({"type": "ping", "id": "x" * 65}).encode()),
        (OP_TEXT, b'{"type":"join_room","id":"s","payload":{"roomId":"\\ud800"}}'),
        (OP_TEXT, js({"type": "chat", "id": f"f{n}", "payload": {
            "roomId": ROOM, "content": "as someone else", "userId": "talker"}}).encode()),
        (OP_TEXT, js({"type": "chat", "id": f"ok{n}", "payload": {
            "roomId": ROOM, "content": f"{user} {n}", "clientMsgId": f"{user}-{n}"}}).encode()),
    ]


async def _abuse_round(server: Server, user: str, n: int,
                       ledger: Ledger) -> tuple[int | None, bool]:
    """Connect, authenticate, join, send junk and a chat, then end the connection one of
    the ENDINGS ways. Returns the close code and whether the chat's ack arrived."""
    raw = await RawWs.connect(ws_url(server))
    acked = False
    try:
        await raw.send_json("auth", {"userId": user}, id="a")
        await raw.send_json("join_room", {"roomId": ROOM}, id="j")
        for opcode, payload in _junk(user, n):
            await raw.send_frame(opcode, payload)
        end = n % len(ENDINGS)
        if end == 0:
            await raw.send_text("x" * (MAX_FRAME * 4))
        elif end == 1:
            await raw.send_frame(OP_TEXT, b'{"type":"ping","id":"\xff\xfe"}')
        elif end == 2:
            for _ in range(60):
                await raw.send_text("{")
        else:
            await raw.loop.sock_sendall(raw.sock, b"\x81\x02{}")  # not masked
        code: int | None = None
        while True:
            try:
                opcode, payload = await raw.read_frame(timeout=PATIENCE)
            except Ended:
                return code, acked
            if opcode == OP_TEXT:
                frame = json.loads(payload)
                if frame.get("id") == f"ok{n}":
                    ledger.record(frame, f"{user} {n}")
                    acked = frame["type"] == "ack"
                if frame.get("id") == f"f{n}":  # a foreign userId is never acted on
                    assert frame["type"] == "error"
                    assert frame["payload"]["code"] == "forbidden"
            elif opcode == OP_CLOSE and code is None:
                code = struct.unpack("!H", payload[:2])[0]
                with contextlib.suppress(OSError):
                    await raw.send_frame(OP_CLOSE, payload[:2])
    finally:
        raw.close()


@pytest.mark.slow
async def test_floods_of_malformed_and_oversize_frames_leave_bystanders_served():
    async with running_server(max_frame=MAX_FRAME) as server, bystanders(server) as b:
        ledger = Ledger()

        async def abuser(i: int) -> list[tuple[int | None, bool]]:
            return [await _abuse_round(server, f"abuser{i}", n + i, ledger)
                    for n in range(ROUNDS)]

        per_abuser = await asyncio.gather(*(abuser(i) for i in range(ABUSERS)))
        codes = Counter(code for rounds in per_abuser for code, _ in rounds)
        assert codes == Counter(ENDINGS[(n + i) % len(ENDINGS)]
                                for i in range(ABUSERS) for n in range(ROUNDS))
        # Every chat sent before the frame that ended its connection was answered first:
        # the answers queued for a connection leave before any close frame (server/ws.py).
        unacked = [(i, n + i) for i, rounds in enumerate(per_abuser)
                   for n, (_, acked) in enumerate(rounds) if not acked]
        assert not unacked
        assert len(ledger.acked) == ABUSERS * ROUNDS
        b.ledger.acked.update(ledger.acked)
        numbers = await check_service(b)
        stored = await history(b.listener)
        contents = Counter(m["content"] for m in stored.values())
        assert all(contents[f"abuser{i} {n + i}"] == 1
                   for i in range(ABUSERS) for n in range(ROUNDS))
        # Nothing the forbidden frames claimed reached anyone.
        assert not [c for c in b.listener.of("chat") if c["content"] == "as someone else"]
        await settle(server, connections=2)
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as r:
            assert r.status == 200
        report("malformed and oversize frames", {
            "abusers": ABUSERS, "connections": ABUSERS * ROUNDS,
            "bad frames": ABUSERS * ROUNDS * (len(_junk("u", 0)) - 1),
            "closed 1009/1007/4008/1002": "/".join(str(codes[c]) for c in ENDINGS.values()),
            "abuser chats acked": len(ledger.acked),
            **numbers})
