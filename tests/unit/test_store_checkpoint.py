"""SQLite WAL checkpoints run on their own thread, not inside a commit (store/sqlite.py):
the chats reach the database file itself while the writer never checkpoints."""

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.store import sqlite as sqlite_store
from hubbub.store.base import NewChat
from hubbub.store.sqlite import SqliteStore


def rows_in_main_file(db: Path, tmp: Path) -> int:
    """Chats in a copy of the database file alone: what a checkpoint has copied there."""
    copy = tmp / "copy.db"
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        except sqlite3.OperationalError:  # not even the schema was copied yet
            return 0


@contextlib.asynccontextmanager
async def store_with_50_chats(db: Path) -> AsyncIterator[SqliteStore]:
    """An open store at `db` that has committed 50 chats; closed on the way out."""
    store = SqliteStore(str(db))
    await store.open()
    try:
        for i in range(50):
            await store.append_chat(NewChat(room_id="r", user_id="u", username="U",
                                            content=f"m{i}", created_at=i))
        yield store
    finally:
        await store.close()


async def test_the_checkpoint_thread_copies_committed_chats_into_the_database_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY_S", 0.02)
    db = tmp_path / "hub.db"
    async with store_with_50_chats(db):
        for _ in range(250):
            if rows_in_main_file(db, tmp_path) == 50:
                break
            await asyncio.sleep(0.02)
        assert rows_in_main_file(db, tmp_path) == 50


async def test_without_the_checkpoint_thread_the_writer_does_not_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the test above: the writer connection's autocheckpoint is off.
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY_S", 3600.0)
    db = tmp_path / "hub.db"
    async with store_with_50_chats(db):
        assert rows_in_main_file(db, tmp_path) == 0
    # Closing the last connection checkpoints: nothing is left only in the WAL.
    assert rows_in_main_file(db, tmp_path) == 50


def wal_frames(db: Path) -> int:
    """Frames in the WAL now (a checkpoint from another connection reports them)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


async def append(store: SqliteStore, n: int) -> None:
    await asyncio.gather(*(store.append_chat(NewChat(room_id=f"r{i % 5}", user_id=f"u{i}",
                                                     username="U", content="x" * 40,
                                                     created_at=i)) for i in range(n)))


async def test_the_writer_copies_the_tail_and_the_wal_starts_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under steady writes a checkpoint never copies the last frames (the writer adds more
    # while it runs), and SQLite restarts the WAL only when all were copied. A reader that
    # holds a snapshot stands in for that writer here: the checkpoint stops at its frames.
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY_S", 3600.0)
    db = tmp_path / "hub.db"
    async with store_with_50_chats(db) as store:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM messages").fetchone()
            await append(store, 50)
            with contextlib.closing(sqlite3.connect(db)) as ckpt:
                _, frames, copied = ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            reader.execute("COMMIT")
        assert copied < frames  # the tail behind the reader's snapshot is left
        store._rewind_wal = True  # what the checkpoint thread says when the tail is short
        await append(store, 1)
        assert not store._rewind_wal
        assert wal_frames(db) < frames  # started over: only the last write's frames


async def test_the_checkpoint_thread_asks_for_a_rewind_only_when_all_was_copied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY_S", 3600.0)
    db = tmp_path / "hub.db"
    async with store_with_50_chats(db) as store:
        loop = asyncio.get_running_loop()
        assert store._checkpointer is not None
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM messages").fetchone()
            await append(store, 20)
            # A reader holds frames the checkpoint may not copy: no rewind yet.
            await loop.run_in_executor(store._checkpointer, store._checkpoint_sync)
            assert not store._rewind_wal
            reader.execute("COMMIT")
        await loop.run_in_executor(store._checkpointer, store._checkpoint_sync)
        assert store._rewind_wal
