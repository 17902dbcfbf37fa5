"""Persisted chat end to end (PROTOCOL §Client → server: chat, message_edit, message_delete,
reaction, history; §Ordering, persistence and delivery; REST history)."""

import copy
import time
from typing import Any

import aiohttp

from hubbub.features.auth import mint_token
from hubbub.server.app import Server
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient

SECRET = "chat-test-secret-of-enough-length-for-hs256"


async def member(server: Server, user: str, *rooms: str) -> WsClient:
    """A dev-identity connection that joined `rooms`."""
    client = await WsClient.open(ws_url(server))
    await client.auth(user, user.upper())
    for room in rooms:
        await client.join(room)
    return client


async def send_chat(client: WsClient, content: str, room: str = "1", id: str = "c",
                    **extra: Any) -> dict[str, Any]:
    ack = await client.request("chat", {"roomId": room, "content": content, **extra}, id=id)
    assert ack["type"] == "ack", ack
    payload: dict[str, Any] = ack["payload"]
    return payload


async def error_code(client: WsClient, type_: str, payload: dict[str, Any]) -> str:
    reply = await client.request(type_, payload, id="e")
    assert reply["type"] == "error", reply
    code: str = reply["payload"]["code"]
    return code


async def ws_history(client: WsClient, room: str = "1", **bounds: int) -> dict[str, Any]:
    ack = await client.request("history", {"roomId": room, **bounds}, id="h")
    assert ack["type"] == "ack", ack
    payload: dict[str, Any] = ack["payload"]
    return payload


async def rest_history(server: Server, room: str = "1", headers: dict[str, str] | None = None,
                       **query: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{server.url}/api/rooms/{room}/messages", params={k: str(v) for k, v in
                                                               query.items()},
            headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


async def all_messages(client: WsClient, room: str = "1") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await ws_history(client, room, afterSeq=after, limit=100)
        out += page["messages"]
        if not page["hasMore"]:
            return out
        after = out[-1]["seq"]


async def quiet_until_pong(client: WsClient) -> None:
    """The next frame this client gets is the answer to a ping: nothing was queued for it
    before (a broadcast is queued before the sender's ack is sent)."""
    await client.send("ping", {}, id="p")
    frame = await client.recv()
    assert frame["type"] == "pong", frame


ROOM_EVENTS = ("chat", "message_edit", "message_delete", "reaction")


async def room_events(watcher: WsClient, *, count: int | None = None,
                      until_content: str | None = None) -> list[dict[str, Any]]:
    """The room events a member that sends nothing receives, as {type, payload}: `count`
    of them, or up to the chat with `until_content`."""
    events: list[dict[str, Any]] = []
    while count is None or len(events) < count:
        frame = await watcher.recv()
        if frame["type"] in ROOM_EVENTS:
            events.append({"type": frame["type"], "payload": frame["payload"]})
            if frame["type"] == "chat" and frame["payload"]["content"] == until_content:
                break
    return events


def token(user: str, **claims: Any) -> str:
    return mint_token(SECRET, user, now_s=int(time.time()), **claims)


# ---- chat --------------------------------------------------------------------------------


async def test_a_chat_is_acked_with_its_id_seq_and_time():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        ack = await send_chat(u1, "hello")
        assert set(ack) >= {"messageId", "seq", "createdAt"}
        assert ack["seq"] == 1
        assert isinstance(ack["createdAt"], int)


async def test_a_chat_is_broadcast_to_every_member_including_the_sender():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        ack = await send_chat(u1, "hello", clientMsgId="k1")
        expected = {"roomId": "1", "messageId": ack["messageId"], "seq": ack["seq"],
                    "userId": "u1", "username": "U1", "content": "hello",
                    "createdAt": ack["createdAt"], "clientMsgId": "k1"}
        for client in (u1, u2):
            event = await client.expect("chat")
            assert event["payload"] == expected


async def test_a_chat_is_not_sent_to_connections_outside_the_room():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u3", "2") as u3):
        await send_chat(u1, "hello")
        await quiet_until_pong(u3)


