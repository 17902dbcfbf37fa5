"""The client's chat bucket: the server's token bucket for chat frames (welcome.limits
`chatsPerSecond`, `chatBurst`), mirrored so the outbox is paced, not refused. No sleeping:
times are passed in."""

from hubbub.client.connection import _ChatBucket
from hubbub.core.ratelimit import TokenBucket


def test_a_full_burst_then_one_token_per_interval() -> None:
    bucket = _ChatBucket(rate=20.0, burst=40.0)
    assert [bucket.take(100.0) for _ in range(40)] == [0.0] * 40
    wait = bucket.take(100.0)
    assert abs(wait - 0.05) < 1e-9
    assert bucket.take(100.0 + wait) == 0.0
    assert bucket.take(100.0 + wait) > 0


def test_it_never_allows_what_the_servers_bucket_refuses() -> None:
    # Chats written whenever the client's bucket allows, reaching the server at once.
    client, server = _ChatBucket(rate=20.0, burst=40.0), TokenBucket(20.0, 40.0)
    now, sent = 5.0, 0
    while sent < 200:
        wait = client.take(now)
        if wait:
            now += wait
            continue
        assert server.take(round(now * 1000)) == 0
        sent += 1


def test_emptied_by_a_refusal_it_refills_from_then_on() -> None:
    bucket = _ChatBucket(rate=10.0, burst=5.0)
    assert bucket.take(0.0) == 0.0
    bucket.empty(1.0)
    assert abs(bucket.take(1.0) - 0.1) < 1e-9
    assert bucket.take(1.1) == 0.0


def test_a_rate_of_zero_is_unlimited() -> None:
    bucket = _ChatBucket(rate=0.0, burst=0.0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(1000))
