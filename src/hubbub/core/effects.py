"""What a rule asks the server to do. Rules return these; the hub carries them out.

Deciding who receives an event is kept apart from delivering it (the hub encodes each
event once and queues the same bytes for every local recipient).

Effects are never changed once made, but they are not `frozen` dataclasses: a frozen
dataclass's `__init__` sets each field through `object.__setattr__`, three times the cost
of a plain one, and a relayed `webrtc` frame makes one or two effects.
"""

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from hubbub.ids import ConnId, RoomId, UserId
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import CallRecord, Out


@dataclass(slots=True)
class Reply:
    """One frame to one connection (welcome, ack, error, pong)."""

    conn: ConnId
    type: str
    payload: Out
    id: str | None = None


@dataclass(slots=True)
class ToRoom:
    """An event for every connection in a room, optionally minus one user."""

    room: RoomId
    type: str
    payload: Out
    exclude_user: UserId | None = None
    # The room seq of a persisted event: with several nodes, delivery follows it.
    seq: int | None = None


@dataclass(slots=True)
class ToRooms:
    """An event for every connection in any of these rooms, each connection once."""

    rooms: tuple[RoomId, ...]
    type: str
    payload: Out


@dataclass(slots=True)
class ToUser:
    """An event for every connection of one user."""

    user: UserId
    type: str
    payload: Out
    exclude_conn: ConnId | None = None


@dataclass(slots=True)
class ToConns:
    """An event for exactly these connections (the owners of a call)."""

    conns: tuple[ConnId, ...]
    type: str
    payload: Out


@dataclass(slots=True)
class ToAll:
    """An event for every authenticated connection (announcements)."""

    type: str
    payload: Out


@dataclass(slots=True)
class Close:
    conn: ConnId
    code: CloseCode
    reason: str


@dataclass(slots=True)
class LogCall:
    """Persist a finished call in the call log (not acked: best effort, logged on failure)."""

    record: CallRecord


@dataclass(slots=True)
class Later:
    """Work on the shared directory whose outcome decides further effects (a join, leave
    or offline seen cluster-wide); the hub awaits it and carries out what it returns."""

    work: "Coroutine[Any, Any, list[Effect]]"


@dataclass(slots=True)
class Forward:
    """A call frame whose call lives on another node: hand it to that node's rules."""

    home: int
    conn: ConnId
    user: UserId
    username: str
    frame: bytes
    frame_id: str | None = None  # the frame's `id`: its answer is awaited (Fanout)


@dataclass(slots=True)
class CatchUp:
    """What was sent to a room while a connection's join waited (someone else's join,
    leave or presence change), held back for it by the hub: it goes out right after the
    join's ack, so that the ack's `members` and these events are the room as it is. The
    items are the hub's own (encoded frames); the rules only pass them on. `members`: the
    users the ack listed, so that a join or leave the list already shows is not sent again."""

    conn: ConnId
    items: list[Any]
    members: frozenset[str]


Effect = (Reply | ToRoom | ToRooms | ToUser | ToConns | ToAll | Close | LogCall | Later
          | Forward | CatchUp)
Effects = list[Effect]
