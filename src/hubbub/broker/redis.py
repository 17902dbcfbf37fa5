"""Cross-node fan-out over Redis pub/sub (`--redis redis://HOST:PORT/DB`).

One connection listens (SUBSCRIBE), one publishes: everything queued in one loop turn
goes out as one pipeline, in order. Each message starts with the publishing node's id,
so a node skips its own. When Redis goes away the listener reconnects with backoff and
subscribes again to every topic this node holds; what was published meanwhile is lost
(at most once): `on_resumed` says so, and rooms recover from the store (see
hubbub.server.fanout).
"""

import asyncio
import contextlib
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from hubbub.broker.base import Broker, MessageHandler, ResumedHandler
from hubbub.errors import ConfigError

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigError("--redis needs the redis extra: pip install 'hubbub[redis]'") from exc

log = logging.getLogger("hubbub.broker")

ID_LEN = 8  # hex chars of the node id that prefix every message
PREFIX = "hubbub:"


class RedisBroker(Broker):
    def __init__(self, url: str, node_id: str | None = None, prefix: str | None = None) -> None:
        self.url = url
        if prefix is None:
            # Pub/sub ignores the database number: name channels after it, so clusters
            # on different databases of one Redis server stay apart.
            db = urlsplit(url).path.strip("/") or "0"
            prefix = f"{PREFIX}{db}:"
        self.node_id = node_id or secrets.token_hex(ID_LEN // 2)
        if len(self.node_id) != ID_LEN:
            raise ValueError(f"node id must be {ID_LEN} characters")
        self._me = self.node_id.encode()
        self.prefix = prefix
        self._topics: set[str] = set()
        self._on_message: MessageHandler | None = None
        self._on_resumed: ResumedHandler | None = None
        self._resume_pending: set[str] | None = None  # subscriptions a resume waits for
        self._redis: Any = None
        self._pubsub: Any = None
        self._queue: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._confirm: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self.dropped = 0  # messages lost while Redis was unreachable

    def _channel(self, topic: str) -> str:
        return self.prefix + topic

    async def start(self, on_message: MessageHandler,
                    on_resumed: ResumedHandler | None = None) -> None:
        self._on_message = on_message
        self._on_resumed = on_resumed
        # A connection idle for a second is checked (PING) before it publishes: after a
        # Redis restart the stale one is replaced instead of losing the first batch.
        self._redis = aioredis.Redis.from_url(self.url, socket_keepalive=True,
                                              health_check_interval=1)
        loop = asyncio.get_running_loop()
        self._publisher = loop.create_task(self._publish_loop())
        self._tasks = [loop.create_task(self._listen()), self._publisher]
        try:
            await asyncio.wait_for(self.connected.wait(), 10)
        except TimeoutError:
            raise ConfigError(f"cannot reach Redis at {self.url}") from None

    async def close(self) -> None:
        """Publish what is queued (a shutting-down node's last words: its users' calls
        ending, ...), for up to 2 s, then disconnect."""
        self._closing = True
        self._wake.set()
        if self._publisher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._publisher), 2.0)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    # ---- subscriptions ----------------------------------------------------------------
    async def subscribe(self, topic: str) -> None:
        channel = self._channel(topic)
        if topic in self._topics:
            if self._confirm.get(channel):
                # An earlier call's SUBSCRIBE is not confirmed yet: returning now would
                # break the promise of `subscribe` for this caller. Wait for it too.
                await self._confirmed(topic, self._waiter(channel))
            return
        self._topics.add(topic)
        pubsub = self._pubsub
        if pubsub is None:
            return  # the listener subscribes to every topic when it (re)connects
        fut = self._waiter(channel)
        try:
            await pubsub.subscribe(channel)
        except (RedisError, OSError) as exc:
            self._forget(channel, fut)
            log.warning("subscribe %s failed (%s); the listener will retry", topic, exc)
            return
        await self._confirmed(topic, fut)

    def _waiter(self, channel: str) -> "asyncio.Future[None]":
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(channel, []).append(fut)
        return fut

    def _forget(self, channel: str, fut: "asyncio.Future[None]") -> None:
        waiting = self._confirm.get(channel)
        if waiting is not None and fut in waiting:
            waiting.remove(fut)
            if not waiting:
                del self._confirm[channel]

    async def _confirmed(self, topic: str, fut: "asyncio.Future[None]") -> None:
        try:
            await asyncio.wait_for(asyncio.shield(fut), 5)
        except TimeoutError:
            self._forget(self._channel(topic), fut)
            log.warning("subscribe %s not confirmed; the listener will retry", topic)

    def unsubscribe(self, topic: str) -> None:
        if topic not in self._topics:
            return
        self._topics.discard(topic)
        pubsub = self._pubsub
        if pubsub is not None:
            task = asyncio.get_running_loop().create_task(self._unsubscribe(pubsub, topic))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _unsubscribe(self, pubsub: Any, topic: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            if topic not in self._topics:  # not re-subscribed meanwhile
                await pubsub.unsubscribe(self._channel(topic))

    # ---- publishing ---------------------------------------------------------------------
    def publish(self, topic: str, data: bytes) -> None:
        self._queue.append((self._channel(topic), self._me + data))
        self._wake.set()

    async def _publish_loop(self) -> None:
        while not (self._closing and not self._queue):  # closing: what is queued goes out
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                pipe = self._redis.pipeline(transaction=False)
                for channel, data in batch:
                    pipe.publish(channel, data)
                await pipe.execute()
            except (RedisError, OSError) as exc:
                # Not retried: a batch cut off half-way would be sent twice (at most once).
                self.dropped += len(batch)
                log.warning("publish failed, %d messages dropped: %s", len(batch), exc)
                await asyncio.sleep(0.2)

    # ---- listening ----------------------------------------------------------------------
    async def _listen(self) -> None:
        delay = 0.1
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.ping()
                held = set(self._topics)
                if held:
                    await pubsub.subscribe(*(self._channel(t) for t in held))
                self._pubsub = pubsub
                # subscribe() calls made meanwhile saw no connection and left it to us.
                if missed := self._topics - held:
                    await pubsub.subscribe(*(self._channel(t) for t in missed))
                if delay > 0.1:
                    # The publishing connection, idle in the pool, was cut by the same
                    # outage but learns of it only when used, which would cost the next
                    # batch (the health check's PING fails on it and is not retried).
                    # Dropped here, it is made anew for that batch.
                    await self._redis.connection_pool.disconnect(inuse_connections=False)
                self.connected.set()
                if delay > 0.1:
                    log.info("Redis is back: fan-out resumed on %d topics", len(self._topics))
                    # Resumed once Redis confirmed every subscription (`_read`): from
                    # then on, nothing published to them is missed.
                    self._resume_pending = {self._channel(t) for t in held | missed}
                    self._resume_when_confirmed(None)
                delay = 0.1
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("lost Redis (%s); reconnecting", exc)
                self.connected.clear()
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _read(self, pubsub: Any) -> None:
        me, n = self._me, ID_LEN
        plen = len(self.prefix)
        while True:
            msg = await pubsub.get_message(timeout=None)
            if msg is None:
                continue
            kind = msg["type"]
            channel = msg["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if kind == "message":
                data: bytes = msg["data"]
                topic = channel[plen:]
                # Redis may still send a topic whose UNSUBSCRIBE is on its way: once
                # unsubscribe() returned, that topic is not delivered any more.
                if data[:n] != me and topic in self._topics and self._on_message is not None:
                    self._on_message(topic, data[n:])
            elif kind == "subscribe":
                for fut in self._confirm.pop(channel, ()):
                    if not fut.done():
                        fut.set_result(None)
                self._resume_when_confirmed(channel)

    def _resume_when_confirmed(self, channel: str | None) -> None:
        pending = self._resume_pending
        if pending is None:
            return
        if channel is not None:
            pending.discard(channel)
        if not pending:
            self._resume_pending = None
            if self._on_resumed is not None:
                self._on_resumed()
