"""The Store contract on SQLite (in memory and in a file), plus what is SQLite's own:
migrations and group commit."""

import asyncio
import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

from hubbub.errors import ConfigError, ProtocolError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    ChatEvent,
    MessageDeleteEvent,
    MessageEditEvent,
    ReactionEvent,
)
from hubbub.store import sqlite as sqlite_store
from hubbub.store.base import NewChat
from hubbub.store.migrations import scripts
from hubbub.store.sqlite import SqliteStore, run_migrations
from tests.contract.store_contract import T0, Backend, StoreContract, chat, full_history

LATEST = max(version for version, _ in scripts("sqlite"))


@pytest.fixture(params=["sqlite-memory", "sqlite-file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # PostgreSQL runs the same suite in test_store_postgres.py, on a database of its own per
    # test; without the server it skips locally and fails in CI (tests/support/services.py).
    if request.param == "sqlite-memory":
        return Backend(request.param, lambda: SqliteStore(":memory:"), durable=False)
    path = str(tmp_path / "hubbub.db")
    return Backend(request.param, lambda: SqliteStore(path), durable=True)


class TestSqliteStore(StoreContract):
    pass


# ---- SQLite's own ---------------------------------------------------------------------


def versions(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        db.close()


async def test_opening_a_new_file_records_the_latest_schema_version(tmp_path: Path):
    store = SqliteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    await store.close()
    assert versions(tmp_path / "db.sqlite") == [v for v, _ in scripts("sqlite")]
    assert versions(tmp_path / "db.sqlite")[-1] == LATEST


async def test_opening_twice_does_not_run_the_migrations_again(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    for content in ("first", "second"):
        store = SqliteStore(path)
        await store.open()
        try:
            await chat(store, content=content)
        finally:
            await store.close()
    assert versions(tmp_path / "db.sqlite") == [v for v, _ in scripts("sqlite")]
    store = SqliteStore(path)
    await store.open()
    try:
        page, _ = await store.history("r", None, None, 10)
        assert [m.content for m in page] == ["first", "second"]
    finally:
        await store.close()


async def test_hubbub_migrate_on_a_current_database_changes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    assert await run_migrations(path) == LATEST
    assert await run_migrations(path) == LATEST
    assert versions(tmp_path / "db.sqlite") == [v for v, _ in scripts("sqlite")]


async def test_a_file_a_newer_hubbub_upgraded_is_refused_by_serve_and_migrate(tmp_path: Path):
    path = tmp_path / "db.sqlite"
    assert await run_migrations(str(path)) == LATEST
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST + 1,))
    db.commit()
    db.close()
    store = SqliteStore(str(path))
    with pytest.raises(ConfigError, match=f"version {LATEST + 1}, newer than this hubbub"):
        await store.open()
    await store.close()
    with pytest.raises(ConfigError, match=f"knows \\({LATEST}\\)"):
        await run_migrations(str(path))
    assert versions(path)[-1] == LATEST + 1


async def test_two_stores_opening_one_new_file_at_once_both_work(tmp_path: Path) -> None:
    # Two processes starting on a new file race for the WAL switch and the migrations;
    # a race shows only sometimes, so run it on several new files.
    for i in range(20):
        path = str(tmp_path / f"db{i}.sqlite")
        a, b = SqliteStore(path), SqliteStore(path)
        opened = await asyncio.gather(a.open(), b.open(), return_exceptions=True)
        try:
            assert opened == [None, None]
            await chat(a, content="from a")
            await chat(b, content="from b")
            assert await a.last_seq("r") == 2
        finally:
            await a.close()
            await b.close()
        assert versions(tmp_path / f"db{i}.sqlite") == [v for v, _ in scripts("sqlite")]


async def test_upgrading_keeps_reactions_in_the_order_of_their_events(tmp_path: Path):
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        [(_, v1)] = [s for s in scripts("sqlite") if s[0] == 1]
        db.executescript(v1)
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute("INSERT INTO rooms VALUES ('r', 3)")
        db.execute("INSERT INTO messages (room_id, message_id, seq, user_id, username, "
                   "content, created_at) VALUES ('r', 'm1', 1, 'u1', 'U1', 'hi', 5)")
        for seq, user in ((2, "u2"), (3, "u1")):  # u2 reacted first, in the same ms
            payload = (f'{{"roomId":"r","messageId":"m1","seq":{seq},"userId":"{user}",'
                       f'"emoji":"👍","op":"add","createdAt":9}}')
            db.execute("INSERT INTO events VALUES ('r', ?, 'reaction', 'm1', ?, 9, ?)",
                       (seq, user, payload))
            db.execute("INSERT INTO reactions VALUES ('r', 'm1', '👍', ?, 9)", (user,))
    finally:
        db.close()
    store = SqliteStore(str(path))
    await store.open()
    try:
        [message], _ = await store.history("r", None, None, 10)
        assert message.reactions == {"👍": ["u2", "u1"]}
    finally:
        await store.close()
    assert versions(path) == [v for v, _ in scripts("sqlite")]


def database_at(path: Path, version: int) -> sqlite3.Connection:
    """A new file with the schema that migrations 1..version made."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for v, sql in scripts("sqlite"):
        if v <= version:
            db.executescript(sql)
            db.execute("INSERT INTO schema_version VALUES (?)", (v,))
    return db


class LogBeforeV6:
    """Writes rooms the way versions 1-5 did: a chat in `messages` and, as broadcast, in
    `events`; a delete erased the content from both."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.seqs: dict[str, int] = {}

    def _log(self, type_: str, event: msgspec.Struct, room: str, message_id: str,
             user: str, at: int) -> None:
        self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (room, self.seqs[room], type_, message_id, user, at,
                         msgspec.json.encode(event).decode()))
        self.db.execute("INSERT OR REPLACE INTO rooms VALUES (?, ?)", (room, self.seqs[room]))

    def _next(self, room: str) -> int:
        self.seqs[room] = self.seqs.get(room, 0) + 1
        return self.seqs[room]

    def chat(self, room: str, content: str, user: str = "u1", **extra: str) -> str:
        seq = self._next(room)
        message_id = f"m-{room}-{seq}"
        event = ChatEvent(room_id=room, message_id=message_id, seq=seq, user_id=user,
                          username=user.upper(), content=content, created_at=T0 + seq,
                          **extra)  # type: ignore[arg-type]
        self.db.execute("INSERT INTO messages (room_id, message_id, seq, user_id, username, "
                        "content, created_at, client_msg_id, reply_to) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (room, message_id, seq, user, user.upper(), content, T0 + seq,
                         event.client_msg_id, event.reply_to))
        self._log("chat", event, room, message_id, user, T0 + seq)
        return message_id

    def edit(self, room: str, message_id: str, content: str, user: str = "u1") -> None:
        seq = self._next(room)
        self.db.execute("UPDATE messages SET content = ?, edited_at = ? WHERE message_id = ?",
                        (content, T0 + seq, message_id))
        self._log("message_edit", MessageEditEvent(
            room_id=room, message_id=message_id, seq=seq, user_id=user, content=content,
            edited_at=T0 + seq), room, message_id, user, T0 + seq)

    def react(self, room: str, message_id: str, emoji: str, user: str = "u2") -> None:
        seq = self._next(room)
        self.db.execute("INSERT INTO reactions VALUES (?, ?, ?, ?, ?, ?)",
                        (room, message_id, emoji, user, T0 + seq, seq))
        self._log("reaction", ReactionEvent(
            room_id=room, message_id=message_id, seq=seq, user_id=user, emoji=emoji,
            op="add", created_at=T0 + seq), room, message_id, user, T0 + seq)

    def delete(self, room: str, message_id: str, user: str = "u1") -> None:
        seq = self._next(room)
        self.db.execute("UPDATE messages SET content = NULL, deleted_at = ? "
                        "WHERE message_id = ?", (T0 + seq, message_id))
        self.db.execute("UPDATE events SET payload = json_set(payload, '$.content', NULL) "
                        "WHERE message_id = ? AND type IN ('chat', 'message_edit')",
                        (message_id,))
        self.db.execute("DELETE FROM reactions WHERE message_id = ?", (message_id,))
        self._log("message_delete", MessageDeleteEvent(
            room_id=room, message_id=message_id, seq=seq, user_id=user,
            deleted_at=T0 + seq), room, message_id, user, T0 + seq)