async def test_a_chat_in_a_room_not_joined_is_refused_not_in_room():
    async with running_server() as server, await member(server, "u1") as u1:
        assert await error_code(u1, "chat", {"roomId": "1", "content": "hi"}) == "not_in_room"


async def test_an_empty_chat_is_a_bad_request():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        assert await error_code(u1, "chat", {"roomId": "1", "content": "  "}) == "bad_request"


async def test_a_chat_or_edit_longer_than_max_content_is_too_large():
    async with running_server(max_content=10) as server, await member(server, "u1", "1") as u1:
        assert await error_code(u1, "chat", {"roomId": "1", "content": "x" * 11}) == \
            "too_large"
        ack = await send_chat(u1, "x" * 10)
        assert ack["seq"] == 1
        assert await error_code(u1, "message_edit", {"roomId": "1", "content": "y" * 11,
                                                     "messageId": ack["messageId"]}) == \
            "too_large"


async def test_a_refused_chat_is_not_stored():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        await error_code(u1, "chat", {"roomId": "1", "content": ""})
        assert (await send_chat(u1, "ok"))["seq"] == 1


async def test_a_retried_client_msg_id_gets_the_same_ack_and_no_second_broadcast():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        first = await send_chat(u1, "once", id="a", clientMsgId="k1")
        await u2.expect("chat", clientMsgId="k1")
        again = await send_chat(u1, "once", id="b", clientMsgId="k1")
        assert (again["messageId"], again["seq"], again["createdAt"]) == (
            first["messageId"], first["seq"], first["createdAt"])
        await send_chat(u1, "marker", id="c")
        # The next chat u2 sees is the marker: the retry was not broadcast.
        assert (await u2.expect("chat"))["payload"]["content"] == "marker"
        assert [m["content"] for m in await all_messages(u2)] == ["once", "marker"]


# ---- edits, deletes, reactions -------------------------------------------------------------


async def test_an_edit_by_the_author_is_broadcast_and_applied():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        m = await send_chat(u1, "before")
        ack = await u1.request("message_edit", {"roomId": "1", "messageId": m["messageId"],
                                                "content": "after"}, id="ed")
        assert ack["type"] == "ack" and ack["payload"]["seq"] == 2
        event = await u2.expect("message_edit")
        assert event["payload"] == {"roomId": "1", "messageId": m["messageId"], "seq": 2,
                                    "userId": "u1", "content": "after",
                                    "editedAt": ack["payload"]["editedAt"]}
        [current] = (await ws_history(u2))["messages"]
        assert current["content"] == "after"
        assert current["editedAt"] == ack["payload"]["editedAt"]


async def test_an_edit_by_another_user_is_forbidden():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        m = await send_chat(u1, "mine")
        assert await error_code(u2, "message_edit", {
            "roomId": "1", "messageId": m["messageId"], "content": "theirs"}) == "forbidden"
        [current] = (await ws_history(u2))["messages"]
        assert current["content"] == "mine"


async def test_an_edit_to_empty_content_is_a_bad_request():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        m = await send_chat(u1, "text")
        assert await error_code(u1, "message_edit", {
            "roomId": "1", "messageId": m["messageId"], "content": ""}) == "bad_request"


async def test_an_edit_of_an_unknown_message_is_not_found():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        assert await error_code(u1, "message_edit", {
            "roomId": "1", "messageId": "nope", "content": "x"}) == "not_found"


async def test_a_delete_by_the_author_is_broadcast_and_leaves_a_tombstone():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        m = await send_chat(u1, "oops")
        ack = await u1.request("message_delete", {"roomId": "1",
                                                  "messageId": m["messageId"]}, id="d")
        assert ack["type"] == "ack"
        event = await u2.expect("message_delete")
        assert event["payload"] == {"roomId": "1", "messageId": m["messageId"], "seq": 2,
                                    "userId": "u1",
                                    "deletedAt": ack["payload"]["deletedAt"]}
        [tomb] = (await ws_history(u2))["messages"]
        assert (tomb["messageId"], tomb["seq"], tomb["deleted"], tomb["content"]) == (
            m["messageId"], 1, True, None)


