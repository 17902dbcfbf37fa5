"""Backoff: full jitter, `uniform(0, min(cap, base * 2**attempt))` seconds (no sleeping here)."""

import random

import pytest

from hubbub.client.connection import Backoff


def ceiling(base: float, cap: float, attempt: int) -> float:
    return min(cap, base * 2.0**attempt) if attempt < 64 else cap


@pytest.mark.parametrize(("base", "cap"), [(0.5, 20.0), (0.05, 0.3), (1.0, 1.0), (3.0, 2.0)])
def test_every_delay_is_within_its_full_jitter_window(base: float, cap: float) -> None:
    random.seed(1234)
    backoff = Backoff(base, cap)
    for attempt in range(40):
        assert backoff.attempt == attempt
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling(base, cap, attempt)
    assert backoff.attempt == 40


def test_the_window_doubles_until_the_cap() -> None:
    # Over many draws per attempt the largest delay comes close to the window's top and
    # never passes it: 0.5, 1, 2, 4, 8, 16, then 20 (the cap) for ever.
    random.seed(7)
    for attempt, top in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0]):
        draws = []
        for _ in range(2000):
            backoff = Backoff(0.5, 20.0, attempt=attempt)
            draws.append(backoff.next_delay())
        assert max(draws) <= top
        assert max(draws) > 0.95 * top
        assert min(draws) < 0.05 * top


def test_jitter_is_spread_not_a_fixed_schedule() -> None:
    random.seed(99)
    delays = {Backoff(0.5, 20.0, attempt=4).next_delay() for _ in range(100)}
    assert len(delays) == 100


def test_reset_starts_again_from_the_base() -> None:
    random.seed(5)
    backoff = Backoff(0.5, 20.0)
    for _ in range(10):
        backoff.next_delay()
    assert backoff.attempt == 10
    backoff.reset()
    assert backoff.attempt == 0
    for _ in range(200):
        backoff.reset()
        assert 0.0 <= backoff.next_delay() <= 0.5


def test_a_very_long_outage_keeps_drawing_capped_delays() -> None:
    # Hours of failed attempts (2**attempt outgrows a float past attempt 1023) must not
    # break the reconnect loop: the delay simply stays within the cap.
    random.seed(3)
    backoff = Backoff(0.5, 20.0)
    for _ in range(3000):
        assert 0.0 <= backoff.next_delay() <= 20.0
    assert backoff.attempt == 3000


def test_the_defaults_match_the_documentation() -> None:
    backoff = Backoff()
    assert (backoff.base, backoff.cap, backoff.attempt) == (0.5, 20.0, 0)
