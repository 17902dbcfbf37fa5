"""Error and close codes of PROTOCOL.md §Errors and §Close codes: the one place they are defined."""

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    NOT_IN_ROOM = "not_in_room"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    CONFLICT = "conflict"
    INTERNAL = "internal"


# Codes a misbehaving client earns; enough of them in a short time closes it with 4008.
STRIKE_CODES = frozenset(
    {
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNKNOWN_TYPE,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TOO_LARGE,
        ErrorCode.RATE_LIMITED,
    }
)


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    # Never sent (RFC 6455 §7.4.1), only logged and counted: the peer's close frame held no
    # code (1005), or the connection ended without a close frame (1006).
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL = 1011
    OVERLOADED = 1013
    AUTH_FAILED = 4001
    REPLACED = 4002
    TOO_MANY_BAD_FRAMES = 4008