async def test_a_delete_by_another_user_is_forbidden():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        m = await send_chat(u1, "stays")
        assert await error_code(u2, "message_delete", {
            "roomId": "1", "messageId": m["messageId"]}) == "forbidden"


async def test_an_admin_may_delete_another_users_message():
    async with (running_server(jwt_secret=SECRET) as server,
                await WsClient.open(ws_url(server, f"token={token('u1')}")) as u1,
                await WsClient.open(ws_url(server, f"token={token('boss', admin=True)}")) as boss):
        await u1.expect("welcome")
        await boss.expect("welcome")
        await u1.join("1")
        await boss.join("1")
        m = await send_chat(u1, "rude")
        ack = await boss.request("message_delete", {"roomId": "1",
                                                    "messageId": m["messageId"]}, id="d")
        assert ack["type"] == "ack"
        event = await u1.expect("message_delete")
        assert event["payload"]["userId"] == "boss"


async def test_editing_a_deleted_message_is_a_conflict():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        m = await send_chat(u1, "gone")
        await u1.request("message_delete", {"roomId": "1", "messageId": m["messageId"]}, id="d")
        assert await error_code(u1, "message_edit", {
            "roomId": "1", "messageId": m["messageId"], "content": "back"}) == "conflict"


async def test_a_reaction_is_broadcast_and_aggregated_in_history():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        m = await send_chat(u1, "nice")
        ack = await u2.request("reaction", {"roomId": "1", "messageId": m["messageId"],
                                            "emoji": "👍", "op": "add"}, id="re")
        assert ack["type"] == "ack" and ack["payload"]["seq"] == 2
        event = await u1.expect("reaction")
        assert event["payload"] == {"roomId": "1", "messageId": m["messageId"], "seq": 2,
                                    "userId": "u2", "emoji": "👍", "op": "add",
                                    "createdAt": event["payload"]["createdAt"]}
        [current] = (await ws_history(u1))["messages"]
        assert current["reactions"] == {"👍": ["u2"]}


async def test_adding_the_same_reaction_twice_is_acked_without_a_broadcast():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2,
                await member(server, "watcher", "1") as watcher):
        m = await send_chat(u1, "nice")
        react = {"roomId": "1", "messageId": m["messageId"], "emoji": "👍", "op": "add"}
        await u2.request("reaction", react, id="a")
        again = await u2.request("reaction", react, id="b")
        assert again["type"] == "ack"
        assert again["payload"].get("seq") is None
        await send_chat(u1, "marker")
        seen = await room_events(watcher, until_content="marker")
        assert [e["type"] for e in seen] == ["chat", "reaction", "chat"]


async def test_removing_a_reaction_is_broadcast():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        m = await send_chat(u1, "nice")
        react = {"roomId": "1", "messageId": m["messageId"], "emoji": "👍"}
        await u2.request("reaction", {**react, "op": "add"}, id="a")
        await u2.request("reaction", {**react, "op": "remove"}, id="b")
        event = await u1.expect("reaction", op="remove")
        assert (event["payload"]["userId"], event["payload"]["seq"]) == ("u2", 3)
        [current] = (await ws_history(u1))["messages"]
        assert not current["reactions"]


async def test_a_reaction_whose_emoji_shows_as_nothing_is_a_bad_request():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1):
        m = await send_chat(u1, "nice")
        for emoji in (" ", "\u200b", "\u200d"):
            assert await error_code(u1, "reaction", {
                "roomId": "1", "messageId": m["messageId"], "emoji": emoji,
                "op": "add"}) == "bad_request", repr(emoji)


async def test_a_reaction_to_a_deleted_message_is_a_conflict():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        m = await send_chat(u1, "gone")
        await u1.request("message_delete", {"roomId": "1", "messageId": m["messageId"]}, id="d")
        assert await error_code(u1, "reaction", {"roomId": "1", "messageId": m["messageId"],
                                                 "emoji": "👍", "op": "add"}) == "conflict"


