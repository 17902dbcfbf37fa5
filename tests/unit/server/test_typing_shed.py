"""Typing is shed first under pressure (docs/topics/backpressure.md): `isTyping: true` is
not queued for a reader whose transport still holds bytes the kernel did not take; a
`false`, and every other event, still is."""

import asyncio

from hubbub.features.system import open_session
from hubbub.features.typing_indicators import typing_event
from hubbub.ids import RoomId, UserId
from hubbub.server.hub import Conn, Hub
from tests.support.node import make_node
from tests.unit.server.test_hub_flush import FakeTransport, _closer

ROOM = RoomId("r1")


class BehindTransport(FakeTransport):
    """A transport holding `unsent` bytes the kernel has not taken yet."""

    def __init__(self, unsent: int) -> None:
        super().__init__()
        self.unsent = unsent

    def get_write_buffer_size(self) -> int:
        return self.unsent


def room_of_three() -> tuple[Hub, Conn, Conn, Conn]:
    """The typist, a reader that keeps up and a reader that is behind, in one room."""
    node = make_node()
    hub = Hub(node, asyncio.get_running_loop())
    conns = []
    for user, transport in (("typist", FakeTransport()), ("quick", FakeTransport()),
                            ("behind", BehindTransport(4096))):
        conn = Conn(open_session(node), transport, _closer)
        conn.user = UserId(user)
        hub.add(conn)
        node.rooms.join(ROOM, UserId(user), conn.id)
        conns.append(conn)
    return hub, conns[0], conns[1], conns[2]


def written(conn: Conn) -> bytes:
    return b"".join(conn.transport.writes)  # type: ignore[attr-defined]


async def test_typing_true_is_not_sent_to_a_reader_that_is_behind() -> None:
    hub, typist, quick, behind = room_of_three()
    hub.run([typing_event(ROOM, UserId("typist"), "Typist", True)])
    hub.flush()
    assert b'"isTyping":true' in written(quick)
    assert written(behind) == b""
    assert written(typist) == b""
    assert hub.node.metrics.typing_shed == 1
    assert hub.node.metrics.frames_out["typing"] == 1


async def test_typing_false_reaches_a_reader_that_is_behind() -> None:
    hub, _, quick, behind = room_of_three()
    hub.run([typing_event(ROOM, UserId("typist"), "Typist", False)])
    hub.flush()
    assert b'"isTyping":false' in written(quick)
    assert b'"isTyping":false' in written(behind)
    assert hub.node.metrics.typing_shed == 0


async def test_a_reader_that_caught_up_gets_typing_again() -> None:
    hub, _, _, behind = room_of_three()
    hub.run([typing_event(ROOM, UserId("typist"), "Typist", True)])
    hub.flush()
    behind.transport.unsent = 0  # type: ignore[attr-defined]
    hub.run([typing_event(ROOM, UserId("typist"), "Typist", True)])
    hub.flush()
    assert written(behind).count(b'"isTyping":true') == 1


def test_a_typing_true_frame_is_recognised_by_its_end() -> None:
    from hubbub.protocol.frames import TypingEvent, encode
    from hubbub.server import framing

    def frame(on: bool) -> bytes:
        return framing.text_frame(encode("typing", TypingEvent(
            room_id="r1", user_id="u", username="U", is_typing=on)))

    assert frame(True).endswith(framing.TYPING_TRUE)
    assert not frame(False).endswith(framing.TYPING_TRUE)
