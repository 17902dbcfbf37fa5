"""The Directory contract on every backend: MemoryDirectory (several directories on one
MemoryDirectoryState, as several nodes in one process) and RedisDirectory (several on one
Redis, distinct node ids). Without redis-server the Redis run skips locally and fails in
CI (tests/support/services.py)."""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from hubbub.directory.base import (
    ENDED_CALL_RETENTION_MS,
    REAPED_CALL_RETENTION_MS,
    CallInfo,
    Restore,
)
from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.directory.redis import RedisDirectory
from hubbub.ids import RoomId, UserId
from tests.contract.directory_contract import (
    T0,
    TTL,
    U1,
    U2,
    U3,
    DirectoryBackend,
    DirectoryContract,
)
from tests.support.services import RedisServer


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> DirectoryBackend:
    if request.param == "memory":
        state = MemoryDirectoryState()

        async def forget_memory() -> None:
            empty = MemoryDirectoryState()
            for f in dataclasses.fields(state):
                setattr(state, f.name, getattr(empty, f.name))

        return DirectoryBackend("memory", lambda node, ttl: MemoryDirectory(
            state, node_id=node, node_ttl_ms=ttl), forget_memory)
    url: str = request.getfixturevalue("redis_url")  # skips locally / fails in CI without it
    server: RedisServer = request.getfixturevalue("redis_server")

    async def forget_redis() -> None:
        server.flush()

    return DirectoryBackend("redis", lambda node, ttl: RedisDirectory(
        url, node, node_ttl_ms=ttl), forget_redis)


class TestDirectory(DirectoryContract):
    pass


# ---- Redis's own: a restart --------------------------------------------------------------


async def test_after_a_redis_restart_the_directory_answers_again_without_an_error(
        dedicated_redis: RedisServer) -> None:
    # Every pooled connection is stale after the restart; the first command on each must
    # not fail (a join would answer `internal`, a housekeeping round would be skipped).
    directory = RedisDirectory(dedicated_redis.url(), "node-a", node_ttl_ms=TTL)
    await directory.start()
    try:
        await directory.heartbeat(T0)
        await asyncio.gather(*(directory.add_member(RoomId(f"r{i}"), UserId("u1"))
                               for i in range(5)))  # several connections in the pool
        dedicated_redis.shutdown()
        dedicated_redis.start_again()
        await directory.heartbeat(T0 + 1)
        assert await asyncio.gather(*(directory.add_member(RoomId(f"r{i}"), UserId("u1"))
                                      for i in range(5))) == [True] * 5  # Redis came back empty
        assert await directory.user_up(UserId("u1"), "Ann", T0 + 2) is True
    finally:
        await directory.close()


# ---- forgetting offline users ---------------------------------------------------------------

RETENTION = 60_000


async def test_memory_an_offline_user_is_forgotten_after_the_retention() -> None:
    d = MemoryDirectory(node_id="node-a", node_ttl_ms=TTL, offline_retention_ms=RETENTION)
    await d.heartbeat(T0)
    await d.user_up(UserId("u1"), "Ann", T0)
    assert await d.user_down(UserId("u1"), T0 + 5) is True
    await d.heartbeat(T0 + 5 + RETENTION - 1)
    assert (await d.presence([UserId("u1")]))[UserId("u1")].status == "offline"
    await d.heartbeat(T0 + 5 + RETENTION)
    assert await d.presence([UserId("u1")]) == {}
    assert d.state.forget == []


async def test_memory_a_user_back_online_is_not_forgotten() -> None:
    d = MemoryDirectory(node_id="node-a", node_ttl_ms=TTL, offline_retention_ms=RETENTION)
    await d.heartbeat(T0)
    await d.user_up(UserId("u1"), "Ann", T0)
    await d.user_down(UserId("u1"), T0 + 5)
    await d.user_up(UserId("u1"), "Ann", T0 + 10)
    await d.heartbeat(T0 + 5 + RETENTION)
    assert (await d.presence([UserId("u1")]))[UserId("u1")].status == "online"
    # Offline again later: forgotten a retention after that, not after the first time.
    await d.user_down(UserId("u1"), T0 + 20)
    await d.heartbeat(T0 + 20 + RETENTION - 1)
    assert UserId("u1") in await d.presence([UserId("u1")])
    await d.heartbeat(T0 + 20 + RETENTION)
    assert await d.presence([UserId("u1")]) == {}


