"""Build a Node and drive it frame by frame, with no network: for unit tests of features."""

from collections.abc import Coroutine
from typing import Any

import msgspec

from hubbub import config
from hubbub.core.effects import (
    Close,
    Effect,
    Effects,
    Later,
    Reply,
    ToAll,
    ToRoom,
    ToRooms,
    ToUser,
)
from hubbub.core.session import Session
from hubbub.features.dispatch import handle_frame
from hubbub.features.node import Node
from hubbub.features.system import close_session, open_session, tick
from hubbub.ids import UserId
from hubbub.store.sqlite import SqliteStore
from tests.support.clock import FakeClock


def make_node(clock: FakeClock | None = None, **overrides: Any) -> Node:
    """A node whose store is an unopened in-memory SQLite: enough for the synchronous rules.
    Use `open_node` for handlers that touch the store (join, chat, history)."""
    overrides.setdefault("store", "sqlite://:memory:")
    node = Node(config.load(env={}, **overrides), clock or FakeClock())
    node.store = SqliteStore(":memory:")
    return node


async def open_node(clock: FakeClock | None = None, **overrides: Any) -> Node:
    node = make_node(clock, **overrides)
    await node.store.open()
    return node


def frame(type_: str, payload: dict[str, Any] | None = None, id: str | None = None) -> bytes:
    data: dict[str, Any] = {"type": type_}
    if id is not None:
        data["id"] = id
    if payload is not None:
        data["payload"] = payload
    return msgspec.json.encode(data)


def run_now(coro: Coroutine[Any, Any, Effects]) -> Effects:
    """Run a coroutine that never waits on I/O (rules over the in-process directory) to its
    end, right here. Handlers that touch the store do wait: use `asend` for those."""
    if not isinstance(coro, Coroutine):  # a chat's `Pending` store write
        raise AssertionError("this handler waits on I/O: use asend")
    try:
        coro.send(None)
    except StopIteration as done:
        result: Effects = done.value
        return result
    coro.close()
    raise AssertionError("this handler waits on I/O: use asend")


def settle(effects: Effects) -> Effects:
    """Carry out `Later` effects (directory work) like the hub does, in place."""
    out: Effects = []
    for e in effects:
        out += settle(run_now(e.work)) if isinstance(e, Later) else [e]
    return out


async def asettle(effects: Effects) -> Effects:
    out: Effects = []
    for e in effects:
        out += await asettle(await e.work) if isinstance(e, Later) else [e]
    return out


def send(node: Node, s: Session, type_: str, payload: dict[str, Any] | None = None,
         id: str | None = None) -> Effects:
    result = handle_frame(node, s, frame(type_, payload, id))
    if not isinstance(result, list):
        result = run_now(result)  # type: ignore[arg-type]
    return settle(result)


async def asend(node: Node, s: Session, type_: str, payload: dict[str, Any] | None = None,
                id: str | None = None) -> Effects:
    """Like `send`, for any handler: awaits the store-bound ones."""
    result = handle_frame(node, s, frame(type_, payload, id))
    if not isinstance(result, list):
        result = await result
    return await asettle(result)


def connect(node: Node, user: str, username: str | None = None) -> Session:
    """A new connection authenticated in dev identity mode."""
    s = open_session(node)
    effects = send(node, s, "auth", {"userId": user, "username": username or user})
    assert [type(e) for e in effects] == [Reply] and effects[0].type == "welcome", effects
    return s


def disconnect(node: Node, s: Session) -> Effects:
    return settle(close_session(node, s.conn))


def advance(node: Node, clock: FakeClock, ms: int) -> Effects:
    """`ms` pass (both clocks), then the node's tick."""
    clock.advance(ms)
    return settle(tick(node, clock.now_ms(), clock.mono_ms()))


def step(node: Node, clock: FakeClock, ms: int) -> Effects:
    """The system clock is set `ms` forward (back, below 0), then the node's tick."""
    clock.step(ms)
    return settle(tick(node, clock.now_ms(), clock.mono_ms()))


def status_of(node: Node, user: str) -> str:
    """A user's presence status as the (in-process) directory knows it."""
    info = run_now(node.directory.presence([UserId(user)]))  # type: ignore[arg-type]
    found = info.get(UserId(user))  # type: ignore[attr-defined]
    return str(found.status) if found else "offline"


def payload(effect: Effect) -> dict[str, Any]:
    """The wire form (camelCase) of an effect's payload."""
    assert not isinstance(effect, Close)
    result: dict[str, Any] = msgspec.to_builtins(effect.payload)
    return result


def of_type(effects: Effects, type_: str) -> list[Effect]:
    return [e for e in effects if not isinstance(e, Close) and e.type == type_]


def replies(effects: Effects) -> list[Reply]:
    return [e for e in effects if isinstance(e, Reply)]


def broadcasts(effects: Effects) -> list[ToRoom | ToRooms | ToUser | ToAll]:
    return [e for e in effects if isinstance(e, ToRoom | ToRooms | ToUser | ToAll)]


def error_code(effects: Effects) -> str | None:
    errs = [e for e in effects if isinstance(e, Reply) and e.type == "error"]
    return payload(errs[0])["code"] if errs else None
