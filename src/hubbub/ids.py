"""Identifiers and the room-id rule of PROTOCOL.md §Transport."""

import re
from typing import NewType

from hubbub.errors import ProtocolError
from hubbub.protocol.codes import ErrorCode

UserId = NewType("UserId", str)
RoomId = NewType("RoomId", str)
ConnId = NewType("ConnId", int)

NODE_BITS = 32  # a connection id carries its node's number above these bits


def conn_id(node_number: int, serial: int) -> ConnId:
    return ConnId((node_number << NODE_BITS) | serial)


def node_of(conn: ConnId) -> int:
    return conn >> NODE_BITS
CallId = NewType("CallId", str)

_ROOM_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
# User ids come from a token's `sub` or, in dev mode, from the client: printable, no spaces.
_USER_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")


def room_id(value: str | int) -> RoomId:
    """Normalise a wire room id: integers become their decimal string (the original
    client sent `joinRoom(1)`); anything else must match `[A-Za-z0-9_.:-]{1,128}`."""
    text = str(value) if isinstance(value, int) else value
    if not _ROOM_ID.fullmatch(text):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "roomId must be 1..128 chars of [A-Za-z0-9_.:-]"
        )
    return RoomId(text)


def user_id(value: str | int) -> UserId:
    text = str(value) if isinstance(value, int) else value
    if not _USER_ID.fullmatch(text):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "userId must be 1..128 printable chars without spaces"
        )
    return UserId(text)
