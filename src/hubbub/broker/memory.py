"""In-process fan-out: the default for one node, and a bus joining several nodes that run
in one process (tests). One node alone publishes to nobody: outgrow it with `--redis`."""

import asyncio
import secrets
from collections import defaultdict

from hubbub.broker.base import Broker, MessageHandler, ResumedHandler


class MemoryBus:
    """What a Redis server is to RedisBroker: the place topics meet."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[MemoryBroker]] = defaultdict(set)


class MemoryBroker(Broker):
    def __init__(self, bus: MemoryBus | None = None, node_id: str | None = None) -> None:
        self.node_id = node_id or secrets.token_hex(4)
        self._shared = bus is not None
        self.bus = bus or MemoryBus()
        self._on_message: MessageHandler | None = None
        self._topics: set[str] = set()

    @property
    def clustered(self) -> bool:
        return self._shared

    async def start(self, on_message: MessageHandler,
                    on_resumed: ResumedHandler | None = None) -> None:
        self._on_message = on_message  # a bus in this process is never lost: never resumed

    async def close(self) -> None:
        for topic in list(self._topics):
            self.unsubscribe(topic)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        self.bus.subscribers[topic].add(self)

    def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        subs = self.bus.subscribers.get(topic)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self.bus.subscribers[topic]

    def publish(self, topic: str, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for node in list(self.bus.subscribers.get(topic, ())):
            if node is not self and node._on_message is not None:
                # Delivered on a later loop turn, like a network hop, in publish order.
                loop.call_soon(node._on_message, topic, data)
