"""`Pending`: a frame's effects as a function of its store write's result, with every
exception answered by the dispatcher's `refuse`, whether waited for by callback or awaited."""

import asyncio

import pytest

from hubbub.core.effects import Effects, Reply
from hubbub.errors import ProtocolError, StoreUnavailable
from hubbub.features.pending import Pending
from hubbub.ids import ConnId
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import ErrorPayload

CONN = ConnId(1)


def ack(value: int) -> Reply:
    return Reply(CONN, "ack", ErrorPayload(code="ok", message=str(value)), "f")


def refusal(exc: Exception) -> Reply:
    return Reply(CONN, "error", ErrorPayload(code="refused", message=type(exc).__name__), "f")


def then(value: int) -> Effects:
    if value < 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "negative")
    return [ack(value)]


def answered(exc: Exception) -> Effects:
    return [refusal(exc)]


def pending(written: "asyncio.Future[int]") -> Pending[int]:
    p = Pending(written, then)
    p.refuse = answered
    return p


async def test_the_effects_follow_from_the_result_once_written() -> None:
    written: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    p = pending(written)
    seen: list[Effects] = []
    written.add_done_callback(lambda _: seen.append(p.effects()))
    written.set_result(7)
    await asyncio.sleep(0)
    assert seen == [[ack(7)]]


@pytest.mark.parametrize("exc", [StoreUnavailable("disk full"), RuntimeError("bug")])
async def test_a_failed_write_is_answered_by_refuse(exc: Exception) -> None:
    written: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    written.set_exception(exc)
    assert pending(written).effects() == [refusal(exc)]


async def test_a_refusal_from_then_is_answered_by_refuse() -> None:
    written: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    written.set_result(-1)
    (reply,) = pending(written).effects()
    assert isinstance(reply, Reply) and reply.payload == ErrorPayload(code="refused",
                                                                       message="ProtocolError")


async def test_without_refuse_the_exception_goes_to_the_caller() -> None:
    written: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    written.set_exception(StoreUnavailable("disk full"))
    with pytest.raises(StoreUnavailable):
        Pending(written, then).effects()


async def test_awaiting_it_waits_for_the_write_and_answers_like_the_callback() -> None:
    loop = asyncio.get_running_loop()
    good: asyncio.Future[int] = loop.create_future()
    bad: asyncio.Future[int] = loop.create_future()
    waiting = asyncio.gather(pending(good), pending(bad))
    await asyncio.sleep(0)
    assert not waiting.done()
    good.set_result(3)
    bad.set_exception(StoreUnavailable("read-only"))
    assert await waiting == [[ack(3)], [refusal(StoreUnavailable("read-only"))]]


async def test_a_cancelled_wait_is_not_answered() -> None:
    written: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    p = pending(written)

    async def wait() -> Effects:
        return await p

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
