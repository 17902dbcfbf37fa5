"""Token buckets on the monotonic clock (`mono_ms`, passed in): a step of the system
clock neither refills nor drains them."""

import math
from dataclasses import dataclass

_ROUNDING = 1e-9


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. `rate <= 0` means unlimited."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated_mono: int = 0

    def take(self, mono_ms: int, cost: float = 1.0) -> int:
        """Spend `cost` tokens. Returns 0 when allowed, else the ms until it would be."""
        if self.rate <= 0:
            return 0
        if self.tokens < 0:
            self.tokens = self.burst
        else:
            elapsed = max(0, mono_ms - self.updated_mono)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate / 1000.0)
        self.updated_mono = mono_ms
        # The refill is float arithmetic: waiting exactly the wait this returned may leave
        # the bucket a rounding error short of `cost`, which must still be enough.
        if self.tokens >= cost - _ROUNDING:
            self.tokens = max(0.0, self.tokens - cost)  # below 0 would read as "unset"
            return 0
        return max(1, math.ceil((cost - self.tokens) * 1000.0 / self.rate))


class KeyedBuckets:
    """One TokenBucket per key (a user, say), for callers that have no object of their own
    to keep it on (HTTP requests). A bucket idle long enough to have refilled is the same
    as a new one, so such buckets are dropped now and then: memory stays in proportion to
    the keys seen in the last `burst / rate` seconds, not to every key ever seen."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate  # <= 0: unlimited, and nothing is kept
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_at = 1024  # sweep when the dict reaches this size

    def take(self, key: str, mono_ms: int) -> int:
        """Spend a token of `key`'s bucket: 0 when allowed, else the ms until it would be."""
        if self.rate <= 0:
            return 0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(mono_ms)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take(mono_ms)

    def _sweep(self, mono_ms: int) -> None:
        refill_ms = self.burst * 1000.0 / self.rate
        self._buckets = {k: b for k, b in self._buckets.items()
                         if mono_ms - b.updated_mono < refill_ms}
        # The next sweep when the dict has doubled: O(1) per new key on average.
        self._sweep_at = max(1024, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)
