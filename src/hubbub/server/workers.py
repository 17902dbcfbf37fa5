"""`--workers N`: N processes sharing one port (SO_REUSEPORT), each a full node.

The parent binds the port (without listening) to fix its number when `--port 0` was
asked for, starts the workers with that port, prints `listening on` once every worker
listens, restarts a worker that dies, and on SIGTERM/SIGINT stops them all (each closes
its connections with 1001) and exits 0. The workers share state through Redis and the
store like separate machines would.
"""

import logging
import signal
import socket
import subprocess
import sys
import threading
import time

from hubbub.config import Settings

log = logging.getLogger("hubbub.workers")


def _reserve_port(settings: Settings) -> socket.socket:
    from hubbub.server.app import bind_socket

    return bind_socket(settings, reuse_port=True)


def _start(port: int, argv: list[str]) -> subprocess.Popen[str]:
    # The last --port/--workers on a command line win: the originals stay, these override.
    cmd = [sys.executable, "-m", "hubbub", *argv, "--port", str(port), "--workers", "1",
           "--reuse-port", "1"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _wait_listening(proc: subprocess.Popen[str]) -> bool:
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            threading.Thread(target=_drain, args=(proc,), daemon=True).start()
            return True
    return False


def _drain(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)


def run_workers(settings: Settings, argv: list[str]) -> int:
    reserved = _reserve_port(settings)
    port = reserved.getsockname()[1]
    procs = [_start(port, argv) for _ in range(settings.workers)]
    if not all(_wait_listening(p) for p in procs):
        for p in procs:
            p.kill()
        print("hubbub: a worker failed to start", file=sys.stderr)
        return 1
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"listening on http://{host}:{port} ({settings.workers} workers)", flush=True)
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping.wait(0.5):
        for i, p in enumerate(procs):
            if p.poll() is not None:
                log.warning("worker pid %d exited with %s; starting another", p.pid,
                            p.returncode)
                procs[i] = _start(port, argv)
                _wait_listening(procs[i])
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    reserved.close()
    return 0

