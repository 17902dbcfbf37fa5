"""The throwaway services of tests/support/services.py: present -> usable; missing -> skip
locally but fail in CI (DESIGN §5.4: CI never passes by skipping)."""

from pathlib import Path

import pytest

from tests.support import services
from tests.support.services import PostgresServer, RedisServer, redis_command


def test_a_missing_service_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI must not skip"):
        services.unavailable("no such thing")


def test_a_missing_service_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="no such thing"):
        services.unavailable("no such thing")


def test_missing_postgresql_binaries_fail_in_ci(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setattr(services, "IN_CI", True)
    monkeypatch.setenv("HUBBUB_PG_BIN", str(tmp_path / "nothing-here"))
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is not installed"):
        services.start_postgres()


def test_a_missing_redis_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "IN_CI", True)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="redis-server is not installed"):
        services.start_redis()


def test_a_released_database_is_emptied_for_the_next_test(postgres_server: PostgresServer,
                                                          postgres_dsn: str) -> None:
    name = postgres_dsn.rsplit("/", 1)[1]
    postgres_server.psql("CREATE TABLE leftover (x int)", database=name)
    postgres_server.release_database(postgres_dsn)  # the fixture releases it again: harmless
    tables = postgres_server.psql("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                                  "('pg_catalog', 'information_schema')", database=name)
    assert tables.strip() == "0"


def test_redis_url_is_an_empty_redis(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert redis_command(port, "PING") == b"+PONG"
    assert redis_command(port, "SET", "k", "v") == b"+OK"
    assert redis_command(port, "DBSIZE") == b":1"


def test_a_dedicated_redis_starts_again_on_the_same_port_and_empty(
        dedicated_redis: RedisServer) -> None:
    port = dedicated_redis.port
    assert redis_command(port, "SET", "k", "v") == b"+OK"
    dedicated_redis.shutdown()
    with pytest.raises(OSError):
        redis_command(port, "PING", timeout=1.0)
    dedicated_redis.start_again()
    assert dedicated_redis.port == port
    assert redis_command(port, "DBSIZE") == b":0"
