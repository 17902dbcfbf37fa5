"""The contract suite of `hubbub.store.base.Store`, written against the abstract contract.

Every backend runs exactly these tests (DESIGN §5.4). A backend's test module provides one
fixture, `backend`, that returns a `Backend`: how to make a Store on a fresh database, and
again on the same database (for durability). Then it subclasses `StoreContract`:

    @pytest.fixture(params=["sqlite-memory", "sqlite-file"])
    def backend(request, tmp_path) -> Backend: ...

    class TestSqliteStore(StoreContract): ...

A backend that needs a service (PostgreSQL) adds one param to that fixture; when the
service is not reachable the fixture skips locally but must `pytest.fail` in CI
(`tests.conftest.IN_CI`), so a missing service never turns the suite green.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from hubbub.core.messages import MAX_EMOJIS_PER_MESSAGE
from hubbub.errors import ProtocolError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import EVENT_TYPES, CallRecord, ChatEvent, HistoryMessage, Out
from hubbub.store.base import NewChat, Store

T0 = 1_700_000_000_000


@dataclass
class Backend:
    """How the suite gets stores. `make()` returns a new, unopened Store on the backend's
    one database; with `durable`, a second `make()` after `close()` sees the same data."""

    name: str
    make: Callable[[], Store]
    durable: bool


async def chat(store: Store, room: str = "r", user: str = "u1", content: str = "hi",
               client_msg_id: str | None = None, at: int = T0,
               reply_to: str | None = None) -> ChatEvent:
    event, duplicate = await store.append_chat(NewChat(
        room_id=room, user_id=user, username=user.upper(), content=content, created_at=at,
        client_msg_id=client_msg_id, reply_to=reply_to))
    assert duplicate is False
    return event


async def full_history(store: Store, room: str = "r") -> list[HistoryMessage]:
    """Every message of a room, paging forward with afterSeq."""
    out: list[HistoryMessage] = []
    after = 0
    while True:
        page, more = await store.history(room, None, after, 100)
        out += page
        if not more:
            return out
        after = page[-1].seq


def wire(event: Out) -> dict[str, Any]:
    """An event as it is broadcast (camelCase, defaults omitted)."""
    result: dict[str, Any] = msgspec.to_builtins(event)
    return result


def replayed(recovery_events: list[Any]) -> list[dict[str, Any]]:
    return [{"type": e.type, "payload": msgspec.json.decode(e.payload)} for e in recovery_events]


def broadcast(event: Out) -> dict[str, Any]:
    return {"type": EVENT_TYPES[type(event)], "payload": wire(event)}


def code_of(exc_info: pytest.ExceptionInfo[ProtocolError]) -> ErrorCode:
    return exc_info.value.code


class StoreContract:
    """Subclass it in a `test_store_*.py` module that defines the `backend` fixture."""

    @pytest.fixture
    async def store(self, backend: Backend) -> AsyncIterator[Store]:
        s = backend.make()
        await s.open()
        try:
            yield s
        finally:
            await s.close()

    # ---- order: seq per room, no gaps ------------------------------------------------
    async def test_a_new_room_has_last_seq_zero(self, store: Store) -> None:
        assert await store.last_seq("empty") == 0

    async def test_the_first_event_of_a_room_gets_seq_one(self, store: Store) -> None:
        assert (await chat(store)).seq == 1
        assert await store.last_seq("r") == 1

    async def test_chat_edit_reaction_and_delete_share_one_gapless_seq(self, store: Store):
        m = await chat(store)
        edit = await store.edit_message("r", m.message_id, "u1", "edited", T0 + 1)
        reaction = await store.react("r", m.message_id, "u2", "👍", "add", T0 + 2)
        second = await chat(store, content="second")
        delete = await store.delete_message("r", m.message_id, "u1", False, T0 + 3)
        assert reaction is not None
        assert [m.seq, edit.seq, reaction.seq, second.seq, delete.seq] == [1, 2, 3, 4, 5]
        assert await store.last_seq("r") == 5

    async def test_rooms_count_their_seqs_independently(self, store: Store) -> None:
        a1 = await chat(store, room="a")
        b1 = await chat(store, room="b")
        a2 = await chat(store, room="a")
        assert (a1.seq, a2.seq, b1.seq) == (1, 2, 1)
        assert (await store.last_seq("a"), await store.last_seq("b")) == (2, 1)

    async def test_last_seqs_reads_the_position_of_many_rooms_at_once(self, store: Store):
        await chat(store, room="a")
        await chat(store, room="a")
        await chat(store, room="b")
        assert await store.last_seqs(["b", "none", "a"]) == {"a": 2, "b": 1, "none": 0}
        assert await store.last_seqs([]) == {}
        many = [f"x{i}" for i in range(1200)] + ["a"]  # more than one statement's worth
        positions = await store.last_seqs(many)
        assert len(positions) == 1201 and positions["a"] == 2
        assert set(positions.values()) == {0, 2}

    async def test_last_seqs_sees_what_another_store_on_the_database_wrote(
            self, backend: Backend) -> None:
        if not backend.durable:
            pytest.skip(f"{backend.name} is one store's own database, by design")
        one, other = backend.make(), backend.make()
        await one.open()
        await other.open()
        try:
            assert await other.last_seqs(["r"]) == {"r": 0}
            await chat(one)
            await chat(one)
            assert await other.last_seqs(["r"]) == {"r": 2}
        finally:
            await one.close()
            await other.close()

    async def test_concurrent_appends_give_each_room_unique_gapless_seqs(self, store: Store):
        rooms = ["a", "b", "c"]
        events = await asyncio.gather(*(
            chat(store, room=rooms[i % 3], user=f"u{i % 7}", content=f"m{i}")
            for i in range(200)))
        for room in rooms:
            seqs = sorted(e.seq for e in events if e.room_id == room)
            assert seqs == list(range(1, len(seqs) + 1))
            assert await store.last_seq(room) == len(seqs)
            assert [m.seq for m in await full_history(store, room)] == seqs
        assert len({e.message_id for e in events}) == 200

    # ---- idempotency ----------------------------------------------------------------
    async def test_a_retry_with_the_same_client_msg_id_returns_the_original(self, store: Store):
        first = await chat(store, content="once", client_msg_id="c1")
        again, duplicate = await store.append_chat(NewChat(
            room_id="r", user_id="u1", username="U1", content="once", created_at=T0 + 5,
            client_msg_id="c1"))
        assert duplicate is True
        assert (again.message_id, again.seq, again.created_at) == (
            first.message_id, first.seq, first.created_at)

    async def test_a_retry_writes_nothing(self, store: Store) -> None:
        await chat(store, content="once", client_msg_id="c1")
        await store.append_chat(NewChat(room_id="r", user_id="u1", username="U1",
                                        content="other text", created_at=T0 + 5,
                                        client_msg_id="c1"))
        assert await store.last_seq("r") == 1
        messages = await full_history(store)
        assert [(m.seq, m.content) for m in messages] == [(1, "once")]
        assert (await chat(store, content="next")).seq == 2  # the retry took no seq

    async def test_another_user_with_the_same_client_msg_id_gets_a_new_message(
            self, store: Store) -> None:
        first = await chat(store, user="u1", client_msg_id="c1")
        second = await chat(store, user="u2", client_msg_id="c1")
        assert second.message_id != first.message_id
        assert second.seq == 2

    async def test_concurrent_retries_of_one_chat_write_it_once(self, store: Store) -> None:
        results = await asyncio.gather(*(store.append_chat(NewChat(
            room_id="r", user_id="u1", username="U1", content="x", created_at=T0,
            client_msg_id="c1")) for _ in range(5)))
        assert len({event.message_id for event, _ in results}) == 1
        assert sorted(dup for _, dup in results) == [False, True, True, True, True]
        assert await store.last_seq("r") == 1

    async def test_a_retry_among_new_chats_takes_no_seq(self, store: Store) -> None:
        first = await chat(store, content="once", client_msg_id="c0")
        results = await asyncio.gather(*(store.append_chat(NewChat(
            room_id="r", user_id="u1", username="U1", content=f"m{i}", created_at=T0 + i,
            client_msg_id="c0" if i == 2 else f"c{i + 10}")) for i in range(5)))
        assert [dup for _, dup in results] == [False, False, True, False, False]
        assert results[2][0].message_id == first.message_id
        assert [e.seq for e, dup in results if not dup] == [2, 3, 4, 5]
        assert [(m.seq, m.content) for m in await full_history(store)] == [
            (1, "once"), (2, "m0"), (3, "m1"), (4, "m3"), (5, "m4")]

    async def test_the_same_client_msg_id_twice_in_one_batch_is_stored_once(
            self, store: Store) -> None:
        # A client's retry can reach the store while its original still waits in the same
        # batch: the retry gets the original back and takes no seq.
        results = await asyncio.gather(*(store.append_chat(NewChat(
            room_id="r", user_id="u1", username="U1", content=f"m{i}", created_at=T0 + i,
            client_msg_id="twice" if i in (1, 3) else f"c{i}")) for i in range(5)))
        assert [dup for _, dup in results] == [False, False, False, True, False]
        assert results[3][0].message_id == results[1][0].message_id
        assert results[3][0].seq == 2 and results[3][0].content == "m1"
        assert [(m.seq, m.content) for m in await full_history(store)] == [
            (1, "m0"), (2, "m1"), (3, "m2"), (4, "m4")]

    async def test_the_chat_event_carries_what_was_given(self, store: Store) -> None:
        m = await chat(store, room="r", user="u1", content="hello", client_msg_id="c1",
                       reply_to="m0")
        assert wire(m) == {"roomId": "r", "messageId": m.message_id, "seq": 1,
                           "userId": "u1", "username": "U1", "content": "hello",
                           "createdAt": T0, "clientMsgId": "c1", "replyTo": "m0"}

    # ---- edits ------------------------------------------------------------------------
    async def test_the_author_may_edit_a_message(self, store: Store) -> None:
        m = await chat(store, content="before")
        edit = await store.edit_message("r", m.message_id, "u1", "after", T0 + 10)
        assert wire(edit) == {"roomId": "r", "messageId": m.message_id, "seq": 2,
                              "userId": "u1", "content": "after", "editedAt": T0 + 10}
        [current] = await full_history(store)
        assert (current.content, current.edited_at, current.seq) == ("after", T0 + 10, 1)

    async def test_another_user_may_not_edit_a_message(self, store: Store) -> None:
        m = await chat(store, content="mine")
        with pytest.raises(ProtocolError) as exc:
            await store.edit_message("r", m.message_id, "u2", "theirs", T0 + 1)
        assert code_of(exc) == ErrorCode.FORBIDDEN
        assert await store.last_seq("r") == 1
        assert [x.content for x in await full_history(store)] == ["mine"]

    async def test_editing_a_deleted_message_is_a_conflict(self, store: Store) -> None:
        m = await chat(store)
        await store.delete_message("r", m.message_id, "u1", False, T0 + 1)
        with pytest.raises(ProtocolError) as exc:
            await store.edit_message("r", m.message_id, "u1", "back", T0 + 2)
        assert code_of(exc) == ErrorCode.CONFLICT
        assert await store.last_seq("r") == 2

    async def test_editing_an_unknown_message_is_not_found(self, store: Store) -> None:
        await chat(store)
        with pytest.raises(ProtocolError) as exc:
            await store.edit_message("r", "no-such-id", "u1", "x", T0 + 1)
        assert code_of(exc) == ErrorCode.NOT_FOUND

    async def test_a_message_of_another_room_is_not_found(self, store: Store) -> None:
        m = await chat(store, room="a")
        with pytest.raises(ProtocolError) as exc:
            await store.edit_message("b", m.message_id, "u1", "x", T0 + 1)
        assert code_of(exc) == ErrorCode.NOT_FOUND
        assert await store.last_seq("b") == 0

    # ---- deletes ----------------------------------------------------------------------
    async def test_the_author_may_delete_a_message(self, store: Store) -> None:
        m = await chat(store)
        delete = await store.delete_message("r", m.message_id, "u1", False, T0 + 9)
        assert wire(delete) == {"roomId": "r", "messageId": m.message_id, "seq": 2,
                                "userId": "u1", "deletedAt": T0 + 9}

    async def test_an_admin_may_delete_another_users_message(self, store: Store) -> None:
        m = await chat(store, user="u1")
        delete = await store.delete_message("r", m.message_id, "boss", True, T0 + 1)
        assert (delete.user_id, delete.seq) == ("boss", 2)
        [current] = await full_history(store)
        assert current.deleted is True

    async def test_another_user_may_not_delete_a_message(self, store: Store) -> None:
        m = await chat(store, user="u1", content="stays")
        with pytest.raises(ProtocolError) as exc:
            await store.delete_message("r", m.message_id, "u2", False, T0 + 1)
        assert code_of(exc) == ErrorCode.FORBIDDEN
        assert [x.content for x in await full_history(store)] == ["stays"]
        assert await store.last_seq("r") == 1

    async def test_deleting_twice_is_a_conflict(self, store: Store) -> None:
        m = await chat(store)
        await store.delete_message("r", m.message_id, "u1", False, T0 + 1)
        with pytest.raises(ProtocolError) as exc:
            await store.delete_message("r", m.message_id, "u1", False, T0 + 2)
        assert code_of(exc) == ErrorCode.CONFLICT

    async def test_a_deleted_message_is_a_tombstone_in_history(self, store: Store) -> None:
        m = await chat(store, content="secret")
        await store.edit_message("r", m.message_id, "u1", "more secret", T0 + 1)
        await store.react("r", m.message_id, "u2", "👍", "add", T0 + 2)
        await store.delete_message("r", m.message_id, "u1", False, T0 + 3)
        [tomb] = await full_history(store)
        assert (tomb.message_id, tomb.seq, tomb.deleted, tomb.content) == (
            m.message_id, 1, True, None)
        assert tomb.deleted_at == T0 + 3
        assert not tomb.reactions
        assert "secret" not in msgspec.json.encode(tomb).decode()

    async def test_a_delete_erases_the_content_from_the_replayed_events(self, store: Store):
        m = await chat(store, content="secret")
        await store.edit_message("r", m.message_id, "u1", "more secret", T0 + 1)
        other = await chat(store, content="kept")
        await store.delete_message("r", m.message_id, "u1", False, T0 + 2)
        recovery = await store.events_since("r", 0, 100)
        events = replayed(recovery.events)
        assert [e["type"] for e in events] == ["chat", "message_edit", "chat", "message_delete"]
        assert events[0]["payload"]["content"] is None
        assert events[1]["payload"]["content"] is None
        assert events[2]["payload"] == wire(other)
        assert "secret" not in repr(events)

    # ---- reactions --------------------------------------------------------------------
    async def test_adding_a_reaction_is_an_event(self, store: Store) -> None:
        m = await chat(store)
        event = await store.react("r", m.message_id, "u2", "👍", "add", T0 + 1)
        assert event is not None
        assert wire(event) == {"roomId": "r", "messageId": m.message_id, "seq": 2,
                               "userId": "u2", "emoji": "👍", "op": "add",
                               "createdAt": T0 + 1}

    async def test_adding_the_same_reaction_twice_is_a_no_op(self, store: Store) -> None:
        m = await chat(store)
        await store.react("r", m.message_id, "u2", "👍", "add", T0 + 1)
        assert await store.react("r", m.message_id, "u2", "👍", "add", T0 + 2) is None
        assert await store.last_seq("r") == 2
        [current] = await full_history(store)
        assert current.reactions == {"👍": ["u2"]}

    async def test_removing_a_reaction_is_an_event(self, store: Store) -> None:
        m = await chat(store)
        await store.react("r", m.message_id, "u2", "👍", "add", T0 + 1)
        event = await store.react("r", m.message_id, "u2", "👍", "remove", T0 + 2)
        assert event is not None and (event.op, event.seq) == ("remove", 3)
        [current] = await full_history(store)
        assert not current.reactions

    async def test_removing_an_absent_reaction_is_a_no_op(self, store: Store) -> None:
        m = await chat(store)
        assert await store.react("r", m.message_id, "u2", "👍", "remove", T0 + 1) is None
        assert await store.last_seq("r") == 1

    async def test_reacting_to_an_unknown_message_is_not_found(self, store: Store) -> None:
        await chat(store)
        with pytest.raises(ProtocolError) as exc:
            await store.react("r", "no-such-id", "u2", "👍", "add", T0 + 1)
        assert code_of(exc) == ErrorCode.NOT_FOUND

    async def test_reacting_to_a_deleted_message_is_a_conflict(self, store: Store) -> None:
        m = await chat(store)
        await store.delete_message("r", m.message_id, "u1", False, T0 + 1)
        with pytest.raises(ProtocolError) as exc:
            await store.react("r", m.message_id, "u2", "👍", "add", T0 + 2)
        assert code_of(exc) == ErrorCode.CONFLICT

    async def test_a_message_carries_at_most_max_emojis_but_each_may_gain_users(
            self, store: Store) -> None:
        m = await chat(store)
        for i in range(MAX_EMOJIS_PER_MESSAGE):
            assert await store.react("r", m.message_id, "u2", f"e{i}", "add", T0 + 1)
        with pytest.raises(ProtocolError) as exc:
            await store.react("r", m.message_id, "u2", "one-too-many", "add", T0 + 2)
        assert code_of(exc) == ErrorCode.CONFLICT
        with pytest.raises(ProtocolError):  # another user is refused a new one too
            await store.react("r", m.message_id, "u3", "one-too-many", "add", T0 + 2)
        assert await store.react("r", m.message_id, "u3", "e0", "add", T0 + 3)
        assert await store.react("r", m.message_id, "u2", "e1", "remove", T0 + 4)
        assert await store.react("r", m.message_id, "u3", "now-it-fits", "add", T0 + 5)
        assert await store.last_seq("r") == 1 + MAX_EMOJIS_PER_MESSAGE + 3
        [current] = await full_history(store)
        assert len(current.reactions) == MAX_EMOJIS_PER_MESSAGE

    async def test_history_aggregates_reactions_by_emoji_in_the_order_they_were_added(
            self, store: Store) -> None:
        m = await chat(store)
        # Same timestamp on purpose: the order is the order of the events, not of user ids.
        for user, emoji in [("u3", "👍"), ("u1", "🎉"), ("u2", "👍"), ("u1", "👍")]:
            await store.react("r", m.message_id, user, emoji, "add", T0 + 1)
        [current] = await full_history(store)
        assert current.reactions == {"👍": ["u3", "u2", "u1"], "🎉": ["u1"]}
        assert list(current.reactions) == ["👍", "🎉"]

    async def test_a_reaction_removed_and_added_again_moves_to_the_end(self, store: Store):
        m = await chat(store)
        for user in ("u1", "u2"):
            await store.react("r", m.message_id, user, "👍", "add", T0 + 1)
        await store.react("r", m.message_id, "u1", "👍", "remove", T0 + 2)
        await store.react("r", m.message_id, "u1", "👍", "add", T0 + 3)
        [current] = await full_history(store)
        assert current.reactions == {"👍": ["u2", "u1"]}

    # ---- history paging ---------------------------------------------------------------
    async def _ten(self, store: Store) -> list[ChatEvent]:
        return [await chat(store, content=f"m{i}") for i in range(1, 11)]

    async def test_history_without_bounds_is_the_latest_page(self, store: Store) -> None:
        await self._ten(store)
        page, more = await store.history("r", None, None, 3)
        assert [m.seq for m in page] == [8, 9, 10]
        assert more is True

    async def test_history_of_a_whole_room_has_no_more(self, store: Store) -> None:
        await self._ten(store)
        page, more = await store.history("r", None, None, 10)
        assert [m.content for m in page] == [f"m{i}" for i in range(1, 11)]
        assert more is False

    async def test_history_before_seq_is_the_page_just_below_it(self, store: Store) -> None:
        await self._ten(store)
        page, more = await store.history("r", 8, None, 3)
        assert [m.seq for m in page] == [5, 6, 7]
        assert more is True

    async def test_history_before_seq_reports_no_more_at_the_start(self, store: Store) -> None:
        await self._ten(store)
        page, more = await store.history("r", 4, None, 3)
        assert [m.seq for m in page] == [1, 2, 3]
        assert more is False

    async def test_history_after_seq_is_the_page_just_above_it(self, store: Store) -> None:
        await self._ten(store)
        page, more = await store.history("r", None, 2, 3)
        assert [m.seq for m in page] == [3, 4, 5]
        assert more is True

    async def test_history_after_seq_reports_no_more_at_the_end(self, store: Store) -> None:
        await self._ten(store)
        page, more = await store.history("r", None, 7, 3)
        assert [m.seq for m in page] == [8, 9, 10]
        assert more is False

    async def test_history_between_two_seqs_pages_upward_from_after_seq(self, store: Store):
        await self._ten(store)
        page, more = await store.history("r", 9, 2, 3)
        assert [m.seq for m in page] == [3, 4, 5]
        assert more is True
        page, more = await store.history("r", 6, 2, 10)
        assert [m.seq for m in page] == [3, 4, 5]
        assert more is False

    async def test_history_of_an_unknown_room_is_empty(self, store: Store) -> None:
        assert await store.history("nowhere", None, None, 50) == ([], False)

    async def test_history_lists_only_chat_messages(self, store: Store) -> None:
        m = await chat(store, content="one")
        await store.edit_message("r", m.message_id, "u1", "one!", T0 + 1)
        await store.react("r", m.message_id, "u2", "👍", "add", T0 + 2)
        await chat(store, content="two")
        page, more = await store.history("r", None, None, 50)
        assert [(x.seq, x.content) for x in page] == [(1, "one!"), (4, "two")]
        assert more is False

    async def test_history_refuses_a_limit_out_of_range(self, store: Store) -> None:
        for limit in (0, 101):
            with pytest.raises(ProtocolError) as exc:
                await store.history("r", None, None, limit)
            assert code_of(exc) == ErrorCode.BAD_REQUEST

    async def test_history_shows_the_current_state_of_a_message(self, store: Store) -> None:
        m = await chat(store, content="v1", client_msg_id="c1", reply_to="m0")
        await store.edit_message("r", m.message_id, "u1", "v2", T0 + 7)
        [current] = await full_history(store)
        assert wire(current) == {"messageId": m.message_id, "seq": 1, "roomId": "r",
                                 "userId": "u1", "username": "U1", "createdAt": T0,
                                 "content": "v2", "deleted": False, "editedAt": T0 + 7,
                                 "reactions": {}, "replyTo": "m0", "clientMsgId": "c1"}

    # ---- recovery: events_since -------------------------------------------------------
    async def _mixed(self, store: Store) -> list[Out]:
        """chat(1), edit(2), reaction(3), chat(4), reaction removed(5), delete of 4 (6)."""
        m = await chat(store, content="one")
        edit = await store.edit_message("r", m.message_id, "u1", "one!", T0 + 1)
        add = await store.react("r", m.message_id, "u2", "👍", "add", T0 + 2)
        two = await chat(store, user="u2", content="two", client_msg_id="c2")
        remove = await store.react("r", m.message_id, "u2", "👍", "remove", T0 + 3)
        delete = await store.delete_message("r", m.message_id, "u1", False, T0 + 4)
        assert add is not None and remove is not None
        return [m, edit, add, two, remove, delete]

    async def test_events_since_returns_every_later_event_as_broadcast(self, store: Store):
        events = await self._mixed(store)
        recovery = await store.events_since("r", 2, 100)
        assert (recovery.complete, recovery.last_seq) == (True, 6)
        assert replayed(recovery.events) == [broadcast(e) for e in events[2:]]

    async def test_chats_queued_together_are_replayed_as_broadcast(self, store: Store):
        # Queued in one turn, they are stored together (one statement per table on SQLite,
        # one for all on PostgreSQL): each is still replayed exactly as it went out.
        results = await asyncio.gather(*(store.append_chat(NewChat(
            room_id="r", user_id=f"u{i % 2}", username=f"U{i % 2}", content=f"m{i} ✓",
            created_at=T0 + i, client_msg_id=f"c{i}" if i % 3 else None,
            reply_to="m-x" if i == 4 else None)) for i in range(6)))
        recovery = await store.events_since("r", 0, 100)
        assert (recovery.complete, recovery.last_seq) == (True, 6)
        assert replayed(recovery.events) == [broadcast(e) for e, _ in results]

    async def test_a_chat_edited_twice_is_replayed_as_sent_then_edited(self, store: Store):
        m = await chat(store, content="as sent", reply_to="m0")
        first = await store.edit_message("r", m.message_id, "u1", "first edit", T0 + 1)
        second = await store.edit_message("r", m.message_id, "u1", "second edit", T0 + 2)
        recovery = await store.events_since("r", 0, 100)
        assert replayed(recovery.events) == [broadcast(e) for e in (m, first, second)]

    async def test_events_since_the_last_seq_is_complete_and_empty(self, store: Store) -> None:
        await self._mixed(store)
        recovery = await store.events_since("r", 6, 100)
        assert (recovery.events, recovery.complete, recovery.last_seq) == ([], True, 6)

    async def test_events_since_within_the_limit_exactly_is_complete(self, store: Store):
        await self._mixed(store)
        recovery = await store.events_since("r", 1, 5)
        assert recovery.complete is True
        assert [msgspec.json.decode(e.payload)["seq"] for e in recovery.events] == [2, 3, 4, 5, 6]

    async def test_events_since_beyond_the_limit_is_incomplete_and_empty(self, store: Store):
        await self._mixed(store)
        recovery = await store.events_since("r", 0, 5)
        assert (recovery.events, recovery.complete, recovery.last_seq) == ([], False, 6)

    async def test_events_since_read_as_pages_returns_every_event_page_by_page(
            self, store: Store) -> None:
        await self._mixed(store)
        whole = replayed((await store.events_since("r", 0, 100)).events)
        first = await store.events_since("r", 0, 4, page=True)
        assert (first.complete, first.last_seq) == (False, 4)
        assert replayed(first.events) == whole[:4]
        rest = await store.events_since("r", first.last_seq, 4, page=True)
        assert (rest.complete, rest.last_seq) == (True, 6)
        assert replayed(rest.events) == whole[4:]
        exact = await store.events_since("r", 1, 5, page=True)
        assert (exact.complete, exact.last_seq, len(exact.events)) == (True, 6, 5)
        past = await store.events_since("r", 7, 4, page=True)
        assert (past.events, past.complete, past.last_seq) == ([], False, 6)

    async def test_events_since_a_seq_past_the_end_is_incomplete(self, store: Store) -> None:
        await self._mixed(store)
        recovery = await store.events_since("r", 7, 100)
        assert (recovery.events, recovery.complete, recovery.last_seq) == ([], False, 6)

    async def test_events_since_zero_of_an_unknown_room_is_complete_and_empty(
            self, store: Store) -> None:
        recovery = await store.events_since("nowhere", 0, 100)
        assert (recovery.events, recovery.complete, recovery.last_seq) == ([], True, 0)

    async def test_events_since_keeps_other_rooms_out(self, store: Store) -> None:
        await chat(store, room="a", content="in a")
        b = await chat(store, room="b", content="in b")
        recovery = await store.events_since("b", 0, 100)
        assert replayed(recovery.events) == [broadcast(b)]

    async def test_last_seq_and_events_since_see_writes_queued_before_them(self, store: Store):
        m = await chat(store)
        second, last, recovery = await asyncio.gather(
            chat(store, content="queued first"), store.last_seq("r"),
            store.events_since("r", 1, 100))
        assert last == 2
        assert replayed(recovery.events) == [broadcast(second)]
        assert m.seq == 1

    # ---- refusals and group commit ---------------------------------------------------
    async def test_a_refused_write_does_not_undo_good_writes_committed_with_it(
            self, store: Store) -> None:
        m = await chat(store, user="u1", content="original")
        results = await asyncio.gather(
            chat(store, content="good 1"),
            store.edit_message("r", m.message_id, "u2", "hijack", T0 + 1),
            chat(store, content="good 2"),
            return_exceptions=True)
        good1, refused, good2 = results
        assert isinstance(refused, ProtocolError) and refused.code == ErrorCode.FORBIDDEN
        assert isinstance(good1, ChatEvent) and isinstance(good2, ChatEvent)
        assert (good1.seq, good2.seq) == (2, 3)
        assert [(x.seq, x.content) for x in await full_history(store)] == [
            (1, "original"), (2, "good 1"), (3, "good 2")]
        assert await store.last_seq("r") == 3

    async def test_writes_queued_together_commit_in_one_transaction(self, store: Store) -> None:
        m = await chat(store, content="original")
        commits = store.commits
        results = await asyncio.gather(
            chat(store, content="good 1"),
            store.edit_message("r", m.message_id, "u2", "hijack", T0 + 1),
            chat(store, content="good 2"),
            store.last_seq("r"),  # a position read waits its turn among the writes
            return_exceptions=True)
        assert isinstance(results[1], ProtocolError)
        assert store.commits == commits + 1
        assert [getattr(r, "seq", None) for r in results[:3]] == [2, None, 3]
        assert results[3] == 3

    # ---- durability -------------------------------------------------------------------
    async def test_everything_written_is_read_back_after_reopening(self, backend: Backend):
        if not backend.durable:
            pytest.skip(f"{backend.name} keeps nothing after close, by design")
        first = backend.make()
        await first.open()
        try:
            written = await self._mixed(first)
            await chat(first, room="other", content="elsewhere")
            before = await full_history(first)
            before_events = await first.events_since("r", 0, 100)
        finally:
            await first.close()
        again = backend.make()
        await again.open()
        try:
            assert await again.last_seq("r") == len(written)
            assert await again.last_seq("other") == 1
            assert await full_history(again) == before
            after_events = await again.events_since("r", 0, 100)
            assert replayed(after_events.events) == replayed(before_events.events)
            # The next event continues the room's seq, and idempotency survives too.
            assert (await chat(again, content="after")).seq == len(written) + 1
            event, duplicate = await again.append_chat(NewChat(
                room_id="r", user_id="u2", username="U2", content="two", created_at=T0,
                client_msg_id="c2"))
            assert duplicate is True and event.seq == 4
        finally:
            await again.close()

    async def test_close_waits_for_queued_writes(self, backend: Backend) -> None:
        if not backend.durable:
            pytest.skip(f"{backend.name} keeps nothing after close, by design")
        first = backend.make()
        await first.open()
        # gather starts its tasks in order: the twenty writes are queued before close runs.
        *events, _ = await asyncio.gather(*(chat(first, content=f"m{i}") for i in range(20)),
                                          first.close())
        assert sorted(e.seq for e in events) == list(range(1, 21))
        again = backend.make()
        await again.open()
        try:
            assert await again.last_seq("r") == 20
        finally:
            await again.close()

    # ---- the call log ---------------------------------------------------------------------

    async def test_call_history_is_the_newest_calls_as_caller_or_callee(
            self, store: Store) -> None:
        # u1 calls and is called, in turns and in runs, more often than one page holds, and
        # calls itself once: each call is listed once, newest first, across both roles.
        roles = ["caller"] * 5 + ["callee", "caller"] * 6 + ["callee"] * 5 + ["both"]
        expected = []
        for i, role in enumerate(roles):
            caller = "u2" if role == "callee" else "u1"
            callee = "u2" if role == "caller" else "u1"
            await store.record_call(CallRecord(
                call_id=f"c{i:02}", caller=caller, callee=callee, started_at=T0 + i,
                ended_at=T0 + i + 1, end_reason="hangup"))
            expected.insert(0, f"c{i:02}")
        await store.record_call(CallRecord(call_id="other", caller="u2", callee="u3",
                                           started_at=T0 + 99, ended_at=T0 + 100,
                                           end_reason="hangup"))
        for limit in (1, 4, 7, 23, 100):
            assert [c.call_id for c in await store.call_history("u1", limit)] == \
                expected[:limit]
