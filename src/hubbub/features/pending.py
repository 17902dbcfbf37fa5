"""A frame whose effects wait on one store write that is already queued (a chat).

Such a frame needs no coroutine: its effects are a plain function of the write's result.
`/ws` waits for it with a callback on the write's future, where a coroutine would need a
task of its own: 1.2 µs of the event loop per chat in process, 6.5 % more persisted chats
(docs/decisions/0035-a-chat-waits-without-a-task.md). It is still awaitable, so
everything that awaits a handler's result works with it unchanged.
"""

from collections.abc import Callable, Generator
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar

from hubbub.core.effects import Effects

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Written(Protocol[T_co]):
    """What a store hands back for a queued write: an asyncio future, as the rules see it."""

    def done(self) -> bool: ...

    def result(self) -> T_co: ...

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...

    def __await__(self) -> Generator[Any, None, T_co]: ...


class Pending(Generic[T]):
    """`written` resolves when the store has made the write durable (or failed it);
    `then` turns its result into the frame's effects. `refuse`, set by the dispatcher,
    answers an exception from either: a refusal, a store failure, a bug."""

    __slots__ = ("refuse", "then", "written")

    def __init__(self, written: Written[T], then: Callable[[T], Effects]) -> None:
        self.written = written
        self.then = then
        self.refuse: Callable[[Exception], Effects] | None = None

    def effects(self) -> Effects:
        """The frame's effects, once `written` is done."""
        try:
            return self.then(self.written.result())
        except Exception as exc:
            if self.refuse is None:
                raise
            return self.refuse(exc)

    def __await__(self) -> Generator[Any, None, Effects]:
        if not self.written.done():
            with suppress(Exception):  # `effects` answers it; a cancellation goes on up
                yield from self.written.__await__()
        return self.effects()
