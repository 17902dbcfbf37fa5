"""Time as the rules see it: integer milliseconds, passed in, never read inside a rule.

Two clocks, and one rule for which is which (ADR 0090):

- `now_ms`, the **wall clock** (ms since the Unix epoch), for instants that leave the
  process or are compared with another machine's clock: the `...At` fields, `lastSeen`,
  message ids, call records, the directory's heartbeats, a token's `exp`.
- `mono_ms`, the **monotonic clock**, for everything that counts time here: deadlines,
  timeouts, throttles, rate-limit refills. A step of the system clock does not move it.
  Its value means nothing outside this process; only differences do.

A name holding a monotonic instant says `mono` (`mono_ms`, `expires_mono`); `now_ms` and
the `..._at_ms` instants are wall clock; `..._ms` alone is a duration.
"""

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch (what `...At` fields carry)."""
        ...

    def mono_ms(self) -> int:
        """Monotonic milliseconds (deadlines, durations, refills): never steps."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ms(self) -> int:
        # CLOCK_MONOTONIC on Linux, the clock asyncio's timers run on: it does not count
        # a suspension of the whole machine (docs/topics/architecture.md §Time).
        return time.monotonic_ns() // 1_000_000
