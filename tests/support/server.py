"""Real hubbub servers for integration tests: in this process on port 0, or as a subprocess."""

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hubbub import config
from hubbub.server.app import Server


@contextlib.asynccontextmanager
async def running_server(**overrides: Any) -> AsyncIterator[Server]:
    """A node serving on 127.0.0.1 with a free port, in the test's own event loop."""
    overrides.setdefault("port", 0)
    overrides.setdefault("store", "sqlite://:memory:")
    overrides.setdefault("log_level", "warning")
    server = Server(config.load(env={}, **overrides))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def ws_url(server: Server, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")


@dataclass
class Process:
    proc: subprocess.Popen[str]
    url: str

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_process(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> Process:
    """`hubbub serve --port 0 ARGS` as a real process; waits for its `listening on` line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        raise AssertionError("server did not start in time")
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"unexpected first line: {line!r}; stderr: {proc.stderr.read()!r}")
    return Process(proc, match.group(1))
