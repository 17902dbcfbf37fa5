"""The plain histograms /metrics renders (`hubbub.metrics.Histogram`)."""

from hubbub.metrics import Histogram


def test_a_value_counts_in_the_first_bucket_whose_bound_it_does_not_exceed() -> None:
    h = Histogram((1.0, 5.0))
    for value in (0.5, 1.0, 1.5, 5.0, 5.5, 100.0):
        h.observe(value)
    assert h.counts == [2, 2, 2]  # le 1: 0.5, 1.0; le 5: 1.5, 5.0; above: 5.5, 100
    assert h.total == 113.5


def test_histograms_do_not_share_their_counts() -> None:
    a, b = Histogram((1.0,)), Histogram((1.0,))
    a.observe(0.5)
    assert b.counts == [0, 0]
