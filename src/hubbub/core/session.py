"""One connection's state: identity, rooms, and the budgets that keep it honest."""

from dataclasses import dataclass, field

from hubbub.core.identity import Identity
from hubbub.core.ratelimit import TokenBucket
from hubbub.ids import ConnId, RoomId


@dataclass(slots=True, frozen=True)
class Limits:
    """Per-connection limits; see docs/reference/config.md."""

    frames_per_second: float = 100.0
    frame_burst: float = 200.0
    chats_per_second: float = 20.0
    chat_burst: float = 40.0
    joins_per_second: float = 10.0
    join_burst: float = 50.0
    max_rooms: int = 100
    # A connection may earn this many strikes (bad or rate-limited frames) in a burst,
    # refilled at `strike_refill_per_second`; beyond that it is closed with 4008.
    strike_burst: float = 50.0
    strike_refill_per_second: float = 1.0
    max_content_chars: int = 4000


@dataclass(slots=True)
class Session:
    conn: ConnId
    limits: Limits
    remote: str = ""
    ip: str = ""
    identity: Identity | None = None
    rooms: set[RoomId] = field(default_factory=set)
    closing: bool = False
    frames: TokenBucket = field(init=False)
    chats: TokenBucket = field(init=False)
    joins: TokenBucket = field(init=False)
    strikes: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        lim = self.limits
        self.frames = TokenBucket(lim.frames_per_second, lim.frame_burst)
        self.chats = TokenBucket(lim.chats_per_second, lim.chat_burst)
        self.joins = TokenBucket(lim.joins_per_second, lim.join_burst)
        self.strikes = TokenBucket(lim.strike_refill_per_second, lim.strike_burst)

    @property
    def authenticated(self) -> bool:
        return self.identity is not None
