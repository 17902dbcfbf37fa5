"""Properties of TypingTracker (core/typing_indicators.py; PROTOCOL §Typing) under random
sequences of `isTyping: true` refreshes, stops (false, chat, leave, disconnect) and time.

- Typing always ends: once `timeout_ms` passes with no refresh, `expire` returns it (once).
- `isTyping: true` is broadcast at most once per (room, user) per `throttle_ms`.
"""

import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hubbub.core.typing_indicators import TypingTracker
from hubbub.ids import RoomId, UserId

T0 = 1_700_000_000_000
THROTTLE = 1000
KEYS = [(RoomId(r), UserId(u)) for r in ("r1", "r2") for u in ("ann", "bob")]
keys = st.sampled_from(KEYS)
steps = st.integers(min_value=0, max_value=2500)


class TypingMachine(RuleBasedStateMachine):
    @initialize(timeout=st.integers(min_value=THROTTLE, max_value=5000))
    def setup(self, timeout: int) -> None:
        self.timeout = timeout
        self.t = TypingTracker(timeout, THROTTLE)
        self.now = T0
        self.refreshed: dict[tuple[RoomId, UserId], int] = {}  # model: active -> last refresh
        self.shown: set[tuple[RoomId, UserId]] = set()  # the others see these typing
        self.trues: dict[tuple[RoomId, UserId], list[int]] = {k: [] for k in KEYS}

    @rule(key=keys, dt=steps)
    def typing_true(self, key: tuple[RoomId, UserId], dt: int) -> None:
        self.now += dt
        if self.t.start(*key, self.now):
            self.trues[key].append(self.now)
            self.shown.add(key)
        else:  # absorbed: a refresh, or a new spell inside the window of the last `true`
            recent = bool(self.trues[key]) and self.now - self.trues[key][-1] < THROTTLE
            assert key in self.refreshed or recent, "a first `true` was absorbed"
        self.refreshed[key] = self.now

    @rule(key=keys)
    def typing_stops(self, key: tuple[RoomId, UserId]) -> None:
        # `false` exactly when the others see the user typing: an absorbed `true` is never
        # taken back.
        assert self.t.stop(*key) is (key in self.shown)
        self.shown.discard(key)
        self.refreshed.pop(key, None)

    @rule(dt=steps)
    def time_passes_and_expire_runs(self, dt: int) -> None:
        self.now += dt
        ended = self.t.expire(self.now)
        assert len(ended) == len(set(ended))
        due = {k for k, at in self.refreshed.items() if self.now >= at + self.timeout}
        assert set(ended) == due & self.shown, "typing must end exactly at the timeout"
        for k in due:
            del self.refreshed[k]
        self.shown -= due

    @invariant()
    def typing_state_matches_the_model(self) -> None:
        for key in KEYS:
            assert self.t.is_typing(*key) is (key in self.refreshed)

    @invariant()
    def whatever_the_others_see_typing_will_end(self) -> None:
        # Shown typing is active, so a stop or the expiry will send its `false`.
        assert self.shown <= set(self.refreshed)

    @invariant()
    def the_timer_wakes_up_no_later_than_any_expiry(self) -> None:
        if self.refreshed:
            nxt = self.t.next_deadline()
            assert nxt is not None
            assert nxt <= min(at + self.timeout for at in self.refreshed.values())

    @invariant()
    def at_most_one_true_per_key_per_throttle_window(self) -> None:
        for times in self.trues.values():
            for a, b in itertools.pairwise(times):
                assert b - a >= THROTTLE, f"two `true` broadcasts {b - a} ms apart"


TypingMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=40,
                                           deadline=None)
TestTyping = TypingMachine.TestCase
