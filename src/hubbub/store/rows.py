"""Row shapes shared by the SQL stores: the column lists they select and how a row
becomes the wire struct, written once for SQLite and PostgreSQL alike."""

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import msgspec

from hubbub.ids import message_id
from hubbub.protocol.frames import CallRecord, ChatEvent, HistoryMessage, StoredFrame
from hubbub.store.base import NewChat

_encode = msgspec.json.Encoder().encode

MESSAGE_COLS = ("message_id, seq, user_id, username, content, created_at, edited_at, "
                "deleted_at, client_msg_id, reply_to")
# A stored chat as its event went out: the content it was sent with, NULL once deleted
# (docs/decisions/0033-a-chat-is-stored-once.md).
CHAT_EVENT_COLS = ("message_id, seq, user_id, username, coalesce(sent_content, content), "
                   "created_at, client_msg_id, reply_to")
CALL_COLS = ("call_id, caller, callee, room_id, started_at, answered_at, ended_at, "
             "end_reason, ended_by")


def history_message(room_id: str, r: Sequence[Any],
            reactions: dict[str, list[str]] | None) -> HistoryMessage:
    """A MESSAGE_COLS row as history shows it: a deleted message is a tombstone."""
    message_id, seq, user_id, username, content, created_at, edited_at, deleted_at = r[:8]
    if deleted_at is not None:
        return HistoryMessage(message_id=message_id, seq=seq, room_id=room_id,
                              user_id=user_id, created_at=created_at, content=None,
                              deleted=True, deleted_at=deleted_at)
    return HistoryMessage(message_id=message_id, seq=seq, room_id=room_id, user_id=user_id,
                          created_at=created_at, content=content, deleted=False,
                          username=username, edited_at=edited_at, reactions=reactions or {},
                          client_msg_id=r[8], reply_to=r[9])


def new_chat_event(chat: NewChat, seq: int) -> ChatEvent:
    """The event of a chat being stored now, with its new message id."""
    return ChatEvent(room_id=chat.room_id, message_id=message_id(chat.created_at), seq=seq,
                     user_id=chat.user_id, username=chat.username, content=chat.content,
                     created_at=chat.created_at, client_msg_id=chat.client_msg_id,
                     reply_to=chat.reply_to)


def replay(room_id: str, logged: Iterable[Sequence[Any]],
           chats: Iterable[Sequence[Any]]) -> list[StoredFrame]:
    """A stretch of a room's events in seq order, from its `(seq, type, payload)` rows of
    `events` and its CHAT_EVENT_COLS rows of `messages`: chats live in `messages` only,
    so between the two every seq of the stretch is there once (docs/decisions/0033)."""
    frames = [(seq, StoredFrame(type_, msgspec.Raw(payload.encode())))
              for seq, type_, payload in logged]
    frames += [(r[1], StoredFrame("chat", msgspec.Raw(_encode(ChatEvent(
        room_id=room_id, message_id=r[0], seq=r[1], user_id=r[2], username=r[3],
        content=r[4], created_at=r[5], client_msg_id=r[6], reply_to=r[7])))))
        for r in chats]
    frames.sort(key=itemgetter(0))
    return [frame for _, frame in frames]


def original_chat(r: Sequence[Any]) -> ChatEvent:
    """A `MESSAGE_COLS, room_id` row as the chat event a retry is answered with."""
    return ChatEvent(room_id=r[10], message_id=r[0], seq=r[1], user_id=r[2], username=r[3],
                     content=r[4] or "", created_at=r[5], client_msg_id=r[8], reply_to=r[9])


def call_record(r: Sequence[Any]) -> CallRecord:
    """A CALL_COLS row of the call log."""
    return CallRecord(call_id=r[0], caller=r[1], callee=r[2], room_id=r[3], started_at=r[4],
                      answered_at=r[5], ended_at=r[6], end_reason=r[7], ended_by=r[8])
