"""Wiring: settings -> node -> hub -> aiohttp app; start, serve, shut down gracefully."""

import asyncio
import gc
import logging
import os
import secrets
import signal
import socket
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from hubbub.broker.base import Broker
from hubbub.broker.memory import MemoryBroker
from hubbub.config import Settings
from hubbub.core.clock import Clock, SystemClock
from hubbub.directory.base import Directory
from hubbub.directory.memory import MemoryDirectory
from hubbub.errors import ConfigError
from hubbub.features.node import Node
from hubbub.protocol.codes import CloseCode
from hubbub.server.fanout import Fanout
from hubbub.server.http import HUB, add_routes
from hubbub.server.hub import Hub
from hubbub.server.port import PortRouter
from hubbub.server.timers import Timers
from hubbub.server.ws import GatedProtocol
from hubbub.store import open_store

log = logging.getLogger("hubbub")

DEV_MODE_WARNING = """
  ************************************************************************
  *  DEV IDENTITY MODE: no --jwt-secret is set, so clients say who they  *
  *  are and the server believes them. Fine on a laptop; never expose    *
  *  this to a network. Set --jwt-secret (HUBBUB_JWT_SECRET) for real.   *
  ************************************************************************"""


def redact_url(url: str) -> str:
    """A store or broker URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def make_broker(settings: Settings) -> Broker:
    if not settings.redis:
        return MemoryBroker()
    from hubbub.broker.redis import RedisBroker  # the redis extra is optional

    return RedisBroker(settings.redis)


def make_directory(settings: Settings, node_id: str) -> Directory:
    if not settings.redis:
        return MemoryDirectory(node_id=node_id)
    from hubbub.directory.redis import RedisDirectory

    return RedisDirectory(settings.redis, node_id)


def bind_socket(st: Settings, *, reuse_port: bool | None = None) -> socket.socket:
    """The port's socket, bound but not listening yet; a ConfigError naming the address
    (one line, exit 2) when the port is taken or the host is not this machine's."""
    family = socket.AF_INET6 if ":" in st.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if st.reuse_port if reuse_port is None else reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((st.host, st.port))
    except OSError as exc:
        sock.close()
        host = f"[{st.host}]" if ":" in st.host else st.host
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"cannot listen on {host}:{st.port}: {reason}") from None
    return sock


class Server:
    """One running hubbub node. `start()` binds and listens; `stop()` closes all with 1001."""

    def __init__(self, settings: Settings, clock: Clock | None = None,
                 broker: Broker | None = None, directory: Directory | None = None) -> None:
        self.settings = settings
        self.node = Node(settings, clock or SystemClock())
        self.broker = broker or make_broker(settings)
        self.node.directory = directory or make_directory(settings, self.broker.node_id)
        self.fanout: Fanout | None = None
        self.hub: Hub | None = None
        self.runner: web.AppRunner | None = None
        self.listener: asyncio.Server | None = None
        self.timers: Timers | None = None
        self.port = 0

    def build_app(self) -> web.Application:
        self.hub = Hub(self.node, asyncio.get_running_loop())
        app = web.Application(client_max_size=self.settings.max_frame)
        app[HUB] = self.hub
        add_routes(app, self.hub)
        return app

    async def start(self) -> None:
        st = self.settings
        # Bound first: a port in use is reported before a store upgrade, and in one line.
        sock = bind_socket(st)
        try:
            await self._start(st, sock)
        except BaseException:
            sock.close()
            raise

    async def _start(self, st: Settings, sock: socket.socket) -> None:
        self.node.store = open_store(st.store, synchronous=st.sqlite_synchronous)
        await self.node.store.open()
        if self.broker.clustered:
            self.node.number = secrets.randbelow(2**31 - 1) + 1
        self.node.directory.number = self.node.number
        await self.node.directory.start()
        await self.node.directory.heartbeat(self.node.clock.now_ms())
        if st.dev_identity:  # once the store and Redis are there: a failure is one line
            log.warning(DEV_MODE_WARNING)
        app = self.build_app()
        assert self.hub is not None
        if self.broker.clustered:
            self.fanout = Fanout(self.hub, self.broker, self.node.number)
            await self.fanout.start()
            self.hub.fanout = self.node.fanout = self.fanout
        # The port router enforces the handshake deadline on a connection's request head;
        # an HTTP connection carries one request (server/http.py), so there is no later one.
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=2.0)
        await self.runner.setup()
        sock.listen(st.backlog)
        self.port = sock.getsockname()[1]
        http = self.runner.server
        assert http is not None
        hub, loop = self.hub, asyncio.get_running_loop()
        timeout = st.handshake_timeout
        self.listener = await loop.create_server(
            lambda: PortRouter(lambda: GatedProtocol(hub), http, timeout, loop),
            sock=sock, backlog=st.backlog)
        self.timers = Timers(self.hub)
        self.timers.start()
        log.info("hubbub node up: store=%s identity=%s fan-out=%s", redact_url(st.store),
                 "dev" if st.dev_identity else "jwt",
                 redact_url(st.redis) if st.redis else "this node only")

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, close every connection with 1001, release everything."""
        assert self.runner is not None and self.hub is not None
        if self.listener is not None:
            self.listener.close()
        if self.timers:
            self.timers.stop()
        await self.hub.close_all(CloseCode.GOING_AWAY, "server shutting down")
        # Each closed connection's departure (directory, a call on another node) is
        # background work, to finish before the broker and the directory close.
        await self.hub.settle(2.0)
        await self.runner.cleanup()
        if self.fanout is not None:
            await self.fanout.close()
        await self.node.directory.close()
        await self.node.store.close()


# The garbage collector, set for a server (docs/decisions/0025-garbage-collection.md):
# what exists at startup (modules, classes, the node) is frozen out of every collection,
# and a young collection waits for this many new container objects instead of 700.
GC_YOUNG = 20_000


def tune_gc() -> None:
    """Under load CPython's defaults ran a full collection every 1-2 s, 36 ms on average
    and up to 55 ms, during which nothing was read, written or committed."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 100)


async def serve(settings: Settings) -> int:
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before the `listening on` line: a SIGTERM sent as soon as it is read
    # must already mean a graceful shutdown.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    tune_gc()
    print(f"listening on {server.url}", flush=True)
    await stop.wait()
    log.info("shutting down: closing %d connections with 1001", len(server.hub.conns)
             if server.hub else 0)
    await server.stop()
    log.info("bye")
    return 0
