"""One typed struct per wire type (PROTOCOL.md §Client → server, §Server → client).

Inbound frames are a tagged union on `type`, so one msgspec pass decodes and validates
the envelope and its payload. Field names are snake_case here and camelCase on the wire.
Unknown payload fields are ignored (the original client sends extras such as `username`).
"""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

FrameId = Annotated[str, Meta(min_length=1, max_length=64)]
WireRoomId = str | int  # normalised by hubbub.ids.room_id
WireUserId = str | int
Seq = Annotated[int, Meta(ge=0, le=2**53)]
# A `username` in a payload: read only from a dev identity mode's first auth/presence
# frame (cut to 128 characters there, as a token's `name`). Elsewhere the field is ignored,
# so it is not checked: the original client sends the app's name with every
# presence/typing frame, and a long one must not get those refused.
Username = str
Status = Literal["online", "away", "busy"]
AnyStatus = Literal["online", "away", "busy", "offline"]


class Payload(Struct, rename="camel", kw_only=True):
    """Fields any payload may carry. `userId`/`from` are only compared with the
    authenticated identity (PROTOCOL §Authentication); they are never trusted."""

    user_id: WireUserId | None = None
    from_: WireUserId | None = field(default=None, name="from")


class EmptyPayload(Payload):
    pass


class AuthPayload(Payload):
    token: Annotated[str, Meta(max_length=8192)] | None = None
    username: Username | None = None


class PresencePayload(Payload):
    status: Status = "online"
    username: Username | None = None


class JoinRoomPayload(Payload):
    room_id: WireRoomId
    since: Seq | None = None


class LeaveRoomPayload(Payload):
    room_id: WireRoomId


class ChatPayload(Payload):
    room_id: WireRoomId
    content: str
    client_msg_id: FrameId | None = None
    reply_to: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class MessageEditPayload(Payload):
    room_id: WireRoomId
    message_id: Annotated[str, Meta(min_length=1, max_length=64)]
    content: str


class MessageDeletePayload(Payload):
    room_id: WireRoomId
    message_id: Annotated[str, Meta(min_length=1, max_length=64)]


class ReactionPayload(Payload):
    room_id: WireRoomId
    message_id: Annotated[str, Meta(min_length=1, max_length=64)]
    emoji: Annotated[str, Meta(min_length=1, max_length=32)]
    op: Literal["add", "remove"] = "add"


class TypingPayload(Payload):
    room_id: WireRoomId
    is_typing: bool


class HistoryPayload(Payload):
    room_id: WireRoomId
    before_seq: Seq | None = None
    after_seq: Seq | None = None
    limit: Annotated[int, Meta(ge=1, le=100)] = 50


class SessionDescription(Struct):
    type: Literal["offer", "answer", "pranswer", "rollback"]
    sdp: Annotated[str, Meta(max_length=60000)] = ""


class WebRTCPayload(Payload):
    kind: Literal["offer", "answer", "ice_candidate"]
    to: WireUserId
    call_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    room_id: WireRoomId | None = None
    sdp: SessionDescription | None = None
    candidate: dict[str, Any] | None = None


class CallControlPayload(Payload):
    call_id: Annotated[str, Meta(min_length=1, max_length=64)]
    reason: Annotated[str, Meta(max_length=64)] | None = None


# ---- inbound envelopes: one per type, tagged by `type` -------------------------------


class Inbound(Struct, tag_field="type", kw_only=True):
    id: FrameId | None = None


class Auth(Inbound, tag="auth"):
    payload: AuthPayload = field(default_factory=AuthPayload)


class Presence(Inbound, tag="presence"):
    payload: PresencePayload = field(default_factory=PresencePayload)


class JoinRoom(Inbound, tag="join_room"):
    payload: JoinRoomPayload


class LeaveRoom(Inbound, tag="leave_room"):
    payload: LeaveRoomPayload


class Chat(Inbound, tag="chat"):
    payload: ChatPayload


class MessageEdit(Inbound, tag="message_edit"):
    payload: MessageEditPayload


class MessageDelete(Inbound, tag="message_delete"):
    payload: MessageDeletePayload


class Reaction(Inbound, tag="reaction"):
    payload: ReactionPayload


class Typing(Inbound, tag="typing"):
    payload: TypingPayload


class History(Inbound, tag="history"):
    payload: HistoryPayload


class WebRTC(Inbound, tag="webrtc"):
    payload: WebRTCPayload


class CallReject(Inbound, tag="call_reject"):
    payload: CallControlPayload


class CallEnd(Inbound, tag="call_end"):
    payload: CallControlPayload


class CallHistoryPayload(Payload):
    limit: Annotated[int, Meta(ge=1, le=100)] = 20


class CallHistory(Inbound, tag="call_history"):
    payload: CallHistoryPayload = field(default_factory=CallHistoryPayload)


class Ping(Inbound, tag="ping"):
    payload: EmptyPayload = field(default_factory=EmptyPayload)


InboundFrame = (
    Auth
    | Presence
    | JoinRoom
    | LeaveRoom
    | Chat
    | MessageEdit
    | MessageDelete
    | Reaction
    | Typing
    | History
    | WebRTC
    | CallReject
    | CallEnd
    | CallHistory
    | Ping
)

INBOUND_TYPES: frozenset[str] = frozenset(
    str(t.__struct_config__.tag) for t in InboundFrame.__args__
)


# ---- outbound payloads ------------------------------------------------------------


class Out(Struct, rename="camel", omit_defaults=True, kw_only=True):
    """Base of every payload the server sends."""


