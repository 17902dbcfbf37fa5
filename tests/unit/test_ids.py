"""Identifiers (PROTOCOL §Transport: room ids; §Authentication: user ids)."""

import uuid

import pytest

from hubbub.errors import ProtocolError
from hubbub.ids import message_id, room_id, user_id


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


def test_a_message_id_is_a_uuid_version_7_carrying_its_millisecond() -> None:
    text = message_id(1_796_000_000_123)
    made = uuid.UUID(text)
    assert text == str(made)  # the canonical form: lowercase hex in 8-4-4-4-12 groups
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert made.int >> 80 == 1_796_000_000_123


def test_message_ids_of_a_later_millisecond_sort_after_earlier_ones() -> None:
    ids = [message_id(1_796_000_000_000 + ms) for ms in range(1000)]
    assert sorted(ids) == ids


def test_message_ids_made_in_one_millisecond_differ() -> None:
    assert len({message_id(1_796_000_000_000) for _ in range(10_000)}) == 10_000
