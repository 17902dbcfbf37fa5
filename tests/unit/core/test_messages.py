"""hubbub.core.messages: content limits, who may change a message, reactions, paging."""

import pytest

from hubbub.core.messages import (
    MAX_EMOJIS_PER_MESSAGE,
    MAX_PAGE,
    MessageRef,
    Page,
    aggregate_reactions,
    check_content,
    check_delete,
    check_edit,
    check_new_emoji,
    check_reaction,
    page,
)
from hubbub.errors import ProtocolError
from hubbub.protocol.codes import ErrorCode

MINE = MessageRef("m1", "author", deleted=False)
GONE = MessageRef("m1", "author", deleted=True)


def refused(fn: object, *args: object) -> ErrorCode:
    assert callable(fn)
    with pytest.raises(ProtocolError) as exc:
        fn(*args)
    return exc.value.code


# ---- check_content ----------------------------------------------------------------------


def test_content_is_returned_unchanged() -> None:
    assert check_content("  hello  ", 100) == "  hello  "


def test_empty_content_is_a_bad_request() -> None:
    assert refused(check_content, "", 100) == ErrorCode.BAD_REQUEST


def test_whitespace_only_content_is_a_bad_request() -> None:
    assert refused(check_content, " \n\t ", 100) == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("invisible", ["\u200b", "\ufeff", " \u200d\u3000", "\u2060\n\u200c"])
def test_content_of_only_zero_width_characters_is_a_bad_request(invisible: str) -> None:
    assert refused(check_content, invisible, 100) == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("text", ["a\u200b", "\u200bb", "\u200d\U0001f469\u200d"])
def test_content_with_a_visible_character_among_zero_width_ones_is_kept_as_sent(
        text: str) -> None:
    assert check_content(text, 100) == text


def test_content_of_exactly_the_maximum_length_is_accepted() -> None:
    assert check_content("x" * 10, 10) == "x" * 10


def test_content_longer_than_the_maximum_is_too_large() -> None:
    assert refused(check_content, "x" * 11, 10) == ErrorCode.TOO_LARGE


def test_the_maximum_counts_characters_not_bytes() -> None:
    assert check_content("é" * 10, 10) == "é" * 10


# ---- check_edit -------------------------------------------------------------------------


def test_the_author_may_edit() -> None:
    check_edit(MINE, "m1", "author")


def test_another_user_may_not_edit() -> None:
    assert refused(check_edit, MINE, "m1", "other") == ErrorCode.FORBIDDEN


def test_editing_a_deleted_message_is_a_conflict_even_for_the_author() -> None:
    assert refused(check_edit, GONE, "m1", "author") == ErrorCode.CONFLICT


def test_editing_a_deleted_message_of_another_user_is_a_conflict() -> None:
    assert refused(check_edit, GONE, "m1", "other") == ErrorCode.CONFLICT


def test_editing_an_unknown_message_is_not_found() -> None:
    assert refused(check_edit, None, "m1", "author") == ErrorCode.NOT_FOUND


# ---- check_delete -----------------------------------------------------------------------


@pytest.mark.parametrize(("user", "admin"), [("author", False), ("author", True),
                                             ("other", True)])
def test_the_author_or_an_admin_may_delete(user: str, admin: bool) -> None:
    check_delete(MINE, "m1", user, admin)


def test_another_user_may_not_delete() -> None:
    assert refused(check_delete, MINE, "m1", "other", False) == ErrorCode.FORBIDDEN


@pytest.mark.parametrize(("user", "admin"), [("author", False), ("other", True)])
def test_deleting_a_deleted_message_is_a_conflict(user: str, admin: bool) -> None:
    assert refused(check_delete, GONE, "m1", user, admin) == ErrorCode.CONFLICT


def test_deleting_an_unknown_message_is_not_found() -> None:
    assert refused(check_delete, None, "m1", "author", True) == ErrorCode.NOT_FOUND


# ---- check_reaction ---------------------------------------------------------------------


def test_anyone_may_react_to_a_message() -> None:
    check_reaction(MINE, "m1")


def test_reacting_to_a_deleted_message_is_a_conflict() -> None:
    assert refused(check_reaction, GONE, "m1") == ErrorCode.CONFLICT


def test_reacting_to_an_unknown_message_is_not_found() -> None:
    assert refused(check_reaction, None, "m1") == ErrorCode.NOT_FOUND


def test_the_not_found_message_names_the_message() -> None:
    with pytest.raises(ProtocolError) as exc:
        check_reaction(None, "m-42")
    assert "m-42" in exc.value.message


# ---- aggregate_reactions ----------------------------------------------------------------


def test_no_rows_aggregate_to_nothing() -> None:
    assert aggregate_reactions([]) == {}


def test_a_new_emoji_is_refused_once_the_message_carries_the_most_emojis() -> None:
    check_new_emoji(False, MAX_EMOJIS_PER_MESSAGE - 1)
    assert refused(check_new_emoji, False, MAX_EMOJIS_PER_MESSAGE) == ErrorCode.CONFLICT


def test_an_emoji_the_message_carries_can_always_be_added() -> None:
    check_new_emoji(True, MAX_EMOJIS_PER_MESSAGE)


def test_reactions_group_by_message_then_emoji_keeping_row_order() -> None:
    rows = [("m1", "👍", "u3"), ("m2", "🎉", "u1"), ("m1", "👍", "u1"), ("m1", "❤", "u2")]
    result = aggregate_reactions(rows)
    assert result == {"m1": {"👍": ["u3", "u1"], "❤": ["u2"]}, "m2": {"🎉": ["u1"]}}
    assert list(result["m1"]) == ["👍", "❤"]


# ---- page -------------------------------------------------------------------------------


def test_a_page_without_bounds_is_the_newest() -> None:
    p = page(None, None, 20)
    assert p == Page(after=None, before=None, limit=20)
    assert p.newest_first is True


def test_a_page_before_a_seq_is_fetched_newest_first() -> None:
    assert page(10, None, 5).newest_first is True


def test_a_page_after_a_seq_is_fetched_oldest_first() -> None:
    assert page(None, 10, 5).newest_first is False


def test_a_page_between_two_seqs_is_fetched_oldest_first() -> None:
    p = page(20, 10, 5)
    assert (p.after, p.before, p.newest_first) == (10, 20, False)


@pytest.mark.parametrize("limit", [1, MAX_PAGE])
def test_limits_from_one_to_the_maximum_are_accepted(limit: int) -> None:
    assert page(None, None, limit).limit == limit


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1])
def test_a_limit_out_of_range_is_a_bad_request(limit: int) -> None:
    assert refused(page, None, None, limit) == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(("before", "after"), [(5, 5), (3, 10)])
def test_inverted_bounds_are_a_bad_request(before: int, after: int) -> None:
    assert refused(page, before, after, 10) == ErrorCode.BAD_REQUEST


def test_adjacent_bounds_are_an_empty_range_not_an_error() -> None:
    assert page(5, 4, 10) == Page(after=4, before=5, limit=10)


def test_bounds_with_one_seq_between_them_are_accepted() -> None:
    assert page(6, 4, 10) == Page(after=4, before=6, limit=10)


def test_zero_is_a_valid_after_seq() -> None:
    assert page(None, 0, 10).after == 0


def test_content_with_a_nul_character_is_bad_request() -> None:
    with pytest.raises(ProtocolError) as err:
        check_content("a\x00b", 100)
    assert err.value.code == ErrorCode.BAD_REQUEST