def logged(db: sqlite3.Connection, room: str) -> list[tuple[str, object]]:
    """A room's log as versions 1-5 replayed it."""
    return [(t, msgspec.json.decode(p)) for t, p in db.execute(
        "SELECT type, payload FROM events WHERE room_id = ? ORDER BY seq", (room,))]


async def test_upgrading_to_a_rowid_events_table_keeps_every_room_log(tmp_path: Path):
    # Version 5 rebuilds `events` (a WITHOUT ROWID table until then) as a rowid table.
    path = tmp_path / "v4.sqlite"
    db = database_at(path, 4)
    try:
        old = LogBeforeV6(db)
        sent = [old.chat(f"r{i % 3}", f"m{i}") for i in range(30)]
        old.edit("r1", sent[1], "m1 edited")
        before = {room: logged(db, room) for room in ("r0", "r1", "r2")}
    finally:
        db.close()
    store = SqliteStore(str(path))
    await store.open()
    try:
        for room in ("r0", "r1", "r2"):
            recovery = await store.events_since(room, 0, 100)
            assert recovery.complete
            assert [(e.type, msgspec.json.decode(e.payload))
                    for e in recovery.events] == before[room]
        assert (await chat(store, room="r1", content="after")).seq == old.seqs["r1"] + 1
        deleted = await store.delete_message("r1", sent[1], "u1", False, T0 + 2)
        erased = [msgspec.json.decode(e.payload) for e in
                  (await store.events_since("r1", 0, 100)).events
                  if e.type in ("chat", "message_edit")]
        assert [p["content"] for p in erased if p["messageId"] == deleted.message_id] == [
            None, None]
    finally:
        await store.close()
    assert versions(path) == [v for v, _ in scripts("sqlite")]
    db = sqlite3.connect(path)
    try:
        [(sql,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'")
        assert "WITHOUT ROWID" not in sql
        indexes = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}
        assert indexes == {"events_by_seq", "edits_by_message"}
    finally:
        db.close()


async def test_upgrading_to_chats_stored_once_replays_every_log_as_before(tmp_path: Path):
    # Version 6 takes the chats out of `events`: recovery rebuilds them from `messages`,
    # with the content they were sent with, erased once deleted.
    path = tmp_path / "v5.sqlite"
    db = database_at(path, 5)
    try:
        old = LogBeforeV6(db)
        plain = old.chat("r", "plain", client_msg_id="c1")
        edited = old.chat("r", "as sent", user="u2", reply_to=plain)
        old.react("r", plain, "👍")
        old.edit("r", edited, "edited once", user="u2")
        gone = old.chat("r", "secret")
        old.edit("r", edited, "edited twice", user="u2")
        old.edit("r", gone, "more secret")
        old.delete("r", gone)
        old.chat("elsewhere", "other room")
        before = {room: logged(db, room) for room in ("r", "elsewhere")}
    finally:
        db.close()
    store = SqliteStore(str(path))
    await store.open()
    try:
        for room, log in before.items():
            recovery = await store.events_since(room, 0, 100)
            assert (recovery.complete, recovery.last_seq) == (True, len(log))
            assert [(e.type, msgspec.json.decode(e.payload)) for e in recovery.events] == log
        later = await store.edit_message("r", edited, "u2", "edited thrice", T0 + 50)
        replay = [msgspec.json.decode(e.payload) for e in
                  (await store.events_since("r", 1, 100)).events]
        assert replay[0]["content"] == "as sent"
        assert replay[-1]["seq"] == later.seq
        [message] = [m for m in await full_history(store) if m.message_id == edited]
        assert message.content == "edited thrice"
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM events WHERE type = 'chat'").fetchone() == (0,)
    finally:
        db.close()


async def test_upgrading_to_messages_keyed_by_id_keeps_every_message(tmp_path: Path):
    # Version 7 rebuilds `messages` with the message id alone as its key.
    path = tmp_path / "v6.sqlite"
    cols = ("room_id, message_id, seq, user_id, username, content, created_at, edited_at, "
            "deleted_at, client_msg_id, reply_to, sent_content")
    db = database_at(path, 6)
    try:
        for i in range(30):
            room, seq = f"r{i % 3}", i // 3 + 1
            edited, deleted = i % 7 == 1, i % 11 == 2
            db.execute(f"INSERT INTO messages ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (room, f"m{i:02}", seq, f"u{i % 4}", f"U{i % 4}",
                        None if deleted else f"now {i}", T0 + i, T0 + 99 if edited else None,
                        T0 + 99 if deleted else None, f"c{i}" if i % 2 else None,
                        "m00" if i == 5 else None, f"sent {i}" if edited and not deleted else None))
        db.executemany("INSERT INTO rooms VALUES (?, 10)", [("r0",), ("r1",), ("r2",)])
        before = db.execute(f"SELECT {cols} FROM messages ORDER BY room_id, seq").fetchall()
    finally:
        db.close()
    store = SqliteStore(str(path))
    await store.open()
    try:
        retry, duplicate = await store.append_chat(NewChat(
            room_id="r1", user_id="u1", username="U1", content="again", created_at=T0 + 200,
            client_msg_id="c1"))
        assert (duplicate, retry.message_id, retry.seq) == (True, "m01", 1)
        assert [m.message_id for m in await full_history(store, "r2")] == [
            f"m{i:02}" for i in range(2, 30, 3)]
        replay = (await store.events_since("r1", 0, 100)).events
        assert msgspec.json.decode(replay[0].payload)["content"] == "sent 1"
        with pytest.raises(ProtocolError) as refused:
            await store.edit_message("r0", "m01", "u1", "wrong room", T0 + 300)
        assert refused.value.code == ErrorCode.NOT_FOUND
        assert (await chat(store, room="r1", content="after")).seq == 11
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        after = db.execute(f"SELECT {cols} FROM messages WHERE content IS NOT 'after' "
                           "ORDER BY room_id, seq").fetchall()
        assert after == before
        keys = {name: [c[2] for c in db.execute(f"PRAGMA index_info('{name}')")]
                for _, name, *_ in db.execute("PRAGMA index_list(messages)")}
        assert sorted(keys.values()) == [
            ["message_id"], ["room_id", "seq"], ["user_id", "client_msg_id"]]
    finally:
        db.close()


