"""The Python client (`hubbub.client.Client`) against real servers.

PROTOCOL.md §Client libraries: the operations of the browser client in snake_case, typed
results, and the same reconnect/resume behaviour: reconnect with jittered backoff,
re-authenticate, rejoin every room with `since` = the last seq seen (missed events reach
the handlers once, in seq order) and re-send unacked chats with their `clientMsgId`.

The first half runs against an in-process server. The second half restarts a real
`hubbub serve` process (SIGKILL, then a new process on the same port and SQLite file) in
the middle of a conversation. Where a client has to be kept away from the server while
others talk, it connects through `Gate`, a TCP proxy the test can shut.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hubbub.client import Client, Event, HubbubRequestError
from hubbub.protocol import frames as f
from tests.integration.helpers import SECRET, announce, token
from tests.support.gate import Gate
from tests.support.server import Process, running_server, start_process, ws_url
from tests.support.services import RedisServer, free_port

WAIT = 5.0  # seconds; only so a broken client fails a test instead of hanging it
ROOM = "lobby"
EVENT_TYPES = ("open", "close", "reconnect", "rejoined", "chat", "message_edit",
               "message_delete", "reaction", "typing", "presence", "join_room", "leave_room",
               "webrtc", "call_end", "call_reject", "announcement", "error")


class Recorder:
    """Every event a client's handlers receive, in order."""

    def __init__(self, client: Client) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        for type_ in EVENT_TYPES:
            client.on(type_, self._record)

    def _record(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, *types: str) -> list[Event]:
        return [e for e in self.events if e.type in types]

    def payloads(self, type_: str) -> list[Any]:
        return [e.payload for e in self.of(type_)]

    def chats(self, room: str = ROOM) -> list[f.ChatEvent]:
        return [p for p in self.payloads("chat") if p.room_id == room]

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    async def until(self, predicate: Callable[[], object], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


ClientFactory = Callable[..., Client]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Clients with a small backoff, disconnected when the test ends."""
    made: list[Client] = []

    def make(url: str, user: str | None = None, **kwargs: Any) -> Client:
        kwargs.setdefault("backoff_base", 0.05)
        kwargs.setdefault("backoff_cap", 0.3)
        kwargs.setdefault("request_timeout", WAIT)
        client = Client(url, user_id=user, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.disconnect()


async def in_room(*clients: Client, room: str = ROOM) -> None:
    """Connect each client and join `room`, in order."""
    for client in clients:
        await client.connect()
        await client.join_room(room)


async def eventually(predicate: Callable[[], object], timeout: float = WAIT) -> None:
    """For state no handler reports (lists a handler fills, the server's sessions)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling plain state, nothing to wait on
            await asyncio.sleep(0.01)


async def started(task_factory: Callable[[], Awaitable[Any]]) -> "asyncio.Task[Any]":
    """A task already waiting (for `next_event`: its queue exists once the task ran)."""
    task = asyncio.ensure_future(task_factory())
    await asyncio.sleep(0)
    return task


# ---- every operation, typed ----------------------------------------------------------


async def test_connect_returns_a_typed_welcome(make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann", username="Ann")
        rec = Recorder(ann)
        welcome = await ann.connect()
        assert isinstance(welcome, f.Welcome)
        assert (welcome.user_id, welcome.username, welcome.protocol) == ("ann", "Ann", 1)
        assert welcome.limits.max_frame_bytes == 65536
        assert ann.welcome == welcome
        assert ann.connected
        assert rec.events == [Event("open", {"reconnected": False})]


async def test_every_operation_returns_its_typed_result(make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann", username="Ann")
        bob = make_client(ws_url(server), "bob", username="Bob")
        ann_rec, bob_rec = Recorder(ann), Recorder(bob)
        await ann.connect()
        await bob.connect()

        joined = await ann.join_room(ROOM)
        assert isinstance(joined, f.JoinAck)
        assert joined.room_id == ROOM and joined.last_seq == 0
        assert [(m.user_id, m.username, m.status) for m in joined.members] == [
            ("ann", "Ann", "online")]
        joined = await bob.join_room(ROOM)
        assert {m.user_id for m in joined.members} == {"ann", "bob"}
        await ann_rec.until(lambda: ann_rec.of("join_room"))
        assert ann_rec.payloads("join_room") == [
            f.JoinRoomEvent(room_id=ROOM, user_id="bob", username="Bob", status="online")]

        sent = await ann.send_chat_message(ROOM, "hello", client_msg_id="hello-1")
        assert isinstance(sent, f.ChatAck)
        assert (sent.seq, sent.duplicate) == (1, False)
        reply = await bob.send_chat_message(ROOM, "hi Ann", reply_to=sent.message_id)
        assert reply.seq == 2
        await bob_rec.until(lambda: len(bob_rec.chats()) == 2)
        first, second = bob_rec.chats()
        assert isinstance(first, f.ChatEvent)
        assert (first.message_id, first.seq, first.user_id, first.username, first.content,
                first.client_msg_id) == (sent.message_id, 1, "ann", "Ann", "hello", "hello-1")
        assert (second.reply_to, second.user_id) == (sent.message_id, "bob")

        edited = await ann.edit_message(ROOM, sent.message_id, "hello, all")
        assert isinstance(edited, f.EditAck)
        assert (edited.message_id, edited.seq) == (sent.message_id, 3)
        reacted = await bob.react(ROOM, sent.message_id, "👍")
        assert isinstance(reacted, f.ReactionAck)
        assert (reacted.emoji, reacted.op, reacted.seq) == ("👍", "add", 4)
        again = await bob.react(ROOM, sent.message_id, "👍")
        assert again.seq is None  # already there: a no-op
        deleted = await bob.delete_message(ROOM, reply.message_id)
        assert isinstance(deleted, f.DeleteAck)
        assert (deleted.message_id, deleted.seq) == (reply.message_id, 5)

        await ann_rec.until(lambda: ann_rec.of("message_delete"))
        assert ann_rec.payloads("message_edit")[0].content == "hello, all"
        assert isinstance(ann_rec.payloads("message_edit")[0], f.MessageEditEvent)
        reaction = ann_rec.payloads("reaction")[0]
        assert isinstance(reaction, f.ReactionEvent)
        assert (reaction.user_id, reaction.emoji, reaction.seq) == ("bob", "👍", 4)
        assert isinstance(ann_rec.payloads("message_delete")[0], f.MessageDeleteEvent)
        # Room events reach the handlers in seq order, once.
        seqs = [e.payload.seq for e in ann_rec.of("chat", "message_edit", "reaction",
                                                   "message_delete")]
        assert seqs == [1, 2, 3, 4, 5]

        history = await ann.history(ROOM)
        assert isinstance(history, f.HistoryAck)
        assert history.has_more is False
        hello, gone = history.messages
        assert isinstance(hello, f.HistoryMessage)
        assert (hello.content, hello.reactions) == ("hello, all", {"👍": ["bob"]})
        assert (gone.deleted, gone.content) == (True, None)
        page = await ann.history(ROOM, before_seq=2, limit=1)
        assert [m.seq for m in page.messages] == [1]
        page = await ann.history(ROOM, after_seq=1, limit=1)
        assert [m.seq for m in page.messages] == [2] and page.has_more is False

        await ann.send_typing_indicator(ROOM, True)
        await bob_rec.until(lambda: bob_rec.of("typing"))
        assert bob_rec.payloads("typing") == [
            f.TypingEvent(room_id=ROOM, user_id="ann", username="Ann", is_typing=True)]
        await ann.send_typing_indicator(ROOM, False)
        await bob_rec.until(lambda: len(bob_rec.of("typing")) == 2)
        assert bob_rec.payloads("typing")[1].is_typing is False

        assert await ann.set_presence("away") is None
        await bob_rec.until(lambda: bob_rec.of("presence"))
        presence = bob_rec.payloads("presence")[0]
        assert isinstance(presence, f.PresenceEvent)
        assert (presence.user_id, presence.status) == ("ann", "away")

        server_time = await ann.ping()
        assert isinstance(server_time, int) and server_time > 0
        assert await ann.call_history() == []

        assert await bob.leave_room(ROOM) is None
        await ann_rec.until(lambda: ann_rec.of("leave_room"))
        left = ann_rec.payloads("leave_room")[0]
        assert isinstance(left, f.LeaveRoomEvent) and left.user_id == "bob"


async def test_integer_room_ids_are_sent_as_strings(make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        await ann.connect()
        assert (await ann.join_room(42)).room_id == "42"
        await ann.send_chat_message(42, "to room 42")
        assert [m.content for m in (await ann.history("42")).messages] == ["to room 42"]


async def test_webrtc_signaling_between_two_clients(make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        bob = make_client(ws_url(server), "bob")
        ann_rec = Recorder(ann)
        await in_room(ann, bob, room="call-room")
        bob_signals: list[f.WebRTCEvent] = []
        bob_ends: list[f.CallEndEvent] = []

        def on_signal(event: Event) -> None:
            bob_signals.append(event.payload)

        bob.on("webrtc", on_signal)
        bob.on("call_end", lambda e: bob_ends.append(e.payload))

        offer = await started(lambda: bob.next_event("webrtc", timeout=WAIT))
        call_id = await ann.send_webrtc_offer("bob", {"type": "offer", "sdp": "v=0 offer"})
        event = await offer
        assert event.type == "webrtc"
        assert isinstance(event.payload, f.WebRTCEvent)
        assert (event.payload.kind, event.payload.from_, event.payload.to,
                event.payload.call_id) == ("offer", "ann", "bob", call_id)
        assert event.payload.sdp == f.SessionDescription(type="offer", sdp="v=0 offer")
        assert bob_signals == [event.payload]

        candidate = {"candidate": "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host",
                     "sdpMid": "0", "sdpMLineIndex": 0}
        ice = await started(lambda: bob.next_event("webrtc", timeout=WAIT))
        await ann.send_ice_candidate("bob", candidate, call_id)
        assert (await ice).payload.candidate == candidate

        await bob.send_webrtc_answer("ann", {"type": "answer", "sdp": "v=0 answer"}, call_id)
        await bob.send_ice_candidate("ann", candidate, call_id)
        await ann_rec.until(lambda: len(ann_rec.of("webrtc")) == 2)
        answer, their_ice = ann_rec.payloads("webrtc")
        assert (answer.kind, answer.from_, answer.call_id) == ("answer", "bob", call_id)
        assert answer.sdp.type == "answer"
        assert (their_ice.kind, their_ice.candidate) == ("ice_candidate", candidate)

        ended = await started(lambda: bob.next_event("call_end", timeout=WAIT))
        await ann.end_call(call_id)
        assert (await ended).payload == f.CallEndEvent(call_id=call_id, by="ann",
                                                      reason="hangup")
        assert bob_ends == [(await ended).payload]

        # A second call, declined by the callee; its handler is gone (off), the queue not.
        bob.off("webrtc", on_signal)
        handlers_before = len(bob_signals)
        ring = await started(lambda: bob.next_event("webrtc", timeout=WAIT))
        second = await ann.send_webrtc_offer("bob", {"type": "offer", "sdp": "v=0"},
                                             room_id="call-room")
        assert (await ring).payload.call_id == second
        assert len(bob_signals) == handlers_before
        await bob.reject_call(second)
        await ann_rec.until(lambda: ann_rec.of("call_reject"))
        rejected = ann_rec.payloads("call_reject")[0]
        assert isinstance(rejected, f.CallEndEvent)
        assert (rejected.call_id, rejected.by, rejected.reason) == (second, "bob", "rejected")

        # The call log is written after the call_end/call_reject went out: poll for it.
        calls: list[f.CallRecord] = []
        async with asyncio.timeout(WAIT):
            while {c.call_id for c in calls} != {call_id, second}:
                await asyncio.sleep(0.01 if calls else 0)
                calls = await ann.call_history()
        assert all(isinstance(c, f.CallRecord) for c in calls)
        by_id = {c.call_id: c for c in calls}
        assert (by_id[call_id].end_reason, by_id[call_id].caller,
                by_id[call_id].callee) == ("hangup", "ann", "bob")
        assert by_id[call_id].answered_at is not None
        assert by_id[second].end_reason == "rejected"
        assert [c.call_id for c in await bob.call_history(limit=1)] in ([call_id], [second])


async def test_on_and_off(make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        bob = make_client(ws_url(server), "bob")
        await in_room(ann, bob)
        seen_sync: list[str] = []
        seen_async: list[str] = []

        def on_sync(event: Event) -> None:
            seen_sync.append(event.payload.content)

        async def on_async(event: Event) -> None:
            await asyncio.sleep(0)
            seen_async.append(event.payload.content)

        bob.on("chat", on_sync)
        bob.on("chat", on_async)
        await ann.send_chat_message(ROOM, "one")
        await eventually(lambda: seen_async == ["one"])
        assert seen_sync == ["one"]

        bob.off("chat", on_sync)
        bob.off("chat", on_sync)  # twice: harmless
        bob.off("nothing", on_sync)
        await ann.send_chat_message(ROOM, "two")
        await eventually(lambda: seen_async == ["one", "two"])
        assert seen_sync == ["one"]


async def test_an_async_handler_may_await_requests(make_client: ClientFactory) -> None:
    # The bot pattern: a handler that answers. Its requests' acks come through the same
    # connection the handler was called from.
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        bot = make_client(ws_url(server), "bot")
        rec = Recorder(ann)
        await in_room(ann, bot)

        async def echo(event: Event) -> None:
            chat = event.payload
            if chat.user_id != "bot":
                ack = await bot.send_chat_message(ROOM, f"echo: {chat.content}")
                await bot.react(ROOM, chat.message_id, "👀")
                await bot.edit_message(ROOM, ack.message_id, f"echo: {chat.content}!")

        bot.on("chat", echo)
        await ann.send_chat_message(ROOM, "ping")
        await rec.until(lambda: rec.of("message_edit"))
        assert [c.content for c in rec.chats()] == ["ping", "echo: ping"]
        assert rec.payloads("reaction")[0].emoji == "👀"
        assert rec.payloads("message_edit")[0].content == "echo: ping!"


async def test_next_event_filters_and_buffers_from_its_first_call(
        make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        bob = make_client(ws_url(server), "bob")
        await in_room(ann, bob)
        with pytest.raises(TimeoutError):
            await bob.next_event("chat", timeout=0.05)  # nothing yet; the queue now exists
        await ann.send_typing_indicator(ROOM, True)
        for text in ("a", "b", "c"):
            await ann.send_chat_message(ROOM, text)
        # Events that arrived between calls are kept; other types are skipped.
        assert [(await bob.next_event("chat")).payload.content for _ in range(3)] == [
            "a", "b", "c"]
        await ann.set_presence("busy")
        event = await bob.next_event()
        assert event.type == "presence" and event.payload.status == "busy"


async def test_a_handler_that_raises_does_not_break_the_client(
        make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        bob = make_client(ws_url(server), "bob")
        await in_room(ann, bob)
        got: list[str] = []

        def broken(event: Event) -> None:
            raise RuntimeError("bug in the app's handler")

        async def broken_async(event: Event) -> None:
            raise RuntimeError("bug in the app's async handler")

        bob.on("chat", broken)
        bob.on("chat", broken_async)
        bob.on("chat", lambda e: got.append(e.payload.content))
        await ann.send_chat_message(ROOM, "first")
        await ann.send_chat_message(ROOM, "second")
        await eventually(lambda: got == ["first", "second"])
        assert bob.connected
        assert (await bob.send_chat_message(ROOM, "still here")).seq == 3


async def test_errors_raise_hubbub_request_error_with_the_code(
        make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        bob = make_client(ws_url(server), "bob")
        rec = Recorder(ann)
        await ann.connect()
        await bob.connect()

        with pytest.raises(HubbubRequestError) as err:
            await ann.send_chat_message("elsewhere", "hi")
        assert err.value.code == "not_in_room"
        assert err.value.message
        with pytest.raises(HubbubRequestError) as err:
            await ann.leave_room("elsewhere")
        assert err.value.code == "not_in_room"
        await ann.join_room(ROOM)
        await bob.join_room(ROOM)
        theirs = await bob.send_chat_message(ROOM, "bob's")
        with pytest.raises(HubbubRequestError) as err:
            await ann.edit_message(ROOM, theirs.message_id, "mine now")
        assert err.value.code == "forbidden"
        with pytest.raises(HubbubRequestError) as err:
            await ann.delete_message(ROOM, "no-such-message")
        assert err.value.code == "not_found"
        with pytest.raises(HubbubRequestError) as err:  # no connection under that id
            await ann.send_webrtc_offer("nobody", {"type": "offer", "sdp": "v=0"})
        assert err.value.code == "not_found"
        with pytest.raises(HubbubRequestError) as err:
            await ann.join_room("not a room id!")
        assert err.value.code == "bad_request"

        # Each error also reaches the `error` handlers, typed; the client stays usable.
        await rec.until(lambda: len(rec.of("error")) == 6)
        assert all(isinstance(p, f.ErrorPayload) for p in rec.payloads("error"))
        assert ann.connected
        assert (await ann.send_chat_message(ROOM, "fine")).seq == 2


async def test_errors_in_jwt_mode(make_client: ClientFactory) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        limited = make_client(ws_url(server), token=token("ann", rooms=["team-*"]))
        welcome = await limited.connect()
        assert welcome.user_id == "ann"
        with pytest.raises(HubbubRequestError) as err:
            await limited.join_room("other")
        assert err.value.code == "forbidden"
        assert (await limited.join_room("team-a")).room_id == "team-a"

        bad = make_client(ws_url(server), token="not-a-jwt")
        with pytest.raises(HubbubRequestError) as err:
            await bad.connect()
        assert err.value.code == "unauthorized"
        assert not bad.connected


async def test_disconnect_from_a_handler(make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        bob = make_client(ws_url(server), "bob")
        rec = Recorder(bob)
        await in_room(ann, bob)

        async def on_chat(event: Event) -> None:
            if event.payload.content == "/quit":
                await bob.disconnect()

        bob.on("chat", on_chat)
        await ann.send_chat_message(ROOM, "/quit")
        await rec.until(lambda: rec.of("close"))
        assert rec.payloads("close") == [{"code": 1000, "final": True}]
        assert not bob.connected
        await ann.send_chat_message(ROOM, "after bob left")
        await ann.ping()
        assert [c.content for c in rec.chats()] == ["/quit"]


def test_a_client_needs_an_identity() -> None:
    with pytest.raises(ValueError):
        Client("ws://127.0.0.1:1/ws")


async def test_announcements_reach_the_handlers(make_client: ClientFactory) -> None:
    async with running_server(admin_token="admin") as server:
        ann = make_client(ws_url(server), "ann")
        await ann.connect()
        heard = await started(lambda: ann.next_event("announcement", timeout=WAIT))
        assert await announce(server, "maintenance at noon") == 202
        event = await heard
        assert isinstance(event.payload, f.AnnouncementEvent)
        assert event.payload.content == "maintenance at noon"


async def test_async_context_manager_closes_cleanly() -> None:
    async with running_server() as server:
        closes: list[dict[str, Any]] = []
        async with Client(ws_url(server), user_id="ann", backoff_base=0.05,
                          backoff_cap=0.3) as ann:
            ann.on("close", lambda e: closes.append(e.payload))
            await ann.join_room(ROOM)
            assert (await ann.send_chat_message(ROOM, "bye")).seq == 1
            assert ann.connected
        assert not ann.connected
        assert closes == [{"code": 1000, "final": True}]
        with pytest.raises(ConnectionError):
            await ann.send_chat_message(ROOM, "after the end")
        with pytest.raises(ConnectionError):
            await ann.ping()
        await ann.disconnect()  # twice: harmless
        # The server saw the connection go.
        await eventually(lambda: not server.node.sessions)


async def test_requests_after_disconnect_fail_at_once(make_client: ClientFactory) -> None:
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        await ann.connect()
        await ann.join_room(ROOM)
        await ann.disconnect()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(ann.send_chat_message(ROOM, "late"), WAIT)
        with pytest.raises(ConnectionError):
            await ann.join_room(ROOM)
        await ann.send_typing_indicator(ROOM, True)  # fire and forget: dropped


# ---- restarts: a real `hubbub serve` on a fixed port and SQLite file --------------------


class Restartable:
    """`hubbub serve` on one port and one SQLite file, killed and started again."""

    def __init__(self, db: Path, flags: tuple[str, ...]) -> None:
        self.port = free_port()
        self.db = db
        self.flags = flags
        self.process: Process | None = None

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # In a thread: the clients keep running (and retrying) while the server boots.
        self.process = await asyncio.to_thread(
            start_process, "--port", str(self.port), "--store", "sqlite:///" + str(self.db),
            "--log-level", "warning", *self.flags)

    def kill(self) -> None:
        """SIGKILL: no close frames, no flush, nothing."""
        assert self.process is not None
        self.process.proc.kill()
        self.reap()

    def terminate(self) -> None:
        """SIGTERM: every connection gets 1001."""
        assert self.process is not None
        assert self.process.terminate() == 0
        self.reap()

    def reap(self) -> None:
        if self.process is None:
            return
        proc = self.process.proc
        if proc.poll() is None:
            proc.kill()
        proc.wait(15)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        self.process = None


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Callable[..., Restartable]]:
    servers: list[Restartable] = []

    def make(*flags: str) -> Restartable:
        server = Restartable(tmp_path / f"hubbub-{len(servers)}.db", flags)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.reap()


@contextlib.asynccontextmanager
async def gated_pair(restartable: Callable[..., Restartable], make_client: ClientFactory,
                     *options: str) -> AsyncIterator[tuple[Restartable, Gate, Client, Client,
                                                          Recorder, Recorder]]:
    """A started server (with command-line `options`); ann connected through a Gate (the
    link the tests cut), bob directly; both in ROOM, each with a Recorder."""
    server = restartable(*options)
    await server.start()
    async with Gate(server.port) as gate:
        ann = make_client(gate.ws, "ann")
        bob = make_client(server.ws, "bob")
        ann_rec, bob_rec = Recorder(ann), Recorder(bob)
        await in_room(ann, bob)
        yield server, gate, ann, bob, ann_rec, bob_rec


def rejoined(rec: Recorder) -> list[dict[str, Any]]:
    return rec.payloads("rejoined")


@pytest.mark.parametrize("how", ["kill", "terminate"])
async def test_reconnects_by_itself_after_a_restart(
        restartable: Callable[..., Restartable], make_client: ClientFactory, how: str) -> None:
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann", username="Ann")
    rec = Recorder(ann)
    first = await ann.connect()
    await ann.join_room(ROOM)
    await ann.send_chat_message(ROOM, "before")

    server.kill() if how == "kill" else server.terminate()
    await rec.until(lambda: rec.of("close"))
    assert rec.payloads("close")[0]["final"] is False
    assert rec.payloads("close")[0]["code"] == (1001 if how == "terminate" else 1006)
    await rec.until(lambda: len(rec.of("reconnect")) >= 2)  # it keeps trying while down
    assert not ann.connected
    with pytest.raises(ConnectionError):
        await ann.history(ROOM)  # requests fail fast while disconnected

    await server.start()
    await ann.wait_connected(WAIT)
    await rec.until(lambda: rec.of("rejoined"))
    types = [t for t in rec.types() if t in ("open", "close", "reconnect", "rejoined")]
    assert types[:2] == ["open", "close"]
    assert types[-2:] == ["open", "rejoined"]
    assert set(types[2:-2]) == {"reconnect"}
    attempts = [p["attempt"] for p in rec.payloads("reconnect")]
    assert attempts == list(range(1, len(attempts) + 1))
    assert all(0 <= p["delay"] <= 0.3 for p in rec.payloads("reconnect"))
    assert rec.payloads("open")[-1] == {"reconnected": True}
    assert rejoined(rec) == [{"roomId": ROOM, "recovered": True, "lastSeq": 1}]
    assert ann.welcome is not None and ann.welcome.session_id != first.session_id

    # The same client goes on as before, in the room it had joined.
    assert (await ann.send_chat_message(ROOM, "after")).seq == 2
    assert [m.content for m in (await ann.history(ROOM)).messages] == ["before", "after"]
    await rec.until(lambda: len(rec.chats()) == 2)
    assert [c.content for c in rec.chats()] == ["before", "after"]


async def test_chats_sent_while_away_are_delivered_once_in_seq_order(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    async with gated_pair(restartable, make_client) as (server, gate, ann, bob, rec,
                                                        bob_rec):
        await bob.send_chat_message(ROOM, "m0")
        await rec.until(lambda: len(rec.chats()) == 1)

        gate.shut()  # ann stays away until the gate opens again
        server.kill()
        await bob_rec.until(lambda: bob_rec.of("close"))
        await server.start()
        await bob.wait_connected(WAIT)
        # Right after wait_connected the client is back in its rooms: this must not fail.
        acks = [await bob.send_chat_message(ROOM, f"m{i}") for i in range(1, 6)]
        target = await bob.send_chat_message(ROOM, "m6")
        await bob.edit_message(ROOM, acks[0].message_id, "m1, edited")
        await bob.react(ROOM, acks[1].message_id, "🎉")
        await bob.delete_message(ROOM, target.message_id)
        assert [a.seq for a in acks] == [2, 3, 4, 5, 6]
        assert len(rec.chats()) == 1  # ann heard none of it

        gate.open = True
        await rec.until(lambda: rejoined(rec))
        assert rejoined(rec) == [{"roomId": ROOM, "recovered": True, "lastSeq": 10}]
        room_events = [e for e in rec.events
                       if e.type in ("chat", "message_edit", "reaction", "message_delete")]
        assert [e.payload.seq for e in room_events] == list(range(1, 11))
        # m6 was deleted before ann came back: its replayed chat has its content erased.
        assert [c.content for c in rec.chats()] == [f"m{i}" for i in range(6)] + [None]
        assert all(isinstance(c, f.ChatEvent) for c in rec.chats())
        # The replay comes after the `open` and before the `rejoined` event, in seq order.
        order = rec.types()
        last_open = len(order) - 1 - order[::-1].index("open")
        assert order[last_open + 1:] == ["chat"] * 6 + [
            "message_edit", "reaction", "message_delete", "rejoined"]

        # A live event after that arrives once too; an explicit rejoin since 0 replays the
        # whole room in the ack, but the handlers have seen it all: nothing twice.
        await bob.send_chat_message(ROOM, "m7")
        await rec.until(lambda: len(rec.chats()) == 8)
        again = await ann.join_room(ROOM, since=0)
        assert again.missed is not None and len(again.missed) == 11
        await ann.ping()
        assert [c.seq for c in rec.chats()] == [1, 2, 3, 4, 5, 6, 7, 11]


async def test_requests_right_after_wait_connected_find_the_rooms_rejoined(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    bob = make_client(server.ws, "bob")
    rec = Recorder(bob)
    await bob.connect()
    await bob.join_room(ROOM)
    server.kill()
    await rec.until(lambda: rec.of("close"))

    async def first_thing_when_back() -> tuple[f.ChatAck, f.HistoryAck]:
        await bob.wait_connected(WAIT)
        return await bob.send_chat_message(ROOM, "back"), await bob.history(ROOM)

    back = await started(first_thing_when_back)
    await server.start()
    async with asyncio.timeout(WAIT):
        ack, history = await back
    assert ack.seq == 1
    assert [m.content for m in history.messages] == ["back"]
    assert rec.of("rejoined")  # connected means: back in the rooms


async def test_the_presence_status_is_restored_after_a_reconnect(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    rec = Recorder(ann)
    await ann.connect()
    await ann.join_room(ROOM)
    await ann.set_presence("away")
    server.kill()  # the new process knows nothing of ann's status
    await server.start()
    await rec.until(lambda: rejoined(rec))
    carol = make_client(server.ws, "carol")
    await carol.connect()
    members = {m.user_id: m.status for m in (await carol.join_room(ROOM)).members}
    assert members == {"ann": "away", "carol": "online"}


async def test_a_handler_may_answer_replayed_events(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    # A network drop (the server stays up): while ann is away bob posts; when ann is back
    # her handler gets the missed chats from the rejoin and answers each with a request.
    async with gated_pair(restartable, make_client) as (_server, gate, ann, bob, ann_rec,
                                                        bob_rec):
        answered: list[str] = []

        async def seen(event: Event) -> None:
            chat = event.payload
            if chat.user_id == "bob":
                await ann.react(ROOM, chat.message_id, "👀")
                answered.append(chat.content)

        ann.on("chat", seen)
        gate.shut()
        await ann_rec.until(lambda: ann_rec.of("close"))
        for i in range(3):
            await bob.send_chat_message(ROOM, f"while away {i}")
        gate.open = True
        await bob_rec.until(lambda: len(bob_rec.of("reaction")) == 3)
        await eventually(lambda: len(answered) == 3)  # each after its react's ack
        assert answered == [f"while away {i}" for i in range(3)]
        assert [r["recovered"] for r in rejoined(ann_rec)] == [True]
        assert not ann_rec.of("error")
        # No leave/join flapping for bob: ann's membership lingered while she was away.
        assert not bob_rec.of("leave_room")


async def test_chats_sent_while_disconnected_are_delivered_once_after_the_reconnect(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    bob = make_client(server.ws, "bob")
    ann_rec, bob_rec = Recorder(ann), Recorder(bob)
    await in_room(ann, bob)

    server.kill()
    await ann_rec.until(lambda: ann_rec.of("close"))
    assert not ann.connected
    # Sent while the server is down: they wait in the outbox, in order.
    sends = [asyncio.ensure_future(ann.send_chat_message(ROOM, f"offline {i}",
                                                         client_msg_id=f"off-{i}"))
             for i in range(3)]
    await asyncio.sleep(0)
    assert not any(s.done() for s in sends)

    async def when_back() -> f.ChatAck:  # a chat sent the moment the client is back
        await ann.wait_connected(WAIT)
        return await ann.send_chat_message(ROOM, "online again", client_msg_id="on-0")

    sends.append(await started(when_back))
    await server.start()
    async with asyncio.timeout(WAIT):
        acks = await asyncio.gather(*sends)
    # Stored once each, in the order they were sent: the new chat does not overtake the
    # ones that waited in the outbox.
    assert [a.seq for a in acks] == [1, 2, 3, 4]
    assert not any(a.duplicate for a in acks)
    expected = [(f"offline {i}", i + 1, f"off-{i}") for i in range(3)]
    expected.append(("online again", 4, "on-0"))

    for rec in (ann_rec, bob_rec):
        await rec.until(lambda rec=rec: len(rec.chats()) == 4)
    await ann.ping()
    await bob.wait_connected(WAIT)
    await bob.ping()
    for rec in (ann_rec, bob_rec):
        assert [(c.content, c.seq, c.client_msg_id) for c in rec.chats()] == expected
    history = await bob.history(ROOM)
    assert [m.content for m in history.messages] == [e[0] for e in expected]


async def test_a_long_outbox_is_resent_at_the_servers_chat_rate(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    # Three times the server's chat burst wait in the outbox (--chat-rate 20/s, burst 40;
    # 50 strikes close with 4008). Written at once, the refusals would close the
    # connection with 4008 again and again; paced by welcome.limits, they go through.
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    rec = Recorder(ann)
    welcome = await ann.connect()
    count = 3 * welcome.limits.chat_burst
    await ann.join_room(ROOM)
    server.kill()
    await rec.until(lambda: rec.of("close"))
    sends = [asyncio.ensure_future(ann.send_chat_message(ROOM, f"queued {i}"))
             for i in range(count)]
    await server.start()
    async with asyncio.timeout(6 * WAIT):
        acks = await asyncio.gather(*sends)
    # Each stored once. (In order too, unless the server refused one anyway and one after
    # it was already on its way: not asserted, it depends on the machine's speed.)
    assert sorted(a.seq for a in acks) == list(range(1, count + 1))
    assert [a.seq for a in acks[:40]] == list(range(1, 41))
    assert [c["final"] for c in rec.payloads("close")] == [False]  # only the kill: no 4008
    await rec.until(lambda: len(rec.chats()) == count)
    assert sorted(c.content for c in rec.chats()) == sorted(
        f"queued {i}" for i in range(count))
    assert not rec.of("error")  # a refusal that is retried is not an error for the app

    # The app itself sending far faster than the chat rate is paced the same way.
    more = [asyncio.ensure_future(ann.send_chat_message(ROOM, f"burst {i}"))
            for i in range(count)]
    async with asyncio.timeout(6 * WAIT):
        acks = await asyncio.gather(*more)
    assert sorted(a.seq for a in acks) == list(range(count + 1, 2 * count + 1))
    assert [c["final"] for c in rec.payloads("close")] == [False]


async def test_a_chat_sent_just_before_a_kill_is_stored_once(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    rec = Recorder(ann)
    await ann.connect()
    await ann.join_room(ROOM)
    sending = asyncio.ensure_future(ann.send_chat_message(ROOM, "in flight",
                                                          client_msg_id="flight-1"))
    await asyncio.sleep(0)  # the frame is written; whether the server stored it is open
    server.kill()
    await rec.until(lambda: rec.of("close"))
    await server.start()
    async with asyncio.timeout(WAIT):
        ack = await sending
    history = await ann.history(ROOM)
    assert [(m.content, m.seq, m.message_id) for m in history.messages] == [
        ("in flight", 1, ack.message_id)]
    await rec.until(lambda: rec.chats())
    await ann.ping()
    assert [c.message_id for c in rec.chats()] == [ack.message_id]


async def test_a_chat_whose_ack_was_lost_is_stored_once(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    async with gated_pair(restartable, make_client) as (server, gate, ann, bob, ann_rec,
                                                        bob_rec):

        gate.drop_replies = True  # the server gets ann's chat; ann never hears back
        sending = asyncio.ensure_future(ann.send_chat_message(ROOM, "lost ack",
                                                              client_msg_id="lost-1"))
        await bob_rec.until(lambda: bob_rec.chats())  # stored and broadcast
        stored = bob_rec.chats()[0]
        assert not sending.done()

        server.kill()
        await ann_rec.until(lambda: ann_rec.of("close"))
        gate.drop_replies = False
        await server.start()
        async with asyncio.timeout(WAIT):
            ack = await sending
        # The re-send got the original ack: same message, same seq, flagged a duplicate.
        assert (ack.message_id, ack.seq, ack.duplicate) == (stored.message_id, 1, True)
        history = await ann.history(ROOM)
        assert [(m.message_id, m.content) for m in history.messages] == [
            (stored.message_id, "lost ack")]
        # ann's handlers got it once (from the rejoin's `missed`), bob's once (live).
        await ann.ping()
        await bob.wait_connected(WAIT)
        await bob.ping()
        assert [c.message_id for c in ann_rec.chats()] == [stored.message_id]
        assert [c.message_id for c in bob_rec.chats()] == [stored.message_id]


async def test_no_reconnect_after_disconnect(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    rec = Recorder(ann)
    await ann.connect()
    await ann.join_room(ROOM)
    await ann.disconnect()
    server.kill()
    await server.start()
    await asyncio.sleep(0.5)  # ample for several attempts with a 0.3 s cap, if it made any
    assert rec.types() == ["open", "close"]
    assert rec.payloads("close") == [{"code": 1000, "final": True}]
    assert not ann.connected


async def test_disconnect_while_reconnecting_stops_and_fails_the_outbox(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    rec = Recorder(ann)
    await ann.connect()
    await ann.join_room(ROOM)
    server.kill()
    await rec.until(lambda: rec.of("reconnect"))
    pending = asyncio.ensure_future(ann.send_chat_message(ROOM, "never sent"))
    await asyncio.sleep(0)
    await ann.disconnect()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(pending, WAIT)
    assert rec.payloads("close")[-1] == {"code": 1000, "final": True}
    attempts = len(rec.of("reconnect"))
    await server.start()
    await asyncio.sleep(0.5)  # ample for several attempts with a 0.3 s cap, if it made any
    assert len(rec.of("reconnect")) == attempts
    assert not ann.connected
    history = await _rest_history(server)
    assert history == []


async def _rest_history(server: "Restartable") -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{server.url}/api/rooms/{ROOM}/messages",
            headers={"X-Hubbub-User": "auditor"}) as resp:
        assert resp.status == 200
        messages: list[dict[str, Any]] = (await resp.json())["messages"]
        return messages


async def test_no_reconnect_after_4001_token_expired_live(make_client: ClientFactory) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        ann = make_client(ws_url(server), token=token("ann", ttl_s=2, now_s=int(time.time())))
        rec = Recorder(ann)
        await ann.connect()
        await ann.join_room(ROOM)
        await rec.until(lambda: rec.of("close"), timeout=WAIT + 2)
        assert rec.payloads("close") == [{"code": 4001, "final": True}]
        await asyncio.sleep(0.5)
        assert rec.types() == ["open", "close"]
        assert not ann.connected
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(ann.send_chat_message(ROOM, "too late"), WAIT)


async def test_no_more_attempts_when_the_reauthentication_fails(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable("--jwt-secret", SECRET)
    await server.start()
    now = int(time.time())
    ann = make_client(server.ws, token=token("ann", ttl_s=2, now_s=now))
    rec = Recorder(ann)
    await ann.connect()
    await ann.join_room(ROOM)
    server.kill()  # before the token expires: the live connection is not closed by exp
    await rec.until(lambda: rec.of("close"))
    pending = asyncio.ensure_future(ann.send_chat_message(ROOM, "waits in the outbox"))
    await asyncio.sleep(now + 3 - time.time())  # the token has expired when the server is back
    await server.start()

    await rec.until(lambda: any(p["final"] for p in rec.payloads("close")))
    assert rec.payloads("close")[-1] == {"code": 4001, "final": True}
    attempts = len(rec.of("reconnect"))
    await asyncio.sleep(0.5)  # ample for several attempts with a 0.3 s cap, if it made any
    assert len(rec.of("reconnect")) == attempts
    assert rec.types()[-1] == "close"
    assert not ann.connected
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(pending, WAIT)  # the outbox fails instead of waiting forever


@pytest.mark.parametrize(("missed", "recovered"), [(3, True), (5, False)])
async def test_more_missed_than_the_recovery_limit_falls_back_to_history(
        restartable: Callable[..., Restartable], make_client: ClientFactory,
        missed: int, recovered: bool) -> None:
    async with gated_pair(restartable, make_client, "--recovery-limit", "3") as (
            server, gate, ann, bob, rec, bob_rec):
        await bob.send_chat_message(ROOM, "seen")
        await rec.until(lambda: rec.chats())

        gate.shut()
        server.kill()
        await bob_rec.until(lambda: bob_rec.of("close"))
        await server.start()
        await bob.wait_connected(WAIT)
        for i in range(missed):
            await bob.send_chat_message(ROOM, f"missed {i}")
        last = 1 + missed

        gate.open = True
        await rec.until(lambda: rejoined(rec))
        assert rejoined(rec) == [{"roomId": ROOM, "recovered": recovered, "lastSeq": last}]
        await ann.ping()
        if recovered:
            assert [c.seq for c in rec.chats()] == list(range(1, last + 1))
        else:
            assert [c.seq for c in rec.chats()] == [1]  # nothing replayed...
            pages: list[f.HistoryMessage] = []
            before = last + 1
            while True:  # ...the app pages back through history instead
                page = await ann.history(ROOM, before_seq=before, limit=2)
                pages = page.messages + pages
                before = page.messages[0].seq
                if not page.has_more or before <= 2:
                    break
            assert [m.content for m in pages if m.seq > 1] == [
                f"missed {i}" for i in range(missed)]

        # Live events go on right after lastSeq, once.
        await bob.send_chat_message(ROOM, "live")
        await rec.until(lambda: rec.chats()[-1].content == "live")
        assert rec.chats()[-1].seq == last + 1
        assert len({c.seq for c in rec.chats()}) == len(rec.chats())


async def test_a_server_that_lost_its_data_is_followed_from_its_new_position(
        make_client: ClientFactory) -> None:
    # A `sqlite://:memory:` server restarted: seqs start again at 1. The client must take
    # the server's lastSeq, not discard every new event as "already seen".
    port = free_port()
    async with running_server(port=port) as server:
        ann = make_client(ws_url(server), "ann")
        rec = Recorder(ann)
        await ann.connect()
        await ann.join_room(ROOM)
        for i in range(3):
            await ann.send_chat_message(ROOM, f"old {i}")
    await rec.until(lambda: rec.of("close"))
    async with running_server(port=port) as server:
        await rec.until(lambda: rejoined(rec))
        assert rejoined(rec)[0]["lastSeq"] == 0
        bob = make_client(ws_url(server), "bob")
        await bob.connect()
        await bob.join_room(ROOM)
        await bob.send_chat_message(ROOM, "new 0")
        await rec.until(lambda: rec.chats()[-1].content == "new 0")
        assert [c.seq for c in rec.chats()] == [1, 2, 3, 1]


async def test_async_state_handlers_run(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    seen: list[str] = []

    async def on_state(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(event.type)

    for type_ in ("open", "close", "reconnect", "rejoined"):
        ann.on(type_, on_state)
    await ann.connect()
    await ann.join_room(ROOM)
    server.kill()
    await server.start()
    await eventually(lambda: "rejoined" in seen)
    assert seen[:2] == ["open", "close"]
    assert seen[-2:] == ["open", "rejoined"]


# ---- recovery after a drop: what the clients' audit found (docs/reference/python-client.md)


async def test_a_transient_error_answering_the_reauthentication_is_retried(
        restartable: Callable[..., Restartable], make_client: ClientFactory,
        dedicated_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # With --redis, authenticating a user's first connection on a node asks the directory:
    # while Redis is down `auth` is answered with `internal`. That is the server's trouble
    # of the moment, not a refusal of the credentials: the client goes on trying and comes
    # back, with its queued chat, once Redis does.
    caplog.set_level("INFO", logger="hubbub.client")
    server = restartable("--redis", dedicated_redis.url())
    await server.start()
    async with Gate(server.port) as gate:
        ann = make_client(gate.ws, "ann")
        rec = Recorder(ann)
        await ann.connect()
        await ann.join_room(ROOM)
        dedicated_redis.shutdown()
        gate.shut()
        await rec.until(lambda: rec.of("close"))
        pending = asyncio.ensure_future(ann.send_chat_message(ROOM, "queued while away"))
        gate.open = True
        await eventually(lambda: any("internal" in r.getMessage() for r in caplog.records),
                         timeout=3 * WAIT)
        assert not pending.done()
        dedicated_redis.start_again()
        await ann.wait_connected(3 * WAIT)
        async with asyncio.timeout(WAIT):
            ack = await pending
        assert ack.seq == 1
        assert all(not c["final"] for c in rec.payloads("close"))
        assert 4001 not in {c["code"] for c in rec.payloads("close")}
        await rec.until(lambda: rejoined(rec))


async def test_a_frame_over_the_servers_max_frame_fails_at_once_and_is_never_sent(
        make_client: ClientFactory) -> None:
    # The server closes a connection that sends a frame over --max-frame with 1009. A chat
    # that big, resent after every reconnect, would loop for ever and block the outbox.
    async with running_server() as server:
        ann = make_client(ws_url(server), "ann")
        rec = Recorder(ann)
        welcome = await ann.connect()
        await ann.join_room(ROOM)
        big = "x" * (welcome.limits.max_frame_bytes + 1)
        with pytest.raises(HubbubRequestError) as err:
            await asyncio.wait_for(ann.send_chat_message(ROOM, big), WAIT)
        assert err.value.code == "too_large"
        with pytest.raises(HubbubRequestError) as err:  # any request, not only chats
            await asyncio.wait_for(ann.edit_message(ROOM, "m1", big), WAIT)
        assert err.value.code == "too_large"
        assert (await ann.send_chat_message(ROOM, "small")).seq == 1
        assert ann.connected
        assert not rec.of("close")


async def test_queued_chats_too_large_for_the_server_they_reach_fail_with_too_large(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    # Another node (or a new configuration) may take smaller frames than the one the chats
    # were queued for: each welcome checks the outbox again.
    server = restartable()
    await server.start()
    ann = make_client(server.ws, "ann")
    rec = Recorder(ann)
    await ann.connect()
    await ann.join_room(ROOM)
    server.kill()
    await rec.until(lambda: rec.of("close"))
    big = asyncio.ensure_future(ann.send_chat_message(ROOM, "x" * 20000))
    small = asyncio.ensure_future(ann.send_chat_message(ROOM, "after it"))
    server.flags = ("--max-frame", "16384")
    await server.start()
    async with asyncio.timeout(WAIT):
        with pytest.raises(HubbubRequestError) as err:
            await big
        assert err.value.code == "too_large"
        assert (await small).seq == 1
    assert [c["final"] for c in rec.payloads("close")] == [False]  # only the kill: no 1009


async def test_a_rejoin_answered_after_the_request_timeout_loses_nothing(
        restartable: Callable[..., Restartable], make_client: ClientFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    # A slow link: the re-join's ack, with the missed events, comes after request_timeout.
    # The client must not forget that join (its missed events would be lost for good): it
    # drops that connection and re-joins on the next one with the same `since`.
    server = restartable()
    await server.start()
    async with Gate(server.port) as gate:
        ann = make_client(gate.ws, "ann", request_timeout=2.0)
        bob = make_client(server.ws, "bob")
        rec = Recorder(ann)
        await in_room(ann, bob)
        await bob.send_chat_message(ROOM, "seen")
        await rec.until(lambda: rec.chats())
        gate.shut()
        await rec.until(lambda: rec.of("close"))
        for i in range(3):
            await bob.send_chat_message(ROOM, f"away {i}")
        gate.stall = b'"missed":'
        gate.open = True
        await eventually(lambda: any("rejoining" in r.getMessage() for r in caplog.records),
                         timeout=3 * WAIT)
        gate.release()  # the late ack reaches a connection the client has given up on
        await rec.until(lambda: rejoined(rec), timeout=3 * WAIT)
        await ann.wait_connected(WAIT)
        await bob.send_chat_message(ROOM, "live")
        await rec.until(lambda: rec.chats()[-1].content == "live")
        assert [(c.seq, c.content) for c in rec.chats()] == [
            (1, "seen"), (2, "away 0"), (3, "away 1"), (4, "away 2"), (5, "live")]
        assert rejoined(rec)[-1] == {"roomId": ROOM, "recovered": True, "lastSeq": 4}


async def test_an_open_handler_that_joins_a_room_loses_none_of_its_missed_events(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    # An app that (re)joins its rooms itself when the connection opens. Its join must not
    # overtake the client's re-join, nor move the room past the events it has not seen.
    server = restartable()
    await server.start()
    async with Gate(server.port) as gate:
        ann = make_client(gate.ws, "ann")
        bob = make_client(server.ws, "bob")
        rec = Recorder(ann)
        joined: list[f.JoinAck] = []

        async def join_on_open(event: Event) -> None:
            joined.append(await ann.join_room(ROOM))

        await in_room(ann, bob)
        ann.on("open", join_on_open)
        await bob.send_chat_message(ROOM, "seen")
        await rec.until(lambda: rec.chats())
        gate.shut()
        await rec.until(lambda: rec.of("close"))
        for i in range(3):
            await bob.send_chat_message(ROOM, f"away {i}")
        gate.open = True
        await rec.until(lambda: rejoined(rec))
        await eventually(lambda: joined)
        await bob.send_chat_message(ROOM, "live")
        await rec.until(lambda: rec.chats()[-1].content == "live")
        assert [(c.seq, c.content) for c in rec.chats()] == [
            (1, "seen"), (2, "away 0"), (3, "away 1"), (4, "away 2"), (5, "live")]
        assert joined[0].last_seq == 4


OFFER = {"type": "offer", "sdp": "v=0 offer"}
ANSWER = {"type": "answer", "sdp": "v=0 answer"}


async def test_a_dropped_connection_ends_its_calls_on_both_sides(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    # The server ends the call when ann's only connection drops, and tells bob. Ann's app,
    # offline then, would never hear of it: her client ends the call itself, visibly.
    async with gated_pair(restartable, make_client) as (_server, gate, ann, bob, ann_rec,
                                                        bob_rec):
        call_id = await ann.send_webrtc_offer("bob", OFFER)
        await bob_rec.until(lambda: bob_rec.of("webrtc"))
        await bob.send_webrtc_answer("ann", ANSWER, call_id)
        await ann_rec.until(lambda: ann_rec.of("webrtc"))

        gate.shut()
        await ann_rec.until(lambda: ann_rec.of("call_end"))
        ended = ann_rec.payloads("call_end")
        assert ended == [f.CallEndEvent(call_id=call_id, by="ann", reason="disconnected",
                                        local=True)]
        assert ann_rec.types().index("close") < ann_rec.types().index("call_end")
        await bob_rec.until(lambda: bob_rec.of("call_end"))
        assert bob_rec.payloads("call_end") == [
            f.CallEndEvent(call_id=call_id, by="ann", reason="disconnected")]

        gate.open = True
        await ann_rec.until(lambda: rejoined(ann_rec))
        await ann.ping()
        # Her client's own call_end got `conflict` (the call was over): not the app's
        # business. Nothing else ended, nothing twice.
        assert not ann_rec.of("error")
        assert len(ann_rec.of("call_end")) == 1
        assert len(bob_rec.of("call_end")) == 1


async def test_after_the_drop_the_call_is_ended_even_if_another_device_kept_it(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    # Ann has a second connection: her first one dropping does not end the call on the
    # server, only on that device. Back, it hangs up, so that bob does not stay in a call
    # nobody is in.
    server = restartable()
    await server.start()
    async with Gate(server.port) as gate:
        ann = make_client(gate.ws, "ann")
        ann_tablet = make_client(server.ws, "ann")
        bob = make_client(server.ws, "bob")
        ann_rec, bob_rec = Recorder(ann), Recorder(bob)
        await in_room(ann, ann_tablet, bob)
        call_id = await ann.send_webrtc_offer("bob", OFFER)
        await bob_rec.until(lambda: bob_rec.of("webrtc"))
        await bob.send_webrtc_answer("ann", ANSWER, call_id)
        await ann_rec.until(lambda: ann_rec.of("webrtc"))

        gate.shut()
        await ann_rec.until(lambda: ann_rec.of("call_end"))
        assert ann_rec.payloads("call_end")[0].local is True
        gate.open = True
        await bob_rec.until(lambda: bob_rec.of("call_end"))
        assert bob_rec.payloads("call_end") == [
            f.CallEndEvent(call_id=call_id, by="ann", reason="disconnected")]
        await ann_rec.until(lambda: rejoined(ann_rec))
        assert not ann_rec.of("error")


async def test_a_call_that_only_rang_on_the_dropped_device_still_rings_on_the_others(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    server = restartable()
    await server.start()
    async with Gate(server.port) as gate:
        ann = make_client(server.ws, "ann")
        bob_phone = make_client(gate.ws, "bob")
        bob_laptop = make_client(server.ws, "bob")
        ann_rec, phone_rec, laptop_rec = Recorder(ann), Recorder(bob_phone), Recorder(bob_laptop)
        await in_room(ann, bob_phone, bob_laptop)
        call_id = await ann.send_webrtc_offer("bob", OFFER)
        await phone_rec.until(lambda: phone_rec.of("webrtc"))
        await laptop_rec.until(lambda: laptop_rec.of("webrtc"))

        gate.shut()  # the phone stops ringing (for it the call is gone) ...
        await phone_rec.until(lambda: phone_rec.of("call_end"))
        assert phone_rec.payloads("call_end")[0].local is True
        gate.open = True
        await phone_rec.until(lambda: rejoined(phone_rec))
        await bob_phone.ping()
        # ... but it does not hang up a call it never answered: the laptop still can.
        await bob_laptop.send_webrtc_answer("ann", ANSWER, call_id)
        await ann_rec.until(lambda: ann_rec.of("webrtc"))
        assert ann_rec.payloads("webrtc")[0].kind == "answer"
        assert not ann_rec.of("call_end")


async def test_calls_that_ended_normally_are_not_ended_again_by_a_drop(
        restartable: Callable[..., Restartable], make_client: ClientFactory) -> None:
    async with gated_pair(restartable, make_client) as (_server, gate, ann, bob, ann_rec,
                                                        bob_rec):
        hung_up = await ann.send_webrtc_offer("bob", OFFER)
        await bob_rec.until(lambda: bob_rec.of("webrtc"))
        await bob.send_webrtc_answer("ann", ANSWER, hung_up)
        await ann_rec.until(lambda: ann_rec.of("webrtc"))
        await bob.end_call(hung_up)
        await ann_rec.until(lambda: ann_rec.of("call_end"))
        declined = await ann.send_webrtc_offer("bob", OFFER)
        await bob_rec.until(lambda: len(bob_rec.of("webrtc")) == 2)
        await bob.reject_call(declined)
        await ann_rec.until(lambda: ann_rec.of("call_reject"))
        mine = await ann.send_webrtc_offer("bob", OFFER)
        await ann.end_call(mine)

        gate.shut()
        await ann_rec.until(lambda: ann_rec.of("close"))
        gate.open = True
        await ann_rec.until(lambda: rejoined(ann_rec))
        await ann.ping()
        assert [p.reason for p in ann_rec.payloads("call_end")] == ["hangup"]
        assert not any(p.local for p in ann_rec.payloads("call_end"))


WELCOME = {"sessionId": "s1", "userId": "ann", "username": "ann", "serverTime": 1,
           "heartbeatMs": 0, "protocol": 1, "iceServers": [],
           "limits": {"maxFrameBytes": 65536, "maxRoomsPerConnection": 100,
                      "maxContentChars": 4000, "framesPerSecond": 100.0,
                      "chatsPerSecond": 20.0, "chatBurst": 40, "typingTimeoutMs": 3000}}


async def test_no_reconnect_after_1008_policy(make_client: ClientFactory) -> None:
    # hubbub's 1008 is for a foreign Origin, which the Python client never sends, so 1008
    # comes from a stand-in: a server that welcomes, then closes with 1008 (policy).
    connections = 0

    async def endpoint(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        auth = await ws.receive_json()
        await ws.send_json({"type": "welcome", "id": auth.get("id"), "payload": WELCOME})
        await ws.close(code=1008, message=b"policy")
        return ws

    app = web.Application()
    app.router.add_get("/ws", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        ann = make_client(f"ws://127.0.0.1:{port}/ws", "ann")
        rec = Recorder(ann)
        await ann.connect()
        await rec.until(lambda: rec.of("close"))
        assert rec.payloads("close") == [{"code": 1008, "final": True}]
        await asyncio.sleep(0.5)  # ample for several attempts with a 0.3 s cap, if it made any
        assert rec.types() == ["open", "close"] and connections == 1
    finally:
        await runner.cleanup()
