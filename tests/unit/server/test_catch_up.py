"""What a joiner is sent after its ack, of what the room heard while its join waited
(`hub.news`): the events its ack's `members` does not already show."""

from hubbub.server import framing
from hubbub.server.fanout import member_event
from hubbub.server.hub import news


def held(type_: str, user: str | None) -> tuple[str, bytes, str | None]:
    return (type_, f"{type_}:{user}".encode(), user)


def sent(items: list[tuple[str, bytes]]) -> list[str]:
    return [frame.decode() for _, frame in items]


def test_a_join_of_a_listed_member_is_dropped_and_of_a_new_one_kept() -> None:
    out = news(frozenset({"bob"}), [held("join_room", "bob"), held("join_room", "cy")])
    assert sent(out) == ["join_room:cy"]


def test_a_leave_of_a_member_not_listed_is_dropped_and_of_a_listed_one_kept() -> None:
    out = news(frozenset({"bob"}), [held("leave_room", "cy"), held("leave_room", "bob")])
    assert sent(out) == ["leave_room:bob"]


def test_the_held_events_are_replayed_in_order_over_the_list() -> None:
    # bob listed, then leaves and comes back: both are news; a second join is not.
    out = news(frozenset({"bob"}), [held("leave_room", "bob"), held("join_room", "bob"),
                                    held("join_room", "bob"), held("presence", None)])
    assert sent(out) == ["leave_room:bob", "join_room:bob", "presence:None"]


def test_the_subject_of_a_held_event_is_read_from_its_frame() -> None:
    body = b'{"type":"join_room","payload":{"roomId":"r","userId":"bob","username":"B"}}'
    for pad in (0, 200, 70_000):  # the three header lengths of RFC 6455
        frame = framing.text_frame(body[:-2] + b',"x":"' + b"y" * pad + b'"}}')
        subject = member_event(frame)
        assert (subject.user_id, subject.username, subject.status) == ("bob", "B", "online")
