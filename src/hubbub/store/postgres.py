"""The PostgreSQL Store (asyncpg), for several nodes sharing one database (DESIGN §1).

Same contract as the SQLite store (`base.py`), and the same shape inside a node: writes
are queued, and every write that arrived while the previous transaction was committing is
committed in the next single transaction on the node's one writer connection, each in its
own savepoint so one refused write does not undo the others; chats side by side in a batch
are stored by one statement (docs/decisions/0028). Then the callers are resumed
in queue order, so acks and broadcasts leave in seq order. Position reads (`last_seq`,
`events_since`) go through the same queue. `history` and `call_history` use a small pool.

Across nodes: a batch starts by locking the rows of the rooms it will write, in room_id
order (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING last_seq`, which also creates new
rooms). The row locks serialise the writers of a room across nodes until commit, so the
batch can hand out `last_seq + 1, + 2, ...` and store the new `last_seq` before it commits:
no gaps, no duplicates. Taking the locks in one global order means two nodes' batches never
deadlock on them; the rare deadlock elsewhere (two nodes inserting the same clientMsgId in
different rooms) sends the write back to the head of the queue for the next transaction.
Idempotency rests on the unique index on (user_id, client_msg_id); rule checks read the
message row with `SELECT ... FOR UPDATE` inside the transaction. A commit returns once
PostgreSQL has flushed it (`synchronous_commit`, on by default: keep it on).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import msgspec

from hubbub.core import messages as rules
from hubbub.errors import ConfigError, ProtocolError, StoreUnavailable
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    CallRecord,
    ChatEvent,
    HistoryMessage,
    MessageDeleteEvent,
    MessageEditEvent,
    ReactionEvent,
)
from hubbub.store.base import NewChat, Recovery, Store
from hubbub.store.migrations import refuse_newer, scripts
from hubbub.store.rows import (
    CALL_COLS,
    CHAT_EVENT_COLS,
    MESSAGE_COLS,
    call_record,
    history_message,
    new_chat_event,
    original_chat,
    replay,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

# pg_advisory_xact_lock key of the migrations ("hubbub" + 1): one migrator per database.
MIGRATION_LOCK = 0x6875_6262_7562_0001
# A write that deadlocked with another node is retried in a later transaction this often.
MAX_RETRIES = 5
# SQLSTATEs after which a write may simply run again in a new transaction.
_RETRYABLE = frozenset({"40P01", "40001", "55P03"})  # deadlock, serialization, lock wait


# Lock (and create) the rooms of a batch, always in the same order on every node.
_LOCK_ROOMS = """
INSERT INTO rooms (room_id, last_seq)
SELECT r, 0 FROM unnest($1::text[]) AS r ORDER BY r COLLATE "C"
ON CONFLICT (room_id) DO UPDATE SET last_seq = rooms.last_seq
RETURNING room_id, last_seq"""
_SET_LAST_SEQS = """
UPDATE rooms SET last_seq = v.seq FROM unnest($1::text[], $2::bigint[]) AS v(room_id, seq)
WHERE rooms.room_id = v.room_id"""
# Chats, one or a run side by side in one batch: one statement for all of them, one round
# trip instead of one each. A row that meets a clientMsgId already stored inserts nothing,
# so fewer rows come back: a run then runs again chat by chat (docs/decisions/0028). A chat
# is stored once: `events_since` rebuilds its event from the row (docs/decisions/0033).
_INSERT_CHATS = """
INSERT INTO messages (room_id, message_id, seq, user_id, username, content, created_at,
                      client_msg_id, reply_to)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                     $6::text[], $7::bigint[], $8::text[], $9::text[])
