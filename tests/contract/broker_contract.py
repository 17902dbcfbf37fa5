"""The contract suite of `hubbub.broker.base.Broker`, written against the abstract contract.

Every backend runs exactly these tests (DESIGN §5.4). A backend's test module provides one
fixture, `backend`, returning a `BrokerBackend`: how to make a new broker on the backend's
one meeting place (a `MemoryBus`, a Redis server), so several brokers are several nodes.
Then it subclasses `BrokerContract`:

    @pytest.fixture
    def backend() -> BrokerBackend: ...

    class TestMemoryBroker(BrokerContract): ...

A backend that needs a service (Redis) gets it from a fixture that skips locally but fails
in CI when the service is missing (tests/support/services.py).

"Nothing arrives" is checked without sleeping: the publisher then sends a *barrier* on a
topic every node holds, and once every node has the barrier, whatever the publisher sent
before it has been delivered. That relies on a publisher's messages keeping their order
across topics, which both backends give (one Redis connection, one event-loop queue).
"""

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from hubbub.broker.base import Broker

BARRIER = "barrier"
WAIT = 10.0  # seconds; bounds a wait for what must arrive, never a timing assertion


@dataclass
class BrokerBackend:
    """`make()` returns a new, unstarted broker on the backend's one bus or server."""

    name: str
    make: Callable[[], Broker]


