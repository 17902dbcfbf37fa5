"""Several hubbub nodes serving one set of rooms (PROTOCOL §Running the server: `--redis` =
share fan-out and presence with other nodes; DESIGN §1: a client may land on any node).

Every scenario runs on two clusters of two nodes each:
- `memory`: two Servers in this process joined by one MemoryBus (the Broker), one
  MemoryDirectoryState (the Directory) and one SQLite file (the Store) — the cross-node
  logic without any service;
- `redis`: two real `hubbub serve` processes on different ports sharing a Redis and a
  PostgreSQL database, as they run in production.
Then what only real processes can show: a node killed with SIGKILL, and Redis restarting.
Without redis-server or PostgreSQL the `redis` runs skip locally and fail in CI
(tests/support/services.py). Timeouts bound waits; nothing asserts how fast things are.
"""

import asyncio
import contextlib
import importlib.util
import itertools
import signal
import subprocess
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from hubbub import config
from hubbub.broker.base import MessageHandler, ResumedHandler
from hubbub.broker.memory import MemoryBroker, MemoryBus
from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.server import fanout, timers
from hubbub.server.app import Server
from tests.integration.helpers import metric
from tests.support.server import Process, start_process
from tests.support.services import RedisServer, unavailable
from tests.support.wsclient import WsClient

ROOM = "lobby"
AnyBroker = TypeVar("AnyBroker", bound=MemoryBroker)
ADMIN = "admin-token"
GRACE = 0.3  # --presence-grace (s)
TYPING = 0.5  # --typing-timeout (s)
WAIT = 10.0  # s: bounds a wait for something that must happen
# A SIGKILLed node is presumed dead after the node TTL (10 s, not configurable) and reaped
# by the next housekeeping of a live node (every 2.5 s): bound the wait well above that.
DEAD_NODE_WAIT = 30.0
ROOM_EVENTS = ("chat", "message_edit", "message_delete", "reaction")

SETTINGS: dict[str, Any] = {"presence_grace": GRACE, "typing_timeout": TYPING,
                            "admin_token": ADMIN, "rate_limit": 0, "log_level": "warning"}
FLAGS = ["--presence-grace", str(GRACE), "--typing-timeout", str(TYPING),
         "--admin-token", ADMIN, "--rate-limit", "0", "--log-level", "warning"]


# ---- clusters -------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Nodes serving the same rooms; `urls[i]` is node i's http://HOST:PORT."""

    urls: list[str]
    # In-process clusters only:
    brokers: list[MemoryBroker] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)

    def ws(self, node: int) -> str:
        return self.urls[node].replace("http://", "ws://") + "/ws"

    def broker(self, node: int, kind: type[AnyBroker]) -> AnyBroker:
        """Node `node`'s broker, made by `memory_cluster(broker=kind)`."""
        broker = self.brokers[node]
        assert isinstance(broker, kind)
        return broker


class GatedBroker(MemoryBroker):
    """A MemoryBroker whose node receives nothing while `hold()` is on (a slow link), then
    everything held, in order, on `release()`."""

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self.held: list[tuple[str, bytes]] | None = None
        self._deliver: MessageHandler = lambda topic, data: None
        self._resumed: ResumedHandler | None = None

    async def start(self, on_message: MessageHandler,
                    on_resumed: ResumedHandler | None = None) -> None:
        def gated(topic: str, data: bytes) -> None:
            if self.held is None:
                on_message(topic, data)
            else:
                self.held.append((topic, data))

        self._deliver, self._resumed = on_message, on_resumed
        await super().start(gated, on_resumed)

    def hold(self) -> None:
        self.held = []

    def lose(self) -> None:
        """What was held is lost for good (pub/sub is at most once)."""
        self.held = None

    def reconnect(self) -> None:
        """The link broke while it held: that is lost, and the broker says it is back, as
        the Redis broker does once it has subscribed again."""
        self.lose()
        if self._resumed is not None:
            self._resumed()

    def release(self) -> None:
        held, self.held = self.held or [], None
        for topic, data in held:
            self._deliver(topic, data)


class CutBroker(MemoryBroker):
    """A MemoryBroker whose own publishes are lost while `cut` (its link to Redis is down,
    the other nodes' are not); `mend()` brings it back as a reconnect does, saying so."""

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self.cut = False
        self._resumed: ResumedHandler | None = None

    async def start(self, on_message: MessageHandler,
                    on_resumed: ResumedHandler | None = None) -> None:
        self._resumed = on_resumed
        await super().start(on_message, on_resumed)

    def publish(self, topic: str, data: bytes) -> None:
        if self.cut:
            self.dropped += 1
            return
        super().publish(topic, data)

    def mend(self) -> None:
        self.cut = False
        if self._resumed is not None:
            self._resumed()


@contextlib.asynccontextmanager
async def memory_cluster(db: Path, nodes: int = 2,
                         broker: Callable[[MemoryBus], MemoryBroker] = MemoryBroker,
                         **settings: Any) -> AsyncIterator[Cluster]:
    """Servers in this process sharing one MemoryBus, MemoryDirectoryState and SQLite file;
    `settings` override SETTINGS."""
    bus, state = MemoryBus(), MemoryDirectoryState()
    async with contextlib.AsyncExitStack() as stack:
        servers, brokers = [], []
        for _ in range(nodes):
            brokers.append(broker(bus))
            server = Server(config.load(env={}, port=0, store="sqlite:///" + str(db),
                                        **(SETTINGS | settings)),
                            broker=brokers[-1],
                            directory=MemoryDirectory(state, brokers[-1].node_id))
            await server.start()
            stack.push_async_callback(server.stop)
            servers.append(server)
        yield Cluster([s.url for s in servers], brokers, servers)


@dataclass
class Node:
    """A `hubbub serve` process whose stderr is drained (and kept for failure reports)."""

    process: Process
    stderr: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *args: str) -> "Node":
        node = cls(start_process(*args, *FLAGS))
        pipe = node.process.proc.stderr
        assert pipe is not None
        threading.Thread(target=lambda: node.stderr.extend(pipe), daemon=True).start()
        return node

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ws(self) -> str:
        return self.process.ws

    def kill(self) -> None:
        self.process.proc.send_signal(signal.SIGKILL)
        self.process.proc.wait(15)

    def stop(self) -> None:
        proc = self.process.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def process_nodes(redis_url: str, store: str, nodes: int = 2) -> Iterator[list[Node]]:
    """`hubbub serve` processes on their own ports sharing `redis_url` and `store`."""
    started: list[Node] = []
    try:
        for _ in range(nodes):
            started.append(Node.start("--redis", redis_url, "--store", store))
        yield started
    finally:
        for node in started:
            node.stop()
        logs = "".join(line for node in started for line in node.stderr)
        if "Traceback" in logs:
            print(f"stderr of the nodes:\n{logs}")


@pytest.fixture
def store_url(postgres_dsn: str) -> str:
    if importlib.util.find_spec("asyncpg") is None:
        unavailable("asyncpg is not installed (pip install -e '.[dev]' or hubbub[postgres])")
    return postgres_dsn


