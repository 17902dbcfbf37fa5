"""Properties of TokenBucket (core/ratelimit.py): over any stretch of time it never allows
more than `burst + rate * elapsed`, and a refused take names a wait that is enough."""

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hubbub.core.ratelimit import TokenBucket

T0 = 1_700_000_000_000
takes = st.lists(st.tuples(st.integers(min_value=0, max_value=300),  # ms since the last take
                           st.sampled_from([1.0, 1.0, 1.0, 0.5, 2.0, 5.0])),  # cost
                 min_size=1, max_size=200)


@settings(max_examples=400, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=200.0), burst=st.floats(min_value=1.0,
       max_value=100.0), takes=takes)
def test_a_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(
        rate: float, burst: float, takes: list[tuple[int, float]]) -> None:
    bucket = TokenBucket(rate, burst)
    now, allowed = T0, []  # (time, cost) of every take that was allowed
    for dt, cost in takes:
        now += dt
        if bucket.take(now, cost) == 0:
            allowed.append((now, cost))
    # Every window [t_i, t_j] between two allowed takes, the first one's included.
    for i, (start, _) in enumerate(allowed):
        spent = 0.0
        for at, cost in allowed[i:]:
            spent += cost
            assert spent <= burst + rate * (at - start) / 1000.0 + 1e-6, (start, at, spent)


@settings(max_examples=400, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=200.0), burst=st.floats(min_value=1.0,
       max_value=100.0), takes=takes, cost=st.sampled_from([1.0, 0.5, 2.0]))
def test_waiting_the_retry_after_is_enough(rate: float, burst: float,
                                           takes: list[tuple[int, float]], cost: float) -> None:
    # A cost above the burst can never be paid, whatever the wait (every caller pays 1, and
    # a burst below 1 would refuse everything: see docs/topics/security.md).
    assume(cost <= burst)
    bucket = TokenBucket(rate, burst)
    now = T0
    for dt, c in takes:
        now += dt
        bucket.take(now, c)
    wait = bucket.take(now, cost)
    if wait:
        assert wait >= 1
        assert bucket.take(now + wait, cost) == 0


def test_waiting_exactly_the_retry_after_is_enough() -> None:
    bucket = TokenBucket(rate=199.96875, burst=1.0)
    assert bucket.take(T0) == 0
    wait = bucket.take(T0)
    assert bucket.take(T0 + wait) == 0


def test_a_refill_a_rounding_error_short_is_still_enough() -> None:
    # 0.5 tokens after 188 ms at 1.5/s come out as 0.49999999999999994.
    bucket = TokenBucket(rate=1.5, burst=1.5)
    now = T0
    for dt, cost in ((0, 1.0), (212, 1.0), (300, 1.0), (300, 0.5)):
        now += dt
        bucket.take(now, cost)
    wait = bucket.take(now, 0.5)
    assert wait == 188
    assert bucket.take(now + wait, 0.5) == 0


@settings(max_examples=100, deadline=None)
@given(takes=takes)
def test_a_rate_of_zero_means_unlimited(takes: list[tuple[int, float]]) -> None:
    bucket, now = TokenBucket(0, 1), T0
    for dt, cost in takes:
        now += dt
        assert bucket.take(now, cost) == 0
