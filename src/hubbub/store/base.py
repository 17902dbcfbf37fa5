"""The Store contract. Every backend (SQLite now, PostgreSQL for scale-out) passes the
same contract suite (tests/contract/test_store.py).

Guarantees every implementation keeps:
- Order: each room is one log. Every persisted room event (chat, edit, delete, reaction)
  gets the room's next `seq` — 1, 2, 3, ... — assigned atomically with the write, with no
  gaps and no duplicates, even with several writers (nodes) at once.
- Durability: when a writing call returns, its event is committed (on SQLite with
  `synchronous=FULL`, fsynced). A caller acks only after that, so an acked message is
  never lost short of losing the disk.
- Queue order: `append_chat` takes its place among the writes when it is called, not when
  it is awaited, so chats queued one after another commit in that order (and a burst of
  them shares a group commit) without a task per chat.
- Idempotency: `append_chat` with a `client_msg_id` the same user already used returns the
  original event with `duplicate=True` and writes nothing.
- Atomic rules: permission and state checks of edits, deletes and reactions
  (`hubbub.core.messages`) run inside the same transaction as the write, so two racing
  changes cannot both pass a check that only one of them should.
- Refusals raise `ProtocolError` with the PROTOCOL error code and change nothing.
- Position reads are ordered with writes: `last_seq` and `events_since` see exactly the
  writes queued before them, and their callers resume before the callers of writes
  queued after them. A joining connection can therefore take its place in the room
  right after the read, and live events it then receives are exactly those after the
  position it was given: nothing is missed and nothing is delivered twice.
"""

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from hubbub.metrics import COMMIT_BUCKETS, Histogram
from hubbub.protocol.frames import (
    CallRecord,
    ChatEvent,
    HistoryMessage,
    MessageDeleteEvent,
    MessageEditEvent,
    ReactionEvent,
    StoredFrame,
)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x, and this is one per chat
class NewChat:
    room_id: str
    user_id: str
    username: str
    content: str
    created_at: int
    client_msg_id: str | None = None
    reply_to: str | None = None


@dataclass(slots=True, frozen=True)
class Recovery:
    """Events of a room after a seq. `complete` is False when more than the bound existed:
    then `events` is empty and the client falls back to `history` paging (or, read as a
    `page`, they are the first of them). `last_seq`: the store held every event of the
    room up to here, and `events` has all of them after the seq asked for, if complete
    or a page."""

    events: list[StoredFrame]
    complete: bool
    last_seq: int


class Store(ABC):
    # For /metrics: transactions the writer committed, and the operations that succeeded
    # in them (writes, and the position reads queued with them); their ratio is how well
    # group commit batches.
    commits: int = 0
    committed_writes: int = 0
    # Only PostgreSQL moves these (SQLite has one writer, and runs a batch once): writes
    # sent back to the queue after a deadlock with another node, and batches run again
    # write by write after a statement shared by several writes failed (a retry among
    # them, or a bad write).
    retried_writes: int = 0
    redone_batches: int = 0
    # Seconds per committed transaction (the writer's thread or task observes it).
    commit_seconds: Histogram

    def __init__(self) -> None:
        self.commit_seconds = Histogram(COMMIT_BUCKETS)

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema to the current version (migrations run here)."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending writes, then release the connection."""

    @abstractmethod
    def append_chat(self, chat: NewChat) -> "asyncio.Future[tuple[ChatEvent, bool]]":
        """Queue the write now; the future resolves once it is committed. Persists a chat as
        the room's next event and returns (event, duplicate): a retry with a
        `client_msg_id` this user already used returns the original and writes nothing."""

    @abstractmethod
    async def edit_message(self, room_id: str, message_id: str, user_id: str, content: str,
                           now_ms: int) -> MessageEditEvent:
        """Author only; not on a deleted message (`conflict`); unknown id -> `not_found`."""

    @abstractmethod
    async def delete_message(self, room_id: str, message_id: str, user_id: str, admin: bool,
                             now_ms: int) -> MessageDeleteEvent:
        """Author or admin. Leaves a tombstone and erases the content, also from the
        stored chat/edit events of that message (what `events_since` replays)."""

    @abstractmethod
    async def react(self, room_id: str, message_id: str, user_id: str, emoji: str,
                    op: Literal["add", "remove"], now_ms: int) -> ReactionEvent | None:
        """Add or remove one user's emoji. Returns None, and writes nothing, when the
        reaction is already in that state (adding twice is a no-op)."""

    @abstractmethod
    async def record_call(self, call: CallRecord) -> None:
        """Add a finished call to the call log (idempotent per call_id)."""

    @abstractmethod
    async def call_history(self, user_id: str, limit: int) -> list[CallRecord]:
        """The calls `user_id` took part in, as caller or callee, newest first."""

    @abstractmethod
    async def last_seq(self, room_id: str) -> int:
        """The seq of the room's latest event; 0 for a room with none (ordered with writes)."""

    @abstractmethod
    async def last_seqs(self, room_ids: list[str]) -> dict[str, int]:
        """The seq of each room's latest event (0 for a room with none), read in one go for
        a position check of many rooms. It sees every committed write, also another
        node's, but is not ordered with this store's queued writes: a fresh read, not a
        position to join at."""

    @abstractmethod
    async def events_since(self, room_id: str, after_seq: int, limit: int, *,
                           page: bool = False) -> Recovery:
        """Every event of the room with seq > after_seq, ascending, as it was broadcast, if
        there are at most `limit`; else none and `complete=False` (ordered with writes).
        With `page`, more than `limit` give the first `limit` of them, `complete=False` and
        `last_seq` = after_seq + limit: a node filling a hole reads it page by page."""

    @abstractmethod
    async def history(self, room_id: str, before_seq: int | None, after_seq: int | None,
                      limit: int) -> tuple[list[HistoryMessage], bool]:
        """A page of messages in their current state, ascending by seq, and `has_more`
        (more messages exist beyond the page in the direction paged). Neither bound: the
        latest `limit`; `before_seq`: the `limit` just below it; `after_seq`: just above."""
