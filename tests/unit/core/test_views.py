"""What a node showed its connections of a room's members, and what puts it right
(`hubbub.core.views`)."""

from hubbub.core.views import Listed, RoomViews, Shown
from hubbub.ids import RoomId, UserId

R, R2 = RoomId("r"), RoomId("r2")
A, B, C = UserId("a"), UserId("b"), UserId("c")


def listed(*members: tuple[UserId, str]) -> list[Listed]:
    return [Listed(u, u.upper(), status) for u, status in members]


def opened(*members: tuple[UserId, str]) -> RoomViews:
    views = RoomViews()
    views.listed(R, listed(*members))
    return views


def test_the_first_list_read_is_the_view_and_a_later_one_changes_nothing() -> None:
    views = opened((A, "online"))
    views.listed(R, listed((A, "busy"), (B, "online")))
    assert views.view(R) == {A: Shown("A", "online")}
    assert views.rooms() == [R]


def test_events_change_the_view_of_their_room_and_presence_only_where_shown() -> None:
    views = opened((A, "online"))
    views.listed(R2, listed((B, "online")))
    views.joined(R, B, "B", "away")
    views.status((R, R2), A, "A", "busy")
    assert views.view(R) == {A: Shown("A", "busy"), B: Shown("B", "away")}
    assert views.view(R2) == {B: Shown("B", "online")}  # A is not in r2: not added there
    views.left(R, A)
    assert views.view(R) == {B: Shown("B", "away")}


def test_events_of_a_room_without_a_view_are_ignored() -> None:
    views = RoomViews()
    views.joined(R, A, "A", "online")
    views.status((R,), A, "A", "busy")
    views.left(R, A)
    assert views.rooms() == [] and views.view(R) == {}
    assert not views.differences(R, listed((A, "online")), {})


def test_a_closed_room_forgets_its_view() -> None:
    views = opened((A, "online"))
    views.closed(R)
    assert views.rooms() == []
    views.listed(R, listed((B, "online")))
    assert views.view(R) == {B: Shown("B", "online")}


def test_the_differences_are_the_joins_leaves_and_statuses_that_make_the_view_the_list(
        ) -> None:
    views = opened((A, "online"), (B, "online"))
    before = views.view(R)
    diff = views.differences(R, listed((A, "busy"), (C, "away")), before)
    assert diff.changed == listed((A, "busy"))
    assert diff.left == [(B, Shown("B", "online"))]
    assert diff.joined == listed((C, "away"))
    # Differences say what to tell; the view changes as the told events are delivered.
    assert views.view(R) == before


def test_a_view_equal_to_the_list_has_no_differences() -> None:
    views = opened((A, "online"), (B, "busy"))
    assert not views.differences(R, listed((B, "busy"), (A, "online")), views.view(R))


def test_a_member_whose_view_changed_while_the_list_was_read_is_left_as_the_events_made_it(
        ) -> None:
    views = opened((A, "online"), (B, "online"))
    before = views.view(R)
    # Read before each of these events: the list still has A, lacks C, says B online.
    views.left(R, A)
    views.joined(R, C, "C", "online")
    views.status((R,), B, "B", "away")
    diff = views.differences(R, listed((A, "online"), (B, "online")), before)
    assert not diff, diff


def test_only_the_members_that_changed_during_the_read_are_left_alone() -> None:
    views = opened((A, "online"), (B, "online"))
    before = views.view(R)
    views.status((R,), A, "A", "away")  # live, during the read
    diff = views.differences(R, listed((A, "online"), (C, "online")), before)
    assert diff.changed == [] and diff.joined == listed((C, "online"))
    assert diff.left == [(B, Shown("B", "online"))]
