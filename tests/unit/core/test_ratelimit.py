"""Token buckets on an injected clock (core/ratelimit.py)."""

from hubbub.core.ratelimit import TokenBucket

T0 = 1_700_000_000_000


def test_a_full_bucket_allows_a_burst() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.take(T0) for _ in range(3)] == [0, 0, 0]


def test_an_empty_bucket_answers_the_ms_until_the_next_token() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    for _ in range(3):
        bucket.take(T0)
    assert bucket.take(T0) == 500


def test_tokens_refill_at_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    for _ in range(3):
        bucket.take(T0)
    assert bucket.take(T0 + 499) > 0
    assert bucket.take(T0 + 500) == 0


def test_the_wait_shrinks_as_time_passes() -> None:
    bucket = TokenBucket(rate=4, burst=1)
    bucket.take(T0)
    assert bucket.take(T0 + 100) == 150


def test_a_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    bucket.take(T0)
    for _ in range(10):
        assert bucket.take(T0) == 1000
    assert bucket.take(T0 + 1000) == 0


def test_saving_up_stops_at_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    bucket.take(T0)
    later = T0 + 3_600_000
    assert [bucket.take(later) for _ in range(3)] == [0, 0, 100]


def test_a_refusal_is_never_a_zero_wait() -> None:
    bucket = TokenBucket(rate=1_000_000, burst=1)
    bucket.take(T0)
    assert bucket.take(T0) == 1


def test_the_wait_is_rounded_up_to_a_whole_ms() -> None:
    bucket = TokenBucket(rate=3, burst=1)
    bucket.take(T0)
    assert bucket.take(T0) == 334  # 333.33 ms


def test_a_cost_above_one_spends_several_tokens() -> None:
    bucket = TokenBucket(rate=1, burst=5)
    assert bucket.take(T0, cost=4) == 0
    assert bucket.take(T0, cost=2) == 1000


def test_a_rate_of_zero_means_unlimited() -> None:
    bucket = TokenBucket(rate=0, burst=0)
    assert all(bucket.take(T0) == 0 for _ in range(10_000))


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    bucket.take(T0)
    assert bucket.take(T0 - 60_000) > 0


# ---- KeyedBuckets: one bucket per key, the idle ones dropped ------------------------------

from hubbub.core.ratelimit import KeyedBuckets  # noqa: E402


def test_each_key_has_its_own_burst_then_waits() -> None:
    buckets = KeyedBuckets(rate=10.0, burst=3.0)
    assert [buckets.take("ann", 0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("ann", 0) == 100
    assert buckets.take("bob", 0) == 0
    assert buckets.take("ann", 100) == 0


def test_unlimited_keeps_no_buckets() -> None:
    buckets = KeyedBuckets(rate=0.0, burst=3.0)
    assert all(buckets.take(f"u{i}", 0) == 0 for i in range(5000))
    assert len(buckets) == 0


def test_buckets_idle_long_enough_to_refill_are_dropped_busy_ones_kept() -> None:
    buckets = KeyedBuckets(rate=10.0, burst=20.0)  # full again 2 s after the last take
    for i in range(1023):
        buckets.take(f"once-{i}", 0)
    for _ in range(20):
        buckets.take("busy", 2_000)  # empty at 2,000 ms: not full again before 4,000
    assert len(buckets) == 1024
    buckets.take("new", 3_900)  # the 1025th key: a sweep first
    assert len(buckets) == 2
    # The kept bucket remembers what it spent: 19 tokens back by 3,900 ms, not 20.
    assert [buckets.take("busy", 3_900) for _ in range(20)].count(0) == 19
