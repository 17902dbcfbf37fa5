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
