"""The Store contract on PostgreSQL, plus what is PostgreSQL's own: several nodes writing
to one database at once, migrations under an advisory lock, `hubbub migrate`.

Every test gets a new, empty database on a throwaway cluster (tests/support/services.py).
Without PostgreSQL or asyncpg these tests skip locally and fail in CI (DESIGN §5.4).
"""

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from hubbub.errors import ConfigError, ProtocolError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    CallRecord,
    ChatEvent,
    MessageDeleteEvent,
    MessageEditEvent,
    ReactionEvent,
)
from hubbub.store import open_store
from hubbub.store.base import NewChat, Store
from hubbub.store.migrations import scripts
from tests.contract.store_contract import T0, Backend, StoreContract, chat, full_history
from tests.support.services import PostgresServer, unavailable

if TYPE_CHECKING:
    from hubbub.store.postgres import PostgresStore

VERSIONS = [v for v, _ in scripts("postgres")]


@pytest.fixture
def postgres_store(postgres_dsn: str) -> Callable[[], Store]:
    """How to make a PostgresStore on this test's database (asyncpg must be installed)."""
    if importlib.util.find_spec("asyncpg") is None:
        unavailable("asyncpg is not installed (pip install -e '.[dev]' or hubbub[postgres])")
    from hubbub.store.postgres import PostgresStore

    return lambda: PostgresStore(postgres_dsn)


@pytest.fixture
async def pg(postgres_store: Callable[[], Store]) -> AsyncIterator["PostgresStore"]:
    """An open PostgresStore on this test's database, closed after the test."""
    from hubbub.store.postgres import PostgresStore

    store = postgres_store()
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def backend(postgres_store: Callable[[], Store]) -> Backend:
    return Backend("postgresql", postgres_store, durable=True)


class TestPostgresStore(StoreContract):
    pass


# ---- PostgreSQL's own -------------------------------------------------------------------


