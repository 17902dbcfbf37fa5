"""The Python client's API: PROTOCOL.md §Client libraries in snake_case, typed results.

    async with Client("ws://127.0.0.1:8080/ws", user_id="bot", username="Bot") as c:
        c.on("chat", lambda e: print(e.payload.content))
        await c.join_room("lobby")
        ack = await c.send_chat_message("lobby", "hello")
"""

import asyncio
import inspect
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import msgspec

from hubbub.client.connection import Backoff, Connection, Envelope, HubbubRequestError
from hubbub.protocol import frames as f

log = logging.getLogger("hubbub.client")


# The payload type of every server -> client frame, decoded for the handlers.
EVENT_TYPES: dict[str, type[msgspec.Struct]] = {
    "chat": f.ChatEvent,
    "message_edit": f.MessageEditEvent,
    "message_delete": f.MessageDeleteEvent,
    "reaction": f.ReactionEvent,
    "typing": f.TypingEvent,
    "presence": f.PresenceEvent,
    "join_room": f.JoinRoomEvent,
    "leave_room": f.LeaveRoomEvent,
    "webrtc": f.WebRTCEvent,
    "call_end": f.CallEndEvent,
    "call_reject": f.CallEndEvent,
    "announcement": f.AnnouncementEvent,
    "error": f.ErrorPayload,
}


@dataclass(frozen=True, slots=True)
class Event:
    """What a handler receives: the frame's type and its typed payload. Connection
    events (`open`, `close`, `reconnect`, `rejoined`) carry a dict."""

    type: str
    payload: Any


Handler = Callable[[Event], Awaitable[None] | None]


def _decode(type_: str, raw: msgspec.Raw) -> Any:
    kind = EVENT_TYPES.get(type_)
    if kind is not None:
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError as exc:  # deliver it anyway, untyped, rather than drop it
            log.warning("%s event does not match %s: %s", type_, kind.__name__, exc)
    return msgspec.json.decode(raw)


