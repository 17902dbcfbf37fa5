"""The Broker contract on every backend: MemoryBroker (several brokers on one MemoryBus, as
several nodes in one process) and RedisBroker (several brokers on one Redis), plus what is
Redis's own: a Redis restart. Without redis-server the Redis tests skip locally and fail in
CI (tests/support/services.py)."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from hubbub.broker.base import Broker
from hubbub.broker.memory import MemoryBroker, MemoryBus
from hubbub.broker.redis import RedisBroker
from tests.contract.broker_contract import WAIT, BrokerBackend, BrokerContract, Inbox
from tests.support.services import RedisServer, redis_command


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> BrokerBackend:
    if request.param == "memory":
        bus = MemoryBus()
        return BrokerBackend("memory", lambda: MemoryBroker(bus))
    url: str = request.getfixturevalue("redis_url")  # skips locally / fails in CI without it
    return BrokerBackend("redis", lambda: RedisBroker(url))


class TestBroker(BrokerContract):
    pass


# ---- the in-process broker's own ----------------------------------------------------------


def test_a_memory_broker_without_a_shared_bus_is_a_lone_node() -> None:
    assert MemoryBroker().clustered is False
    assert MemoryBroker(MemoryBus()).clustered is True


# ---- Redis's own: a restart ---------------------------------------------------------------

_numbers = itertools.count()


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling plain state, nothing to wait on
            await asyncio.sleep(0.02)


async def publish_until_received(publisher: Broker, inbox: Inbox, topic: str,
                                 timeout: float = 30.0) -> bytes:
    """Publish numbered messages on `topic` until one arrives; returns the first that did.
    While the broker is still reconnecting, what it publishes is lost (at most once)."""
    seen = len(inbox.on(topic))
    async with asyncio.timeout(timeout):
        while True:
            publisher.publish(topic, f"probe {next(_numbers)}".encode())
            try:
                got = await inbox.wait_for(topic, seen + 1, timeout=0.2)
            except TimeoutError:
                continue
            return got[seen]


@pytest.fixture
async def two_on_own_redis(dedicated_redis: RedisServer
                           ) -> AsyncIterator[tuple[RedisBroker, RedisBroker, Inbox]]:
    """Brokers a (publishes) and b (listens into the returned inbox) on a Redis of their own."""
    a, b, inbox = RedisBroker(dedicated_redis.url()), RedisBroker(dedicated_redis.url()), Inbox()
    await a.start(Inbox())
    try:
        await b.start(inbox)
        try:
            yield a, b, inbox
        finally:
            await b.close()
    finally:
        await a.close()


async def test_after_a_redis_restart_delivery_resumes_on_every_topic_the_broker_held(
        dedicated_redis: RedisServer,
        two_on_own_redis: tuple[RedisBroker, RedisBroker, Inbox]) -> None:
    a, b, inbox = two_on_own_redis
    topics = ["room:1", "user:u1", "all"]
    for topic in topics:
        await b.subscribe(topic)
        a.publish(topic, b"before")
        assert await inbox.wait_for(topic, 1) == [b"before"]
    dedicated_redis.shutdown()
    a.publish("room:1", b"while down")  # lost or late, never twice (at most once)
    dedicated_redis.start_again()
    for topic in topics:
        assert (await publish_until_received(a, inbox, topic)).startswith(b"probe")
    await b.subscribe("room:check")
    a.publish("room:check", b"done")
    await inbox.wait_for("room:check", 1)
    got = inbox.on("room:1")
    assert got.count(b"while down") <= 1
    assert len(got) == len(set(got))  # nothing delivered twice


async def test_what_is_published_just_before_close_still_goes_out(
        two_on_own_redis: tuple[RedisBroker, RedisBroker, Inbox]) -> None:
    # A node shutting down publishes its last words (calls ending, ...) and closes.
    a, b, inbox = two_on_own_redis
    await b.subscribe("node:1")
    for i in range(50):
        a.publish("node:1", b"last %d" % i)
    await a.close()
    assert await inbox.wait_for("node:1", 50) == [b"last %d" % i for i in range(50)]


async def test_after_a_redis_restart_the_first_publish_is_not_lost(
        dedicated_redis: RedisServer,
        two_on_own_redis: tuple[RedisBroker, RedisBroker, Inbox]) -> None:
    a, b, inbox = two_on_own_redis
    await b.subscribe("room:1")
    a.publish("room:1", b"before")  # the publishing connection is made and pooled
    assert await inbox.wait_for("room:1", 1) == [b"before"]
    dedicated_redis.shutdown()
    await eventually(lambda: not a.connected.is_set() and not b.connected.is_set())
    dedicated_redis.start_again()
    await eventually(lambda: a.connected.is_set() and b.connected.is_set())
    a.publish("room:1", b"after")
    assert await inbox.wait_for("room:1", 2) == [b"before", b"after"]
    assert a.dropped == 0


async def test_a_topic_subscribed_while_redis_is_down_is_delivered_once_it_is_back(
        dedicated_redis: RedisServer,
        two_on_own_redis: tuple[RedisBroker, RedisBroker, Inbox]) -> None:
    a, b, inbox = two_on_own_redis
    await b.subscribe("room:1")
    dedicated_redis.shutdown()
    await eventually(lambda: not b.connected.is_set())  # b noticed
    await asyncio.wait_for(b.subscribe("room:2"), WAIT)  # returns though Redis is away
    dedicated_redis.start_again()
    await publish_until_received(a, inbox, "room:2")
    await publish_until_received(a, inbox, "room:1")


async def test_messages_published_while_redis_is_down_are_dropped_not_queued(
        dedicated_redis: RedisServer,
        two_on_own_redis: tuple[RedisBroker, RedisBroker, Inbox]) -> None:
    a, b, inbox = two_on_own_redis
    await b.subscribe("room:1")
    dedicated_redis.shutdown()
    for i in range(100):
        a.publish("room:1", f"down {i}".encode())
    await eventually(lambda: a.dropped >= 100)  # given up on, not piled up
    dedicated_redis.start_again()
    await publish_until_received(a, inbox, "room:1")
    assert not [d for d in inbox.on("room:1") if d.startswith(b"down")]


async def test_a_second_subscribe_to_a_topic_returns_only_once_the_first_is_in_place(
        dedicated_redis: RedisServer,
        two_on_own_redis: tuple[RedisBroker, RedisBroker, Inbox]) -> None:
    # Two joins of one room on one node both await subscribe(); the second must not return
    # while Redis has not yet taken the first's SUBSCRIBE (publishes would miss this node).
    a, b, inbox = two_on_own_redis
    assert redis_command(dedicated_redis.port, "CLIENT", "PAUSE", "1500", "ALL") == b"+OK"
    first = asyncio.create_task(b.subscribe("room:1"))
    await asyncio.sleep(0)  # its SUBSCRIBE is sent, and waits in the paused Redis
    second = asyncio.create_task(b.subscribe("room:1"))
    await asyncio.wait([second], timeout=0.3)
    assert first.done() or not second.done()
    await asyncio.wait_for(asyncio.gather(first, second), WAIT)
    a.publish("room:1", b"after both")
    assert await inbox.wait_for("room:1", 1) == [b"after both"]


async def test_after_a_redis_restart_the_broker_says_it_resumed_once_it_is_subscribed_again(
        dedicated_redis: RedisServer) -> None:
    """A node checks its rooms against the store when told (hubbub.server.fanout): by then,
    whatever is published must reach it, or a room's last events could be missed for good."""
    b, inbox = RedisBroker(dedicated_redis.url()), Inbox()
    receivers: list[bytes] = []

    def on_resumed() -> None:
        # Published by another node at the very moment b says it resumed.
        receivers.append(redis_command(dedicated_redis.port, "PUBLISH", b.prefix + "room:2",
                                       "othernod" + "right after resuming"))

    await b.start(inbox, on_resumed)
    try:
        await b.subscribe("room:1")
        await b.subscribe("room:2")
        assert receivers == []  # the first connection is no resume
        dedicated_redis.shutdown()
        await eventually(lambda: not b.connected.is_set())
        dedicated_redis.start_again()
        await eventually(lambda: len(receivers) == 1)
        assert receivers == [b":1"]  # b was subscribed again
        assert await inbox.wait_for("room:2", 1) == [b"right after resuming"]
    finally:
        await b.close()