async def test_opening_a_file_waits_out_another_process_upgrading_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An upgrade that rebuilds a table holds the write lock for seconds (ADR 0034): another
    # process opening the file (`--workers`) waits for it, beyond a write's busy timeout.
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "v6.sqlite"
    db = database_at(path, 6)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    peer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    peer.execute("BEGIN IMMEDIATE")  # the peer's upgrade, under way
    done = threading.Timer(0.5, peer.execute, ("COMMIT",))
    done.start()
    store = SqliteStore(str(path))
    try:
        await store.open()
        assert (await chat(store)).seq == 1
    finally:
        await store.close()
        done.join()
        peer.close()
    assert versions(path) == [v for v, _ in scripts("sqlite")]


async def test_a_retry_in_a_batch_of_chats_redoes_the_batch_chat_by_chat() -> None:
    # Chats queued one after another are inserted with one statement per table; a retry
    # among them is found by the count of rows written, and the batch is done again.
    store = SqliteStore(":memory:")
    await store.open()
    try:
        m = await chat(store, content="original", client_msg_id="c0")
        commits = store.commits

        async def retry() -> tuple[ChatEvent, bool]:  # queued in its turn, as the others
            return await store.append_chat(NewChat(
                room_id="r", user_id="u1", username="U1", content="again", created_at=T0,
                client_msg_id="c0"))

        results = await asyncio.gather(
            chat(store, content="a", client_msg_id="c1"),
            store.edit_message("r", m.message_id, "u2", "hijack", 1),
            chat(store, content="b", client_msg_id="c2"),
            retry(),
            chat(store, content="c", client_msg_id="c3"),
            return_exceptions=True)
        assert store.commits == commits + 1
        assert isinstance(results[1], ProtocolError)
        assert results[1].code == ErrorCode.FORBIDDEN
        assert [getattr(r, "seq", None) for r in results] == [2, None, 3, None, 4]
        assert results[3] == (m, True)
        assert [(x.seq, x.content) for x in await full_history(store)] == [
            (1, "original"), (2, "a"), (3, "b"), (4, "c")]
    finally:
        await store.close()


