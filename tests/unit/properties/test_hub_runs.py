"""Room runs (server/hub.py, ADR 0020): however broadcasts, direct frames, joins, leaves,
flushes, early writes and closes interleave, every connection receives exactly the frames
a plain per-connection queue would have given it, in the same order."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.features.system import open_session
from hubbub.ids import RoomId, UserId
from hubbub.server import hub as hub_module
from hubbub.server.hub import Conn, Hub
from tests.support.node import make_node
from tests.unit.server.test_hub_flush import FakeTransport, _closer

CONNS, ROOMS, USERS = 6, 3, 3

conn_ix = st.integers(0, CONNS - 1)
room_ix = st.integers(0, ROOMS - 1)
operations = st.lists(st.one_of(
    st.tuples(st.just("broadcast"), room_ix, st.none() | st.integers(0, USERS - 1)),
    st.tuples(st.just("direct"), conn_ix),
    st.tuples(st.just("join"), room_ix, conn_ix),
    st.tuples(st.just("leave"), room_ix, conn_ix),
    st.tuples(st.just("turn")),
    st.tuples(st.just("write now"), conn_ix),
    st.tuples(st.just("close"), conn_ix),
), min_size=10, max_size=120)
memberships = st.sets(st.tuples(room_ix, conn_ix), min_size=4)


def user_of(i: int) -> UserId:
    return UserId(f"u{i % USERS}")


@settings(max_examples=300, deadline=None)
@given(joined=memberships, ops=operations)
def test_every_connection_gets_what_a_plain_queue_would_give_it(
        joined: set[tuple[int, int]], ops: list[tuple]) -> None:
    mp = pytest.MonkeyPatch()
    mp.setattr(hub_module, "FLUSH_CHUNK", 2)  # flushes span loop turns
    mp.setattr(hub_module, "FLUSH_SLOW_S", 3600.0)
    loop = asyncio.new_event_loop()
    try:
        node = make_node()
        hub = Hub(node, loop)
        conns = []
        for i in range(CONNS):
            conn = Conn(open_session(node), FakeTransport(), _closer)
            conn.user = user_of(i)
            hub.add(conn)
            conns.append(conn)
        members: list[set[int]] = [set() for _ in range(ROOMS)]
        closed: set[int] = set()
        expected: list[list[bytes]] = [[] for _ in range(CONNS)]
        serial = 0

        def frame() -> bytes:
            nonlocal serial
            serial += 1
            return f"{serial};".encode()

        for room, i in joined:
            node.rooms.join(RoomId(f"r{room}"), user_of(i), conns[i].id)
            members[room].add(i)
        for op in ops:
            kind = op[0]
            if kind == "broadcast":
                room, ex = op[1], op[2]
                f = frame()
                hub.deliver_room_now(RoomId(f"r{room}"), "chat", f,
                                     None if ex is None else UserId(f"u{ex}"))
                for i in members[room]:
                    if i not in closed and (ex is None or user_of(i) != f"u{ex}"):
                        expected[i].append(f)
            elif kind == "direct":
                f = frame()
                hub.queue(conns[op[1]], f)
                if op[1] not in closed:
                    expected[op[1]].append(f)
            elif kind == "join":
                node.rooms.join(RoomId(f"r{op[1]}"), user_of(op[2]), conns[op[2]].id)
                members[op[1]].add(op[2])
            elif kind == "leave":
                node.rooms.leave(RoomId(f"r{op[1]}"), user_of(op[2]), conns[op[2]].id)
                members[op[1]].discard(op[2])
            elif kind == "turn":
                loop.run_until_complete(asyncio.sleep(0))
            elif kind == "write now":
                hub.write_out(conns[op[1]])
            else:
                hub.begin_close(conns[op[1]])
                closed.add(op[1])
        for _ in range(CONNS):
            loop.run_until_complete(asyncio.sleep(0))
        hub.flush()
        for _ in range(CONNS):
            loop.run_until_complete(asyncio.sleep(0))
        for i, conn in enumerate(conns):
            got = b"".join(conn.transport.writes)  # type: ignore[attr-defined]
            assert got == b"".join(expected[i]), f"conn {i}"
    finally:
        loop.close()
        mp.undo()
