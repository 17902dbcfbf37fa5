from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hubbub.features.node import Node
from tests.support.clock import FakeClock
from tests.support.node import open_node

MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(clock: FakeClock) -> AsyncIterator[MakeNode]:
    """`await make(**settings)`: a node on the test's FakeClock with an open in-memory
    store (join reads `lastSeq` from it), closed after the test."""
    nodes: list[Node] = []

    async def factory(**overrides: Any) -> Node:
        node = await open_node(overrides.pop("clock", clock), **overrides)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        await node.store.close()


@pytest.fixture
async def node(make: MakeNode) -> Node:
    return await make()
