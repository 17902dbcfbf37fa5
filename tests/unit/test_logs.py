"""The log throttle (hubbub.logs.Throttle): one line per kind of failure a while, and the
next line says how many were left out."""

from hubbub.logs import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_failure_of_a_kind_is_logged_and_repeats_are_held_back() -> None:
    clock = Clock()
    throttle = Throttle(every_s=10.0, now=clock)
    assert throttle.admit("store") == ""
    clock.now += 9.9
    assert throttle.admit("store") is None
    assert throttle.admit("store") is None


def test_the_line_after_a_quiet_spell_counts_what_was_left_out() -> None:
    clock = Clock()
    throttle = Throttle(every_s=10.0, now=clock)
    throttle.admit("store")
    for _ in range(599):
        throttle.admit("store")
    clock.now += 10.0
    assert throttle.admit("store") == " (599 more like it not logged)"
    clock.now += 10.0
    assert throttle.admit("store") == ""


def test_kinds_are_throttled_apart() -> None:
    throttle = Throttle(every_s=10.0, now=Clock())
    assert throttle.admit("store") == ""
    assert throttle.admit("internal:KeyError") == ""
    assert throttle.admit("store") is None
    assert throttle.admit("internal:ValueError") == ""
