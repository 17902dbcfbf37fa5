"""Throwaway PostgreSQL and Redis servers for tests (DESIGN §6), as pytest fixtures.

- `postgres_server` (session): a PostgreSQL cluster from Debian's packages, made with
  `initdb` in a fresh folder under /tmp and started with `pg_ctl` on a free port, as the
  `postgres` OS user when the tests run as root. Removed at the end of the session.
- `postgres_dsn` (per test): the URL of an empty database of its own on that cluster (no
  tables: opening a store migrates it). Afterwards its sessions are ended and everything in
  it is dropped, and the next test reuses it (faster than CREATE DATABASE with fsync on).
- `redis_server` (session): `redis-server` on a free port, no persistence.
- `redis_url` (per test): its URL, with every key flushed before the test.
- `dedicated_redis` (per test): a `redis-server` of the test's own, which it may stop and
  start again on the same port (a Redis restart, as clients see it).

When a binary is missing the fixture skips, except in CI (`tests.conftest.IN_CI`), where
it fails: a missing service must never turn the suite green (DESIGN §5.4).

The fixtures are registered for the whole suite by `pytest_plugins` in tests/conftest.py.
"""

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import IN_CI

PG_USER = "postgres"  # the superuser of the throwaway cluster, and the OS user when root


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where every service the suite needs must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must not skip: install it, see .ci/run)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tmp_root(prefix: str) -> Path:
    # The service may run as another OS user: it must be able to enter every parent.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


# ---- PostgreSQL -------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """`HUBBUB_PG_BIN`, else the newest Debian /usr/lib/postgresql/N/bin, else `initdb` on PATH."""
    if env := os.environ.get("HUBBUB_PG_BIN"):
        return Path(env)
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    as_user: list[str]  # command prefix that runs a server binary as the cluster's OS user
    _names: Iterator[int] = field(default_factory=itertools.count)
    _free: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; returns the unaligned output."""
        done = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.sockdir), "-p", str(self.port), "-U", PG_USER, "-d", database,
             "-c", sql],
            capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {done.stderr.strip()}")
        return done.stdout

    def new_database(self) -> str:
        """An empty database (no tables); returns its URL. Give it back with
        `release_database`: emptying one is ~10x faster than CREATE DATABASE."""
        if self._free:
            return self._free.pop()
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def release_database(self, dsn: str) -> None:
        """End its sessions, drop everything in it, and keep it for the next test."""
        name = dsn.rsplit("/", 1)[1]
        try:
            self.psql(_RESET, database=name)
        except RuntimeError:
            self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            if dsn not in self._free:
                self._free.append(dsn)

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


# Back to an empty database: sessions ended (a test may leak one), every schema dropped.
_RESET = """
SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid();
DO $$
DECLARE s text;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace
             WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', s);
    END LOOP;
END $$;
CREATE SCHEMA public;
"""


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_postgres() -> PostgresServer:
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        unavailable("PostgreSQL is not installed (no initdb/pg_ctl; Debian: postgresql)")
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            owner = pwd.getpwnam(PG_USER)
        except KeyError:
            unavailable(f"running as root and there is no {PG_USER!r} OS user to run PostgreSQL")
        runuser = shutil.which("runuser")
        if runuser is None:
            unavailable("running as root needs runuser (Debian: util-linux) to start PostgreSQL")
        as_user = [runuser, "-u", PG_USER, "--"]
    root = _tmp_root("hubbub-pg-")
    server = PostgresServer(bindir, root, 0, as_user)
    for folder in (server.data, server.sockdir):
        folder.mkdir(mode=0o700)
        if owner is not None:
            os.chown(folder, owner.pw_uid, owner.pw_gid)
    log = server.sockdir / "postgres.log"
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(server.data), "-U", PG_USER,
                        "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"],
                       check=True, capture_output=True, text=True, timeout=120)
        for _attempt in range(3):  # a free port may be taken between the probe and the start
            server.port = free_port()
            options = (f"-p {server.port} -k {server.sockdir} -c listen_addresses=127.0.0.1 "
                       "-c fsync=on")
            started = subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(server.data), "-l", str(log),
                 "-w", "-t", "60", "-o", options, "start"],
                capture_output=True, text=True, timeout=90)
            if started.returncode == 0:
                return server
        raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()}\n{_log_tail(log)}")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {exc.stderr}") from None
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty database of its own for this test (no tables: opening a store migrates)."""
    dsn = postgres_server.new_database()
    try:
        yield dsn
    finally:
        postgres_server.release_database(dsn)


# ---- Redis -----------------------------------------------------------------------------


def redis_command(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command (RESP) and return the first line of the reply."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(parts))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


@dataclass
class RedisServer:
    root: Path
    port: int
    exe: str = "redis-server"

    @property
    def pidfile(self) -> Path:
        return self.root / "redis.pid"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flush(self) -> None:
        reply = redis_command(self.port, "FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def launch(self) -> bool:
        """Start `redis-server` on `self.port` and wait for it to answer; False if it died
        (the port was taken)."""
        subprocess.run([self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--daemonize", "yes",
                        "--pidfile", str(self.pidfile), "--dir", str(self.root),
                        "--logfile", str(self.root / "redis.log")],
                       check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if redis_command(self.port, "PING", timeout=1.0) == b"+PONG":
                    return True
            pid = self._pid()
            if pid is not None and not _alive(pid):
                return False
            time.sleep(0.02)
        return False

    def shutdown(self, keep_data: bool = False) -> None:
        """Stop the server process (every client connection drops); keep its folder, so
        `start_again()` can bring it back on the same port. Nothing is persisted, unless
        `keep_data`: then it saves a snapshot first, which `start_again()` loads (a
        Redis run with persistence)."""
        if not keep_data:  # nor an earlier snapshot
            (self.root / "dump.rdb").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            redis_command(self.port, "SHUTDOWN", "SAVE" if keep_data else "NOSAVE",
                          timeout=2.0)
        pid = self._pid()
        if pid is not None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        self.pidfile.unlink(missing_ok=True)

    def start_again(self) -> None:
        """After `shutdown()`: the same Redis address answers again (empty, unless it was
        shut down keeping its data)."""
        if not self.launch():
            raise RuntimeError(f"redis-server did not restart on port {self.port}:\n"
                               f"{_log_tail(self.root / 'redis.log')}")

    def stop(self) -> None:
        self.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_redis() -> RedisServer:
    exe = shutil.which("redis-server")
    if exe is None:
        unavailable("redis-server is not installed (Debian: redis-server)")
    root = _tmp_root("hubbub-redis-")
    server = RedisServer(root, 0, exe)
    try:
        for _attempt in range(3):  # a free port may be taken between the probe and the start
            server.port = free_port()
            if server.launch():
                return server
        raise RuntimeError(f"redis-server did not start:\n{_log_tail(root / 'redis.log')}")
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The throwaway Redis, emptied for this test: `redis://127.0.0.1:PORT/0`."""
    redis_server.flush()
    return redis_server.url()


@pytest.fixture
def dedicated_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may stop (`shutdown()`) and start again
    on the same port (`start_again()`): for what happens to clients when Redis restarts."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()
