"""Connection lifecycle, `ping` and announcements (features/system.py)."""

from hubbub.core.effects import Reply, ToAll
from hubbub.features.node import Node
from hubbub.features.system import announce, close_session, open_session
from hubbub.ids import UserId
from tests.support.clock import FakeClock
from tests.support.node import asend, connect, payload, settle
from tests.unit.features.helpers import inbox


async def test_ping_gets_pong_with_the_server_time_and_the_frame_id(
    node: Node, clock: FakeClock
) -> None:
    s = connect(node, "ann")
    effects = await asend(node, s, "ping", {}, id="p1")
    assert len(effects) == 1 and isinstance(effects[0], Reply)
    assert (effects[0].type, effects[0].id) == ("pong", "p1")
    assert payload(effects[0]) == {"serverTime": clock.now}


async def test_ping_without_payload_gets_pong(node: Node) -> None:
    s = connect(node, "ann")
    effects = await asend(node, s, "ping")
    assert [e.type for e in effects if isinstance(e, Reply)] == ["pong"]


async def test_announcement_goes_to_every_authenticated_connection(
    node: Node, clock: FakeClock
) -> None:
    ann, bob = connect(node, "ann"), connect(node, "bob")
    stranger = open_session(node)
    effects = announce(node, "maintenance at noon")
    assert [type(e) for e in effects] == [ToAll]
    expected = [("announcement", {"content": "maintenance at noon", "createdAt": clock.now})]
    assert inbox(node, effects, ann) == expected
    assert inbox(node, effects, bob) == expected
    assert inbox(node, effects, stranger) == []


async def test_closing_an_unauthenticated_connection_has_no_effects(node: Node) -> None:
    s = open_session(node)
    assert close_session(node, s.conn) == []
    assert s.conn not in node.sessions


async def test_closing_a_connection_twice_is_harmless(node: Node) -> None:
    s = connect(node, "ann")
    settle(close_session(node, s.conn))
    assert close_session(node, s.conn) == []


async def test_closing_a_connection_forgets_it_among_the_users_connections(node: Node) -> None:
    ann1, ann2 = connect(node, "ann"), connect(node, "ann")
    settle(close_session(node, ann1.conn))
    assert node.user_conns[UserId("ann")] == {ann2.conn}
    settle(close_session(node, ann2.conn))
    assert UserId("ann") not in node.user_conns