async def test_the_file_store_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    try:
        assert store.synchronous == "FULL"
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


async def test_a_write_after_close_fails_instead_of_waiting_forever() -> None:
    store = SqliteStore(":memory:")
    await store.open()
    await store.close()
    async with asyncio.timeout(5):  # only so a regression fails instead of hanging
        with pytest.raises(RuntimeError, match="closed"):
            await chat(store)
        with pytest.raises(RuntimeError, match="closed"):
            await store.last_seq("r")


async def vm_steps_of_a_delete(room_size: int) -> int:
    """SQLite VM instructions spent deleting (after one edit) the first message of a room
    that holds `room_size` chats: deterministic, unlike a time."""
    store = SqliteStore(":memory:")
    await store.open()
    try:
        first = (await chat(store, content="m0", at=T0)).message_id
        await asyncio.gather(*(chat(store, content=f"m{i}", at=T0 + i)
                               for i in range(1, room_size)))
        await store.edit_message("r", first, "u1", "edited", T0 + room_size)
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        assert store._db is not None
        store._db.set_progress_handler(count, 10)
        await store.delete_message("r", first, "u1", False, T0 + room_size + 1)
        store._db.set_progress_handler(None, 0)
        return steps
    finally:
        await store.close()


async def test_a_delete_finds_the_events_of_its_message_without_walking_the_room() -> None:
    # Without statistics SQLite's planner walked the room's events by primary key to find
    # the chat and its edits: a delete took time in proportion to the room (18.7 ms in a
    # room of 100,000 events), holding the one writer (ADR 0023).
    small, big = await vm_steps_of_a_delete(50), await vm_steps_of_a_delete(2000)
    assert big < 2 * small, (small, big)