@pytest.fixture(params=["memory", "redis"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    if request.param == "memory":
        async with memory_cluster(tmp_path / "hubbub.db") as c:
            yield c
        return
    redis_url: str = request.getfixturevalue("redis_url")
    store: str = request.getfixturevalue("store_url")
    with process_nodes(redis_url, store) as nodes:
        yield Cluster([n.url for n in nodes])


# ---- clients --------------------------------------------------------------------------------


class Peer(WsClient):
    """A WsClient that keeps the frames skipped while waiting for an ack: a member's
    broadcasts from the other node may arrive before it, and every one is checked."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        super().__init__(ws, session)
        self.backlog: deque[dict[str, Any]] = deque()

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.popleft()
        return await super().recv(timeout)

    async def request(self, type_: str, payload: dict[str, Any] | None = None,
                      id: str = "r1") -> dict[str, Any]:
        await self.send(type_, payload, id)
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                frame = await super().recv(WAIT)
                if frame.get("id") == id:
                    return frame
                skipped.append(frame)
        finally:
            self.backlog.extend(skipped)


async def online(ws_url: str, user: str, username: str | None = None) -> Peer:
    client = await Peer.open(ws_url)
    assert isinstance(client, Peer)
    await client.auth(user, username or user.upper())
    return client


async def member(ws_url: str, user: str, room: str = ROOM, **join: Any) -> Peer:
    client = await online(ws_url, user)
    await client.join(room, **join)
    return client


_ids = itertools.count()


async def request(client: WsClient, type_: str, **payload: Any) -> dict[str, Any]:
    """Send with a fresh id; return the ack payload (fails on an error)."""
    frame = await client.request(type_, payload, id=f"q{next(_ids)}")
    assert frame["type"] == "ack", frame
    ack: dict[str, Any] = frame["payload"]
    return ack


async def chat(client: WsClient, content: str, room: str = ROOM) -> dict[str, Any]:
    return await request(client, "chat", roomId=room, content=content)


async def room_events(client: WsClient, count: int,
                      timeout: float = WAIT) -> list[dict[str, Any]]:
    """The next `count` persisted room events this client receives, as {type, **payload}."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            frame = await client.recv(timeout)
            if frame["type"] in ROOM_EVENTS:
                out.append({"type": frame["type"], **frame["payload"]})
    return out


async def frames_until(client: WsClient, type_: str, timeout: float = WAIT,
                       **match: Any) -> list[dict[str, Any]]:
    """Every frame received up to and including the first `type_` matching `match`."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.recv(timeout)
            out.append(frame)
            payload = frame.get("payload") or {}
            if frame["type"] == type_ and all(payload.get(k) == v for k, v in match.items()):
                return out


def about(frames: list[dict[str, Any]], type_: str, user: str) -> list[dict[str, Any]]:
    return [f["payload"] for f in frames
            if f["type"] == type_ and (f.get("payload") or {}).get("userId") == user]


async def answered_call(caller: Peer, callee: Peer, call_id: str) -> None:
    """`caller` calls `callee`, who answers: the call is active on the caller's node, where
    the offer arrived (its home)."""
    await request(caller, "webrtc", kind="offer", to=callee.user, callId=call_id, sdp=OFFER)
    await callee.expect("webrtc", kind="offer")
    await request(callee, "webrtc", kind="answer", to=caller.user, callId=call_id, sdp=ANSWER)
    await caller.expect("webrtc", kind="answer")


async def dropped(client: WsClient) -> None:
    """A client whose node went away: its socket ends (with 1001 on a graceful stop, or
    no close frame at all on a kill), and it is closed here."""
    with contextlib.suppress(AssertionError):
        await client.closed()
    await client.close()


def member_ids(join_ack: dict[str, Any]) -> list[str]:
    return [m["userId"] for m in join_ack["payload"]["members"]]


async def announce(url: str, content: str, token: str = ADMIN) -> int:
    async with aiohttp.ClientSession() as http, http.post(
            url + "/api/announcements", json={"content": content},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


# ---- chat and the other room events ----------------------------------------------------------


async def test_a_chat_is_acked_and_reaches_the_members_on_both_nodes(cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "u1") as u1, await member(cluster.ws(0), "u2") as u2,
                await member(cluster.ws(1), "u3") as u3):
        ack = await chat(u1, "hello from node 0")
        assert ack["seq"] == 1
        for client in (u1, u2, u3):  # the sender included (PROTOCOL: chat)
            [event] = await room_events(client, 1)
            assert (event["seq"], event["userId"], event["username"], event["content"],
                    event["messageId"]) == (1, "u1", "U1", "hello from node 0",
                                            ack["messageId"])
        ack = await chat(u3, "hello from node 1")
        assert ack["seq"] == 2
        for client in (u1, u2, u3):
            [event] = await room_events(client, 1)
            assert (event["seq"], event["userId"], event["content"]) == (
                2, "u3", "hello from node 1")


async def test_edits_reactions_and_deletes_cross_nodes_in_seq_order(cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "u1") as u1,
                await member(cluster.ws(1), "u2") as u2):
        msg = (await chat(u1, "first draft"))["messageId"]
        await request(u2, "reaction", roomId=ROOM, messageId=msg, emoji="👍", op="add")
        await request(u1, "message_edit", roomId=ROOM, messageId=msg, content="final")
        await request(u2, "reaction", roomId=ROOM, messageId=msg, emoji="👍", op="remove")
        await request(u1, "message_delete", roomId=ROOM, messageId=msg)
        expected = [(1, "chat", "u1"), (2, "reaction", "u2"), (3, "message_edit", "u1"),
                    (4, "reaction", "u2"), (5, "message_delete", "u1")]
        for client in (u1, u2):
            events = await room_events(client, 5)
            assert [(e["seq"], e["type"], e["userId"]) for e in events] == expected
            assert {e["messageId"] for e in events} == {msg}
            assert events[2]["content"] == "final"
            assert [(e["emoji"], e["op"]) for e in events if e["type"] == "reaction"] == [
                ("👍", "add"), ("👍", "remove")]


async def test_history_read_on_one_node_has_what_was_written_on_the_other(
        cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "u1") as u1,
                await member(cluster.ws(1), "u2") as u2):
        msg = (await chat(u1, "one"))["messageId"]
        await chat(u2, "two")
        await request(u2, "reaction", roomId=ROOM, messageId=msg, emoji="🎉", op="add")
        await request(u1, "message_edit", roomId=ROOM, messageId=msg, content="one, edited")
        page = await request(u2, "history", roomId=ROOM, limit=10)
        assert [(m["seq"], m["content"]) for m in page["messages"]] == [
            (1, "one, edited"), (2, "two")]
        assert page["messages"][0]["reactions"] == {"🎉": ["u2"]}


async def test_typing_crosses_nodes_and_ends_by_itself_without_a_refresh(
        cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "u1") as u1,
                await member(cluster.ws(1), "u2") as u2):
        await u1.send("typing", {"roomId": ROOM, "isTyping": True})
        start = await u2.expect("typing", userId="u1")
        assert start["payload"] == {"roomId": ROOM, "userId": "u1", "username": "U1",
                                    "isTyping": True}
        # PROTOCOL §Typing: with no refresh, the server itself says it stopped.
        stop = await u2.expect("typing", userId="u1")
        assert stop["payload"]["isTyping"] is False


async def test_a_chat_ends_typing_for_the_members_on_the_other_node(cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "u1") as u1,
                await member(cluster.ws(1), "u2") as u2):
        await u1.send("typing", {"roomId": ROOM, "isTyping": True})
        await u2.expect("typing", userId="u1", isTyping=True)
        await chat(u1, "done typing")
        frames = await frames_until(u2, "typing", userId="u1", isTyping=False)
        assert [f["type"] for f in frames] == ["chat", "typing"]


async def test_one_user_typing_on_two_nodes_within_a_second_is_shown_once(
        cluster: Cluster) -> None:
    # PROTOCOL §Typing: `true` at most once per user per room per second, whichever
    # of the user's devices (and nodes) it comes from.
    async with (await member(cluster.ws(0), "u1") as phone,
                await member(cluster.ws(1), "u1") as laptop,
                await member(cluster.ws(0), "u2") as u2,
                await member(cluster.ws(1), "u3") as u3):
        await phone.send("typing", {"roomId": ROOM, "isTyping": True})
        # Node 1's window starts when the phone's `true` reaches it, so the laptop's comes
        # a local hop later, well inside it.
        await u3.expect("typing", userId="u1", isTyping=True)
        await laptop.send("typing", {"roomId": ROOM, "isTyping": True})
        # The phone's typing ends by itself (no refresh): one `false`, from node 0.
        for observer in (u2, u3):
            frames = await frames_until(observer, "typing", userId="u1", isTyping=False)
            assert [p["isTyping"] for p in about(frames, "typing", "u1")] == \
                ([True, False] if observer is u2 else [False])
            await observer.nothing(within=2 * TYPING)


# ---- presence ----------------------------------------------------------------------------------


async def test_a_status_change_on_one_node_is_seen_on_the_other(cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "u1") as u1,
                await member(cluster.ws(1), "u2") as u2):
        await request(u1, "presence", status="away")
        event = await u2.expect("presence", userId="u1")
        assert (event["payload"]["status"], event["payload"]["username"]) == ("away", "U1")
        async with await online(cluster.ws(1), "u3") as u3:
            listed = {m["userId"]: m["status"] for m in (await u3.join(ROOM))["payload"][
                "members"]}
        assert listed == {"u1": "away", "u2": "online", "u3": "online"}


async def test_a_user_whose_last_connection_closes_is_seen_offline_on_the_other_node(
        cluster: Cluster) -> None:
    async with await member(cluster.ws(1), "u2") as u2:
        u1 = await member(cluster.ws(0), "u1")
        await u2.expect("join_room", userId="u1")
        await u1.close()
        # After the grace period (PROTOCOL §Presence), then the lingering membership ends.
        frames = await frames_until(u2, "leave_room", userId="u1")
        [offline] = about(frames, "presence", "u1")
        assert (offline["status"], offline["username"]) == ("offline", "U1")
        assert isinstance(offline["lastSeen"], int)
        listed = member_ids(await u2.request("join_room", {"roomId": ROOM}, id="again"))
        assert listed == ["u2"]


async def test_a_quick_reconnect_to_the_other_node_is_no_offline_and_no_leave(
        cluster: Cluster) -> None:
    async with await member(cluster.ws(1), "u2") as u2:
        first = await member(cluster.ws(0), "u1")
        await u2.expect("join_room", userId="u1")
        await first.close()
        async with await member(cluster.ws(1), "u1") as second:
            # A barrier: u9 goes through node 0's grace period after u1's ended there.
            u9 = await member(cluster.ws(0), "u9")
            await u2.expect("join_room", userId="u9")
            await u9.close()
            frames = await frames_until(u2, "leave_room", userId="u9")
            assert about(frames, "presence", "u1") == []
            assert about(frames, "leave_room", "u1") == []
            assert about(frames, "join_room", "u1") == []
            await chat(second, "still here")


# ---- membership ------------------------------------------------------------------------------


async def test_joins_and_leaves_cross_nodes_and_member_lists_span_both(
        cluster: Cluster) -> None:
    async with await member(cluster.ws(0), "u1") as u1:
        u2 = await online(cluster.ws(1), "u2")
        async with u2:
            ack = await u2.join(ROOM)
            assert member_ids(ack) == ["u1", "u2"]
            assert {m["userId"]: (m["username"], m["status"])
                    for m in ack["payload"]["members"]} == {
                "u1": ("U1", "online"), "u2": ("U2", "online")}
            joined = await u1.expect("join_room", userId="u2")
            assert joined["payload"]["roomId"] == ROOM
            assert joined["payload"]["username"] == "U2"
            async with await online(cluster.ws(0), "u3") as u3:
                assert member_ids(await u3.join(ROOM)) == ["u1", "u2", "u3"]
                await request(u2, "leave_room", roomId=ROOM)
                for client in (u1, u3):
                    left = await client.expect("leave_room", userId="u2")
                    assert left["payload"]["roomId"] == ROOM
                again = await u3.request("join_room", {"roomId": ROOM}, id="again")
                assert member_ids(again) == ["u1", "u3"]


async def test_two_devices_of_one_user_on_two_nodes_are_one_member(cluster: Cluster) -> None:
    async with await member(cluster.ws(1), "obs") as obs:
        phone = await member(cluster.ws(0), "u1")
        await obs.expect("join_room", userId="u1")
        laptop = await online(cluster.ws(1), "u1")
        ack = await laptop.join(ROOM)
        assert member_ids(ack) == ["obs", "u1"]  # listed once
        # A barrier through node 0: u9 joins there after the laptop joined here.
        u9 = await member(cluster.ws(0), "u9")
        frames = await frames_until(obs, "join_room", userId="u9")
        assert about(frames, "join_room", "u1") == []  # one join_room for both devices
        # The phone goes away: u1 stays online and in the room through the laptop. u9 closes
        # after the phone and waits out the same grace on the same node: a barrier.
        await phone.close()
        await u9.close()
        frames = await frames_until(obs, "leave_room", userId="u9")
        assert about(frames, "presence", "u1") == []
        assert about(frames, "leave_room", "u1") == []
        async with await online(cluster.ws(0), "late") as late:
            listed = {m["userId"]: m["status"] for m in (await late.join(ROOM))[
                "payload"]["members"]}
        assert listed == {"obs": "online", "u1": "online", "late": "online"}
        await chat(laptop, "still in")
        [event] = await room_events(obs, 1)
        assert event["userId"] == "u1"
        await laptop.close()
        frames = await frames_until(obs, "leave_room", userId="u1")
        assert [p["status"] for p in about(frames, "presence", "u1")] == ["offline"]


async def test_a_client_recovers_missed_events_with_since_on_the_other_node(
        cluster: Cluster) -> None:
    async with await member(cluster.ws(0), "u1") as u1:
        u2 = await member(cluster.ws(0), "u2")
        await chat(u2, "before I left")
        [seen] = await room_events(u2, 1)
        await u2.close()
        first = await chat(u1, "missed one")
        await request(u1, "message_edit", roomId=ROOM, messageId=first["messageId"],
                      content="missed one, edited")
        await chat(u1, "missed two")
        async with await online(cluster.ws(1), "u2") as back:
            ack = (await back.join(ROOM, since=seen["seq"]))["payload"]
            assert (ack["lastSeq"], ack["recovered"]) == (4, True)
            assert [(e["type"], e["payload"]["seq"]) for e in ack["missed"]] == [
                ("chat", 2), ("message_edit", 3), ("chat", 4)]
            assert ack["missed"][1]["payload"]["content"] == "missed one, edited"
            await chat(u1, "live again")
            [live] = await room_events(back, 1)
            assert (live["seq"], live["content"]) == (5, "live again")


async def test_an_event_in_flight_reaches_the_members_of_a_node_where_someone_joins_meanwhile(
        tmp_path: Path) -> None:
    # In-process only: node 1's link is held while node 0 commits a chat and a newcomer
    # joins on node 1 at a lastSeq that already counts that chat.
    async with memory_cluster(tmp_path / "hubbub.db", broker=GatedBroker) as cluster:
        link = cluster.broker(1, GatedBroker)
        async with (await member(cluster.ws(0), "u1") as u1,
                    await member(cluster.ws(1), "u2") as u2):
            link.hold()
            in_flight = await chat(u1, "in flight")
            async with await online(cluster.ws(1), "late") as late:
                assert (await late.join(ROOM))["payload"]["lastSeq"] == in_flight["seq"]
                link.release()
                after = await chat(u1, "after")
                events = await room_events(u2, 2)
                assert [(e["seq"], e["content"]) for e in events] == [
                    (in_flight["seq"], "in flight"), (after["seq"], "after")]
                # The newcomer's lastSeq counts the chat in flight: it gets only what is
                # above it (delivery.md §Joining), never a seq it already has.
                events = await room_events(late, 1)
                assert [(e["seq"], e["content"]) for e in events] == [
                    (after["seq"], "after")]


async def test_a_rooms_last_chat_lost_on_the_way_reaches_the_other_node_all_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing later in the room shows the hole: the periodic position check finds it.
    monkeypatch.setattr(timers, "POSITION_CHECK_S", 0.3)
    async with memory_cluster(tmp_path / "db.sqlite", broker=GatedBroker) as c:
        gate = c.broker(1, GatedBroker)
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2:
            gate.hold()
            ack = await chat(u1, "the last word")
            gate.lose()
            [got] = await room_events(u2, 1)
            assert (got["seq"], got["content"]) == (ack["seq"], "the last word")
            node = c.servers[1]
            assert await metric(node, "hubbub_position_holes_total") == 1
            assert await metric(node, "hubbub_gap_fills_total") == 1
            assert await metric(node, "hubbub_events_filled_total") == 1
            assert (await chat(u1, "and one more"))["seq"] == ack["seq"] + 1
            [after] = await room_events(u2, 1)  # delivered once, then the next
            assert after["seq"] == ack["seq"] + 1


async def test_a_chat_its_node_could_not_publish_reaches_the_others_once_that_node_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only node 0's link broke: node 1 has no outage to recover from, and its own position
    # check is an hour away here. Node 0, back, tells it how far it delivered the room.
    monkeypatch.setattr(timers, "POSITION_CHECK_S", 3600.0)
    async with memory_cluster(tmp_path / "db.sqlite", broker=CutBroker) as c:
        link = c.broker(0, CutBroker)
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2:
            link.cut = True
            ack = await chat(u1, "lost on its way out")
            link.mend()
            [got] = await room_events(u2, 1)
            assert (got["seq"], got["content"]) == (ack["seq"], "lost on its way out")
            assert await metric(c.servers[1], "hubbub_position_holes_total") == 1


async def test_joins_leaves_and_statuses_a_node_missed_in_an_outage_are_told_once_it_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # presence.md §When Redis blinks: node 1 heard none of it; its member lists are
    # compared with the directory's once it is back, and the differences told.
    monkeypatch.setattr(fanout, "MEND_VIEWS_AFTER_S", 0.1)
    async with memory_cluster(tmp_path / "db.sqlite", broker=GatedBroker) as c:
        gate = c.broker(1, GatedBroker)
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2, \
                await member(c.ws(0), "u3") as u3, await online(c.ws(0), "u4") as u4:
            await frames_until(u2, "join_room", userId="u3")
            gate.hold()
            await request(u3, "leave_room", roomId=ROOM)
            await request(u1, "presence", status="busy")
            await u4.join(ROOM)
            gate.reconnect()
            frames = await frames_until(u2, "join_room", userId="u4")
            told = [(f["type"], f["payload"]["userId"], f["payload"].get("status"))
                    for f in frames if f["type"] in ("presence", "join_room", "leave_room")]
            assert told == [("presence", "u1", "busy"), ("leave_room", "u3", None),
                            ("join_room", "u4", "online")]
            assert await metric(c.servers[1], "hubbub_member_events_mended_total") == 3
            assert await metric(c.servers[0], "hubbub_member_events_mended_total") == 0
            # The list told is the list a join reads now.
            async with await member(c.ws(1), "u5") as u5:
                ack = await request(u5, "join_room", roomId=ROOM)
                assert sorted((m["userId"], m["status"]) for m in ack["members"]) == [
                    ("u1", "busy"), ("u2", "online"), ("u4", "online"), ("u5", "online")]


async def test_a_mend_whose_directory_read_fails_starts_again_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "MEND_VIEWS_AFTER_S", 0.1)
    async with memory_cluster(tmp_path / "db.sqlite", broker=GatedBroker) as c:
        gate = c.broker(1, GatedBroker)
        directory = c.servers[1].node.directory
        members, reads = directory.members, 0

        async def fails_once(room: str) -> Any:
            nonlocal reads
            reads += 1
            if reads == 1:
                raise OSError("Redis is away again")
            return await members(room)

        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2:
            gate.hold()
            await request(u1, "leave_room", roomId=ROOM)
            monkeypatch.setattr(directory, "members", fails_once)
            gate.reconnect()
            await frames_until(u2, "leave_room", userId="u1")
            assert reads == 2


async def test_a_leave_its_node_could_not_publish_is_told_on_the_others_once_it_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only node 0's link broke: node 1 had no outage, and hears of it from node 0's
    # positions message once node 0 is back.
    monkeypatch.setattr(fanout, "MEND_VIEWS_AFTER_S", 0.1)
    async with memory_cluster(tmp_path / "db.sqlite", broker=CutBroker) as c:
        link = c.broker(0, CutBroker)
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2:
            await frames_until(u1, "join_room", userId="u2")
            await u1.send("typing", {"roomId": ROOM, "isTyping": True})
            await u2.expect("typing", userId="u1", isTyping=True)
            link.cut = True
            # Its stop is lost with the leave; node 0 orders no room after it.
            await request(u1, "leave_room", roomId=ROOM)
            link.mend()
            frames = await frames_until(u2, "leave_room", userId="u1")
            assert about(frames, "join_room", "u1") == []
            assert [p["isTyping"] for p in about(frames, "typing", "u1")] == [False]
            assert await metric(c.servers[1], "hubbub_member_events_mended_total") == 1


async def test_a_publishing_link_that_broke_alone_is_told_of_at_the_next_position_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Node 0's publishes were lost, but its listener never lost Redis: no resume. Its
    # next position check sees the loss and tells the others, who fill and mend.
    monkeypatch.setattr(fanout, "MEND_VIEWS_AFTER_S", 0.1)
    monkeypatch.setattr(timers, "POSITION_CHECK_S", 0.3)
    async with memory_cluster(tmp_path / "db.sqlite", broker=CutBroker) as c:
        link = c.broker(0, CutBroker)
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2, \
                await member(c.ws(0), "u3") as u3:
            await frames_until(u2, "join_room", userId="u3")
            link.cut = True
            ack = await chat(u1, "lost on its way out")
            await request(u3, "leave_room", roomId=ROOM)
            link.cut = False  # the next publish goes through; nobody said it was back
            frames: list[dict[str, Any]] = []
            async with asyncio.timeout(WAIT):  # the fill and the mend, in either order
                while not ({"chat", "leave_room"} <= {f["type"] for f in frames}):
                    frames.append(await u2.recv())
            assert [(f["payload"]["seq"], f["payload"]["content"]) for f in frames
                    if f["type"] == "chat"] == [(ack["seq"], "lost on its way out")]
            assert about(frames, "leave_room", "u3") != []
            assert await metric(c.servers[1], "hubbub_member_events_mended_total") == 1


async def test_a_typist_whose_stop_was_lost_is_shown_stopped_once_the_broker_is_back(
        tmp_path: Path) -> None:
    async with memory_cluster(tmp_path / "db.sqlite", broker=GatedBroker) as c:
        gate = c.broker(1, GatedBroker)
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2:
            await u1.send("typing", {"roomId": ROOM, "isTyping": True})
            await u2.expect("typing", userId="u1", isTyping=True)
            gate.hold()
            await u1.send("typing", {"roomId": ROOM, "isTyping": False})
            await u1.send("ping", {})
            await u1.expect("pong")  # node 0 handled the stop, and node 1 lost it
            gate.reconnect()
            stop = await u2.expect("typing", userId="u1")
            assert stop["payload"] == {"roomId": ROOM, "userId": "u1", "username": "U1",
                                       "isTyping": False}


async def test_a_hole_longer_than_a_fill_reads_is_filled_page_by_page(tmp_path: Path) -> None:
    async with memory_cluster(tmp_path / "db.sqlite", broker=GatedBroker,
                              recovery_limit=5) as c:
        gate = c.broker(1, GatedBroker)
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2:
            gate.hold()
            first = (await chat(u1, "lost 0"))["seq"]
            for n in range(1, 12):
                await chat(u1, f"lost {n}")
            gate.lose()
            last = (await chat(u1, "shows the hole"))["seq"]
            got = await room_events(u2, last - first + 1)
            assert [e["seq"] for e in got] == list(range(first, last + 1))
            assert [e["content"] for e in got] == [f"lost {n}" for n in range(12)] + [
                "shows the hole"]


async def test_holes_met_by_a_store_outage_are_filled_once_it_is_back_and_logged_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async with memory_cluster(tmp_path / "db.sqlite", broker=GatedBroker) as c:
        gate, store = c.broker(1, GatedBroker), c.servers[1].node.store
        rooms = ["r1", "r2", "r3"]
        async with await member(c.ws(0), "u1") as u1, await member(c.ws(1), "u2") as u2:
            for room in rooms:
                await request(u1, "join_room", roomId=room)
                await request(u2, "join_room", roomId=room)
            tries = 0
            events_since = store.events_since

            async def store_away(*args: Any, **kwargs: Any) -> Any:
                nonlocal tries
                tries += 1
                raise OSError("the store is away")

            monkeypatch.setattr(store, "events_since", store_away)
            gate.hold()
            lost = [(await chat(u1, "lost", room))["seq"] for room in rooms]
            gate.lose()
            shown = [(await chat(u1, "shows the hole", room))["seq"] for room in rooms]
            async with asyncio.timeout(WAIT):
                while tries < 2 * len(rooms):  # noqa: ASYNC110 - each room's fill failed twice
                    await asyncio.sleep(0.05)
            monkeypatch.setattr(store, "events_since", events_since)
            got = await room_events(u2, 2 * len(rooms))
            for room, first, second in zip(rooms, lost, shown, strict=True):
                assert [(e["seq"], e["content"]) for e in got if e["roomId"] == room] == [
                    (first, "lost"), (second, "shows the hole")]
    failures = [r for r in caplog.records if "filling a seq gap" in r.getMessage()]
    assert len(failures) <= 1, [r.getMessage() for r in failures]


async def test_a_departure_the_directory_missed_while_redis_was_away_is_told_once_it_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Redis away (but not emptied) when u2's grace ended: the directory still holds u2
    # through node 1, which lives on. Node 1 tells it again at its next housekeeping.
    async with memory_cluster(tmp_path / "db.sqlite") as c:
        directory = c.servers[1].node.directory
        failed: list[str] = []

        def away(name: str) -> None:
            real = getattr(directory, name)

            async def fails_while_away(*args: Any) -> Any:
                if redis_away:
                    failed.append(name)
                    raise OSError("Redis is away")
                return await real(*args)

            monkeypatch.setattr(directory, name, fails_while_away)

        redis_away = False
        for name in ("rooms_of", "user_down", "remove_member"):
            away(name)
        async with await member(c.ws(0), "u1") as u1:
            u2 = await member(c.ws(1), "u2")
            await frames_until(u1, "join_room", userId="u2")
            redis_away = True
            await u2.close()
            async with asyncio.timeout(WAIT):
                while not failed:  # noqa: ASYNC110 - the grace ended, the release failed
                    await asyncio.sleep(0.05)
            redis_away = False
            frames = await frames_until(u1, "leave_room", userId="u2")
            assert [p["status"] for p in about(frames, "presence", "u2")] == ["offline"]
            async with await online(c.ws(0), "u3") as u3:
                ack = await u3.request("join_room", {"roomId": ROOM}, id="j")
                assert member_ids(ack) == ["u1", "u3"]


async def test_a_forwarded_call_frame_whose_answer_is_lost_gets_one_answer_internal(
        tmp_path: Path) -> None:
    # In-process only: the call's home (node 0) hears nothing while bob, on node 1, hangs
    # up; node 1 answers the frame itself when the answer is overdue, and only once.
    async with memory_cluster(tmp_path / "hubbub.db", broker=GatedBroker) as cluster:
        home = cluster.brokers[0]
        assert isinstance(home, GatedBroker)
        async with (await member(cluster.ws(0), "ann") as ann,
                    await member(cluster.ws(1), "bob") as bob):
            await answered_call(ann, bob, "f1")
            home.hold()
            await bob.send("call_end", {"callId": "f1"}, id="e1")
            answer = await bob.expect("error", timeout=WAIT)
            assert (answer["id"], answer["payload"]["code"]) == ("e1", "internal")
            home.release()  # the home hangs up now, and its late ack is not delivered
            end = await ann.expect("call_end", callId="f1")
            assert end["payload"]["reason"] == "hangup"
            # A marker: node 1 handles it after the home's late ack reached it.
            await request(ann, "call_history")
            assert (await bob.request("ping", {}, id="p1"))["type"] == "pong"
            assert not [f for f in bob.backlog if f.get("id") == "e1"]


async def test_a_newcomer_gets_an_event_delivered_on_its_node_while_its_join_read_the_position(
        tmp_path: Path) -> None:
    # In-process only: node 1's store answers the newcomer's position read, then waits
    # while node 0 commits a chat that node 1 delivers to the member already there.
    async with (memory_cluster(tmp_path / "hubbub.db") as cluster,
                await member(cluster.ws(0), "u1") as u1, await member(cluster.ws(1), "u2") as u2):
        store = cluster.servers[1].node.store
        read_position = store.last_seq
        position_read, go_on = asyncio.Event(), asyncio.Event()

        async def slow_last_seq(room: str) -> int:
            seq = await read_position(room)
            position_read.set()
            await go_on.wait()
            return seq

        store.last_seq = slow_last_seq  # type: ignore[method-assign]
        async with await online(cluster.ws(1), "late") as late:
            await late.send("join_room", {"roomId": ROOM}, id="j")
            await position_read.wait()
            during = await chat(u1, "during the join")
            await room_events(u2, 1)  # delivered on node 1 to the member there
            go_on.set()
            last_seq = (await late.expect("ack"))["payload"]["lastSeq"]
            after = await chat(u1, "after")
            seqs: list[int] = []
            while after["seq"] not in seqs:
                seqs += [e["seq"] for e in await room_events(late, 1)]
            # PROTOCOL §Ordering: every event after lastSeq, in seq order.
            assert [q for q in seqs if q > last_seq] == [
                e["seq"] for e in (during, after) if e["seq"] > last_seq]


# ---- calls whose parties sit on different nodes ------------------------------------------------

OFFER = {"type": "offer", "sdp": "v=0 offer"}
ANSWER = {"type": "answer", "sdp": "v=0 answer"}


async def test_a_call_across_nodes_rings_every_device_is_answered_relayed_and_hung_up(
        cluster: Cluster) -> None:
    # The call lives on node 0 (the caller's); the callee answers from node 1.
    async with (await member(cluster.ws(0), "ann") as ann,
                await member(cluster.ws(1), "bob") as bob1,
                await member(cluster.ws(0), "bob") as bob0):
        ack = await request(ann, "webrtc", kind="offer", to="bob", callId="x1", sdp=OFFER)
        assert ack == {"callId": "x1", "state": "ringing"}
        for device in (bob1, bob0):
            ring = (await device.expect("webrtc", kind="offer"))["payload"]
            assert (ring["from"], ring["callId"], ring["sdp"]) == ("ann", "x1", OFFER)
        answered = await request(bob1, "webrtc", kind="answer", to="ann", callId="x1",
                                 sdp=ANSWER)
        assert answered == {"callId": "x1", "state": "active"}
        got = (await ann.expect("webrtc", kind="answer"))["payload"]
        assert (got["from"], got["sdp"]) == ("bob", ANSWER)
        assert (await bob0.expect("call_end"))["payload"]["reason"] == "answered_elsewhere"
        await ann.send("webrtc", {"kind": "ice_candidate", "to": "bob", "callId": "x1",
                                  "candidate": {"candidate": "from ann"}})
        got = (await bob1.expect("webrtc", kind="ice_candidate"))["payload"]
        assert got["candidate"] == {"candidate": "from ann"}
        await bob1.send("webrtc", {"kind": "ice_candidate", "to": "ann", "callId": "x1",
                                   "candidate": {"candidate": "from bob"}})
        got = (await ann.expect("webrtc", kind="ice_candidate"))["payload"]
        assert got["candidate"] == {"candidate": "from bob"}
        ended = await request(bob1, "call_end", callId="x1")
        assert ended["state"] == "ended"
        assert (await ann.expect("call_end"))["payload"] == {
            "callId": "x1", "by": "bob", "reason": "hangup"}


async def test_a_third_user_on_another_node_cannot_touch_the_call(cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "ann") as ann,
                await member(cluster.ws(0), "bob") as bob,
                await member(cluster.ws(1), "eve") as eve):
        await request(ann, "webrtc", kind="offer", to="bob", callId="x2", sdp=OFFER)
        await bob.expect("webrtc", kind="offer")
        for frame, payload in (
                ("webrtc", {"kind": "ice_candidate", "to": "bob", "callId": "x2",
                            "candidate": {"candidate": "evil"}}),
                ("webrtc", {"kind": "answer", "to": "ann", "callId": "x2", "sdp": ANSWER}),
                ("call_end", {"callId": "x2"})):
            refused = await eve.request(frame, payload, id=f"e{next(_ids)}")
            assert refused["type"] == "error"
            assert refused["payload"]["code"] == "forbidden"
        # The call still rings: bob answers it.
        assert (await request(bob, "webrtc", kind="answer", to="ann", callId="x2",
                              sdp=ANSWER))["state"] == "active"
        got = await frames_until(ann, "webrtc", kind="answer")
        assert not [f for f in got if (f.get("payload") or {}).get("candidate") == "evil"]


async def test_a_callee_in_a_call_on_another_node_is_busy(cluster: Cluster) -> None:
    async with (await member(cluster.ws(0), "ann") as ann,
                await member(cluster.ws(1), "bob") as bob,
                await member(cluster.ws(1), "cy") as cy):
        await request(cy, "webrtc", kind="offer", to="bob", callId="x3", sdp=OFFER)
        await bob.expect("webrtc", kind="offer")
        await request(bob, "webrtc", kind="answer", to="cy", callId="x3", sdp=ANSWER)
        busy = await request(ann, "webrtc", kind="offer", to="bob", callId="x4", sdp=OFFER)
        assert busy["state"] == "ended"
        assert (await ann.expect("call_reject"))["payload"] == {
            "callId": "x4", "by": "bob", "reason": "busy"}


async def test_the_callees_last_connection_closing_on_another_node_ends_the_call(
        cluster: Cluster) -> None:
    async with await member(cluster.ws(0), "ann") as ann:
        async with await member(cluster.ws(1), "bob") as bob:
            await answered_call(ann, bob, "x5")
        assert (await ann.expect("call_end"))["payload"] == {
            "callId": "x5", "by": "bob", "reason": "disconnected"}
        # Both are free again: ann can call someone else at once.
        async with await member(cluster.ws(1), "cy") as cy:
            assert (await request(ann, "webrtc", kind="offer", to="cy", callId="x6",
                                  sdp=OFFER))["state"] == "ringing"
            await cy.expect("webrtc", kind="offer")


# ---- node-wide ----------------------------------------------------------------------------------


async def test_an_announcement_posted_on_one_node_reaches_clients_on_both(
        cluster: Cluster) -> None:
    async with (await online(cluster.ws(0), "u1") as u1, await online(cluster.ws(1), "u2") as u2,
                await member(cluster.ws(1), "u3") as u3):
        assert await announce(cluster.urls[0], "maintenance at noon") == 202
        for client in (u1, u2, u3):
            event = await client.expect("announcement")
            assert event["payload"]["content"] == "maintenance at noon"
            assert isinstance(event["payload"]["createdAt"], int)


async def test_concurrent_chats_from_both_nodes_arrive_everywhere_in_seq_order_without_gaps(
        cluster: Cluster) -> None:
    per_sender = 100
    async with (await member(cluster.ws(0), "s0") as s0, await member(cluster.ws(1), "s1") as s1,
                await member(cluster.ws(0), "w0") as w0, await member(cluster.ws(1), "w1") as w1):

        async def burst(sender: WsClient, name: str) -> list[int]:
            for i in range(per_sender):  # no waiting for acks: a pipelined burst
                await sender.send("chat", {"roomId": ROOM, "content": f"{name} {i}"},
                                  id=f"{name}-{i}")
            seqs: list[int] = []
            async with asyncio.timeout(WAIT * 3):
                while len(seqs) < per_sender:
                    frame = await sender.recv(WAIT)
                    if frame["type"] == "ack" and frame.get("id", "").startswith(name):
                        seqs.append(frame["payload"]["seq"])
            return seqs

        acked = await asyncio.gather(burst(s0, "s0"), burst(s1, "s1"))
        total = 2 * per_sender
        assert sorted(acked[0] + acked[1]) == list(range(1, total + 1))
        for watcher in (w0, w1):
            events = await room_events(watcher, total, timeout=WAIT * 3)
            assert [e["seq"] for e in events] == list(range(1, total + 1))
            for name in ("s0", "s1"):  # each sender's chats in the order they were sent
                assert [e["content"] for e in events if e["userId"] == name] == [
                    f"{name} {i}" for i in range(per_sender)]


# ---- only real processes: a node dies, Redis restarts -------------------------------------------


async def test_a_killed_nodes_users_go_offline_elsewhere_and_its_clients_resume_on_the_other(
        redis_url: str, store_url: str) -> None:
    with process_nodes(redis_url, store_url) as (doomed, survivor):
        doomed_ws, survivor_ws = doomed.ws, survivor.ws
        async with await member(survivor_ws, "obs") as obs:
            gone = await member(doomed_ws, "gone")  # will not come back
            mover = await member(doomed_ws, "mover")  # reconnects to the survivor at once
            await obs.expect("join_room", userId="mover")
            await chat(gone, "last words")
            [seen] = await room_events(mover, 1)
            doomed.kill()
            await dropped(gone)
            await mover.close()
            # What the clients of the dead node miss: chats on the survivor.
            await chat(obs, "while you were away")
            await chat(obs, "and more")
            async with await online(survivor_ws, "mover") as moved:
                ack = (await moved.join(ROOM, since=seen["seq"]))["payload"]
                assert ack["recovered"] is True
                assert [e["payload"]["content"] for e in ack["missed"]] == [
                    "while you were away", "and more"]
                assert [m["userId"] for m in ack["members"]] == ["gone", "mover", "obs"]
                # The dead node is reaped after its TTL: those it held and nobody else holds
                # leave and go offline for everybody; `mover` is held here now and does not.
                frames = await frames_until(obs, "leave_room", timeout=DEAD_NODE_WAIT,
                                            userId="gone")
                [offline] = about(frames, "presence", "gone")
                assert offline["status"] == "offline"
                assert about(frames, "presence", "mover") == []
                assert about(frames, "leave_room", "mover") == []
                listed = member_ids(await obs.request("join_room", {"roomId": ROOM}, id="j2"))
                assert listed == ["mover", "obs"]
                await chat(moved, "back on the other node")
                [event] = await room_events(obs, 1)
                assert (event["userId"], event["content"]) == ("mover", "back on the other node")


async def test_a_call_whose_home_node_is_killed_ends_and_the_survivor_logs_it(
        redis_url: str, store_url: str) -> None:
    with process_nodes(redis_url, store_url) as (doomed, survivor):
        async with await member(survivor.ws, "bob") as bob:
            ann = await member(doomed.ws, "ann")
            # The offer arrives at ann's node: that is the call's home.
            await answered_call(ann, bob, "k1")
            doomed.kill()
            await dropped(ann)
            frames = await frames_until(bob, "call_end", timeout=DEAD_NODE_WAIT, callId="k1")
            assert frames[-1]["payload"] == {"callId": "k1", "by": "bob",
                                             "reason": "disconnected"}
            # The home wrote nothing: the survivor, which reaped it, writes the record (in
            # the background, right after the call_end).
            for _ in range(int(WAIT / 0.1)):
                calls = (await request(bob, "call_history"))["calls"]
                if calls:
                    break
                await asyncio.sleep(0.1)
            [record] = calls
            assert (record["callId"], record["caller"], record["callee"], record["endReason"]) \
                == ("k1", "ann", "bob", "disconnected")
            assert record["startedAt"] <= record["answeredAt"] <= record["endedAt"]
            assert record["durationMs"] == record["endedAt"] - record["answeredAt"]


async def test_a_call_whose_partys_node_is_killed_ends_and_frees_both(
        redis_url: str, store_url: str) -> None:
    with process_nodes(redis_url, store_url) as (doomed, home):
        async with await member(home.ws, "ann") as ann:
            bob = await member(doomed.ws, "bob")
            # The offer arrives at ann's node, which stays: the call lives there.
            await answered_call(ann, bob, "k2")
            doomed.kill()
            await dropped(bob)
            # PROTOCOL §Calls: bob's last connection is gone, so ann hears `disconnected`.
            frames = await frames_until(ann, "call_end", timeout=DEAD_NODE_WAIT, callId="k2")
            assert frames[-1]["payload"] == {"callId": "k2", "by": "bob",
                                             "reason": "disconnected"}
            # And both are free: bob, back on the surviving node, can be called again.
            async with await member(home.ws, "bob") as bob_again:
                await request(ann, "webrtc", kind="offer", to="bob", callId="k3", sdp=OFFER)
                await bob_again.expect("webrtc", kind="offer", callId="k3")


async def test_a_call_whose_partys_node_shuts_down_ends_before_that_node_is_reaped(
        redis_url: str, store_url: str) -> None:
    with process_nodes(redis_url, store_url) as (leaving, home):
        async with await member(home.ws, "ann") as ann:
            bob = await member(leaving.ws, "bob")
            await answered_call(ann, bob, "t1")
            leaving.process.proc.send_signal(signal.SIGTERM)  # a graceful shutdown
            await dropped(bob)
            # The leaving node tells the call's home on its way out: ann hears of it then,
            # not only when the node is reaped (bob's `offline` comes from the reaping).
            frames = await frames_until(ann, "call_end", timeout=DEAD_NODE_WAIT, callId="t1")
            assert frames[-1]["payload"] == {"callId": "t1", "by": "bob",
                                             "reason": "disconnected"}
            assert about(frames, "presence", "bob") == []


async def chats_until_one_crosses(sender: WsClient, receiver: WsClient,
                                  timeout: float = DEAD_NODE_WAIT) -> tuple[int, list[int]]:
    """Chat from `sender` until `receiver` (on another node) gets a chat; returns the last
    seq acked and the seqs received."""
    received: list[int] = []
    async with asyncio.timeout(timeout):
        while not received:
            last_acked = (await chat(sender, "probe"))["seq"]
            with contextlib.suppress(TimeoutError):
                received = [e["seq"] for e in await room_events(receiver, 1, timeout=0.5)]
    return last_acked, received


async def test_after_a_redis_restart_fan_out_between_the_nodes_resumes_by_itself(
        dedicated_redis: RedisServer, store_url: str) -> None:
    with process_nodes(dedicated_redis.url(), store_url) as (a, b):
        async with await member(a.ws, "u1") as u1, await member(b.ws, "u2") as u2:
            await chat(u1, "before")
            [first] = await room_events(u2, 1)
            dedicated_redis.shutdown()
            await chat(u1, "while Redis is down")  # durable: acked by the store
            dedicated_redis.start_again()
            last_acked, received = await chats_until_one_crosses(u1, u2)
            # What the broker lost while Redis was away is filled from the store, in order.
            received = [first["seq"], *received]
            more = last_acked - received[-1]
            received += [e["seq"] for e in await room_events(u2, more)] if more > 0 else []
            assert received == list(range(1, last_acked + 1))


async def test_a_chat_made_while_redis_was_down_reaches_the_other_node_with_nothing_after_it(
        dedicated_redis: RedisServer, store_url: str) -> None:
    # The broker lost the room's last event: the node checks its rooms against the store
    # once Redis is back (and every 10 s), and fills what it finds missing.
    with process_nodes(dedicated_redis.url(), store_url) as (a, b):
        async with await member(a.ws, "u1") as u1, await member(b.ws, "u2") as u2:
            await chat(u1, "before")
            await room_events(u2, 1)
            dedicated_redis.shutdown()
            ack = await chat(u1, "while Redis is down")  # durable: acked by the store
            dedicated_redis.start_again()
            [got] = await room_events(u2, 1, timeout=DEAD_NODE_WAIT)
            assert (got["seq"], got["content"]) == (ack["seq"], "while Redis is down")
            dropped = await metric(a, "hubbub_broker_dropped_total")
            assert dropped is not None and dropped >= 1  # the chat's publish, at least
            resumes = await metric(b, "hubbub_broker_resumes_total")
            assert resumes is not None and resumes >= 1
            filled = await metric(b, "hubbub_events_filled_total")
            assert filled is not None and filled >= 1


async def test_a_departure_made_while_redis_was_away_is_told_once_it_is_back_with_its_data(
        dedicated_redis: RedisServer, store_url: str) -> None:
    # Redis with persistence: it comes back holding u2 through node b, which must tell it
    # that u2's grace ended meanwhile, or u2 stays online and in the room for good.
    with process_nodes(dedicated_redis.url(), store_url) as (a, b):
        async with await member(a.ws, "u1") as u1:
            u2 = await member(b.ws, "u2")
            await frames_until(u1, "join_room", userId="u2")
            dedicated_redis.shutdown(keep_data=True)
            await u2.close()
            async with asyncio.timeout(WAIT):  # u2's grace ended on b, unheard
                while not any("could not tell the directory that u2 left" in line  # noqa: ASYNC110
                              for line in b.stderr):
                    await asyncio.sleep(0.05)
            dedicated_redis.start_again()
            frames = await frames_until(u1, "leave_room", userId="u2", timeout=DEAD_NODE_WAIT)
            assert [p["status"] for p in about(frames, "presence", "u2")] == ["offline"]
            async with await online(a.ws, "u3") as u3:
                ack = await u3.request("join_room", {"roomId": ROOM}, id="j")
                assert member_ids(ack) == ["u1", "u3"]


async def test_after_a_redis_restart_member_lists_and_leaves_still_span_both_nodes(
        dedicated_redis: RedisServer, store_url: str) -> None:
    # Redis comes back empty: each node tells the directory again what it holds.
    with process_nodes(dedicated_redis.url(), store_url) as (a, b):
        async with await member(a.ws, "u1") as u1, await member(b.ws, "u2") as u2:
            dedicated_redis.shutdown()
            dedicated_redis.start_again()
            await chats_until_one_crosses(u1, u2)
            async with await online(b.ws, "u3") as u3:
                listed: list[str] = []
                async with asyncio.timeout(WAIT):  # a housekeeping round or two
                    while listed != ["u1", "u2", "u3"]:
                        ack = await u3.request("join_room", {"roomId": ROOM},
                                               id=f"j{next(_ids)}")
                        listed = member_ids(ack)
                        await asyncio.sleep(0.5)
            await u1.close()  # and leaving is heard again
            frames = await frames_until(u2, "leave_room", userId="u1")
            assert [p["status"] for p in about(frames, "presence", "u1")] == ["offline"]


async def busy_once_written_back(caller: Peer, callee: str) -> dict[str, Any]:
    """Call `callee` until the answer is `busy`: the directory learns the callee's call
    again at the next heartbeat of its home (ADR 0071). Before that, the callee is not
    known online (`not_found`) or is free (the call rings, and is hung up at once)."""
    async with asyncio.timeout(DEAD_NODE_WAIT):
        while True:
            call_id = f"b{next(_ids)}"
            answer = await caller.request("webrtc", {"kind": "offer", "to": callee,
                                                     "callId": call_id, "sdp": OFFER},
                                          id=f"q{next(_ids)}")
            if answer["type"] == "ack" and answer["payload"]["state"] == "ended":
                return (await caller.expect("call_reject", callId=call_id))["payload"]
            if answer["type"] == "ack":
                await request(caller, "call_end", callId=call_id)
            else:
                assert answer["payload"]["code"] in ("not_found", "forbidden"), answer
            await asyncio.sleep(0.5)


async def test_after_a_redis_restart_a_live_call_is_written_back_and_goes_on(
        dedicated_redis: RedisServer, store_url: str) -> None:
    # Redis comes back empty: ann's node, the call's home, tells it again about the call.
    with process_nodes(dedicated_redis.url(), store_url) as (a, b):
        async with (await member(a.ws, "ann") as ann, await member(b.ws, "bob") as bob,
                    await member(b.ws, "cy") as cy):
            await answered_call(ann, bob, "w1")
            dedicated_redis.shutdown()
            dedicated_redis.start_again()
            for party in ("ann", "bob"):
                busy = await busy_once_written_back(cy, party)
                assert (busy["by"], busy["reason"]) == (party, "busy")
            # The call goes on: bob's frames, on the other node, still find its home.
            await bob.send("webrtc", {"kind": "ice_candidate", "to": "ann", "callId": "w1",
                                      "candidate": {"candidate": "after the restart"}})
            got = await ann.expect("webrtc", kind="ice_candidate", callId="w1")
            assert got["payload"]["candidate"] == {"candidate": "after the restart"}
            assert (await request(ann, "call_end", callId="w1"))["state"] == "ended"
            assert (await bob.expect("call_end", callId="w1"))["payload"] == {
                "callId": "w1", "by": "ann", "reason": "hangup"}