class Inbox:
    """What one node's broker handed to its `on_message` callback, in arrival order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._arrived = asyncio.Event()

    def __call__(self, topic: str, data: bytes) -> None:
        self.got.append((topic, data))
        self._arrived.set()

    def on(self, topic: str) -> list[bytes]:
        return [data for t, data in self.got if t == topic]

    async def wait_for(self, topic: str, count: int, timeout: float = WAIT) -> list[bytes]:
        """Until `count` messages of `topic` arrived; returns them."""
        async with asyncio.timeout(timeout):
            while len(self.on(topic)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.on(topic)


@dataclass
class Node:
    name: str
    broker: Broker
    inbox: Inbox = field(default_factory=Inbox)


_barriers = itertools.count()


async def barrier(publisher: Node, nodes: list[Node]) -> None:
    """Returns once everything `publisher` published so far reached the other nodes."""
    mark = f"barrier {next(_barriers)}".encode()
    publisher.broker.publish(BARRIER, mark)
    for node in nodes:
        if node is not publisher:
            async with asyncio.timeout(WAIT):
                while mark not in node.inbox.on(BARRIER):
                    await node.inbox.wait_for(BARRIER, len(node.inbox.on(BARRIER)) + 1)


class BrokerContract:
    """Subclass it in a `test_broker*.py` module that defines the `backend` fixture."""

    @pytest.fixture
    async def nodes(self, backend: BrokerBackend) -> AsyncIterator[list[Node]]:
        """Three started brokers on one bus: nodes a, b and c, each holding the barrier."""
        out: list[Node] = []
        try:
            for name in "abc":
                node = Node(name, backend.make())
                await node.broker.start(node.inbox)
                out.append(node)
                await node.broker.subscribe(BARRIER)
            yield out
        finally:
            for node in out:
                await node.broker.close()

    # ---- who receives ---------------------------------------------------------------------
    async def test_a_message_reaches_every_other_subscribed_node_and_not_the_publisher(
            self, nodes: list[Node]) -> None:
        a, b, c = nodes
        for node in nodes:
            await node.broker.subscribe("room:1")
        a.broker.publish("room:1", b"hello")
        assert await b.inbox.wait_for("room:1", 1) == [b"hello"]
        assert await c.inbox.wait_for("room:1", 1) == [b"hello"]
        await barrier(a, nodes)
        assert a.inbox.on("room:1") == []
        assert b.inbox.on("room:1") == c.inbox.on("room:1") == [b"hello"]

    async def test_a_node_not_subscribed_to_the_topic_receives_nothing(
            self, nodes: list[Node]) -> None:
        a, b, c = nodes
        await b.broker.subscribe("room:1")
        await c.broker.subscribe("room:10")  # a different topic, not a prefix match
        a.broker.publish("room:1", b"for b")
        await barrier(a, nodes)
        assert b.inbox.on("room:1") == [b"for b"]
        assert [topic for topic, _ in c.inbox.got] == [BARRIER]

    async def test_a_publish_nobody_holds_goes_nowhere_and_is_no_error(
            self, nodes: list[Node]) -> None:
        a = nodes[0]
        a.broker.publish("room:empty", b"to nobody")
        await barrier(a, nodes)
        assert [topic for node in nodes for topic, _ in node.inbox.got] == [BARRIER, BARRIER]

    async def test_a_message_arrives_byte_for_byte(self, nodes: list[Node]) -> None:
        a, b, _ = nodes
        await b.broker.subscribe("user:u1")
        payloads = [b"", bytes(range(256)), b"\x00" * 10, "ünïcödé ✓".encode(), b"x" * 200_000]
        for data in payloads:
            a.broker.publish("user:u1", data)
        assert await b.inbox.wait_for("user:u1", len(payloads)) == payloads

    # ---- order ----------------------------------------------------------------------------
    async def test_one_publishers_messages_arrive_in_the_order_they_were_published(
            self, nodes: list[Node]) -> None:
        a, b, _ = nodes
        await b.broker.subscribe("room:1")
        sent = [f"{i}".encode() for i in range(500)]
        for data in sent:
            a.broker.publish("room:1", data)
        assert await b.inbox.wait_for("room:1", 500) == sent

    async def test_two_publishers_each_keep_their_own_order(self, nodes: list[Node]) -> None:
        a, b, c = nodes
        await c.broker.subscribe("room:1")
        for i in range(200):
            a.broker.publish("room:1", f"a{i}".encode())
            b.broker.publish("room:1", f"b{i}".encode())
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the two publishers' sends interleave
        got = await c.inbox.wait_for("room:1", 400)
        assert [d for d in got if d.startswith(b"a")] == [f"a{i}".encode() for i in range(200)]
        assert [d for d in got if d.startswith(b"b")] == [f"b{i}".encode() for i in range(200)]

    # ---- subscriptions --------------------------------------------------------------------
    async def test_a_message_published_right_after_subscribe_returns_arrives(
            self, nodes: list[Node]) -> None:
        a, b, _ = nodes
        topics = [f"room:fresh{i}" for i in range(20)]
        for topic in topics:
            await b.broker.subscribe(topic)
            a.broker.publish(topic, topic.encode())
        for topic in topics:
            assert await b.inbox.wait_for(topic, 1) == [topic.encode()]

    async def test_subscribing_twice_delivers_each_message_once(self, nodes: list[Node]) -> None:
        a, b, _ = nodes
        await b.broker.subscribe("room:1")
        await b.broker.subscribe("room:1")
        a.broker.publish("room:1", b"once")
        await barrier(a, nodes)
        assert b.inbox.on("room:1") == [b"once"]

    async def test_concurrent_subscribes_to_one_topic_all_return_and_deliver_once(
            self, nodes: list[Node]) -> None:
        a, b, _ = nodes
        await asyncio.gather(*(b.broker.subscribe("room:1") for _ in range(10)))
        a.broker.publish("room:1", b"once")
        await barrier(a, nodes)
        assert b.inbox.on("room:1") == [b"once"]

    async def test_unsubscribe_stops_delivery(self, nodes: list[Node]) -> None:
        a, b, c = nodes
        await b.broker.subscribe("room:1")
        await c.broker.subscribe("room:1")
        a.broker.publish("room:1", b"before")
        assert await b.inbox.wait_for("room:1", 1) == [b"before"]
        b.broker.unsubscribe("room:1")
        a.broker.publish("room:1", b"after")
        await barrier(a, nodes)
        assert b.inbox.on("room:1") == [b"before"]
        assert c.inbox.on("room:1") == [b"before", b"after"]

    async def test_one_unsubscribe_undoes_a_repeated_subscribe(self, nodes: list[Node]) -> None:
        a, b, _ = nodes
        await b.broker.subscribe("room:1")
        await b.broker.subscribe("room:1")
        b.broker.unsubscribe("room:1")
        a.broker.publish("room:1", b"after")
        await barrier(a, nodes)
        assert b.inbox.on("room:1") == []

    async def test_unsubscribing_twice_or_from_a_topic_never_held_is_harmless(
            self, nodes: list[Node]) -> None:
        a, b, _ = nodes
        b.broker.unsubscribe("room:never")
        await b.broker.subscribe("room:1")
        b.broker.unsubscribe("room:1")
        b.broker.unsubscribe("room:1")
        await b.broker.subscribe("room:2")
        a.broker.publish("room:1", b"gone")
        a.broker.publish("room:2", b"kept")
        await barrier(a, nodes)
        assert [t for t, _ in b.inbox.got if t != BARRIER] == ["room:2"]

    async def test_subscribing_again_right_after_unsubscribing_delivers_again(
            self, nodes: list[Node]) -> None:
        # In call order: the unsubscribe must not win over the later subscribe.
        a, b, _ = nodes
        await b.broker.subscribe("room:1")
        for round_ in range(5):
            b.broker.unsubscribe("room:1")
            await b.broker.subscribe("room:1")
            a.broker.publish("room:1", f"{round_}".encode())
            assert await b.inbox.wait_for("room:1", round_ + 1) == [
                f"{i}".encode() for i in range(round_ + 1)]

    async def test_a_closed_broker_receives_nothing_more(self, nodes: list[Node]) -> None:
        a, b, c = nodes
        for node in (b, c):
            await node.broker.subscribe("room:1")
        await b.broker.close()
        a.broker.publish("room:1", b"after close")
        await barrier(a, [a, c])
        assert c.inbox.on("room:1") == [b"after close"]
        assert b.inbox.on("room:1") == []

    async def test_clustered_is_true_for_brokers_sharing_a_bus(self, nodes: list[Node]) -> None:
        assert all(node.broker.clustered for node in nodes)
        assert len({node.broker.node_id for node in nodes}) == 3
