"""Identity and the `rooms` claim (PROTOCOL §Authentication: room-id glob patterns)."""

import pytest

from hubbub.core.identity import Identity
from hubbub.ids import RoomId, UserId


def ident(*globs: str) -> Identity:
    return Identity(UserId("ann"), "Ann", room_globs=globs)


def test_no_rooms_claim_means_any_room() -> None:
    assert Identity(UserId("ann"), "Ann").may_join(RoomId("anything"))


def test_an_empty_rooms_claim_means_no_room() -> None:
    assert not ident().may_join(RoomId("lobby"))


@pytest.mark.parametrize(("globs", "room"), [
    (("lobby",), "lobby"), (("team-*",), "team-7"), (("team-*",), "team-"),
    (("r?",), "r1"), (("r[0-9]",), "r5"), (("a", "b*"), "bee"), (("*",), "x:y.z")])
def test_a_room_matching_a_glob_may_be_joined(globs: tuple[str, ...], room: str) -> None:
    assert ident(*globs).may_join(RoomId(room))


@pytest.mark.parametrize(("globs", "room"), [
    (("lobby",), "lobby2"), (("team-*",), "team"), (("team-*",), "xteam-1"),
    (("r?",), "r10"), (("Lobby",), "lobby"), (("r[0-9]",), "ra")])
def test_a_room_matching_no_glob_may_not_be_joined(globs: tuple[str, ...], room: str) -> None:
    assert not ident(*globs).may_join(RoomId(room))
