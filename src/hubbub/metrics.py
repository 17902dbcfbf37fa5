"""Counters the server keeps in plain ints on the hot path; /metrics renders them on scrape.

Incrementing a prometheus-client labelled child costs a dict lookup and a lock per call;
a plain dict costs a fraction of that, and the totals are the same.
"""

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

# Upper bounds (bytes) of the flush-size histogram buckets.
FLUSH_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


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
    flushes: int = 0
    flush_bytes: int = 0
    flush_buckets: list[int] = field(default_factory=lambda: [0] * (len(FLUSH_BUCKETS) + 1))

    def observe_flush(self, size: int) -> None:
        self.flushes += 1
        self.flush_bytes += size
        self.flush_buckets[bisect_left(FLUSH_BUCKETS, size)] += 1
