"""The default Store: SQLite in WAL mode, one writer thread, group commit.

All SQL runs on one dedicated thread (sqlite3 releases the GIL while it works). Writes
are queued; every write that arrived while the previous transaction was committing is
committed in the next single transaction, each in its own savepoint so one refused
write does not undo the others. Then the callers are resumed in queue order, so acks
and broadcasts leave in seq order. With `synchronous=FULL` (the default) a commit is
fsynced before anyone is told it happened.
"""

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import msgspec

from hubbub.core import messages as rules
from hubbub.errors import ConfigError, StoreUnavailable
from hubbub.protocol.frames import (
    CallRecord,
    ChatEvent,
    HistoryMessage,
    MessageDeleteEvent,
    MessageEditEvent,
    ReactionEvent,
    RoomEvent,
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
Op = Callable[[sqlite3.Connection], Any]
_encode = msgspec.json.Encoder().encode
# An op (or a chat to append), its caller's future, and whether it is refusable.
Queued = tuple[Op | NewChat, "asyncio.Future[Any]", bool]
_INSERT_MESSAGE = (f"INSERT INTO messages ({MESSAGE_COLS}, room_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?) ON CONFLICT DO NOTHING")
_INSERT_EVENT = ("INSERT INTO events (room_id, seq, type, message_id, user_id, created_at, "
                 "payload) VALUES (?, ?, ?, ?, ?, ?, ?)")


def _message_row(e: ChatEvent) -> tuple[Any, ...]:
    """A new chat's parameters for _INSERT_MESSAGE."""
    return (e.message_id, e.seq, e.user_id, e.username, e.content, e.created_at,
            e.client_msg_id, e.reply_to, e.room_id)


_SELECT_CHATS_SINCE = (f"SELECT {CHAT_EVENT_COLS} FROM messages "
                       "WHERE room_id = ? AND seq > ? AND seq <= ?")


# A user's latest calls: the newest `limit` as caller and as callee, each read backwards
# from its index (the index ends in the rowid, so the order needs no sort), then merged.
# `caller = ? OR callee = ?` read and sorted every call of the user for each page
# (docs/decisions/0060-call-history-reads-only-a-page.md).
_CALL_HISTORY = (
    f"SELECT * FROM (SELECT {CALL_COLS}, rowid AS r FROM calls WHERE caller = ? "
    "ORDER BY started_at DESC, rowid DESC LIMIT ?) "
    f"UNION ALL SELECT * FROM (SELECT {CALL_COLS}, rowid AS r FROM calls "
    "WHERE callee = ? AND caller <> ? ORDER BY started_at DESC, rowid DESC LIMIT ?) "
    "ORDER BY started_at DESC, r DESC LIMIT ?")


def _event_row(type_: str, e: RoomEvent, at_ms: int) -> tuple[Any, ...]:
    """A room event's parameters for _INSERT_EVENT: the log keeps it as sent on the wire."""
    return (e.room_id, e.seq, type_, e.message_id, e.user_id, at_ms, _encode(e).decode())


log = logging.getLogger("hubbub.store")

# WAL checkpoints run on a thread of their own, this often, instead of inside a commit
# (SQLite's default, every 1,000 pages): a checkpoint copies pages into the database and
# fsyncs it, and in the writer's path that stalled every chat in the batch behind it
# (docs/decisions/0018-fan-out-flush-waits-under-load.md). Durability is unchanged: each
# commit still fsyncs the WAL under synchronous=FULL.
CHECKPOINT_EVERY_S = 0.5
# A checkpoint alone never lets the WAL start over under steady writes: SQLite rewinds it
# only when every frame was copied before a write begins, and the writer always added
# frames while the checkpoint copied. So the checkpoint thread copies in passes until a
# pass leaves less than this many new frames, and the writer copies that short tail itself
# before its next batch; the WAL then restarts at frame 1 instead of growing without bound
# (docs/decisions/0021-the-wal-starts-over.md).
WAL_TAIL_FRAMES = 256
CHECKPOINT_PASSES = 4


# Rooms named in one `IN (...)` of a read: well below SQLite's limit on bound parameters.
_IN_CHUNK = 500
# The writer remembers the last seq of at most about this many rooms (`SqliteStore._seqs`,
# ADR 0024): past it, the memory is dropped at the start of a transaction and refills with
# the rooms written from then on, so a node that has seen millions of rooms holds only the
# recent ones.
SEQS_KEPT = 10_000

# How long a write waits for another process's write lock on the same file.
BUSY_TIMEOUT_MS = 5000
# How long opening a file waits for another process's upgrade of it (see migrate).
MIGRATION_WAIT_MS = 600_000


class _RetryAmongChats(Exception):
    """A run of chats held a retry: the batch is written again, one chat at a time."""


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    return StoreUnavailable(f"the store could not persist this: {exc}")


def migrate(db: sqlite3.Connection) -> int:
    """Apply every migration newer than the recorded schema version; returns the version."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    known = scripts("sqlite")
    refuse_newer("SQLite", int(current), known[-1][0])
    pending = [(v, sql) for v, sql in known if v > current]
    if not pending:
        return int(current)
    # Another process on this file (`--workers`, a second node) may be upgrading it, and an
    # upgrade that rebuilds a table holds the write lock for seconds (ADRs 0027, 0034):
    # wait for it, not just a write's busy timeout.
    busy_ms = db.execute("PRAGMA busy_timeout").fetchone()[0]
    db.execute(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")
    try:
        for version, sql in pending:
            current = _apply(db, version, sql)
    finally:
        db.execute(f"PRAGMA busy_timeout={busy_ms}")
    return int(current)


def _apply(db: sqlite3.Connection, version: int, sql: str) -> int:
    """One migration in a transaction of its own, unless a peer applied it first; returns
    the schema version after it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process opening the same file may have
        # applied this migration while we waited for the lock.
        current = int(db.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        if version > current:
            for statement in sql.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            current = version
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return current


def _set_wal(db: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL. When two connections switch a new file at once, SQLite answers the
    loser "database is locked" without waiting (it avoids a deadlock there), so retry."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class SqliteStore(Store):
    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        super().__init__()
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"bad synchronous mode {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hubbub-sqlite")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Queued] = []
        self._writing = False
        self._idle: asyncio.Event | None = None
        self._closed = False
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_db: sqlite3.Connection | None = None
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._checkpoint_running: asyncio.Future[None] | None = None
        # Set by the checkpoint thread, read by the writer: copy the tail, restart the WAL.
        self._rewind_wal = False
        # Each room's last seq as the writer knows it, and the rooms whose seq the open
        # transaction moved (written back once per room before COMMIT). Valid while no
        # other connection (another process on this file) committed: PRAGMA data_version.
        self._seqs: dict[str, int] = {}
        self._moved: dict[str, int] = {}
        self._data_version = -1

    # ---- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        await self._loop.run_in_executor(self._thread, self._open_sync)
        if self.path != ":memory:":
            self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="hubbub-checkpoint")
            self._checkpoint_db = await self._loop.run_in_executor(
                self._checkpointer, self._connect_checkpointer)
            self._checkpoint_timer = self._loop.call_later(CHECKPOINT_EVERY_S, self._checkpoint)

    def _open_sync(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"cannot open SQLite database {self.path!r}: {exc} (sqlite:///REL "
                              "is relative to the working directory, sqlite:////ABS absolute)"
                              ) from None
        if self.path != ":memory:":
            _set_wal(db)
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does them
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _connect_checkpointer(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return db

    def _checkpoint(self) -> None:
        assert self._loop is not None
        if self._closed or self._checkpointer is None:
            return
        running = self._checkpoint_running = self._loop.run_in_executor(
            self._checkpointer, self._checkpoint_sync)
        running.add_done_callback(self._checkpoint_done)

    def _checkpoint_sync(self) -> None:
        """PASSIVE passes (copy what no reader needs, never wait for the writer) until the
        writer added few frames during the last one; then the writer may rewind the WAL."""
        db = self._checkpoint_db
        if db is None:
            return
        try:
            last = -1
            for _ in range(CHECKPOINT_PASSES):
                busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if busy or copied < frames or frames < last:
                    return  # a reader holds old frames, or the WAL already started over
                if last >= 0 and frames - last < WAL_TAIL_FRAMES:
                    self._rewind_wal = True
                    return
                last = frames
        except sqlite3.Error as exc:  # a full disk, say: the WAL keeps it all until later
            log.warning("WAL checkpoint failed: %s", exc)

    def _checkpoint_done(self, done: "asyncio.Future[None]") -> None:
        self._checkpoint_running = None
        if not self._closed and self._loop is not None:
            self._checkpoint_timer = self._loop.call_later(CHECKPOINT_EVERY_S, self._checkpoint)

    async def close(self) -> None:
        self._closed = True
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
        if self._checkpoint_running is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint_running
        if self._checkpointer is not None:
            ckpt, self._checkpoint_db = self._checkpoint_db, None
            if ckpt is not None:
                await asyncio.get_running_loop().run_in_executor(self._checkpointer, ckpt.close)
            self._checkpointer.shutdown(wait=True)
            self._checkpointer = None
        if self._idle is not None:
            await self._idle.wait()
        if self._db is not None and self._loop is not None:
            db, self._db = self._db, None
            await self._loop.run_in_executor(self._thread, db.close)
        self._thread.shutdown(wait=True)

    # ---- the writer: group commit -----------------------------------------------------
    def _write(self, op: Callable[[sqlite3.Connection], T] | NewChat, *,
               refusable: bool = True) -> "asyncio.Future[T]":
        """Queue `op` for the next group commit. A `refusable` op (one that may raise a
        ProtocolError) runs in a savepoint of its own, so a refusal undoes only it; the
        others (appends, reads) skip that cost: a failure of theirs fails the batch."""
        assert self._loop is not None and self._idle is not None, "store is not open"
        if self._closed:  # the writer thread is gone: fail now rather than never resolve
            raise RuntimeError("store is closed")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((op, fut, refusable))
        if not self._writing:
            self._writing = True
            self._idle.clear()
            self._loop.call_soon(self._next_batch)
        return fut

    def _next_batch(self) -> None:
        assert self._loop is not None and self._idle is not None
        batch, self._pending = self._pending, []
        if not batch:
            self._writing = False
            self._idle.set()
            return
        done = self._loop.run_in_executor(self._thread, self._commit, batch)
        done.add_done_callback(lambda f: self._resume(batch, f))

    def _commit(self, batch: list[Queued], one_by_one: bool = False) -> list[tuple[bool, Any]]:
        """On the store thread: one transaction, a savepoint per refusable write.
        `one_by_one`: chats too, each with its own statements (a retry was among them)."""
        db = self._db
        if db is None:
            raise RuntimeError("store is closed")
        results: list[tuple[bool, Any]] = []
        if self._rewind_wal:
            self._rewind_wal = False
            # The tail the checkpoint thread left: once it is copied, this batch's write
            # starts the WAL over at its first frame.
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        started = time.perf_counter()
        try:
            db.execute("BEGIN IMMEDIATE")
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:  # another connection wrote: forget our seqs
                self._seqs.clear()
                self._data_version = version
            elif len(self._seqs) > SEQS_KEPT:  # a cache, not a copy of `rooms`: bounded
                self._seqs.clear()
            i, n = 0, len(batch)
            while i < n:
                op, _, refusable = batch[i]
                i += 1
                if type(op) is NewChat:  # a run of chats: one statement per table for all
                    run = [op]
                    while i < n and type(batch[i][0]) is NewChat:
                        run.append(batch[i][0])  # type: ignore[arg-type]
                        i += 1
                    results += ([(True, self._append_chat(db, chat)) for chat in run]
                                if one_by_one else self._append_chats(db, run))
                    continue
                assert not isinstance(op, NewChat)
                if not refusable:
                    results.append((True, op(db)))
                    continue
                db.execute("SAVEPOINT w")
                moved = self._moved.copy()
                try:
                    results.append((True, op(db)))
                except sqlite3.Error as exc:
                    raise _unavailable(exc) from exc
                except Exception as exc:  # refused or failed: undo this write only
                    db.execute("ROLLBACK TO w")
                    # The seqs it took are free again; rooms this transaction did not move
                    # are read again from the table.
                    self._moved, self._seqs = moved, moved.copy()
                    results.append((False, exc))
                db.execute("RELEASE w")
            if self._moved:
                db.executemany("INSERT INTO rooms (room_id, last_seq) VALUES (?, ?) "
                               "ON CONFLICT (room_id) DO UPDATE SET last_seq = excluded.last_seq",
                               self._moved.items())
                self._moved.clear()
            db.execute("COMMIT")
        except BaseException as exc:
            self._seqs.clear()
            self._moved.clear()
            if db.in_transaction:
                # If even the rollback fails, the transaction ended with the error.
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, _RetryAmongChats):
                return self._commit(batch, one_by_one=True)
            if isinstance(exc, sqlite3.Error):
                raise _unavailable(exc) from exc
            raise
        self.commits += 1
        self.commit_seconds.observe(time.perf_counter() - started)
        self.committed_writes += sum(1 for ok, _ in results if ok)
        return results

    def _resume(self, batch: list[Queued],
                done: "asyncio.Future[list[tuple[bool, Any]]]") -> None:
        exc = done.exception()
        for i, (_, fut, _refusable) in enumerate(batch):
            if fut.cancelled():
                continue
            if exc is not None:
                fut.set_exception(exc)
                continue
            ok, value = done.result()[i]
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        self._next_batch()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._loop is not None

        def run() -> T:
            if self._db is None:
                raise RuntimeError("store is closed")
            return fn(self._db)

        return await self._loop.run_in_executor(self._thread, run)

    # ---- writes -----------------------------------------------------------------------
    def _next_seq(self, db: sqlite3.Connection, room_id: str) -> int:
        """The room's next seq, inside the writer's transaction (`_commit` writes it back)."""
        seq = self._last_seq(db, room_id) + 1
        self._seqs[room_id] = self._moved[room_id] = seq
        return seq

    @staticmethod
    def _log(db: sqlite3.Connection, type_: str, event: RoomEvent, at_ms: int) -> None:
        db.execute(_INSERT_EVENT, _event_row(type_, event, at_ms))

    @staticmethod
    def _ref(db: sqlite3.Connection, room_id: str, message_id: str) -> rules.MessageRef | None:
        row = db.execute("SELECT user_id, deleted_at FROM messages WHERE room_id = ? AND "
                         "message_id = ?", (room_id, message_id)).fetchone()
        return None if row is None else rules.MessageRef(message_id, row[0], row[1] is not None)

    def append_chat(self, chat: NewChat) -> "asyncio.Future[tuple[ChatEvent, bool]]":
        return self._write(chat, refusable=False)

    def _append_chats(self, db: sqlite3.Connection,
                      chats: list[NewChat]) -> list[tuple[bool, Any]]:
        """Chats queued one after another, written with one `executemany` per table: the
        sqlite3 module's cost per statement is most of a chat's write otherwise."""
        events = [new_chat_event(chat, self._next_seq(db, chat.room_id)) for chat in chats]
        if db.executemany(_INSERT_MESSAGE,
                          [_message_row(e) for e in events]).rowcount != len(events):
            # A retry among them (its clientMsgId is stored): its seq must not be taken.
            # Rare, so no savepoint (it would copy every page the run touches): the whole
            # batch is done again, each chat on its own.
            raise _RetryAmongChats
        return [(True, (e, False)) for e in events]

    def _append_chat(self, db: sqlite3.Connection, chat: NewChat) -> tuple[ChatEvent, bool]:
        seq = self._next_seq(db, chat.room_id)
        event = new_chat_event(chat, seq)
        # Insert first, look for the original only on a conflict: a retry is rare,
        # and the unique index on (user_id, client_msg_id) answers either way.
        if db.execute(_INSERT_MESSAGE, _message_row(event)).rowcount:
            return event, False
        self._seqs[chat.room_id] = self._moved[chat.room_id] = seq - 1  # not used
        row = db.execute(
            f"SELECT {MESSAGE_COLS}, room_id FROM messages "
            "WHERE user_id = ? AND client_msg_id = ?",
            (chat.user_id, chat.client_msg_id)).fetchone()
        if row is None:  # a conflict on anything but clientMsgId is a bug: fail loudly
            raise RuntimeError(f"chat insert conflicted: {chat.room_id} seq {seq}")
        return original_chat(row), True

    async def edit_message(self, room_id: str, message_id: str, user_id: str, content: str,
                           now_ms: int) -> MessageEditEvent:
        def op(db: sqlite3.Connection) -> MessageEditEvent:
            rules.check_edit(self._ref(db, room_id, message_id), message_id, user_id)
            event = MessageEditEvent(room_id=room_id, message_id=message_id,
                                     seq=self._next_seq(db, room_id), user_id=user_id,
                                     content=content, edited_at=now_ms)
            # The first edit keeps the content as sent: the chat's event replays it.
            db.execute("UPDATE messages SET sent_content = coalesce(sent_content, content), "
                       "content = ?, edited_at = ? WHERE room_id = ? AND message_id = ?",
                       (content, now_ms, room_id, message_id))
            self._log(db, "message_edit", event, now_ms)
            return event

        return await self._write(op)

    async def delete_message(self, room_id: str, message_id: str, user_id: str, admin: bool,
                             now_ms: int) -> MessageDeleteEvent:
        def op(db: sqlite3.Connection) -> MessageDeleteEvent:
            rules.check_delete(self._ref(db, room_id, message_id), message_id, user_id, admin)
            event = MessageDeleteEvent(room_id=room_id, message_id=message_id,
                                       seq=self._next_seq(db, room_id), user_id=user_id,
                                       deleted_at=now_ms)
            db.execute("UPDATE messages SET content = NULL, sent_content = NULL, deleted_at = ? "
                       "WHERE room_id = ? AND message_id = ?", (now_ms, room_id, message_id))
            # The edits by their index: without statistics SQLite's planner would rather
            # walk the room's log by seq.
            db.execute("UPDATE events INDEXED BY edits_by_message "
                       "SET payload = json_set(payload, '$.content', NULL) "
                       "WHERE room_id = ? AND message_id = ? AND type = 'message_edit'",
                       (room_id, message_id))
            db.execute("DELETE FROM reactions WHERE room_id = ? AND message_id = ?",
                       (room_id, message_id))
            self._log(db, "message_delete", event, now_ms)
            return event

        return await self._write(op)

    async def react(self, room_id: str, message_id: str, user_id: str, emoji: str,
                    op: Literal["add", "remove"], now_ms: int) -> ReactionEvent | None:
        def write(db: sqlite3.Connection) -> ReactionEvent | None:
            rules.check_reaction(self._ref(db, room_id, message_id), message_id)
            if op == "add":
                distinct, present = db.execute(
                    "SELECT count(DISTINCT emoji), coalesce(max(emoji = ?), 0) FROM reactions "
                    "WHERE room_id = ? AND message_id = ?",
                    (emoji, room_id, message_id)).fetchone()
                rules.check_new_emoji(bool(present), distinct)
                changed = db.execute(
                    "INSERT OR IGNORE INTO reactions (room_id, message_id, emoji, user_id, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (room_id, message_id, emoji, user_id, now_ms)).rowcount
            else:
                changed = db.execute(
                    "DELETE FROM reactions WHERE room_id = ? AND message_id = ? AND emoji = ? "
                    "AND user_id = ?", (room_id, message_id, emoji, user_id)).rowcount
            if not changed:
                return None
            event = ReactionEvent(room_id=room_id, message_id=message_id,
                                  seq=self._next_seq(db, room_id), user_id=user_id,
                                  emoji=emoji, op=op, created_at=now_ms)
            if op == "add":  # history orders a reaction's users by their event's seq
                db.execute("UPDATE reactions SET seq = ? WHERE room_id = ? AND message_id = ? "
                           "AND emoji = ? AND user_id = ?",
                           (event.seq, room_id, message_id, emoji, user_id))
            self._log(db, "reaction", event, now_ms)
            return event

        return await self._write(write)

    async def record_call(self, call: CallRecord) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT OR REPLACE INTO calls ({CALL_COLS}) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (call.call_id, call.caller, call.callee, call.room_id, call.started_at,
                        call.answered_at, call.ended_at, call.end_reason, call.ended_by))

        await self._write(op, refusable=False)

    async def call_history(self, user_id: str, limit: int) -> list[CallRecord]:
        def read(db: sqlite3.Connection) -> list[CallRecord]:
            rows = db.execute(_CALL_HISTORY, (user_id, limit, user_id, user_id, limit,
                                              limit)).fetchall()
            return [call_record(r) for r in rows]

        return await self._read(read)

    # ---- reads ------------------------------------------------------------------------
    async def last_seq(self, room_id: str) -> int:
        return await self._write(lambda db: self._last_seq(db, room_id), refusable=False)

    def _last_seq(self, db: sqlite3.Connection, room_id: str) -> int:
        """On the writer thread, in a transaction (a queued op)."""
        last = self._seqs.get(room_id)
        if last is None:
            row = db.execute("SELECT last_seq FROM rooms WHERE room_id = ?",
                             (room_id,)).fetchone()
            last = self._seqs[room_id] = int(row[0]) if row else 0
        return last

    async def last_seqs(self, room_ids: list[str]) -> dict[str, int]:
        def read(db: sqlite3.Connection) -> dict[str, int]:
            # The table, not the writer's cache of it: another process may have written.
            found: dict[str, int] = {}
            for i in range(0, len(room_ids), _IN_CHUNK):
                chunk = room_ids[i:i + _IN_CHUNK]
                found.update(db.execute(
                    "SELECT room_id, last_seq FROM rooms WHERE room_id IN "
                    f"({','.join('?' * len(chunk))})", chunk).fetchall())
            return {room: found.get(room, 0) for room in room_ids}

        return await self._read(read)

    async def events_since(self, room_id: str, after_seq: int, limit: int, *,
                           page: bool = False) -> Recovery:
        def read(db: sqlite3.Connection) -> Recovery:
            last = self._last_seq(db, room_id)
            upto = rules.events_upto(after_seq, last, limit, page)
            if upto is None:
                return Recovery([], False, last)
            bounds = (room_id, after_seq, upto)
            logged = db.execute("SELECT seq, type, payload FROM events WHERE room_id = ? "
                                "AND seq > ? AND seq <= ?", bounds).fetchall()
            return Recovery(replay(room_id, logged, db.execute(_SELECT_CHATS_SINCE, bounds)),
                            upto == last, upto)

        return await self._write(read, refusable=False)

    async def history(self, room_id: str, before_seq: int | None, after_seq: int | None,
                      limit: int) -> tuple[list[HistoryMessage], bool]:
        page = rules.page(before_seq, after_seq, limit)

        def read(db: sqlite3.Connection) -> tuple[list[HistoryMessage], bool]:
            where, args = ["room_id = ?"], [room_id]
            bounds: list[object] = []
            if page.after is not None:
                where.append("seq > ?")
                bounds.append(page.after)
            if page.before is not None:
                where.append("seq < ?")
                bounds.append(page.before)
            order = "DESC" if page.newest_first else "ASC"
            rows = db.execute(f"SELECT {MESSAGE_COLS} FROM messages WHERE "
                              f"{' AND '.join(where)} ORDER BY seq {order} LIMIT ?",
                              (*args, *bounds, page.limit + 1)).fetchall()
            has_more = len(rows) > page.limit
            rows = rows[:page.limit]
            if page.newest_first:
                rows.reverse()
            reactions = self._reactions(db, room_id, [r[0] for r in rows if r[7] is None])
            return [history_message(room_id, r, reactions.get(r[0])) for r in rows], has_more

        return await self._read(read)

    @staticmethod
    def _reactions(db: sqlite3.Connection, room_id: str,
                   ids: list[str]) -> dict[str, dict[str, list[str]]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = db.execute(f"SELECT message_id, emoji, user_id FROM reactions WHERE room_id = ? "
                          f"AND message_id IN ({marks}) ORDER BY seq",
                          (room_id, *ids)).fetchall()
        return rules.aggregate_reactions(rows)


async def run_migrations(path: str) -> int:
    """`hubbub migrate`: bring a database file to the current schema; returns its version."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.OperationalError as exc:
        raise ConfigError(f"cannot open SQLite database {path!r}: {exc}") from None
    try:
        return migrate(db)
    finally:
        db.close()