async def test_redis_an_offline_users_record_expires_and_coming_back_keeps_it(
        redis_url: str) -> None:
    d = RedisDirectory(redis_url, "node-a", node_ttl_ms=TTL, offline_retention_ms=RETENTION)
    await d.start()
    try:
        await d.heartbeat(T0)
        await d.user_up(UserId("gone"), "Ann", T0)
        key = f"{d.p}u:gone"
        assert await d._r.pttl(key) == -1  # online: kept
        assert await d.user_down(UserId("gone"), T0 + 5) is True
        assert 0 < await d._r.pttl(key) <= RETENTION
        assert (await d.presence([UserId("gone")]))[UserId("gone")].status == "offline"
        await d.user_up(UserId("gone"), "Ann", T0 + 10)
        assert await d._r.pttl(key) == -1
    finally:
        await d.user_down(UserId("gone"), T0 + 20)
        await d._r.delete(f"{d.p}u:gone")
        await d.close()


# ---- calls written back: Redis's keys, the memory's retention ------------------------------

U4 = UserId("u4")


async def keys_of(d: RedisDirectory) -> dict[str, tuple[str, object, int]]:
    """Every key of the directory but the heartbeats: its type, value and expiry."""
    out: dict[str, tuple[str, object, int]] = {}
    async for key in d._r.scan_iter(d.p + "*"):
        if key == d.p + "nodes":
            continue
        kind = await d._r.type(key)
        value = {"hash": d._r.hgetall, "set": d._r.smembers, "string": d._r.get}[kind]
        out[key] = (kind, await value(key), await d._r.pttl(key))
    return out


async def test_redis_a_written_back_call_has_the_keys_fields_and_expiry_of_its_claim(
        redis_server: RedisServer, redis_url: str) -> None:
    d = RedisDirectory(redis_url, "node-a", node_ttl_ms=TTL)
    await d.start()
    try:
        await d.heartbeat(T0)
        await d.claim_call(CallInfo("c1", U1, U2, 7, "node-a", started_at=T0 + 10, room="r1"))
        await d.set_call_state("c1", "active", T0 + 20)
        await d.claim_call(CallInfo("c2", U3, U4, 7, "node-a", started_at=T0 + 15))
        claimed = await keys_of(d)
        redis_server.flush()  # as a restart without persistence
        assert await d.heartbeat(T0 + 30) is True
        for live in (CallInfo("c1", U1, U2, 7, "node-a", "active", started_at=T0 + 10,
                              room="r1", answered_at=T0 + 20),
                     CallInfo("c2", U3, U4, 7, "node-a", started_at=T0 + 15)):
            await d.restore_call(live)
        assert await keys_of(d) == claimed
        assert {k: v[2] for k, v in claimed.items()} == {k: -1 for k in claimed}  # no expiry
    finally:
        await d.close()


@contextlib.asynccontextmanager
async def home_and_reaper(redis_url: str) -> AsyncIterator[tuple[RedisDirectory, RedisDirectory]]:
    """node-a, the home of call c1 (U1 calls U2), heartbeats at T0, which node-b reads: past
    T0 + TTL node-b presumes node-a dead."""
    a, b = (RedisDirectory(redis_url, n, node_ttl_ms=TTL) for n in ("node-a", "node-b"))
    await a.start()
    await b.start()
    try:
        await a.heartbeat(T0)
        await a.claim_call(CallInfo("c1", U1, U2, 7, "node-a", started_at=T0))
        await b.reap_calls(T0, T0)
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_redis_a_reaped_call_is_remembered_for_the_retention(redis_url: str) -> None:
    async with home_and_reaper(redis_url) as (_, b):
        await b.heartbeat(T0 + TTL + 1)
        await b.reap_calls(T0 + TTL + 1, T0 + TTL + 1)
        assert 0 < await b._r.pttl(f"{b.p}reaped-call:c1") <= REAPED_CALL_RETENTION_MS


async def test_redis_a_home_back_while_a_reaper_works_keeps_its_calls(redis_url: str) -> None:
    # The reaper saw node-a silent; before it releases node-a's calls, node-a heartbeats
    # again. Its calls stay: node-a goes on holding them and would never learn otherwise.
    async with home_and_reaper(redis_url) as (a, b):
        now = T0 + TTL + 1
        await b.heartbeat(now)
        read_silent = b._silent

        async def home_back_right_after_the_read(mono_ms: int) -> dict[str, int]:
            silent = await read_silent(mono_ms)
            await a.heartbeat(now)
            return silent

        b._silent = home_back_right_after_the_read  # type: ignore[method-assign]
        assert await b.reap_calls(now, now) == []
        assert await b.call_of(U1) is not None and await b.call_of(U2) is not None
        assert await b._r.smembers(f"{b.p}calls:node-a") == {"c1"}
        assert await b._r.exists(f"{b.p}reaped-call:c1") == 0


