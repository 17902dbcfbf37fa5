"""A clock the tests move by hand: time-based rules are tested without sleeping.

It keeps the two clocks of `hubbub.core.clock` apart: `advance` is time passing (both
move), `step` is the system clock being set (only the wall clock moves). The monotonic
clock starts far from the wall clock, so a rule that mixes them up is wrong by decades."""


class FakeClock:
    def __init__(self, start_ms: int = 1_700_000_000_000, mono_start_ms: int = 5_000_000) -> None:
        self.now = start_ms  # wall clock
        self.mono = mono_start_ms

    def now_ms(self) -> int:
        return self.now

    def mono_ms(self) -> int:
        return self.mono

    def advance(self, ms: int) -> int:
        """`ms` pass: both clocks move. Returns the wall clock."""
        self.now += ms
        self.mono += ms
        return self.now

    def step(self, ms: int) -> int:
        """The system clock is set `ms` forward (or back, below 0): the monotonic clock
        does not move. Returns the wall clock."""
        self.now += ms
        return self.now
