"""A store that cannot write (full or read-only) refuses with a clear error and never
acks or broadcasts what it did not persist."""

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.features.dispatch import STORE_FAILED
from hubbub.server.app import Server
from tests.support.server import running_server, ws_url
from tests.support.wsclient import WsClient


def _pragma(server: Server, sql: str) -> Any:
    store: Any = server.node.store
    return store._read(lambda db: db.execute(sql).fetchall())


@pytest.mark.parametrize(("break_it", "mend_it", "says"), [
    ("PRAGMA query_only = 1", "PRAGMA query_only = 0", "readonly"),
    ("PRAGMA max_page_count = 1", "PRAGMA max_page_count = 1073741823", "full"),
])
async def test_a_chat_the_store_cannot_persist_is_refused_and_not_broadcast(
        tmp_path: Path, break_it: str, mend_it: str, says: str,
        caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(store=f"sqlite:///{tmp_path}/db.sqlite") as server, \
            await WsClient.open(ws_url(server)) as ann, \
            await WsClient.open(ws_url(server)) as bob:
        await ann.auth("ann")
        await bob.auth("bob")
        await ann.join("r")
        await bob.join("r")
        assert (await ann.request("chat", {"roomId": "r", "content": "one"}, id="c1"))[
            "type"] == "ack"
        await bob.expect("chat", content="one")
        if "max_page_count" in break_it:
            # The upgrades of a new file leave free pages (tables rebuilt, then dropped), and
            # a write takes those before it grows the file: none may be left.
            await _pragma(server, "VACUUM")
            assert (await _pragma(server, "PRAGMA freelist_count"))[0][0] == 0
            pages = (await _pragma(server, "PRAGMA page_count"))[0][0]
            break_it = f"PRAGMA max_page_count = {pages}"
        await _pragma(server, break_it)
        # Longer than a page holds: it needs a new page (or overflow pages) wherever it goes.
        with caplog.at_level(logging.ERROR, logger="hubbub"):
            refused = await ann.request("chat", {"roomId": "r", "content": "x" * 4000},
                                        id="c2")
        assert refused["type"] == "error"
        assert refused["payload"]["code"] == "internal"
        # The client is told what happened; the cause is in the log, not on the wire.
        assert refused["payload"]["message"] == STORE_FAILED
        assert any(says in r.getMessage() for r in caplog.records)
        await _pragma(server, mend_it)
        ok = await ann.request("chat", {"roomId": "r", "content": "three"}, id="c3")
        assert ok["type"] == "ack"
        # Bob saw "one" and "three" only, in seq order with no gap.
        third = await bob.expect("chat", content="three")
        assert third["payload"]["seq"] == 2
        history = await bob.request("history", {"roomId": "r"}, id="h")
        assert [m["content"] for m in history["payload"]["messages"]] == ["one", "three"]


async def test_the_http_reads_answer_503_in_json_while_the_store_cannot_read(
        tmp_path: Path) -> None:
    async with running_server(store=f"sqlite:///{tmp_path}/db.sqlite") as server, \
            aiohttp.ClientSession() as http:
        store: Any = server.node.store

        async def down(*args: Any, **kwargs: Any) -> Any:
            raise OSError(111, "Connection refused")

        store.history = store.call_history = down
        for path in ("/api/rooms/r/messages", "/api/calls"):
            async with http.get(server.url + path, headers={"X-Hubbub-User": "ann"}) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "1"
                assert await resp.json() == {"error": "internal",
                                             "message": "the store is unavailable"}


async def test_an_outage_refuses_every_chat_but_logs_it_once_a_while(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(store=f"sqlite:///{tmp_path}/db.sqlite", rate_limit=0) as server, \
            await WsClient.open(ws_url(server)) as ann:
        await ann.auth("ann")
        await ann.join("r")
        await _pragma(server, "PRAGMA query_only = 1")
        with caplog.at_level(logging.ERROR, logger="hubbub"):
            for i in range(20):
                refused = await ann.request("chat", {"roomId": "r", "content": f"{i}"},
                                            id=f"c{i}")
                assert refused["payload"]["code"] == "internal"
        lines = [r for r in caplog.records if "store unavailable" in r.getMessage()]
        assert len(lines) == 1
        assert "readonly" in lines[0].getMessage()
