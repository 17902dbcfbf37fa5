"""Counters the server keeps in plain ints on the hot path; /metrics renders them on scrape.

Incrementing a prometheus-client labelled child costs a dict lookup and a lock per call;
a plain dict costs a fraction of that, and the totals are the same.
"""

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

# Upper bounds (bytes) of the flush-size histogram buckets.
FLUSH_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
# Upper bounds (seconds) of the store's commit-time histogram: an fsync on an SSD takes
# 0.1 to 2 ms, on a network disk 2 to 20; PostgreSQL adds its round trips.
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Histogram:
    """Prometheus-style: `counts[i]` holds the values up to `bounds[i]` above the bound
    before it; the last count, those above every bound."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass
class Metrics:
    frames_in: Counter[str] = field(default_factory=Counter)
    frames_out: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    connections_opened: int = 0
    slow_readers_dropped: int = 0
    typing_shed: int = 0  # `isTyping: true` frames not sent to a reader that was behind
    refused_connections: int = 0
    announcements: int = 0
    # With several nodes: what the broker lost and the store made up for (server/fanout.py).
    broker_resumes: int = 0  # the broker back after losing Redis
    position_holes: int = 0  # rooms a position check found behind the store
    member_events_mended: int = 0  # joins, leaves, statuses told after lost member events
    gap_fills: int = 0  # reads of a hole from the store
    events_filled: int = 0  # room events those reads returned
    flush_bytes: Histogram = field(default_factory=lambda: Histogram(FLUSH_BUCKETS))
