"""One connection's state (core/session.py)."""

from hubbub.core.identity import Identity
from hubbub.core.session import Limits, Session
from hubbub.ids import ConnId, UserId


def test_a_new_session_is_not_authenticated() -> None:
    s = Session(ConnId(1), Limits())
    assert not s.authenticated and s.rooms == set() and not s.closing


def test_a_session_with_an_identity_is_authenticated() -> None:
    s = Session(ConnId(1), Limits())
    s.identity = Identity(UserId("ann"), "Ann")
    assert s.authenticated


def test_a_session_gets_its_budgets_from_the_limits() -> None:
    lim = Limits(frames_per_second=5, frame_burst=7, chats_per_second=1, chat_burst=2,
                 joins_per_second=3, join_burst=4, strike_burst=9, strike_refill_per_second=0.5)
    s = Session(ConnId(1), lim)
    assert (s.frames.rate, s.frames.burst) == (5, 7)
    assert (s.chats.rate, s.chats.burst) == (1, 2)
    assert (s.joins.rate, s.joins.burst) == (3, 4)
    assert (s.strikes.rate, s.strikes.burst) == (0.5, 9)


def test_sessions_do_not_share_budgets() -> None:
    a, b = Session(ConnId(1), Limits()), Session(ConnId(2), Limits())
    a.frames.take(0)
    assert a.frames is not b.frames and b.frames.tokens != a.frames.tokens
