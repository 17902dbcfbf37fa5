"""The Directory contract on every backend: MemoryDirectory (several directories on one
MemoryDirectoryState, as several nodes in one process) and RedisDirectory (several on one
Redis, distinct node ids). Without redis-server the Redis run skips locally and fails in
CI (tests/support/services.py)."""

import asyncio

import pytest

from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.directory.redis import RedisDirectory
from hubbub.ids import RoomId, UserId
from tests.contract.directory_contract import T0, TTL, DirectoryBackend, DirectoryContract
from tests.support.services import RedisServer


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> DirectoryBackend:
    if request.param == "memory":
        state = MemoryDirectoryState()
        return DirectoryBackend("memory", lambda node, ttl: MemoryDirectory(
            state, node_id=node, node_ttl_ms=ttl))
    url: str = request.getfixturevalue("redis_url")  # skips locally / fails in CI without it
    return DirectoryBackend("redis", lambda node, ttl: RedisDirectory(
        url, node, node_ttl_ms=ttl))


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
