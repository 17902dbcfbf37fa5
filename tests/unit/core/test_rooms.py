"""Room membership (core/rooms.py): room -> user -> connections, with lingering."""

from hubbub.core.rooms import RoomRegistry
from hubbub.ids import ConnId, RoomId, UserId

R1, R2 = RoomId("r1"), RoomId("r2")
ANN, BOB = UserId("ann"), UserId("bob")
C1, C2, C3 = ConnId(1), ConnId(2), ConnId(3)


def test_first_connection_of_a_user_joining_makes_them_a_member() -> None:
    rooms = RoomRegistry()
    assert rooms.join(R1, ANN, C1) is True
    assert rooms.is_member(R1, ANN)
    assert rooms.members(R1) == {ANN: {C1}}


def test_a_second_connection_of_a_member_is_not_a_new_member() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    assert rooms.join(R1, ANN, C2) is False
    assert rooms.members(R1) == {ANN: {C1, C2}}


def test_the_same_connection_joining_twice_is_not_a_new_member() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    assert rooms.join(R1, ANN, C1) is False


def test_conns_lists_every_connection_in_the_room() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.join(R1, ANN, C2)
    rooms.join(R1, BOB, C3)
    rooms.join(R2, BOB, C3)
    assert rooms.conns(R1) == {C1, C2, C3}
    assert rooms.conns(R2) == {C3}


def test_rooms_of_lists_a_users_rooms() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.join(R2, ANN, C2)
    assert rooms.rooms_of(ANN) == {R1, R2}
    assert rooms.rooms_of(BOB) == set()


def test_leave_by_the_last_connection_makes_the_user_leave() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    assert rooms.leave(R1, ANN, C1) is True
    assert not rooms.is_member(R1, ANN)
    assert rooms.rooms_of(ANN) == set()


def test_leave_by_one_of_two_connections_keeps_the_user() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.join(R1, ANN, C2)
    assert rooms.leave(R1, ANN, C1) is False
    assert rooms.is_member(R1, ANN)
    assert rooms.conns(R1) == {C2}


def test_leave_of_a_non_member_is_false() -> None:
    rooms = RoomRegistry()
    assert rooms.leave(R1, ANN, C1) is False
    rooms.join(R1, BOB, C2)
    assert rooms.leave(R1, ANN, C1) is False
    assert rooms.is_member(R1, BOB)


def test_an_empty_room_is_forgotten() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.leave(R1, ANN, C1)
    assert rooms.room_count() == 0
    assert list(rooms) == []
    assert rooms.conns(R1) == set()


def test_detach_removes_the_connection_but_the_membership_lingers() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.join(R1, BOB, C2)
    rooms.detach([R1], ANN, C1)
    assert rooms.is_member(R1, ANN)
    assert rooms.members(R1)[ANN] == set()
    assert rooms.conns(R1) == {C2}


def test_rejoining_a_lingering_membership_is_not_a_new_member() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.detach([R1], ANN, C1)
    assert rooms.join(R1, ANN, C2) is False
    assert rooms.conns(R1) == {C2}


def test_purge_lingering_removes_memberships_no_connection_holds() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.join(R2, ANN, C2)
    rooms.detach([R1], ANN, C1)
    assert rooms.purge_lingering(ANN) == [R1]
    assert not rooms.is_member(R1, ANN)
    assert rooms.is_member(R2, ANN)


def test_purge_lingering_keeps_a_membership_rejoined_by_another_connection() -> None:
    rooms = RoomRegistry()
    rooms.join(R1, ANN, C1)
    rooms.detach([R1], ANN, C1)
    rooms.join(R1, ANN, C2)
    assert rooms.purge_lingering(ANN) == []
    assert rooms.is_member(R1, ANN)


def test_purge_lingering_of_a_user_in_no_room_is_empty() -> None:
    assert RoomRegistry().purge_lingering(ANN) == []


def test_a_rooms_stamp_changes_with_its_connections_and_never_comes_back() -> None:
    reg = RoomRegistry()
    room = RoomId("r")
    seen = [reg.stamp(room)]
    reg.join(room, UserId("ann"), ConnId(1))
    seen.append(reg.stamp(room))
    assert reg.stamp(room) == seen[-1]  # unchanged while the connections are
    reg.join(room, UserId("bob"), ConnId(2))
    seen.append(reg.stamp(room))
    reg.leave(room, UserId("bob"), ConnId(2))
    seen.append(reg.stamp(room))
    reg.detach([room], UserId("ann"), ConnId(1))
    reg.join(room, UserId("ann"), ConnId(3))
    seen.append(reg.stamp(room))
    assert len(set(seen)) == len(seen)


def test_leaving_a_room_one_was_not_in_keeps_its_stamp() -> None:
    reg = RoomRegistry()
    room = RoomId("r")
    reg.join(room, UserId("ann"), ConnId(1))
    before = reg.stamp(room)
    reg.detach([room], UserId("bob"), ConnId(2))
    assert reg.stamp(room) == before
