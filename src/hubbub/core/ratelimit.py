"""Token buckets on an injected clock."""

import math
from dataclasses import dataclass

_ROUNDING = 1e-9


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. `rate <= 0` means unlimited."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated_ms: int = 0

    def take(self, now_ms: int, cost: float = 1.0) -> int:
        """Spend `cost` tokens. Returns 0 when allowed, else the ms until it would be."""
        if self.rate <= 0:
            return 0
        if self.tokens < 0:
            self.tokens = self.burst
        else:
            elapsed = max(0, now_ms - self.updated_ms)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate / 1000.0)
        self.updated_ms = now_ms
        # The refill is float arithmetic: waiting exactly the wait this returned may leave
        # the bucket a rounding error short of `cost`, which must still be enough.
        if self.tokens >= cost - _ROUNDING:
            self.tokens = max(0.0, self.tokens - cost)  # below 0 would read as "unset"
            return 0
        return max(1, math.ceil((cost - self.tokens) * 1000.0 / self.rate))
