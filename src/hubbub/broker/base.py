"""The Broker contract: how one node's events reach the other nodes.

Every backend passes the same contract suite (tests/contract/test_broker.py).

- `publish(topic, data)` returns at once; a node's messages reach every *other* node
  subscribed to the topic in the order that node published them. A node never receives
  its own messages: it has already delivered them to its local connections.
- Delivery is at most once. While the backend is unreachable, messages are lost, not
  queued forever; the broker reconnects by itself with backoff and re-subscribes to
  every topic it holds, then calls `on_resumed()`: what was published while it was away
  may be lost. Lost room events are not lost for clients: the store is the truth, and a
  node fills a gap in a room's seqs from it (docs/howto/scale-out.md).
- `subscribe`/`unsubscribe` are idempotent and take effect in call order; `subscribe`
  can be awaited to know that messages published from then on will arrive.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

MessageHandler = Callable[[str, bytes], None]
ResumedHandler = Callable[[], None]


class Broker(ABC):
    node_id: str
    dropped: int = 0  # messages this node could not publish (the backend was away)

    @property
    def clustered(self) -> bool:
        """False for the in-process broker of a single node: nothing to publish to."""
        return True

    @abstractmethod
    async def start(self, on_message: MessageHandler,
                    on_resumed: ResumedHandler | None = None) -> None:
        """Connect; `on_message(topic, data)` is called on the event loop for each message,
        and `on_resumed()` each time the broker is back after losing its backend, once
        every topic is subscribed again: messages published from then on arrive."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start receiving `topic`; returns once the subscription is in place."""

    @abstractmethod
    def unsubscribe(self, topic: str) -> None: ...

    @abstractmethod
    def publish(self, topic: str, data: bytes) -> None:
        """Send to the other nodes subscribed to `topic` (fire and forget, ordered)."""
