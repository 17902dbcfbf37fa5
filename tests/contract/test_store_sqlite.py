"""The Store contract on SQLite (in memory and in a file), plus what is SQLite's own:
migrations and group commit."""

import asyncio
import sqlite3
from pathlib import Path

import msgspec
import pytest

from hubbub.errors import ProtocolError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import ChatEvent
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


async def test_upgrading_to_a_rowid_events_table_keeps_every_room_log(tmp_path: Path):
    # Version 5 rebuilds `events` (a WITHOUT ROWID table until then) as a rowid table.
    path = tmp_path / "v4.sqlite"
    store = SqliteStore(str(path))
    await store.open()
    try:
        sent = [await chat(store, room=f"r{i % 3}", content=f"m{i}") for i in range(30)]
        edited = await store.edit_message("r1", sent[1].message_id, "u1", "m1 edited", T0 + 1)
    finally:
        await store.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:  # back to how version 4 kept the log
        rows = db.execute("SELECT * FROM events ORDER BY room_id, seq").fetchall()
        db.execute("DROP TABLE events")
        [(_, v1)] = [s for s in scripts("sqlite") if s[0] == 1]
        start = v1.index("CREATE TABLE events")
        db.execute(v1[start:v1.index(";", start)])
        db.execute("CREATE INDEX edits_by_message ON events (room_id, message_id) "
                   "WHERE type = 'message_edit'")
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("DELETE FROM schema_version WHERE version > 4")
    finally:
        db.close()
    store = SqliteStore(str(path))
    await store.open()
    try:
        for room in ("r0", "r1", "r2"):
            recovery = await store.events_since(room, 0, 100)
            assert recovery.complete
            seqs = [msgspec.json.decode(e.payload)["seq"] for e in recovery.events]
            assert seqs == list(range(1, recovery.last_seq + 1))
        assert [e.type for e in (await store.events_since("r1", 0, 100)).events][-1] == \
            "message_edit"
        assert (await chat(store, room="r1", content="after")).seq == edited.seq + 1
        deleted = await store.delete_message("r1", sent[1].message_id, "u1", False, T0 + 2)
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
