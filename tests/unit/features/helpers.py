"""Who would receive what: the hub's delivery rules (server/hub.py) applied to effects.

Effects say "to room r minus user u"; tests want "what does Bob's connection get".
`recipients` must be asked right after the effects are produced, as the hub does.
"""

from typing import Any

import msgspec

from hubbub.core.effects import Close, Effect, Effects, Reply, ToAll, ToRoom, ToRooms, ToUser
from hubbub.core.session import Session
from hubbub.features.node import Node
from hubbub.features.system import housekeeping
from hubbub.ids import ConnId
from hubbub.protocol.frames import Out
from tests.support.node import asend, asettle, connect, payload


def _user_of(node: Node, conn: ConnId) -> str | None:
    s = node.sessions.get(conn)
    return s.identity.user_id if s is not None and s.identity is not None else None


def frame_of(effect: Effect) -> tuple[str, dict[str, Any]] | None:
    """(type, wire payload) of an effect that sends a frame; None for the others
    (Close, and bookkeeping effects such as a call-log write)."""
    type_, body = getattr(effect, "type", None), getattr(effect, "payload", None)
    if isinstance(effect, Close) or not isinstance(type_, str) or not isinstance(body, Out):
        return None
    return type_, msgspec.to_builtins(body)


def recipients(node: Node, effect: Effect) -> set[ConnId]:
    """The connections the hub would queue `effect` for, in the node's current state."""
    if isinstance(effect, Reply):
        return {effect.conn}
    if isinstance(effect, ToRoom):
        conns = node.rooms.conns(effect.room)
        return {c for c in conns
                if effect.exclude_user is None or _user_of(node, c) != effect.exclude_user}
    if isinstance(effect, ToRooms):
        out: set[ConnId] = set()
        for room in effect.rooms:
            out |= node.rooms.conns(room)
        return out
    if isinstance(effect, ToUser):
        return set(node.user_conns.get(effect.user, ()))
    if isinstance(effect, ToAll):
        return {c for c, s in node.sessions.items() if s.identity is not None}
    # Effects addressed to explicit connections (e.g. the two owners of a call).
    explicit = getattr(effect, "conns", None)
    return set(explicit) if isinstance(explicit, tuple | list | set | frozenset) else set()


def inbox(node: Node, effects: Effects, s: Session) -> list[tuple[str, dict[str, Any]]]:
    """(type, wire payload) of every frame these effects deliver to connection `s`."""
    out = []
    for e in effects:
        sent = frame_of(e)
        if sent is not None and s.conn in recipients(node, e):
            out.append(sent)
    return out


def received(node: Node, effects: Effects, s: Session, type_: str) -> list[dict[str, Any]]:
    return [p for t, p in inbox(node, effects, s) if t == type_]


def closes(effects: Effects) -> list[Close]:
    return [e for e in effects if isinstance(e, Close)]


def errors(effects: Effects) -> list[dict[str, Any]]:
    return [payload(e) for e in effects if isinstance(e, Reply) and e.type == "error"]


async def join(node: Node, s: Session, room: str | int) -> Effects:
    """`join_room` that must succeed; returns its effects (the ack first)."""
    effects = await asend(node, s, "join_room", {"roomId": room}, id="join")
    assert effects and isinstance(effects[0], Reply) and effects[0].type == "ack", effects
    return effects


async def in_room(node: Node, *users: str, room: str = "r1") -> list[Session]:
    """One connection per user, each then joined to `room`, in order."""
    sessions = [connect(node, user) for user in users]
    for s in sessions:
        await join(node, s, room)
    return sessions


async def keep_house(node: Node) -> Effects:
    """One housekeeping round of the node, its directory work carried out."""
    return await asettle(await housekeeping(node, node.clock.now_ms(), node.clock.mono_ms()))
