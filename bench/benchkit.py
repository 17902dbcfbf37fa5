"""Shared pieces of the project's benchmark scripts (bench/*.py); not part of hubbub itself.

- `start_server` / `given_server`: a hubbub process pinned to CPU 0 (fresh SQLite file in a
  temporary folder, rate limits off) or one that is already running (`--url`).
- `WsClient`: a raw RFC 6455 client over an asyncio Protocol. It does the HTTP upgrade, masks its
  frames with a zero key (valid framing, payload bytes unchanged), authenticates with the dev
  identity, joins one room with an `id` and waits for the ack. After that every text frame of a TCP
  read goes, in one loop over the read, to a handler as `(client, buf, start, end)`: nothing is
  copied or JSON-decoded unless the handler does it. `client.read_at` is the `perf_counter()` at the
  start of the read the frame came in.
- `CpuMeter`: cores used by the server (its whole process session, from /proc), by this process
  and by everything else on the machine (`bg`: other work that makes a run noisy).
- Latency summaries, a Markdown table renderer, output folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
HUBBUB = REPO / ".venv" / "bin" / "hubbub"
RESULTS = REPO / "bench" / "results"
SERVER_CPU = 0
LOADGEN_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
LISTEN_RE = re.compile(r"listening on http://([0-9.]+|\[[0-9a-f:]+\]|[a-z.]+):(\d+)")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
NOISY_CORES = 0.3  # other work on the machine above this during a window: a noisy measurement


# ------------------------------------------------------------------ server process


@dataclass
class Server:
    """A server to measure. `session` is the process session whose CPU is read (None: unknown)."""

    host: str
    port: int
    session: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    tmpdir: Path | None = None

    def cpu_seconds(self) -> float | None:
        return None if self.session is None else session_cpu_seconds(self.session)

    def log_tail(self, lines: int = 8) -> str:
        if self.tmpdir is None:
            return ""
        text = "".join(p.read_text(errors="replace") for p in sorted(self.tmpdir.glob("server.*")))
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the server's session, SIGKILL after 10 s, remove its temporary folder."""
        if self.proc is not None and self.proc.poll() is None:
            signal_session(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                signal_session(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def signal_session(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def start_server(extra_args: Sequence[str] = (), *, pin: bool = True,
                 timeout: float = 30.0) -> Server:
    """Start `hubbub serve --port 0` on a fresh SQLite file, rate limits off, pinned to CPU 0."""
    if not HUBBUB.exists():
        raise SystemExit(f"{HUBBUB} is missing: `make bench` creates .venv")
    tmp = Path(tempfile.mkdtemp(prefix="hubbub-bench-"))
    argv = [str(HUBBUB), "serve", "--port", "0", "--store", f"sqlite:///{tmp}/b.db",
            "--rate-limit", "0", *extra_args]
    if pin and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        argv = ["taskset", "-c", str(SERVER_CPU), *argv]
    with open(tmp / "server.out", "wb") as out, open(tmp / "server.err", "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=REPO)
    server = Server("127.0.0.1", 0, session=proc.pid, proc=proc, tmpdir=tmp)
    server.port = wait_for_listening(server, tmp / "server.out", timeout)
    return server


def wait_for_listening(server: Server, stdout_path: Path, timeout: float) -> int:
    """The port from the `listening on http://HOST:PORT` line; stops the server on failure."""
    assert server.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = LISTEN_RE.search(stdout_path.read_text(errors="replace"))
        if match:
            return int(match.group(2))
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = server.log_tail()
    server.stop()
    raise SystemExit(f"hubbub did not print `listening on` within {timeout:.0f} s:\n{tail}")


def given_server(url: str, pid: int | None = None) -> Server:
    """A running server at `url` (http:// or ws://, loopback only); `pid` lets us read its CPU."""
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK or parts.port is None:
        raise SystemExit(f"--url must be a loopback address with a port, not {url!r}")
    return Server(parts.hostname, parts.port, session=None if pid is None else os.getsid(pid))


def session_cpu_seconds(session: int) -> float:
    """User + system CPU seconds of every live process in `session` (the server and any workers)."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on
        if int(fields[3]) == session:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def pin_to_loadgen_cpu() -> None:
    """Run this process on CPU 1, the server on CPU 0 (as the shared run.py does)."""
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOADGEN_CPU})


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True)
class CpuUse:
    """Cores used over a window: the server, this load generator, everything else (noise)."""

    server: float | None
    loadgen: float
    background: float | None


@dataclass
class CpuMeter:
    """CPU use of the server, of this process and of the rest of the machine over a window."""

    server: Server
    _wall: float = 0.0
    _server: float | None = None
    _own: float = 0.0
    _busy: float = 0.0

    def start(self) -> None:
        self._wall, self._server = time.perf_counter(), self.server.cpu_seconds()
        self._own, self._busy = time.process_time(), machine_busy_seconds()

    def stop(self) -> CpuUse:
        wall = time.perf_counter() - self._wall
        now = self.server.cpu_seconds()
        own = time.process_time() - self._own
        busy = machine_busy_seconds() - self._busy
        if now is None or self._server is None:
            return CpuUse(None, own / wall, None)
        server = now - self._server
        return CpuUse(server / wall, own / wall, max(0.0, busy - server - own) / wall)


def is_noisy(background: float | None) -> bool:
    return background is not None and background >= NOISY_CORES


async def wait_for_quiet(server: Server, max_wait: float, threshold: float = NOISY_CORES) -> None:
    """Wait at most `max_wait` s until other work on the machine uses < `threshold` cores."""
    deadline = time.perf_counter() + max_wait
    meter = CpuMeter(server)
    while time.perf_counter() < deadline:
        meter.start()
        await asyncio.sleep(0.5)
        background = meter.stop().background
        if background is None or background < threshold:
            return


# ------------------------------------------------------------------ raw WebSocket client


FrameHandler = Callable[["WsClient", bytes, int, int], None]


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame, masked with a zero key: valid RFC 6455, payload bytes unchanged."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


CLOSE_1000 = masked_frame(8, (1000).to_bytes(2, "big"))


class SetupError(Exception):
    """A connection could not upgrade, authenticate or join."""


class WsClient(asyncio.Protocol):
    """One user, one connection: upgrade, dev-identity auth, join `room`, frames to `handler`."""

    HANDSHAKE, AUTH, JOIN, READY, CLOSED = range(5)

    def __init__(self, index: int, user_id: str, room: str, host: str, port: int,
                 handler: FrameHandler) -> None:
        self.index, self.user_id, self.room = index, user_id, room
        self.handler = handler
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.state = self.HANDSHAKE
        self.read_at = 0.0
        self.close_code: int | None = None
        self.stopping = False
        self.transport: asyncio.Transport | None = None
        self._rest = b""
        self._request = (f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = self.CLOSED
        self._fail(f"connection lost during setup ({exc or 'closed by server'})")

    def data_received(self, data: bytes) -> None:
        self.read_at = time.perf_counter()
        buf = self._rest + data if self._rest else data
        i = 0
        if self.state == self.HANDSHAKE:
            first = self._read_upgrade(buf)
            if first is None:
                return
            i = first
        n = len(buf)
        while i + 2 <= n:
            b0, length, p = buf[i], buf[i + 1] & 127, i + 2
            if length == 126:
                if p + 2 > n:
                    break
                length, p = int.from_bytes(buf[p:p + 2], "big"), p + 2
            elif length == 127:
                if p + 8 > n:
                    break
                length, p = int.from_bytes(buf[p:p + 8], "big"), p + 8
            end = p + length
            if end > n:
                break
            i = end
            opcode = b0 & 15
            if opcode == 1:
                self._text(buf, p, end)
            elif opcode == 9:
                self.send_raw(masked_frame(10, buf[p:end]))
            elif opcode == 8:
                self._closed_by_server(buf[p:end])
                return
        self._rest = buf[i:] if i < n else b""

    # -- sending
    def send_raw(self, frame: bytes) -> None:
        if self.transport is not None and self.state != self.CLOSED:
            self.transport.write(frame)

    def send_text(self, text: str) -> None:
        self.send_raw(masked_frame(1, text.encode()))

    def close(self) -> None:
        """Close handshake (1000), then FIN."""
        self.stopping = True
        if self.transport is not None and self.state != self.CLOSED:
            self.transport.write(CLOSE_1000)
            self.transport.close()
        self.state = self.CLOSED

    # -- setup
    def _read_upgrade(self, buf: bytes) -> int | None:
        """Offset of the first frame after the 101 response; None while incomplete or refused."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._rest = buf
            return None
        if not buf.startswith(b"HTTP/1.1 101"):
            self._rest = b""
            self._fail("upgrade refused: " + buf[:buf.find(b"\r\n")].decode(errors="replace"))
            return None
        self.state = self.AUTH
        self.send_text(json.dumps({"type": "auth", "payload": {"userId": self.user_id,
                                                               "username": self.user_id}}))
        return end + 4

    def _text(self, buf: bytes, start: int, end: int) -> None:
        if self.state == self.READY:
            self.handler(self, buf, start, end)
        elif self.state in (self.AUTH, self.JOIN):
            self._setup_frame(json.loads(buf[start:end]))

    def _setup_frame(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if self.state == self.AUTH and kind == "welcome":
            self.state = self.JOIN
            self.send_text(json.dumps({"type": "join_room", "id": "join",
                                       "payload": {"roomId": self.room}}))
        elif kind == "error" and (self.state == self.AUTH or msg.get("id") == "join"):
            step = "auth" if self.state == self.AUTH else "join"
            self._fail(f"{step} error {msg.get('payload')}")
        elif self.state == self.JOIN and kind == "ack" and msg.get("id") == "join":
            self.state = self.READY
            if not self.ready.done():
                self.ready.set_result(None)

    def _closed_by_server(self, body: bytes) -> None:
        self.close_code = int.from_bytes(body[:2], "big") if len(body) >= 2 else 1005
        self._fail(f"closed by server with {self.close_code}")
        if self.transport is not None:
            self.transport.close()
        self.state = self.CLOSED

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(SetupError(f"{self.user_id}: {why}"))


async def open_clients(server: Server, users: Sequence[tuple[str, str]], handler: FrameHandler,
                       concurrency: int = 100, timeout: float = 60.0) -> list[WsClient]:
    """Connect, authenticate and join every (userId, roomId), `concurrency` at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def open_one(index: int, user: str, room: str) -> WsClient:
        async with gate:
            _, client = await loop.create_connection(
                lambda: WsClient(index, user, room, server.host, server.port, handler),
                server.host, server.port)
            await client.ready
            return client

    async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
        tasks = [group.create_task(open_one(i, user, room)) for i, (user, room) in enumerate(users)]
    return [task.result() for task in tasks]


def close_clients(clients: Sequence[WsClient]) -> None:
    for client in clients:
        client.close()


def dropped_connections(clients: Sequence[WsClient]) -> Counter[str]:
    """Connections the server closed or lost while we still used them, by close code."""
    return Counter(str(c.close_code or "lost") for c in clients
                   if c.state == WsClient.CLOSED and not c.stopping)


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is installed (hubbub depends on it), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# ------------------------------------------------------------------ numbers and output


@dataclass
class Latency:
    """Latency samples in seconds; summary in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        values = sorted(self.samples)
        return {"n": len(values), "p50_ms": percentile_ms(values, 0.50),
                "p99_ms": percentile_ms(values, 0.99),
                "max_ms": values[-1] * 1000 if values else None}


def percentile_ms(sorted_seconds: Sequence[float], q: float) -> float | None:
    if not sorted_seconds:
        return None
    rank = max(0, math.ceil(q * len(sorted_seconds)) - 1)  # nearest rank
    return sorted_seconds[rank] * 1000


def fmt(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def fmt_ms(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table padded to column width: readable on a terminal, valid Markdown."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def output_dir(given: str | None, name: str) -> Path:
    """`given`, or bench/results/<name>-<stamp>/; created."""
    path = Path(given) if given else RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def throwaway_postgres() -> Any:
    """The test suite's throwaway PostgreSQL cluster (tests/support/services.py), or None
    when PostgreSQL is not installed. The caller stops it."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support.services import postgres_bindir, start_postgres

    if postgres_bindir() is None:
        print("no PostgreSQL installed: its rows are skipped", file=sys.stderr, flush=True)
        return None
    return start_postgres()