async def test_a_write_refused_after_taking_a_seq_gives_it_back() -> None:
    # The writer keeps each room's seq in memory within a transaction; a refused write's
    # savepoint is rolled back, and so must its seq be.
    store = SqliteStore(":memory:")
    await store.open()
    try:
        await chat(store, content="first")

        def take_a_seq_then_refuse(db: sqlite3.Connection) -> None:
            store._next_seq(db, "r")
            raise ProtocolError(ErrorCode.CONFLICT, "refused after taking a seq")

        results = await asyncio.gather(chat(store, content="a"),
                                       store._write(take_a_seq_then_refuse),
                                       chat(store, content="b"), return_exceptions=True)
        assert isinstance(results[1], ProtocolError)
        assert [getattr(r, "seq", None) for r in results] == [2, None, 3]
        assert await store.last_seq("r") == 3
    finally:
        await store.close()


async def test_the_seqs_the_writer_remembers_are_bounded_by_rooms_not_history(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A node that has written to (or joined) a million rooms must not hold a million seqs:
    # past SEQS_KEPT the memory starts over, and seqs read back from `rooms` go on gapless.
    monkeypatch.setattr(sqlite_store, "SEQS_KEPT", 3)
    store = SqliteStore(":memory:")
    await store.open()
    try:
        for i in range(20):
            await chat(store, room=f"r{i}")
            await store.last_seq(f"joined{i}")
            assert len(store._seqs) <= 3 + 2, i  # the bound, plus this transaction's rooms
        assert (await chat(store, room="r0")).seq == 2
        assert (await chat(store, room="r19")).seq == 2
    finally:
        await store.close()


async def test_a_retry_on_another_process_of_one_file_gets_the_original(
        tmp_path: Path) -> None:
    # `--workers` may share a SQLite file: a retry that reaches another worker than its
    # original is still answered with the original, not stored twice.
    path = str(tmp_path / "shared.db")
    a, b = SqliteStore(path), SqliteStore(path)
    await a.open()
    await b.open()
    try:
        await chat(b, content="b wrote before a")
        first = await chat(a, content="once", client_msg_id="c1")
        retried = await b.append_chat(NewChat(room_id="r", user_id="u1", username="U1",
                                              content="again", created_at=T0,
                                              client_msg_id="c1"))
        assert retried == (first, True)
        assert [m.content for m in await full_history(b)] == ["b wrote before a", "once"]
    finally:
        await a.close()
        await b.close()


async def test_a_chat_whose_batch_failed_is_new_when_sent_again() -> None:
    # A failed transaction takes its chats with it: sending one again stores it, rather
    # than answering with an original that was never committed.
    store = SqliteStore(":memory:")
    await store.open()
    try:
        def broken(db: sqlite3.Connection) -> None:
            db.execute("SELECT * FROM no_such_table")

        lost = store.append_chat(NewChat(room_id="r", user_id="u1", username="U1",
                                         content="lost", created_at=T0, client_msg_id="c1"))
        failed = await asyncio.gather(lost, store._write(broken, refusable=False),
                                      return_exceptions=True)
        assert all(isinstance(f, Exception) for f in failed)
        stored = await chat(store, content="sent again", client_msg_id="c1")
        assert stored.seq == 1
        assert [m.content for m in await full_history(store)] == ["sent again"]
    finally:
        await store.close()


async def test_two_processes_writing_one_file_keep_one_gapless_seq(tmp_path: Path) -> None:
    # `--workers` may share a SQLite file: a writer must notice the other's commits
    # (PRAGMA data_version) instead of trusting the seqs it remembers.
    path = str(tmp_path / "shared.db")
    a, b = SqliteStore(path), SqliteStore(path)
    await a.open()
    await b.open()
    try:
        seqs = []
        for i in range(6):
            event = await chat(a if i % 2 == 0 else b, content=f"m{i}", at=T0 + i)
            seqs.append(event.seq)
        assert seqs == [1, 2, 3, 4, 5, 6]
        assert await a.last_seq("r") == await b.last_seq("r") == 6
    finally:
        await a.close()
        await b.close()


async def test_call_history_reads_a_page_from_each_index_not_every_call_of_the_user(
        tmp_path: Path) -> None:
    # `caller = ? OR callee = ?` read every call of the user and sorted them for each page
    # (docs/decisions/0060-call-history-reads-only-a-page.md): each role's newest calls now
    # come from its index in order, LIMIT rows each.
    store = SqliteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sqlite_store._CALL_HISTORY,
                                             ("u1", 20, "u1", "u1", 20, 20))]
    finally:
        db.close()
    assert "SEARCH calls USING INDEX calls_by_caller (caller=?)" in plan
    assert "SEARCH calls USING INDEX calls_by_callee (callee=?)" in plan
    assert not any("MULTI-INDEX OR" in step or step.startswith("SCAN calls") for step in plan)
    # The sorts left are of each branch's LIMIT rows, after the co-routine read them in order.
    searches = [i for i, step in enumerate(plan) if step.startswith("SEARCH calls")]
    assert all(not plan[i + 1].startswith("USE TEMP B-TREE") for i in searches)
