"""The Directory contract on every backend: MemoryDirectory (several directories on one
MemoryDirectoryState, as several nodes in one process) and RedisDirectory (several on one
Redis, distinct node ids). Without redis-server the Redis run skips locally and fails in
CI (tests/support/services.py)."""

import pytest

from hubbub.directory.memory import MemoryDirectory, MemoryDirectoryState
from hubbub.directory.redis import RedisDirectory
from tests.contract.directory_contract import DirectoryBackend, DirectoryContract


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