class Client:
    def __init__(self, url: str, *, token: str | None = None, user_id: str | None = None,
                 username: str | None = None, reconnect: bool = True,
                 backoff_base: float = 0.5, backoff_cap: float = 20.0,
                 request_timeout: float = 10.0) -> None:
        if token is None and user_id is None:
            raise ValueError("give a token (JWT mode) or a user_id (dev identity mode)")
        auth: dict[str, Any] = {"token": token} if token else {
            "userId": user_id, "username": username or user_id}
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._queue: asyncio.Queue[Event] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()  # running coroutine handlers
        self._conn = Connection(url, auth, self._on_frame, self._on_state, reconnect=reconnect,
                                backoff=Backoff(backoff_base, backoff_cap),
                                request_timeout=request_timeout)
        self.welcome: f.Welcome | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    async def connect(self) -> f.Welcome:
        """Open and authenticate; returns the server's `welcome`."""
        raw = await self._conn.open()
        self.welcome = msgspec.json.decode(raw, type=f.Welcome)
        self._emit(Event("open", {"reconnected": False}))
        return self.welcome

    async def disconnect(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.disconnect()

    @property
    def connected(self) -> bool:
        return self._conn.connected

    async def wait_connected(self, timeout: float | None = None) -> None:
        await self._conn.wait_connected(timeout)

    # ---- events ---------------------------------------------------------------------------
    def on(self, type_: str, handler: Handler) -> None:
        self._handlers[type_].append(handler)

    def off(self, type_: str, handler: Handler) -> None:
        if handler in self._handlers.get(type_, []):
            self._handlers[type_].remove(handler)

    async def next_event(self, *types: str, timeout: float | None = 10.0) -> Event:
        """The next event of one of `types` (any type if none) that arrives from now on."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            event = await asyncio.wait_for(self._queue.get(), left)
            if not types or event.type in types:
                return event

    def _emit(self, event: Event) -> None:
        """Call the handlers in order. A coroutine handler runs as a task of its own (it
        starts in order, right after): it may await requests, whose acks the connection's
        reader delivers, and it may call disconnect(). An exception in a handler is logged,
        never fatal to the client."""
        if self._queue is not None:
            self._queue.put_nowait(event)
        for handler in list(self._handlers.get(event.type, ())):
            try:
                result = handler(event)
            except Exception:
                log.exception("%s handler %r failed", event.type, handler)
                continue
            if result is not None and inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._handler_done)

    def _handler_done(self, task: "asyncio.Future[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a handler failed", exc_info=task.exception())

    def _on_frame(self, env: Envelope) -> None:
        self._emit(Event(env.type, _decode(env.type, env.payload)))

    def _on_state(self, state: str, info: dict[str, Any]) -> None:
        if state == "open":
            raw = self._conn.welcome
            if raw is not None:
                self.welcome = msgspec.json.decode(raw, type=f.Welcome)
        self._emit(Event(state, info))

    # ---- operations (PROTOCOL §Client libraries, snake_case) -------------------------------
    async def set_presence(self, status: Literal["online", "away", "busy"]) -> None:
        """Set your status; it is restored after each reconnect."""
        await self._conn.request("presence", {"status": status})
        self._conn.status = status

    async def join_room(self, room_id: str | int, since: int | None = None) -> f.JoinAck:
        return msgspec.json.decode(await self._conn.join(str(room_id), since), type=f.JoinAck)

    async def leave_room(self, room_id: str | int) -> None:
        self._conn.rooms.pop(str(room_id), None)
        await self._conn.request("leave_room", {"roomId": str(room_id)})

    async def send_chat_message(self, room_id: str | int, content: str, *,
                                reply_to: str | None = None,
                                client_msg_id: str | None = None) -> f.ChatAck:
        """Persisted, then acked. Survives reconnects: re-sent with the same clientMsgId
        until acked, and the server never posts it twice."""
        payload: dict[str, Any] = {"roomId": str(room_id), "content": content,
                                   "clientMsgId": client_msg_id or uuid.uuid4().hex}
        if reply_to is not None:
            payload["replyTo"] = reply_to
        return msgspec.json.decode(await self._conn.send_chat(payload), type=f.ChatAck)

    async def edit_message(self, room_id: str | int, message_id: str, content: str) -> f.EditAck:
        raw = await self._conn.request("message_edit", {
            "roomId": str(room_id), "messageId": message_id, "content": content})
        return msgspec.json.decode(raw, type=f.EditAck)

    async def delete_message(self, room_id: str | int, message_id: str) -> f.DeleteAck:
        raw = await self._conn.request("message_delete", {
            "roomId": str(room_id), "messageId": message_id})
        return msgspec.json.decode(raw, type=f.DeleteAck)

    async def react(self, room_id: str | int, message_id: str, emoji: str,
                    op: Literal["add", "remove"] = "add") -> f.ReactionAck:
        raw = await self._conn.request("reaction", {
            "roomId": str(room_id), "messageId": message_id, "emoji": emoji, "op": op})
        return msgspec.json.decode(raw, type=f.ReactionAck)

    async def send_typing_indicator(self, room_id: str | int, is_typing: bool) -> None:
        await self._conn.send("typing", {"roomId": str(room_id), "isTyping": is_typing})

    async def history(self, room_id: str | int, *, before_seq: int | None = None,
                      after_seq: int | None = None, limit: int = 50) -> f.HistoryAck:
        payload: dict[str, Any] = {"roomId": str(room_id), "limit": limit}
        if before_seq is not None:
            payload["beforeSeq"] = before_seq
        if after_seq is not None:
            payload["afterSeq"] = after_seq
        return msgspec.json.decode(await self._conn.request("history", payload),
                                   type=f.HistoryAck)

    async def send_webrtc_offer(self, to: str, offer: dict[str, str],
                                call_id: str | None = None,
                                room_id: str | None = None) -> str:
        """Start (or renegotiate) a call; returns the callId."""
        call_id = call_id or uuid.uuid4().hex
        payload: dict[str, Any] = {"kind": "offer", "to": to, "callId": call_id, "sdp": offer}
        if room_id is not None:
            payload["roomId"] = room_id
        await self._conn.request("webrtc", payload)
        return call_id

    async def send_webrtc_answer(self, to: str, answer: dict[str, str], call_id: str) -> None:
        await self._conn.request("webrtc", {"kind": "answer", "to": to, "callId": call_id,
                                            "sdp": answer})

    async def send_ice_candidate(self, to: str, candidate: dict[str, Any] | None,
                                 call_id: str) -> None:
        await self._conn.request("webrtc", {"kind": "ice_candidate", "to": to,
                                            "callId": call_id, "candidate": candidate})

    async def reject_call(self, call_id: str, reason: str | None = None) -> None:
        await self._conn.request("call_reject", _reason({"callId": call_id}, reason))

    async def end_call(self, call_id: str, reason: str | None = None) -> None:
        await self._conn.request("call_end", _reason({"callId": call_id}, reason))

    async def call_history(self, limit: int = 20) -> list[f.CallRecord]:
        raw = await self._conn.request("call_history", {"limit": limit})
        return msgspec.json.decode(raw, type=f.CallHistoryAck).calls

    async def ping(self) -> int:
        """Round trip to the server; returns its serverTime."""
        raw = await self._conn.request("ping", {})
        return msgspec.json.decode(raw, type=f.Pong).server_time


def _reason(payload: dict[str, Any], reason: str | None) -> dict[str, Any]:
    if reason is not None:
        payload["reason"] = reason
    return payload


__all__ = ["Client", "Event", "HubbubRequestError"]