ON CONFLICT (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
RETURNING seq"""
_ORIGINAL_CHAT = (f"SELECT {MESSAGE_COLS}, room_id FROM messages "
                  "WHERE user_id = $1 AND client_msg_id = $2")
_REF = ("SELECT user_id, deleted_at IS NOT NULL FROM messages "
        "WHERE room_id = $1 AND message_id = $2 FOR UPDATE")
# The first edit keeps the content as sent: the chat's event replays it.
_EDIT = """
WITH m AS (UPDATE messages SET sent_content = coalesce(sent_content, content), content = $3,
                               edited_at = $4
           WHERE room_id = $1 AND message_id = $2)
INSERT INTO events (room_id, seq, type, message_id, user_id, created_at, payload)
VALUES ($1, $5, 'message_edit', $2, $6, $4, $7)"""
# The edits of a message, by edits_by_message.
_EDIT_EVENTS = """
SELECT seq, payload FROM events WHERE room_id = $1 AND message_id = $2 AND type = 'message_edit'"""
_DELETE = """
WITH m AS (UPDATE messages SET content = NULL, sent_content = NULL, deleted_at = $3
           WHERE room_id = $1 AND message_id = $2),
     r AS (DELETE FROM reactions WHERE room_id = $1 AND message_id = $2),
     s AS (UPDATE events AS e SET payload = v.payload
           FROM unnest($7::bigint[], $8::text[]) AS v(seq, payload)
           WHERE e.room_id = $1 AND e.seq = v.seq)
INSERT INTO events (room_id, seq, type, message_id, user_id, created_at, payload)
VALUES ($1, $4, 'message_delete', $2, $5, $3, $6)"""
_REACT_ADD = """
WITH r AS (INSERT INTO reactions (room_id, message_id, emoji, user_id, created_at, seq)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1)
INSERT INTO events (room_id, seq, type, message_id, user_id, created_at, payload)
SELECT $1::text, $6::bigint, 'reaction', $2::text, $4::text, $5::bigint, $7::text FROM r
RETURNING seq"""
# What `rules.check_new_emoji` needs: the message's distinct emojis, and whether it has this one.
_EMOJIS_OF_MESSAGE = """
SELECT count(DISTINCT emoji), coalesce(bool_or(emoji = $3), false) FROM reactions
WHERE room_id = $1 AND message_id = $2"""
_REACT_REMOVE = """
WITH r AS (DELETE FROM reactions
           WHERE room_id = $1 AND message_id = $2 AND emoji = $3 AND user_id = $4 RETURNING 1)
INSERT INTO events (room_id, seq, type, message_id, user_id, created_at, payload)
SELECT $1::text, $6::bigint, 'reaction', $2::text, $4::text, $5::bigint, $7::text FROM r
RETURNING seq"""
_RECORD_CALL = f"""
INSERT INTO calls ({CALL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (call_id) DO UPDATE SET caller = EXCLUDED.caller, callee = EXCLUDED.callee,
    room_id = EXCLUDED.room_id, started_at = EXCLUDED.started_at,
    answered_at = EXCLUDED.answered_at, ended_at = EXCLUDED.ended_at,
    end_reason = EXCLUDED.end_reason, ended_by = EXCLUDED.ended_by"""

# A user's latest calls: the newest `limit` as caller and as callee, each read backwards
# from its index (an incremental sort orders a millisecond's ties by call_id), then merged.
# The LIMIT outside the branches alone let PostgreSQL read and sort every call of the user
# (docs/decisions/0060-call-history-reads-only-a-page.md).
_CALL_HISTORY = f"""
(SELECT {CALL_COLS} FROM calls WHERE caller = $1 ORDER BY started_at DESC, call_id LIMIT $2)
UNION ALL
(SELECT {CALL_COLS} FROM calls WHERE callee = $1 AND caller <> $1
 ORDER BY started_at DESC, call_id LIMIT $2)
ORDER BY started_at DESC, call_id LIMIT $2"""


async def migrate(conn: Any) -> int:
    """Apply every migration newer than the recorded schema version; returns the version.

    One transaction under a transaction-level advisory lock: nodes starting at once take
    turns, and the later ones find the work done. PostgreSQL's DDL is transactional, so a
    failed migration leaves the schema as it was."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                           "version integer PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        known = scripts("postgres")
        refuse_newer("PostgreSQL", current, known[-1][0])
        for version, sql in known:
            if version > current:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
                current = version
    return current


async def _connect(dsn: str, application_name: str) -> Any:
    try:
        return await asyncpg.connect(dsn, server_settings={"application_name": application_name})
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConfigError(f"cannot connect to the PostgreSQL store: {exc}") from None


async def run_migrations(dsn: str) -> int:
    """`hubbub migrate`: bring the database to the current schema; returns its version."""
    conn = await _connect(dsn, "hubbub-migrate")
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def _scrub(payload: str) -> str:
    """A stored edit event without its content (what a delete leaves to replay)."""
    event = _decode(payload)
    event["content"] = None
    return _encode(event).decode()


class _Tx:
    """What a queued write sees: the writer connection inside the batch's transaction, and
    the current last seq of every room the batch locked."""

    __slots__ = ("claimed", "conn", "seqs")

    def __init__(self, conn: Any, seqs: dict[str, int]) -> None:
        self.conn = conn
        self.seqs = seqs
        self.claimed: tuple[str, int] | None = None

    def next_seq(self, room_id: str) -> int:
        """The room's next seq. It is taken only if the write then returns normally; a write
        that ends up writing nothing sets `claimed = None`."""
        seq = self.seqs[room_id] + 1
        self.claimed = (room_id, seq)
        return seq

    async def last_seq(self, room_id: str) -> int:
        if room_id in self.seqs:
            return self.seqs[room_id]
        value = await self.conn.fetchval("SELECT last_seq FROM rooms WHERE room_id = $1",
                                         room_id)
        return 0 if value is None else int(value)


@dataclass(slots=True)
class _Write:
    op: Callable[[_Tx], Awaitable[Any]]
    fut: "asyncio.Future[Any]"
    room: str | None  # the room whose next seq it may take: locked for its batch
    tries: int = 0
    # A write that may be refused (rules, a missing message) runs in a savepoint of its
    # own. One that cannot (a chat append) skips that round trip; if it fails anyway, the
    # whole batch runs again with a savepoint for every write.
    refusable: bool = True
    chat: NewChat | None = None  # a chat append: may join a run of chats (_append_chats)


class _Redo(Exception):
    """A write without a savepoint failed: the transaction is lost, run the batch again."""


class _RetryAmongChats(Exception):
    """A run of chats stored fewer rows than it had chats: one was a retry."""


async def _insert_chats(conn: asyncpg.Connection, events: list[ChatEvent]) -> int:
    """Store new chats; how many were stored, retries not."""
    stored = await conn.fetch(
        _INSERT_CHATS, [e.room_id for e in events], [e.message_id for e in events],
        [e.seq for e in events], [e.user_id for e in events], [e.username for e in events],
        [e.content for e in events], [e.created_at for e in events],
        [e.client_msg_id for e in events], [e.reply_to for e in events])
    return len(stored)


class PostgresStore(Store):
    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        super().__init__()
        self.dsn = dsn
        self.pool_size = pool_size
        self._conn: Any = None
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Write] = []
        self._writing = False
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Chats stored by a statement shared with other chats (for tests and the bench;
        # retried_writes and redone_batches are on Store, for /metrics).
        self.chats_in_runs = 0

    # ---- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        conn = await _connect(self.dsn, "hubbub-writer")
        try:
            await migrate(conn)
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size,
                server_settings={"application_name": "hubbub"})
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        self._closed = True
        if self._idle is not None:
            await self._idle.wait()
        conn, self._conn = self._conn, None
        pool, self._pool = self._pool, None
        if conn is not None:
            await conn.close()
        if pool is not None:
            await pool.close()

    # ---- the writer: group commit -----------------------------------------------------
    def _write(self, op: Callable[[_Tx], Awaitable[T]], room: str | None,
               refusable: bool = True, chat: NewChat | None = None) -> "asyncio.Future[T]":
        assert self._loop is not None and self._idle is not None, "store is not open"
        if self._closed:  # the writer is gone: fail now rather than never resolve
            raise RuntimeError("store is closed")
        fut: asyncio.Future[T] = self._loop.create_future()
        if room is not None and "\x00" in room:  # would fail the batch's lock statement
            fut.set_exception(_refusal(asyncpg.CharacterNotInRepertoireError("NUL")))
            return fut
        self._pending.append(_Write(op, fut, room, refusable=refusable, chat=chat))
        if not self._writing:
            self._writing = True
            self._idle.clear()
            # The task starts on the next turn: writes queued in this turn join the batch.
            self._task = self._loop.create_task(self._drain())
        return fut

    async def _drain(self) -> None:
        assert self._idle is not None
        batch: list[_Write] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._run(batch)
        except BaseException as exc:  # never leave a caller waiting forever
            error = exc if isinstance(exc, Exception) else RuntimeError("store writer stopped")
            for w in [*batch, *self._pending]:
                if not w.fut.done():
                    w.fut.set_exception(error)
            self._pending = []
            raise
        finally:
            self._writing = False
            self._idle.set()

    async def _run(self, batch: list[_Write]) -> None:
        """Commit a batch and resolve its callers in queue order."""
        try:
            try:
                results, retry = await self._commit(batch)
            except _ConnectionLost:
                # The transaction died before COMMIT was sent, so nothing of it exists:
                # run it once more on a new connection (a PostgreSQL restart or failover).
                log.warning("PostgreSQL writer connection lost; reconnecting")
                results, retry = await self._commit(batch)
        except Exception as exc:
            cause = (exc.__cause__ if isinstance(exc, _ConnectionLost) else exc) or exc
            error = StoreUnavailable(f"the store could not persist this: {cause}")
            for w in batch:
                if not w.fut.done():
                    w.fut.set_exception(error)
            return
        for w, (ok, value) in zip(batch, results, strict=False):
            if w.fut.done():  # the caller was cancelled; its write stands
                continue
            if ok:
                w.fut.set_result(value)
            else:
                w.fut.set_exception(value)
        if retry:
            again: list[_Write] = []
            self.retried_writes += len(retry)
            for w in retry:
                w.tries += 1
                if w.tries > MAX_RETRIES and not w.fut.done():
                    w.fut.set_exception(RuntimeError("write kept deadlocking; gave up"))
                elif not w.fut.done():
                    again.append(w)
            self._pending[:0] = again  # ahead of later writes: queue order holds

    async def _writer(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            if self._closed and self._conn is None:
                raise RuntimeError("store is closed")
            self._conn = await asyncpg.connect(
                self.dsn, server_settings={"application_name": "hubbub-writer"})
        return self._conn

    async def _commit(self, batch: list[_Write]
                      ) -> tuple[list[tuple[bool, Any]], list[_Write]]:
        """One transaction, one savepoint per refusable write. Returns each write's outcome,
        in order, and the writes (a suffix of the batch) that must run again in a new
        transaction."""
        try:
            return await self._commit_once(batch, all_savepoints=False)
        except _Redo:
            self.redone_batches += 1
            return await self._commit_once(batch, all_savepoints=True)

    async def _commit_once(self, batch: list[_Write], all_savepoints: bool
                           ) -> tuple[list[tuple[bool, Any]], list[_Write]]:
        conn = await self._writer()
        results: list[tuple[bool, Any]] = []
        retry: list[_Write] = []
        commit_sent = False
        started = time.perf_counter()
        try:
            await conn.execute("BEGIN")
            rooms = sorted({w.room for w in batch if w.room is not None})
            seqs: dict[str, int] = {}
            if rooms:
                seqs = {r: int(s) for r, s in await conn.fetch(_LOCK_ROOMS, rooms)}
            start = dict(seqs)
            tx = _Tx(conn, seqs)
            savepoint = False
            run_end = 0
            for i, w in enumerate(batch):
                if i < run_end:  # stored with the run of chats it belongs to
                    continue
                if w.chat is not None and not all_savepoints:
                    run_end = i + 1
                    while run_end < len(batch) and batch[run_end].chat is not None:
                        run_end += 1
                    if run_end - i > 1:
                        try:
                            results += await self._append_chats(tx, batch[i:run_end])
                        except Exception as exc:
                            if conn.is_closed():
                                raise
                            raise _Redo() from exc  # no savepoint: the transaction is lost
                        continue
                tx.claimed = None
                own_savepoint = w.refusable or all_savepoints
                if own_savepoint:
                    await conn.execute("RELEASE SAVEPOINT w; SAVEPOINT w" if savepoint
                                       else "SAVEPOINT w")
                    savepoint = True
                try:
                    value = await w.op(tx)
                except Exception as exc:
                    if conn.is_closed():
                        raise
                    if not own_savepoint:  # the transaction is lost: run the batch again
                        raise _Redo() from exc
                    await conn.execute("ROLLBACK TO SAVEPOINT w")  # undo this write only
                    if getattr(exc, "sqlstate", None) in _RETRYABLE:
                        retry = batch[i:]  # commit what came before, then run these again
                        break
                    results.append((False, _refusal(exc)))
                    continue
                if tx.claimed is not None:
                    room_id, seq = tx.claimed
                    seqs[room_id] = seq
                results.append((True, value))
            changed = [(r, s) for r, s in seqs.items() if s != start[r]]
            if changed:
                await conn.execute(_SET_LAST_SEQS, [r for r, _ in changed],
                                   [s for _, s in changed])
            commit_sent = True
            await conn.execute("COMMIT")
        except BaseException as exc:
            if not conn.is_closed():
                try:
                    await conn.execute("ROLLBACK")
                except Exception:
                    conn.terminate()
            if conn.is_closed() and not commit_sent and isinstance(exc, Exception):
                raise _ConnectionLost() from exc
            raise
        self.commits += 1
        self.commit_seconds.observe(time.perf_counter() - started)
        self.committed_writes += sum(1 for ok, _ in results if ok)
        return results, retry

    # ---- writes -----------------------------------------------------------------------
    @staticmethod
    async def _ref(conn: Any, room_id: str, message_id: str) -> rules.MessageRef | None:
        row = await conn.fetchrow(_REF, room_id, message_id)
        return None if row is None else rules.MessageRef(message_id, row[0], row[1])

    async def _append_chats(self, tx: _Tx, run: list[_Write]) -> list[tuple[bool, Any]]:
        """Store a run of chats with one statement, or raise if one of them was a retry."""
        seqs = tx.seqs
        events: list[ChatEvent] = []
        for w in run:
            chat = w.chat
            assert chat is not None
            seq = seqs[chat.room_id] + 1
            seqs[chat.room_id] = seq
            events.append(new_chat_event(chat, seq))
        if await _insert_chats(tx.conn, events) != len(run):
            raise _RetryAmongChats
        self.chats_in_runs += len(run)
        return [(True, (e, False)) for e in events]

    def append_chat(self, chat: NewChat) -> "asyncio.Future[tuple[ChatEvent, bool]]":
        async def op(tx: _Tx) -> tuple[ChatEvent, bool]:
            seq = tx.next_seq(chat.room_id)
            event = new_chat_event(chat, seq)
            if await _insert_chats(tx.conn, [event]):
                return event, False
            # This user already sent this clientMsgId (maybe through another node, whose
            # insert we waited for): return the original, write nothing.
            tx.claimed = None
            row = await tx.conn.fetchrow(_ORIGINAL_CHAT, chat.user_id, chat.client_msg_id)
            if row is None:
                raise RuntimeError("clientMsgId conflict without a message")
            return original_chat(row), True

        return self._write(op, chat.room_id, refusable=False, chat=chat)

    async def edit_message(self, room_id: str, message_id: str, user_id: str, content: str,
                           now_ms: int) -> MessageEditEvent:
        async def op(tx: _Tx) -> MessageEditEvent:
            rules.check_edit(await self._ref(tx.conn, room_id, message_id), message_id,
                             user_id)
            event = MessageEditEvent(room_id=room_id, message_id=message_id,
                                     seq=tx.next_seq(room_id), user_id=user_id,
                                     content=content, edited_at=now_ms)
            await tx.conn.execute(_EDIT, room_id, message_id, content, now_ms, event.seq,
                                  user_id, _encode(event).decode())
            return event

        return await self._write(op, room_id)

    async def delete_message(self, room_id: str, message_id: str, user_id: str, admin: bool,
                             now_ms: int) -> MessageDeleteEvent:
        async def op(tx: _Tx) -> MessageDeleteEvent:
            rules.check_delete(await self._ref(tx.conn, room_id, message_id), message_id,
                               user_id, admin)
            event = MessageDeleteEvent(room_id=room_id, message_id=message_id,
                                       seq=tx.next_seq(room_id), user_id=user_id,
                                       deleted_at=now_ms)
            # Erase the content from what `events_since` replays, too (base.py).
            stored = await tx.conn.fetch(_EDIT_EVENTS, room_id, message_id)
            await tx.conn.execute(_DELETE, room_id, message_id, now_ms, event.seq, user_id,
                                  _encode(event).decode(), [r[0] for r in stored],
                                  [_scrub(r[1]) for r in stored])
            return event

        return await self._write(op, room_id)

    async def react(self, room_id: str, message_id: str, user_id: str, emoji: str,
                    op: Literal["add", "remove"], now_ms: int) -> ReactionEvent | None:
        async def write(tx: _Tx) -> ReactionEvent | None:
            rules.check_reaction(await self._ref(tx.conn, room_id, message_id), message_id)
            if op == "add":
                row = await tx.conn.fetchrow(_EMOJIS_OF_MESSAGE, room_id, message_id, emoji)
                rules.check_new_emoji(bool(row[1]), row[0])
            event = ReactionEvent(room_id=room_id, message_id=message_id,
                                  seq=tx.next_seq(room_id), user_id=user_id, emoji=emoji,
                                  op=op, created_at=now_ms)
            # An added reaction keeps its event's seq: history orders a reaction's users by it.
            written = await tx.conn.fetchval(
                _REACT_ADD if op == "add" else _REACT_REMOVE, room_id, message_id, emoji,
                user_id, now_ms, event.seq, _encode(event).decode())
            if written is None:  # already in that state: no event
                tx.claimed = None
                return None
            return event

        return await self._write(write, room_id)

    async def record_call(self, call: CallRecord) -> None:
        async def op(tx: _Tx) -> None:
            await tx.conn.execute(_RECORD_CALL, call.call_id, call.caller, call.callee,
                                  call.room_id, call.started_at, call.answered_at,
                                  call.ended_at, call.end_reason, call.ended_by)

        await self._write(op, None, refusable=False)

    # ---- reads ------------------------------------------------------------------------
    def _readers(self) -> Any:
        if self._pool is None:
            raise RuntimeError("store is closed" if self._closed else "store is not open")
        return self._pool

    async def call_history(self, user_id: str, limit: int) -> list[CallRecord]:
        rows = await self._readers().fetch(_CALL_HISTORY, user_id, limit)
        return [call_record(r) for r in rows]

    async def last_seq(self, room_id: str) -> int:
        async def read(tx: _Tx) -> int:
            return await tx.last_seq(room_id)

        return await self._write(read, None, refusable=False)

    async def last_seqs(self, room_ids: list[str]) -> dict[str, int]:
        rows = await self._readers().fetch(
            "SELECT room_id, last_seq FROM rooms WHERE room_id = ANY($1::text[])", room_ids)
        found = {r[0]: int(r[1]) for r in rows}
        return {room: found.get(room, 0) for room in room_ids}

    async def events_since(self, room_id: str, after_seq: int, limit: int, *,
                           page: bool = False) -> Recovery:
        async def read(tx: _Tx) -> Recovery:
            last = await tx.last_seq(room_id)
            upto = rules.events_upto(after_seq, last, limit, page)
            if upto is None:
                return Recovery([], False, last)
            logged = await tx.conn.fetch("SELECT seq, type, payload FROM events WHERE "
                                         "room_id = $1 AND seq > $2 AND seq <= $3",
                                         room_id, after_seq, upto)
            chats = await tx.conn.fetch(f"SELECT {CHAT_EVENT_COLS} FROM messages WHERE "
                                        "room_id = $1 AND seq > $2 AND seq <= $3",
                                        room_id, after_seq, upto)
            return Recovery(replay(room_id, logged, chats), upto == last, upto)

        return await self._write(read, None, refusable=False)

    async def history(self, room_id: str, before_seq: int | None, after_seq: int | None,
                      limit: int) -> tuple[list[HistoryMessage], bool]:
        page = rules.page(before_seq, after_seq, limit)
        where, args = ["room_id = $1"], [room_id]
        bounds: list[object] = []
        if page.after is not None:
            bounds.append(page.after)
            where.append(f"seq > ${len(args) + len(bounds)}")
        if page.before is not None:
            bounds.append(page.before)
            where.append(f"seq < ${len(args) + len(bounds)}")
        order = "DESC" if page.newest_first else "ASC"
        sql = (f"SELECT {MESSAGE_COLS} FROM messages WHERE {' AND '.join(where)} "
               f"ORDER BY seq {order} LIMIT ${len(args) + len(bounds) + 1}")
        async with self._readers().acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):  # messages and reactions agree
            rows = list(await conn.fetch(sql, *args, *bounds, page.limit + 1))
            has_more = len(rows) > page.limit
            rows = rows[:page.limit]
            if page.newest_first:
                rows.reverse()
            ids = [r[0] for r in rows if r[7] is None]
            reactions: dict[str, dict[str, list[str]]] = {}
            if ids:
                found = await conn.fetch(
                    "SELECT message_id, emoji, user_id FROM reactions WHERE room_id = $1 "
                    "AND message_id = ANY($2::text[]) ORDER BY seq", room_id, ids)
                reactions = rules.aggregate_reactions([(r[0], r[1], r[2]) for r in found])
        return [history_message(room_id, r, reactions.get(r[0])) for r in rows], has_more


class _ConnectionLost(Exception):
    """Internal: the writer connection died before COMMIT was sent (`__cause__` says how)."""


def _refusal(exc: Exception) -> Exception:
    """What a caller sees of a failed write. PostgreSQL text cannot hold U+0000, which
    SQLite stores: refuse it as a bad request rather than fail with `internal`."""
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):
        return ProtocolError(ErrorCode.BAD_REQUEST, "text must not contain U+0000 (NUL)")
    return exc
