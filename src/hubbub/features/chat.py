"""Persisted room events (PROTOCOL §Client → server: chat, message_edit, message_delete,
reaction, history; §Ordering, persistence and delivery).

Each handler checks membership and content, awaits the store (durable when it returns),
then acks and broadcasts. A refusal from the store is a coded error and changes nothing.
"""

from functools import partial

from hubbub.core import messages as rules
from hubbub.core.effects import Effects, Reply, ToRoom
from hubbub.core.identity import Identity
from hubbub.core.session import Session
from hubbub.errors import ProtocolError
from hubbub.features.node import Node
from hubbub.features.pending import Pending
from hubbub.features.typing_indicators import stop_typing
from hubbub.ids import RoomId, room_id
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    Chat,
    ChatAck,
    ChatEvent,
    DeleteAck,
    EditAck,
    History,
    HistoryAck,
    HistoryMessage,
    MessageDelete,
    MessageEdit,
    Reaction,
    ReactionAck,
)
from hubbub.store.base import NewChat


def _member_room(s: Session, raw: str | int) -> tuple[RoomId, Identity]:
    """Writing to a room needs this connection to be in it."""
    assert s.identity is not None
    if raw in s.rooms:  # joined, so checked then: the common case skips the pattern
        return raw, s.identity  # type: ignore[return-value]
    room = room_id(raw)
    if room not in s.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"join room {room!r} first")
    return room, s.identity


def handle_chat(node: Node, s: Session, frame: Chat) -> Pending[tuple[ChatEvent, bool]]:
    """Checks and queues the write now (the store keeps queue order); the effects follow
    from its result (`Pending`). So a connection's chats right behind one another share a
    group commit (ws.py, `Client._overlap`), and none needs a task."""
    p = frame.payload
    room, ident = _member_room(s, p.room_id)
    content = rules.check_content(p.content, node.limits.max_content_chars)
    stored = node.store.append_chat(NewChat(
        room_id=room, user_id=ident.user_id, username=ident.username, content=content,
        created_at=node.clock.now_ms(), client_msg_id=p.client_msg_id, reply_to=p.reply_to))
    return Pending(stored, partial(_chat_stored, node, s, frame.id, room, ident))


def _chat_stored(node: Node, s: Session, frame_id: str | None, room: RoomId,
                 ident: Identity, stored: tuple[ChatEvent, bool]) -> Effects:
    event, duplicate = stored
    effects: Effects = []
    if frame_id is not None:
        effects.append(Reply(s.conn, "ack", ChatAck(
            message_id=event.message_id, seq=event.seq, created_at=event.created_at,
            duplicate=duplicate), frame_id))
    if duplicate:  # PROTOCOL §Ordering: a retry is acked again, never broadcast twice
        return effects
    effects.append(ToRoom(room, "chat", event, seq=event.seq))
    effects += stop_typing(node, room, ident.user_id, ident.username)
    return effects


async def handle_edit(node: Node, s: Session, frame: MessageEdit) -> Effects:
    p = frame.payload
    room, ident = _member_room(s, p.room_id)
    content = rules.check_content(p.content, node.limits.max_content_chars)
    event = await node.store.edit_message(room, p.message_id, ident.user_id, content,
                                          node.clock.now_ms())
    return [Reply(s.conn, "ack", EditAck(message_id=event.message_id, seq=event.seq,
                                         edited_at=event.edited_at), frame.id),
            ToRoom(room, "message_edit", event, seq=event.seq)]


async def handle_delete(node: Node, s: Session, frame: MessageDelete) -> Effects:
    p = frame.payload
    room, ident = _member_room(s, p.room_id)
    event = await node.store.delete_message(room, p.message_id, ident.user_id, ident.admin,
                                            node.clock.now_ms())
    return [Reply(s.conn, "ack", DeleteAck(message_id=event.message_id, seq=event.seq,
                                           deleted_at=event.deleted_at), frame.id),
            ToRoom(room, "message_delete", event, seq=event.seq)]


async def handle_reaction(node: Node, s: Session, frame: Reaction) -> Effects:
    p = frame.payload
    room, ident = _member_room(s, p.room_id)
    if rules.is_blank(p.emoji):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "emoji must not be blank")
    event = await node.store.react(room, p.message_id, ident.user_id, p.emoji, p.op,
                                   node.clock.now_ms())
    ack = Reply(s.conn, "ack", ReactionAck(message_id=p.message_id, emoji=p.emoji, op=p.op,
                                           seq=event.seq if event else None), frame.id)
    return [ack] if event is None else [ack, ToRoom(room, "reaction", event, seq=event.seq)]


async def read_history(node: Node, ident: Identity, room: RoomId, before_seq: int | None,
                       after_seq: int | None, limit: int) -> tuple[list[HistoryMessage], bool]:
    """Reading needs the right to join the room (PROTOCOL §history, REST history)."""
    if not ident.may_join(room):
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you may not read room {room!r}")
    rules.page(before_seq, after_seq, limit)
    return await node.store.history(room, before_seq, after_seq, limit)


async def handle_history(node: Node, s: Session, frame: History) -> Effects:
    assert s.identity is not None
    p = frame.payload
    room = room_id(p.room_id)
    messages, has_more = await read_history(node, s.identity, room, p.before_seq, p.after_seq,
                                            p.limit)
    return [Reply(s.conn, "ack", HistoryAck(room_id=room, messages=messages,
                                            has_more=has_more), frame.id)]