@pytest.fixture
async def nodes(postgres_store: Callable[[], Store]) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, like two hubbub nodes."""
    a, b = postgres_store(), postgres_store()
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def query(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def test_two_nodes_appending_to_the_same_rooms_get_gapless_unique_seqs(
        nodes: tuple[Store, Store], postgres_dsn: str) -> None:
    a, b = nodes
    rooms = ["r1", "r2", "r3"]

    async def burst(store: Store, name: str) -> list[ChatEvent]:
        # Several rounds, so the two writers' transactions interleave many times.
        out: list[ChatEvent] = []
        for round_ in range(5):
            out += await asyncio.gather(*(
                chat(store, room=rooms[(i + round_) % 3], user=f"{name}{i % 5}",
                     content=f"{name}-{round_}-{i}") for i in range(60)))
        return out

    from_a, from_b = await asyncio.gather(burst(a, "a"), burst(b, "b"))
    events = from_a + from_b
    assert len({e.message_id for e in events}) == 600
    for room in rooms:
        seqs = sorted(e.seq for e in events if e.room_id == room)
        assert seqs == list(range(1, len(seqs) + 1))
        assert await a.last_seq(room) == await b.last_seq(room) == len(seqs)
        assert [m.seq for m in await full_history(b, room)] == seqs
        replayed = (await a.events_since(room, 0, 1000)).events
        assert [msgspec.json.decode(e.payload)["seq"] for e in replayed] == seqs
    # Both nodes really wrote into the same rooms.
    assert {e.room_id for e in from_a} == {e.room_id for e in from_b} == set(rooms)


async def test_two_nodes_share_one_seq_across_chats_edits_and_reactions(
        nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    m = await chat(a, content="first")
    results = await asyncio.gather(
        chat(b, content="from b"),
        a.edit_message("r", m.message_id, "u1", "edited on a", T0 + 1),
        b.react("r", m.message_id, "u2", "👍", "add", T0 + 2),
        chat(a, content="from a"))
    seqs = sorted(getattr(r, "seq", 0) for r in results)
    assert seqs == [2, 3, 4, 5]
    recovery = await b.events_since("r", 0, 100)
    assert recovery.complete and recovery.last_seq == 5
    assert len(recovery.events) == 5


async def test_a_chat_retried_through_two_nodes_at_once_is_written_once(
        nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    retry = NewChat(room_id="r", user_id="u1", username="U1", content="x", created_at=T0,
                    client_msg_id="c1")
    results = await asyncio.gather(*(store.append_chat(retry) for store in (a, b) * 5))
    assert len({event.message_id for event, _ in results}) == 1
    assert sorted(dup for _, dup in results) == [False] + [True] * 9
    assert await a.last_seq("r") == await b.last_seq("r") == 1


async def until_two_writers_wait(conn: Any) -> None:
    """Poll (PostgreSQL has no event for it) until two writer sessions wait for a lock."""
    waiting = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND application_name = 'hubbub-writer' AND wait_event_type = 'Lock'")
    while await conn.fetchval(waiting) < 2:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def test_a_write_that_deadlocks_with_another_node_is_retried_not_failed(
        nodes: tuple[Store, Store], postgres_dsn: str) -> None:
    # Users retrying through two nodes at once, in opposite orders, to different rooms:
    # node a writes u1/c1, u9/g, u1/c2 to r1; node b writes u1/c2, u9/g, u1/c1 to r2. An
    # outside transaction holds u9/g until both writers wait for it. When it rolls back,
    # one writer takes g and then waits for the other's first message, while the other
    # waits for g: a deadlock, which PostgreSQL breaks by failing one statement. That write
    # (or its batch) runs again, finds the original on its next try, and nobody sees an
    # error.
    import asyncpg  # type: ignore[import-untyped]

    from hubbub.store.postgres import PostgresStore

    a, b = nodes

    def retry(room: str, user: str, cid: str) -> NewChat:
        return NewChat(room_id=room, user_id=user, username=user.upper(), content=cid,
                       created_at=T0, client_msg_id=cid)

    blocker = await asyncpg.connect(postgres_dsn)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("INSERT INTO messages (room_id, message_id, seq, user_id, "
                              "username, content, created_at, client_msg_id) VALUES "
                              "('elsewhere', 'm0', 1, 'u9', 'U9', 'x', 0, 'g')")
        writes = asyncio.gather(
            a.append_chat(retry("r1", "u1", "c1")), a.append_chat(retry("r1", "u9", "g")),
            a.append_chat(retry("r1", "u1", "c2")),
            b.append_chat(retry("r2", "u1", "c2")), b.append_chat(retry("r2", "u9", "g")),
            b.append_chat(retry("r2", "u1", "c1")))
        async with asyncio.timeout(10):
            await until_two_writers_wait(blocker)
        await tx.rollback()
        results = await writes
    finally:
        await blocker.close()
    assert isinstance(a, PostgresStore) and isinstance(b, PostgresStore)
    # The path under test was taken: the deadlocked write went back to its queue, or (a
    # chat append runs without a savepoint) its whole batch ran again with savepoints.
    assert a.retried_writes + b.retried_writes + a.redone_batches + b.redone_batches >= 1
    by_cid: dict[str | None, set[str]] = {}
    for event, _ in results:
        by_cid.setdefault(event.client_msg_id, set()).add(event.message_id)
    assert {cid: len(ids) for cid, ids in by_cid.items()} == {"c1": 1, "c2": 1, "g": 1}
    assert sorted(dup for _, dup in results) == [False] * 3 + [True] * 3
    rows = await query(postgres_dsn, "SELECT room_id, seq FROM messages ORDER BY room_id, seq")
    assert len(rows) == 3
    for room in {r for r, _ in rows}:
        seqs = [seq for r, seq in rows if r == room]
        assert seqs == list(range(1, len(seqs) + 1))


async def test_two_nodes_deleting_one_message_at_once_succeed_once(
        nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    m = await chat(a)
    results = await asyncio.gather(
        a.delete_message("r", m.message_id, "u1", False, T0 + 1),
        b.delete_message("r", m.message_id, "u1", False, T0 + 1),
        return_exceptions=True)
    refused = [r for r in results if isinstance(r, ProtocolError)]
    assert len(refused) == 1 and refused[0].code == ErrorCode.CONFLICT
    assert await a.last_seq("r") == 2


async def test_migrations_run_once_when_two_stores_open_a_new_database_at_once(
        postgres_server: PostgresServer, postgres_store: Callable[[], Store]) -> None:
    from hubbub.store.postgres import PostgresStore

    for _ in range(5):
        dsn = postgres_server.new_database()
        try:
            stores = [PostgresStore(dsn) for _ in range(3)]
            opened = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
            try:
                assert opened == [None, None, None]
                for i, store in enumerate(stores):
                    await chat(store, content=f"from {i}")
                assert await stores[0].last_seq("r") == 3
            finally:
                for store in stores:
                    await store.close()
            rows = await query(dsn, "SELECT version FROM schema_version ORDER BY version")
            assert [v for (v,) in rows] == VERSIONS
        finally:
            postgres_server.release_database(dsn)


async def test_reopening_does_not_run_the_migrations_again(
        postgres_store: Callable[[], Store], postgres_dsn: str) -> None:
    for content in ("first", "second"):
        store = postgres_store()
        await store.open()
        try:
            await chat(store, content=content)
        finally:
            await store.close()
    rows = await query(postgres_dsn, "SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in rows] == VERSIONS


def migrate_cli(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubbub", "migrate", "--store", dsn],
                          capture_output=True, text=True, timeout=60)


async def test_hubbub_migrate_brings_a_new_database_to_the_current_schema(
        postgres_store: Callable[[], Store], postgres_dsn: str) -> None:
    for _ in range(2):  # the second run finds nothing to do
        done = migrate_cli(postgres_dsn)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"schema version {VERSIONS[-1]}"
    rows = await query(postgres_dsn, "SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in rows] == VERSIONS
    store = postgres_store()
    await store.open()
    try:
        assert (await chat(store)).seq == 1
    finally:
        await store.close()


async def test_a_database_a_newer_hubbub_upgraded_is_refused_by_serve_and_migrate(
        postgres_store: Callable[[], Store], postgres_dsn: str) -> None:
    assert migrate_cli(postgres_dsn).returncode == 0
    await query(postgres_dsn, f"INSERT INTO schema_version (version) VALUES ({VERSIONS[-1] + 1})")
    store = postgres_store()
    with pytest.raises(ConfigError, match=f"version {VERSIONS[-1] + 1}, newer than this hubbub"):
        await store.open()
    done = migrate_cli(postgres_dsn)
    assert done.returncode == 2
    assert done.stderr.startswith("hubbub: the PostgreSQL store's schema is version ")
    assert done.stderr.strip().count("\n") == 0, done.stderr


def test_hubbub_migrate_reports_an_unreachable_server(
        postgres_store: Callable[[], Store], postgres_server: PostgresServer) -> None:
    done = migrate_cli(postgres_server.dsn("no_such_database"))
    assert done.returncode == 2
    assert "cannot connect to the PostgreSQL store" in done.stderr


def test_open_store_makes_a_postgres_store_for_both_url_schemes(
        postgres_store: Callable[[], Store]) -> None:
    from hubbub.store.postgres import PostgresStore

    for url in ("postgresql://u:p@db.example:5432/hubbub", "postgres://db.example/hubbub"):
        store = open_store(url)
        assert isinstance(store, PostgresStore) and store.dsn == url


async def test_opening_an_unreachable_database_is_a_config_error(
        postgres_store: Callable[[], Store], postgres_server: PostgresServer) -> None:
    store = open_store(postgres_server.dsn("no_such_database"))
    with pytest.raises(ConfigError, match="cannot connect"):
        await store.open()


async def test_text_with_a_nul_character_is_a_bad_request_and_writes_nothing(
        pg: "PostgresStore") -> None:
    good, *refused = await asyncio.gather(
        chat(pg, content="fine"), chat(pg, content="a\x00b"),
        chat(pg, room="r\x00"), chat(pg, user="u\x00"), return_exceptions=True)
    assert isinstance(good, ChatEvent) and good.seq == 1
    for exc in refused:
        assert isinstance(exc, ProtocolError) and exc.code == ErrorCode.BAD_REQUEST
    assert await pg.last_seq("r") == 1
    assert [m.content for m in await full_history(pg)] == ["fine"]


async def test_the_writer_reconnects_after_its_connection_is_killed(
        pg: "PostgresStore", postgres_dsn: str) -> None:
    await chat(pg, content="before")
    killed = await query(postgres_dsn, "SELECT pg_terminate_backend(pid) FROM "
                                       "pg_stat_activity WHERE application_name = "
                                       "'hubbub-writer' AND datname = current_database()")
    assert killed == [(True,)]
    # The batch that finds the connection dead had not committed: it runs again on a
    # new connection, so the caller sees no error.
    after = await chat(pg, content="after")
    assert after.seq == 2
    assert [m.content for m in await full_history(pg)] == ["before", "after"]


async def test_the_call_log_is_idempotent_per_call_and_newest_first(pg: "PostgresStore") -> None:
    first = CallRecord(call_id="c1", caller="u1", callee="u2", started_at=T0,
                       ended_at=T0 + 10, end_reason="timeout")
    second = CallRecord(call_id="c2", caller="u2", callee="u1", started_at=T0 + 20,
                        answered_at=T0 + 22, ended_at=T0 + 30, end_reason="hangup",
                        ended_by="u1", room_id="r")
    await pg.record_call(first)
    await pg.record_call(second)
    await pg.record_call(second)
    calls = await pg.call_history("u1", 10)
    assert [c.call_id for c in calls] == ["c2", "c1"]
    assert calls[0].duration_ms == 8 and calls[1].duration_ms is None
    assert [c.call_id for c in await pg.call_history("u3", 10)] == []


async def test_call_history_reads_a_page_from_each_index_not_every_call_of_the_user(
        pg: "PostgresStore") -> None:
    # A user in most of 4,000 calls: with one LIMIT outside the UNION, PostgreSQL read and
    # sorted all of them for each page (docs/decisions/0060-call-history-reads-only-a-page.md).
    from hubbub.store.postgres import _CALL_HISTORY

    async with pg._readers().acquire() as conn:
        await conn.executemany(
            "INSERT INTO calls (call_id, caller, callee, started_at, ended_at, end_reason) "
            "VALUES ($1, $2, $3, $4, $5, 'hangup')",
            [(f"c{i}", "u1" if i % 3 else f"u{i}", f"u{i}" if i % 3 else "u1", T0 + i, T0 + i + 1)
             for i in range(4000)])
        await conn.execute("ANALYZE calls")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN (COSTS OFF) " + _CALL_HISTORY, "u1", 20))
    assert "Index Scan Backward using calls_by_caller" in plan, plan
    assert "Index Scan Backward using calls_by_callee" in plan, plan
    assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
    assert [c.call_id for c in await pg.call_history("u1", 3)] == ["c3999", "c3998", "c3997"]

async def test_a_write_after_close_fails_instead_of_waiting_forever(
        postgres_store: Callable[[], Store]) -> None:
    store = postgres_store()
    await store.open()
    await store.close()
    async with asyncio.timeout(5):
        with pytest.raises(RuntimeError, match="closed"):
            await chat(store)
        with pytest.raises(RuntimeError, match="closed"):
            await store.last_seq("r")
        with pytest.raises(RuntimeError, match="closed"):
            await store.history("r", None, None, 10)


async def test_a_run_of_chats_is_one_statement_and_a_retry_among_them_redoes_the_batch(
        pg: "PostgresStore") -> None:
    # Chats side by side in a batch are stored by one statement (ADR 0028). A retry among
    # them stores no row, so the statement comes back short: the batch runs again chat by
    # chat, and the retry gets its original while the others get gapless seqs.
    def new(content: str, cid: str | None) -> NewChat:
        return NewChat(room_id="r" if content < "m3" else "s", user_id="u1",
                       username="U1", content=content, created_at=T0, client_msg_id=cid,
                       reply_to="m-first" if content == "m4" else None)

    stored = await asyncio.gather(*(pg.append_chat(new(f"m{i}", f"c{i}"))
                                    for i in range(5)))
    assert (pg.chats_in_runs, pg.redone_batches) == (5, 0)
    assert [(e.room_id, e.seq) for e, _ in stored] == [
        ("r", 1), ("r", 2), ("r", 3), ("s", 1), ("s", 2)]
    again = await asyncio.gather(pg.append_chat(new("m5", "c5")),
                                 pg.append_chat(new("m1", "c1")),
                                 pg.append_chat(new("m6", None)))
    assert (pg.chats_in_runs, pg.redone_batches) == (5, 1)
    assert [dup for _, dup in again] == [False, True, False]
    assert again[1][0].message_id == stored[1][0].message_id
    assert [(e.room_id, e.seq) for e, _ in again] == [("s", 3), ("r", 2), ("s", 4)]
    assert [(m.content, m.client_msg_id, m.reply_to)
            for m in await full_history(pg, "s")] == [
        ("m3", "c3", None), ("m4", "c4", "m-first"), ("m5", "c5", None), ("m6", None, None)]


async def test_a_chat_that_fails_without_a_savepoint_fails_alone_and_its_batch_commits(
        pg: "PostgresStore") -> None:
    # Chat appends run without a savepoint of their own. A NUL in the content is refused by
    # PostgreSQL's text type mid-transaction: the batch runs again with savepoints, so the
    # bad chat fails alone and the chats around it are stored with gapless seqs.
    def new(content: str) -> NewChat:
        return NewChat(room_id="r", user_id="u1", username="U1", content=content,
                       created_at=T0)

    outcomes = await asyncio.gather(
        pg.append_chat(new("before")), pg.append_chat(new("bad\x00")),
        pg.append_chat(new("after")), return_exceptions=True)
    assert pg.redone_batches == 1
    assert isinstance(outcomes[1], Exception)
    stored = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [(e.content, e.seq) for e, _ in stored] == [("before", 1), ("after", 2)]
    assert [m.content for m in await full_history(pg, "r")] == ["before", "after"]



async def test_upgrading_to_chats_stored_once_replays_every_log_as_before(
        postgres_dsn: str, postgres_store: Callable[[], Store]) -> None:
    # Version 3 takes the chats out of `events` (as SQLite's version 6): recovery rebuilds
    # them from `messages`, with the content they were sent with, erased once deleted.
    import asyncpg  # type: ignore[import-untyped]

    def chat_event(seq: int, message_id: str, content: str | None, **extra: str) -> ChatEvent:
        return ChatEvent(room_id="r", message_id=message_id, seq=seq, user_id="u1",
                         username="U1", content=content, created_at=T0 + seq,
                         **extra)  # type: ignore[arg-type]

    # The room as versions 1-2 kept it: every chat in `messages` and, as broadcast, in
    # `events`; a delete erased the content from both.
    log: list[tuple[int, str, str, msgspec.Struct]] = [
        (1, "chat", "m1", chat_event(1, "m1", "as sent", client_msg_id="c1")),
        (2, "chat", "m2", chat_event(2, "m2", None, reply_to="m1")),
        (3, "reaction", "m1", ReactionEvent(room_id="r", message_id="m1", seq=3, user_id="u1",
                                            emoji="👍", op="add", created_at=T0 + 3)),
        (4, "message_edit", "m1", MessageEditEvent(room_id="r", message_id="m1", seq=4,
                                                   user_id="u1", content="edited",
                                                   edited_at=T0 + 4)),
        (5, "message_edit", "m2", MessageEditEvent(room_id="r", message_id="m2", seq=5,
                                                   user_id="u1", content=None,
                                                   edited_at=T0 + 5)),
        (6, "message_delete", "m2", MessageDeleteEvent(room_id="r", message_id="m2", seq=6,
                                                       user_id="u1", deleted_at=T0 + 6)),
    ]
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for version, sql in scripts("postgres"):
            if version <= 2:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
        await conn.execute("INSERT INTO rooms VALUES ('r', 6)")
        await conn.execute(
            "INSERT INTO messages (room_id, message_id, seq, user_id, username, content, "
            "created_at, edited_at, deleted_at, client_msg_id, reply_to) VALUES "
            "('r', 'm1', 1, 'u1', 'U1', 'edited', $1, $2, NULL, 'c1', NULL), "
            "('r', 'm2', 2, 'u1', 'U1', NULL, $3, $4, $5, NULL, 'm1')",
            T0 + 1, T0 + 4, T0 + 2, T0 + 5, T0 + 6)
        await conn.execute("INSERT INTO reactions VALUES ('r', 'm1', '👍', 'u1', $1, 3)", T0 + 3)
        for seq, type_, message_id, event in log:
            await conn.execute("INSERT INTO events VALUES ('r', $1, $2, $3, 'u1', $4, $5)",
                               seq, type_, message_id, T0 + seq,
                               msgspec.json.encode(event).decode())
    finally:
        await conn.close()
    store = postgres_store()
    await store.open()
    try:
        recovery = await store.events_since("r", 0, 100)
        assert (recovery.complete, recovery.last_seq) == (True, 6)
        assert [(e.type, msgspec.json.decode(e.payload)) for e in recovery.events] == [
            (type_, msgspec.to_builtins(event)) for _, type_, _, event in log]
        later = await store.edit_message("r", "m1", "u1", "edited again", T0 + 50)
        replay = [msgspec.json.decode(e.payload) for e in
                  (await store.events_since("r", 0, 100)).events]
        assert (replay[0]["content"], replay[-1]["seq"]) == ("as sent", later.seq)
    finally:
        await store.close()
    rows = await query(postgres_dsn, "SELECT count(*) FROM events WHERE type = 'chat'")
    assert rows == [(0,)]
    # Version 4 keys messages by their id alone (ADR 0034).
    key = await query(postgres_dsn, "SELECT a.attname FROM pg_index AS i JOIN pg_attribute "
                      "AS a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                      "WHERE i.indrelid = 'messages'::regclass AND i.indisprimary")
    assert key == [("message_id",)]
