"""Who a connection is once authenticated, and what it may do (PROTOCOL §Authentication)."""

import unicodedata
from dataclasses import dataclass
from fnmatch import fnmatchcase

from hubbub.ids import RoomId, UserId


@dataclass(slots=True, frozen=True)
class Identity:
    user_id: UserId
    username: str
    admin: bool = False
    # Glob patterns from the token's `rooms` claim; None = any room.
    room_globs: tuple[str, ...] | None = None
    # Token expiry (ms since the epoch); None = never (dev identity mode).
    expires_at_ms: int | None = None

    def may_join(self, room: RoomId) -> bool:
        if self.room_globs is None:
            return True
        return any(fnmatchcase(room, pattern) for pattern in self.room_globs)


def speaks_for(user: UserId, *claimed: str | int | None) -> bool:
    """PROTOCOL §Authentication: a payload's `userId`/`from`, where given, must name the
    authenticated user (an integer is compared as its decimal string)."""
    return all(c is None or str(c) == user for c in claimed)


MAX_NAME_CHARS = 128
_ZWJ = "\u200d"


def _extends(ch: str) -> bool:
    """Whether a code point belongs to the character before it (Unicode's grapheme
    Extend, near enough): combining marks, ZWJ/ZWNJ, variation selectors, skin tones,
    emoji tag characters."""
    o = ord(ch)
    return (unicodedata.category(ch) in ("Mn", "Me", "Mc") or o in (0x200C, 0x200D)
            or 0xFE00 <= o <= 0xFE0F or 0x1F3FB <= o <= 0x1F3FF or 0xE0020 <= o <= 0xE007F
            or 0xE0100 <= o <= 0xE01EF)


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def cut_name(name: str, limit: int = MAX_NAME_CHARS) -> str:
    """`name` cut to at most `limit` code points, at a character boundary as a reader sees
    it: never inside a combining sequence, a ZWJ emoji sequence or a flag (a family emoji
    is 7 code points; cut in its middle it becomes another person). A single character
    longer than `limit` is cut at `limit` all the same. Never splits a surrogate pair: a
    Python str has none (docs/decisions/0080)."""
    if len(name) <= limit:
        return name
    cut = limit
    while cut > 0 and (_extends(name[cut]) or name[cut - 1] == _ZWJ):
        cut -= 1
    if cut > 0 and _regional(name[cut]):  # flags are pairs of regional indicators
        run = 0
        while run < cut and _regional(name[cut - 1 - run]):
            run += 1
        cut -= run % 2
    return name[:cut] if cut > 0 else name[:limit]


def display_name(name: object, fallback: str) -> str:
    """The username to show: a JWT's `name` or a dev `username`, cut to 128 characters;
    `fallback` (the userId) when it is not a string, empty, or not text every store and
    client can hold (U+0000, a lone surrogate)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return fallback
    try:
        name.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8, no JSON frame can carry it
        return fallback
    return cut_name(name)