class StoredFrame(Struct):
    """A persisted room event as it went out on the wire: `{type, payload}`."""

    type: str
    payload: msgspec.Raw


class ErrorPayload(Out):
    code: str
    message: str
    retry_after_ms: int | None = None


class Limits(Out):
    max_frame_bytes: int
    max_rooms_per_connection: int
    max_content_chars: int
    frames_per_second: float
    chats_per_second: float
    chat_burst: int
    typing_timeout_ms: int


class IceServer(Out):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Welcome(Out):
    session_id: str
    user_id: str
    username: str
    server_time: int
    heartbeat_ms: int
    protocol: int
    limits: Limits
    ice_servers: list[IceServer]
    admin: bool = False


class Pong(Out):
    server_time: int


class Member(Out):
    user_id: str
    username: str
    status: AnyStatus


class JoinAck(Out):
    room_id: str
    members: list[Member]
    last_seq: int
    missed: list[StoredFrame] | None = None
    recovered: bool | None = None


class RoomAck(Out):
    room_id: str


class PresenceAck(Out):
    status: AnyStatus


class EmptyAck(Out):
    pass


class PresenceEvent(Out):
    user_id: str
    username: str
    status: AnyStatus
    last_seen: int


class JoinRoomEvent(Out):
    room_id: str
    user_id: str
    username: str
    status: AnyStatus


class LeaveRoomEvent(Out):
    room_id: str
    user_id: str
    username: str


class TypingEvent(Out):
    room_id: str
    user_id: str
    username: str
    is_typing: bool


class AnnouncementEvent(Out):
    content: str
    created_at: int


class ChatEvent(Out):
    room_id: str
    message_id: str
    seq: int
    user_id: str
    username: str
    # None only in a replay (`missed`) of a message deleted since: its content is erased.
    content: str | None
    created_at: int
    client_msg_id: str | None = None
    reply_to: str | None = None


class MessageEditEvent(Out):
    room_id: str
    message_id: str
    seq: int
    user_id: str
    content: str | None  # None only in a replay of a message deleted since
    edited_at: int


class MessageDeleteEvent(Out):
    room_id: str
    message_id: str
    seq: int
    user_id: str
    deleted_at: int


class ReactionEvent(Out):
    room_id: str
    message_id: str
    seq: int
    user_id: str
    emoji: str
    op: Literal["add", "remove"]
    created_at: int


RoomEvent = ChatEvent | MessageEditEvent | MessageDeleteEvent | ReactionEvent

# The wire `type` of each persisted room event.
EVENT_TYPES: dict[type[Out], str] = {
    ChatEvent: "chat",
    MessageEditEvent: "message_edit",
    MessageDeleteEvent: "message_delete",
    ReactionEvent: "reaction",
}


class ChatAck(Out):
    message_id: str
    seq: int
    created_at: int
    duplicate: bool = False


class EditAck(Out):
    message_id: str
    seq: int
    edited_at: int


class DeleteAck(Out):
    message_id: str
    seq: int
    deleted_at: int


class ReactionAck(Out):
    message_id: str
    emoji: str
    op: Literal["add", "remove"]
    # None when the reaction was already in that state (a no-op: no event, no seq).
    seq: int | None = None


class HistoryMessage(Out):
    """The current state of one message (PROTOCOL §history): edits applied, reactions
    aggregated; a deleted message is a tombstone with `deleted: true, content: null`."""

    message_id: str
    seq: int
    room_id: str
    user_id: str
    created_at: int
    content: str | None
    deleted: bool
    username: str | None = None
    edited_at: int | None = None
    deleted_at: int | None = None
    reactions: dict[str, list[str]] | None = None
    reply_to: str | None = None
    client_msg_id: str | None = None


class HistoryAck(Out):
    room_id: str
    messages: list[HistoryMessage]
    has_more: bool


class WebRTCEvent(Out):
    kind: Literal["offer", "answer", "ice_candidate"]
    from_: str = field(name="from")
    to: str
    call_id: str
    room_id: str | None = None
    sdp: SessionDescription | None = None
    candidate: dict[str, Any] | None = None


class CallEndEvent(Out):
    """`call_end` and `call_reject`: who ended the call and why (PROTOCOL §Calls)."""

    call_id: str
    by: str
    reason: str
    # Never sent by the server: the clients set it on the `call_end` they emit themselves
    # for the calls a dropped connection ended (docs/reference/python-client.md).
    local: bool = False


class CallRecord(Out):
    """One finished call in the call log."""

    call_id: str
    caller: str
    callee: str
    started_at: int
    ended_at: int
    end_reason: str
    room_id: str | None = None
    answered_at: int | None = None
    ended_by: str | None = None
    duration_ms: int | None = None  # derived: from the answer to the end, if answered

    def __post_init__(self) -> None:
        self.duration_ms = None if self.answered_at is None else self.ended_at - self.answered_at


class CallHistoryAck(Out):
    calls: list[CallRecord]


class CallAck(Out):
    call_id: str
    state: Literal["ringing", "active", "ended"]


class OutFrame(Struct, omit_defaults=True, kw_only=True):
    type: str
    id: str | None = None
    payload: Any = None


_encoder = msgspec.json.Encoder()


def encode_stored(frame: StoredFrame) -> bytes:
    """A persisted event's frame, as it was first broadcast (the payload is kept raw)."""
    return _encoder.encode(OutFrame(type=frame.type, payload=frame.payload))


def encode(type_: str, payload: Out, frame_id: str | None = None) -> bytes:
    """JSON bytes of one server frame. Called once per frame, never per recipient."""
    return _encoder.encode(OutFrame(type=type_, id=frame_id, payload=payload))
