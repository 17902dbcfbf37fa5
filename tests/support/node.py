"""Build a Node and drive it frame by frame, with no network: for unit tests of features."""

from typing import Any

import msgspec

from hubbub import config
from hubbub.core.effects import Close, Effect, Effects, Reply, ToAll, ToRoom, ToRooms, ToUser
from hubbub.core.session import Session
from hubbub.features.dispatch import handle_frame
from hubbub.features.node import Node
from hubbub.features.system import close_session, open_session, tick
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


def send(node: Node, s: Session, type_: str, payload: dict[str, Any] | None = None,
         id: str | None = None) -> Effects:
    result = handle_frame(node, s, frame(type_, payload, id))
    assert isinstance(result, list), "synchronous handler expected"
    return result


async def asend(node: Node, s: Session, type_: str, payload: dict[str, Any] | None = None,
                id: str | None = None) -> Effects:
    """Like `send`, for any handler: awaits the store-bound ones."""
    result = handle_frame(node, s, frame(type_, payload, id))
    if isinstance(result, list):
        return result
    return await result


def connect(node: Node, user: str, username: str | None = None) -> Session:
    """A new connection authenticated in dev identity mode."""
    s = open_session(node)
    effects = send(node, s, "auth", {"userId": user, "username": username or user})
    assert [type(e) for e in effects] == [Reply] and effects[0].type == "welcome", effects
    return s


def disconnect(node: Node, s: Session) -> Effects:
    return close_session(node, s.conn)


def advance(node: Node, clock: FakeClock, ms: int) -> Effects:
    return tick(node, clock.advance(ms))


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