async def test_redis_a_call_its_home_ended_meanwhile_is_not_reported_reaped(
        redis_url: str) -> None:
    # Its parties were told when it ended: a second `call_end` would be noise.
    async with home_and_reaper(redis_url) as (a, b):
        await a.claim_call(CallInfo("c2", U3, U4, 7, "node-a", started_at=T0))
        now = T0 + TTL + 1
        await b.heartbeat(now)
        info = b.call_info

        async def ended_right_after_its_read(call_id: str) -> CallInfo | None:
            found = await info(call_id)
            if call_id == "c1":
                await a.release_call("c1", ended=True)
            return found

        b.call_info = ended_right_after_its_read  # type: ignore[method-assign]
        assert [c.call_id for c in await b.reap_calls(now, now)] == ["c2"]
        assert await b._r.smembers(f"{b.p}calls:node-a") == set()


async def test_redis_an_ended_call_is_remembered_for_the_retention(redis_url: str) -> None:
    async with home_and_reaper(redis_url) as (a, _):
        await a.release_call("c1", ended=True)
        assert 0 < await a._r.pttl(f"{a.p}ended-call:c1") <= ENDED_CALL_RETENTION_MS


async def test_memory_an_ended_call_is_forgotten_after_the_retention() -> None:
    # A heartbeat stamps it; from ENDED_CALL_RETENTION_MS after that stamp, it is free.
    state = MemoryDirectoryState()
    a, b = (MemoryDirectory(state, node_id=n, node_ttl_ms=TTL) for n in ("node-a", "node-b"))
    await a.claim_call(CallInfo("c1", U1, U2, 7, "node-a", started_at=T0))
    await a.release_call("c1", ended=True)
    await b.heartbeat(T0 + 5)
    await b.heartbeat(T0 + 5 + ENDED_CALL_RETENTION_MS - 1)
    assert (await b.claim_call(CallInfo("c1", U1, U2, 7, "node-b"))).outcome == "ended"
    await b.heartbeat(T0 + 5 + ENDED_CALL_RETENTION_MS)
    assert state.ended_calls == {}
    assert (await b.claim_call(CallInfo("c1", U1, U2, 7, "node-b"))).outcome == "ok"


async def test_redis_an_ended_call_written_back_is_remembered_for_what_is_left(
        redis_url: str) -> None:
    async with home_and_reaper(redis_url) as (a, _):
        await a.remember_ended({"c1": 20_000, "c2": 20_000}, T0)
        assert 0 < await a._r.pttl(f"{a.p}ended-call:c2") <= 20_000
        assert not await a._r.exists(f"{a.p}ended-call:c1")  # live: c1 keeps its id


async def test_memory_an_ended_call_written_back_is_forgotten_when_its_retention_ends() -> None:
    state = MemoryDirectoryState()
    a = MemoryDirectory(state, node_id="node-a", node_ttl_ms=TTL)
    await a.remember_ended({"c1": 20_000}, T0)
    await a.heartbeat(T0 + 19_999)
    assert (await a.claim_call(CallInfo("c1", U1, U2, 7, "node-a"))).outcome == "ended"
    await a.heartbeat(T0 + 20_000)
    assert (await a.claim_call(CallInfo("c1", U1, U2, 7, "node-a"))).outcome == "ok"


async def test_redis_no_numbers_are_told_while_a_listed_node_publishes_none(
        redis_url: str) -> None:
    # A node of an older version heartbeats without its number (a rolling upgrade): which
    # connections are gone cannot be told, rather than told wrong.
    async with home_and_reaper(redis_url) as (a, _):
        a.number = 101
        await a.heartbeat(T0 + 1)
        assert await a.live_numbers() == {101}
        await a._r.zadd(f"{a.p}nodes", {"node-old": T0 + 1})
        assert await a.live_numbers() is None


async def test_memory_no_numbers_are_told_while_a_listed_node_publishes_none() -> None:
    state = MemoryDirectoryState()
    a = MemoryDirectory(state, node_id="node-a")
    a.number = 101
    await a.heartbeat(T0)
    assert await a.live_numbers() == {101}
    state.heartbeats["node-old"] = T0  # what an older version's heartbeat writes
    assert await a.live_numbers() is None


async def test_memory_a_reaped_call_is_forgotten_after_the_retention() -> None:
    state = MemoryDirectoryState()
    a, b = (MemoryDirectory(state, node_id=n, node_ttl_ms=TTL) for n in ("node-a", "node-b"))
    await a.heartbeat(T0)
    live = CallInfo("c1", U1, U2, 7, "node-a", started_at=T0)
    await a.claim_call(live)
    await b.reap_calls(T0, T0)  # b sees a's last heartbeat
    now = T0 + TTL + 1
    await b.heartbeat(now)
    await b.reap_calls(now, now)
    await b.heartbeat(now + REAPED_CALL_RETENTION_MS - 1)
    assert await a.restore_call(live) == Restore("reaped")
    await b.heartbeat(now + REAPED_CALL_RETENTION_MS)
    assert state.reaped_calls == {}
    assert await a.restore_call(live) == Restore("restored")
