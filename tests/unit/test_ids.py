"""Identifiers (PROTOCOL §Transport: room ids; §Authentication: user ids)."""

import pytest

from hubbub.errors import ProtocolError
from hubbub.ids import room_id, user_id


@pytest.mark.parametrize(("wire", "room"), [(1, "1"), (0, "0"), (2**53, str(2**53)),
                                            ("1", "1"), ("general", "general")])
def test_a_room_id_is_normalised_to_a_string(wire: str | int, room: str) -> None:
    assert room_id(wire) == room
    assert type(room_id(wire)) is str


@pytest.mark.parametrize("room", ["a", "A-Z_0.9:x", "x" * 128, "room:42", "..", "-"])
def test_room_ids_of_1_to_128_allowed_chars_are_valid(room: str) -> None:
    assert room_id(room) == room


@pytest.mark.parametrize("room", ["", "x" * 129, "a b", "a/b", "a#b", "é", "a\n", "\x00",
                                  "a\u200bb", "1" * 129])
def test_other_room_ids_are_bad_request(room: str) -> None:
    with pytest.raises(ProtocolError) as info:
        room_id(room)
    assert info.value.code == "bad_request"


def test_a_room_id_integer_longer_than_128_digits_is_bad_request() -> None:
    with pytest.raises(ProtocolError):
        room_id(10**128)


@pytest.mark.parametrize(("wire", "user"), [("ann", "ann"), (42, "42"), ("Zoë", "Zoë"),
                                            ("a@b.c", "a@b.c")])
def test_a_user_id_is_printable_text_without_spaces(wire: str | int, user: str) -> None:
    assert user_id(wire) == user


@pytest.mark.parametrize("user", ["", "two words", "tab\there", "nl\n", "\x7f", "x" * 129])
def test_other_user_ids_are_bad_request(user: str) -> None:
    with pytest.raises(ProtocolError) as info:
        user_id(user)
    assert info.value.code == "bad_request"
