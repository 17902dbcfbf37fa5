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