async def test_edits_deletes_and_reactions_need_the_room_joined():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2") as u2):
        m = await send_chat(u1, "x")
        target = {"roomId": "1", "messageId": m["messageId"]}
        assert await error_code(u2, "message_edit", {**target, "content": "y"}) == \
            "not_in_room"
        assert await error_code(u2, "message_delete", target) == "not_in_room"
        assert await error_code(u2, "reaction", {**target, "emoji": "👍"}) == "not_in_room"


# ---- typing ------------------------------------------------------------------------------


async def test_a_chat_ends_the_senders_typing():
    async with (running_server(typing_timeout=30.0) as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        await u1.send("typing", {"roomId": "1", "isTyping": True})
        await u2.expect("typing", isTyping=True)
        await send_chat(u1, "done typing")
        await u2.expect("chat")
        stopped = await u2.expect("typing")
        assert stopped["payload"] == {"roomId": "1", "userId": "u1", "username": "U1",
                                      "isTyping": False}


# ---- history over WS and REST --------------------------------------------------------------


async def _five(client: WsClient) -> list[dict[str, Any]]:
    return [await send_chat(client, f"m{i}", id=f"c{i}") for i in range(1, 6)]


async def test_history_pages_over_websocket():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        await _five(u1)
        latest = await ws_history(u1, limit=2)
        assert ([m["seq"] for m in latest["messages"]], latest["hasMore"]) == ([4, 5], True)
        below = await ws_history(u1, beforeSeq=4, limit=2)
        assert ([m["seq"] for m in below["messages"]], below["hasMore"]) == ([2, 3], True)
        above = await ws_history(u1, afterSeq=3, limit=5)
        assert ([m["seq"] for m in above["messages"]], above["hasMore"]) == ([4, 5], False)
        empty = await ws_history(u1, afterSeq=2, beforeSeq=3)
        assert (empty["messages"], empty["hasMore"]) == ([], False)
        between = await ws_history(u1, afterSeq=1, beforeSeq=5, limit=2)
        assert ([m["seq"] for m in between["messages"]], between["hasMore"]) == ([2, 3], True)


async def test_rest_history_returns_the_same_messages_as_websocket_history():
    async with running_server() as server, await member(server, "u1", "1") as u1:
        sent = await _five(u1)
        await u1.request("reaction", {"roomId": "1", "messageId": sent[0]["messageId"],
                                      "emoji": "👍"}, id="re")
        await u1.request("message_delete", {"roomId": "1",
                                            "messageId": sent[1]["messageId"]}, id="d")
        for bounds in ({}, {"limit": 2}, {"beforeSeq": 4, "limit": 2},
                       {"afterSeq": 2, "limit": 2}, {"afterSeq": 1, "beforeSeq": 5}):
            ws = await ws_history(u1, **bounds)
            status, rest = await rest_history(server, headers={"X-Hubbub-User": "u9"},
                                              **bounds)
            assert status == 200
            assert rest["messages"] == ws["messages"]
            assert rest["hasMore"] == ws["hasMore"]


async def test_rest_history_without_an_identity_is_unauthorized():
    async with running_server() as server:
        status, _ = await rest_history(server)
        assert status == 401


async def test_rest_history_with_a_bad_limit_is_a_bad_request():
    async with running_server() as server:
        status, body = await rest_history(server, headers={"X-Hubbub-User": "u1"}, limit=0)
        assert status == 400 and body["error"] == "bad_request"


async def test_rest_history_paging_that_is_not_ascii_digits_is_a_bad_request():
    # U+00B2 and U+2460 are str.isdigit(), which int() refuses; U+0665 int() reads as 5.
    async with running_server() as server:
        for name in ("limit", "beforeSeq", "afterSeq"):
            for raw in ("\u00b2", "\u2460", "\u0665", "-1", "1.5", "x"):
                async with aiohttp.ClientSession() as http, http.get(
                        f"{server.url}/api/rooms/1/messages", params={name: raw},
                        headers={"X-Hubbub-User": "u1"}) as resp:
                    assert resp.status == 400, (name, raw)
                    assert (await resp.json())["error"] == "bad_request"


async def test_rest_history_accepts_a_bearer_token_in_jwt_mode():
    async with (running_server(jwt_secret=SECRET) as server,
                await WsClient.open(ws_url(server, f"token={token('u1')}")) as u1):
        await u1.expect("welcome")
        await u1.join("1")
        await send_chat(u1, "secret plans")
        ws = await ws_history(u1)
        status, rest = await rest_history(
            server, headers={"Authorization": f"Bearer {token('u2')}"})
        assert status == 200
        assert rest["messages"] == ws["messages"]


async def test_rest_history_ignores_the_dev_header_in_jwt_mode():
    async with running_server(jwt_secret=SECRET) as server:
        status, _ = await rest_history(server, headers={"X-Hubbub-User": "u1"})
        assert status == 401


async def test_rest_history_is_forbidden_when_the_tokens_rooms_exclude_the_room():
    async with running_server(jwt_secret=SECRET) as server:
        status, _ = await rest_history(
            server, room="1", headers={"Authorization": f"Bearer {token('u1', rooms=['2*'])}"})
        assert status == 403
        status, _ = await rest_history(
            server, room="21", headers={"Authorization": f"Bearer {token('u1', rooms=['2*'])}"})
        assert status == 200


async def test_websocket_history_is_forbidden_when_the_tokens_rooms_exclude_the_room():
    async with (running_server(jwt_secret=SECRET) as server,
                await WsClient.open(ws_url(server, f"token={token('u1', rooms=['2'])}")) as u1):
        await u1.expect("welcome")
        assert await error_code(u1, "history", {"roomId": "1"}) == "forbidden"


# ---- recovery: join_room since ------------------------------------------------------------


def erase_deleted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events as replayed later: a deleted message's content is erased from its chat
    and edit events too (Store contract: delete_message)."""
    deleted = {e["payload"]["messageId"] for e in events if e["type"] == "message_delete"}
    out = copy.deepcopy(events)
    for e in out:
        if e["type"] in ("chat", "message_edit") and e["payload"]["messageId"] in deleted:
            e["payload"]["content"] = None
    return out


async def busy_room(u1: WsClient, n_chats: int) -> int:
    """u1 chats `n_chats` times, edits, reacts and deletes: `n_chats + 3` room events."""
    sent = [await send_chat(u1, f"m{i}", id=f"c{i}", clientMsgId=f"k{i}")
            for i in range(n_chats)]
    first = sent[0]["messageId"]
    await u1.request("message_edit", {"roomId": "1", "messageId": first, "content": "m0!"},
                     id="ed")
    await u1.request("reaction", {"roomId": "1", "messageId": first, "emoji": "🎉"}, id="re")
    await u1.request("message_delete", {"roomId": "1", "messageId": sent[-1]["messageId"]},
                     id="de")
    return n_chats + 3


async def test_rejoining_with_since_returns_every_missed_event_in_order():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "watcher", "1") as watcher):
        await send_chat(u1, "seen by u2")
        await watcher.expect("chat")
        async with await member(server, "u2") as u2:
            since = (await u2.join("1"))["payload"]["lastSeq"]
        assert since == 1
        events = await room_events(watcher, count=await busy_room(u1, 3))
        async with await member(server, "u2") as u2:
            ack = await u2.join("1", since=since)
        assert ack["payload"]["recovered"] is True
        assert ack["payload"]["lastSeq"] == events[-1]["payload"]["seq"] == 7
        assert ack["payload"]["missed"] == erase_deleted(events)


async def test_rejoining_after_more_than_the_recovery_limit_is_not_recovered():
    async with (running_server(recovery_limit=5) as server,
                await member(server, "u1", "1") as u1):
        assert await busy_room(u1, 7) == 10
        async with await member(server, "u2") as u2:
            ack = await u2.join("1", since=0)
        assert ack["payload"]["recovered"] is False
        assert not ack["payload"].get("missed")
        assert ack["payload"]["lastSeq"] == 10


async def test_rejoining_at_the_last_seq_is_recovered_with_nothing_missed():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1):
        await send_chat(u1, "x")
        async with await member(server, "u2") as u2:
            ack = await u2.join("1", since=1)
        assert ack["payload"]["recovered"] is True
        assert ack["payload"]["missed"] == []


def apply(snapshot: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a client does with `missed`: the history it had, brought up to date."""
    messages = copy.deepcopy(snapshot)
    by_id = {m["messageId"]: m for m in messages}
    for event in events:
        p = event["payload"]
        if event["type"] == "chat":
            m = {"messageId": p["messageId"], "seq": p["seq"], "userId": p["userId"],
                 "content": p["content"], "deleted": False, "reactions": {}}
            messages.append(m)
            by_id[m["messageId"]] = m
            continue
        m = by_id[p["messageId"]]
        if event["type"] == "message_edit":
            m["content"], m["editedAt"] = p["content"], p["editedAt"]
        elif event["type"] == "message_delete":
            m.update(content=None, deleted=True, deletedAt=p["deletedAt"], editedAt=None,
                     reactions={})
        elif p["op"] == "add":
            m["reactions"].setdefault(p["emoji"], []).append(p["userId"])
        else:
            users = m["reactions"][p["emoji"]]
            users.remove(p["userId"])
            if not users:
                del m["reactions"][p["emoji"]]
    return messages


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("messageId", "seq", "userId", "content", "deleted", "editedAt", "deletedAt")
    return [{**{k: m.get(k) for k in keys}, "reactions": m.get("reactions") or {}}
            for m in messages]


async def test_join_since_applied_to_a_snapshot_equals_a_fresh_history():
    async with (running_server() as server,
                await member(server, "u1", "1") as u1,
                await member(server, "u2", "1") as u2):
        a = await send_chat(u1, "a")
        b = await send_chat(u2, "b")
        c = await send_chat(u1, "c")
        await u2.request("reaction", {"roomId": "1", "messageId": a["messageId"],
                                      "emoji": "👍"}, id="r1")
        since = (await u1.request("reaction", {"roomId": "1", "messageId": b["messageId"],
                                               "emoji": "👀"}, id="r2"))["payload"]["seq"]
        snapshot = await all_messages(u1)
        # A third client was there at `since`; everything below happens while it is away.
        await u1.request("message_edit", {"roomId": "1", "messageId": a["messageId"],
                                          "content": "a (edited)"}, id="e1")
        await u2.request("message_delete", {"roomId": "1", "messageId": b["messageId"]},
                         id="d1")
        await u1.request("reaction", {"roomId": "1", "messageId": a["messageId"],
                                      "emoji": "👍"}, id="r3")
        await u2.request("reaction", {"roomId": "1", "messageId": a["messageId"],
                                      "emoji": "👍", "op": "remove"}, id="r4")
        await u1.request("reaction", {"roomId": "1", "messageId": c["messageId"],
                                      "emoji": "🎉"}, id="r5")
        d = await send_chat(u2, "d")
        await u2.request("reaction", {"roomId": "1", "messageId": d["messageId"],
                                      "emoji": "🎉"}, id="r6")
        await u1.request("reaction", {"roomId": "1", "messageId": d["messageId"],
                                      "emoji": "🎉"}, id="r7")
        await u1.request("message_edit", {"roomId": "1", "messageId": d["messageId"],
                                          "content": "never mind"}, id="e2")
        await u2.request("message_delete", {"roomId": "1", "messageId": d["messageId"]},
                         id="d2")
        await send_chat(u1, "e")
        async with await member(server, "u3") as u3:
            ack = await u3.join("1", since=since)
            assert ack["payload"]["recovered"] is True
            fresh = await all_messages(u3)
        assert comparable(apply(snapshot, ack["payload"]["missed"])) == comparable(fresh)
        assert [m["content"] for m in fresh] == ["a (edited)", None, "c", None, "e"]
