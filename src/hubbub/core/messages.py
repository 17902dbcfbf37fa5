"""Chat rules (PROTOCOL §Client → server: chat, message_edit, message_delete, reaction,
history): content limits, who may change a message, reaction aggregation, paging.
Pure functions; the store calls them inside its transaction with the current state."""

from dataclasses import dataclass

from hubbub.errors import ProtocolError
from hubbub.protocol.codes import ErrorCode

MAX_PAGE = 100
# Distinct emojis one message may carry. Without a bound one user could add reactions
# without end (each a stored event) and make every history page that holds the message
# as large as they like (docs/decisions/0040-a-message-carries-at-most-50-emojis.md).
MAX_EMOJIS_PER_MESSAGE = 50


@dataclass(slots=True, frozen=True)
class MessageRef:
    """What the rules need to know about an existing message."""

    message_id: str
    user_id: str
    deleted: bool


# What a reader cannot see: Unicode whitespace and the zero-width characters (space,
# non-joiner, joiner, word joiner, BOM). A text made only of these shows as nothing.
_BLANK = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + \
    "\u200b\u200c\u200d\u2060\ufeff"


def is_blank(text: str) -> bool:
    """Whether `text` shows as nothing (empty, whitespace, zero-width characters). Stripping
    stops at the first visible character, so a real text costs a comparison or two."""
    return not text.strip(_BLANK)


def check_content(content: str, max_chars: int) -> str:
    if is_blank(content):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "content must not be empty")
    if len(content) > max_chars:
        # PROTOCOL's error codes have `too_large`; an over-long frame closes with 1009.
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"content is longer than {max_chars} characters")
    if "\x00" in content:  # PostgreSQL text cannot hold it; refused on every backend alike
        raise ProtocolError(ErrorCode.BAD_REQUEST, "content must not contain U+0000")
    return content


def _existing(msg: MessageRef | None, message_id: str) -> MessageRef:
    if msg is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no message {message_id!r} in this room")
    return msg


def check_edit(msg: MessageRef | None, message_id: str, user: str) -> None:
    m = _existing(msg, message_id)
    if m.deleted:
        raise ProtocolError(ErrorCode.CONFLICT, "message is deleted, cannot edit")
    if m.user_id != user:
        raise ProtocolError(ErrorCode.FORBIDDEN, "only the author may edit a message")


def check_delete(msg: MessageRef | None, message_id: str, user: str, admin: bool) -> None:
    m = _existing(msg, message_id)
    if m.deleted:
        raise ProtocolError(ErrorCode.CONFLICT, "message is already deleted")
    if m.user_id != user and not admin:
        raise ProtocolError(ErrorCode.FORBIDDEN, "only the author or an admin may delete")


def check_reaction(msg: MessageRef | None, message_id: str) -> None:
    m = _existing(msg, message_id)
    if m.deleted:
        raise ProtocolError(ErrorCode.CONFLICT, "message is deleted, cannot react")


def check_new_emoji(emoji_present: bool, distinct_emojis: int) -> None:
    """Adding a reaction: an emoji the message already carries may always be added (one
    more user); a new one only while the message has fewer than the bound."""
    if not emoji_present and distinct_emojis >= MAX_EMOJIS_PER_MESSAGE:
        raise ProtocolError(ErrorCode.CONFLICT, "message already carries "
                            f"{MAX_EMOJIS_PER_MESSAGE} different emojis: add one of those")


def aggregate_reactions(rows: list[tuple[str, str, str]]) -> dict[str, dict[str, list[str]]]:
    """(message_id, emoji, user_id) rows, oldest first -> {message_id: {emoji: [user_id]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for message_id, emoji, user in rows:
        out.setdefault(message_id, {}).setdefault(emoji, []).append(user)
    return out


@dataclass(slots=True, frozen=True)
class Page:
    """One page request of `history`: which seqs, which end, how many."""

    after: int | None
    before: int | None
    limit: int

    @property
    def newest_first(self) -> bool:
        """Without `afterSeq` the page is the `limit` messages just below `beforeSeq`
        (or the latest); it is fetched newest-first, then returned ascending."""
        return self.after is None


def page(before_seq: int | None, after_seq: int | None, limit: int) -> Page:
    if not 1 <= limit <= MAX_PAGE:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"limit must be 1..{MAX_PAGE}")
    # An empty range (beforeSeq = afterSeq + 1) is a fair question with an empty answer,
    # e.g. a client checking for a gap between two seqs it has; an inverted one is not.
    if before_seq is not None and after_seq is not None and before_seq <= after_seq:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "beforeSeq must be above afterSeq")
    return Page(after=after_seq, before=before_seq, limit=limit)


def events_upto(after_seq: int, last_seq: int, limit: int, page: bool) -> int | None:
    """The highest seq a read of the events after `after_seq` returns (Store.events_since),
    or None when it returns none: `after_seq` is past the room's end, or more than `limit`
    events follow it and the read is not a `page` (which takes the first `limit`). Seqs
    have no gaps, so this is known without reading the events."""
    if after_seq > last_seq:
        return None
    if last_seq - after_seq > limit:
        return after_seq + limit if page else None
    return last_seq
