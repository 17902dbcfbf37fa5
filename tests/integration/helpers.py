"""Small helpers shared by the integration tests."""

import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp

from hubbub.features.auth import mint_token
from hubbub.server.app import Server
from tests.support.server import ws_url
from tests.support.wsclient import WsClient

SECRET = "s"


class Served(Protocol):
    """A server in this process (Server) or a `hubbub serve` process: where it answers."""

    @property
    def url(self) -> str: ...


def token(user: str, **kwargs: Any) -> str:
    kwargs.setdefault("now_s", int(time.time()))
    return mint_token(SECRET, user, **kwargs)


async def dev_client(server: Server, user: str, username: str | None = None) -> WsClient:
    """A connection authenticated in dev identity mode."""
    client = await WsClient.open(ws_url(server))
    await client.auth(user, username)
    return client


async def http_get(server: Served, path: str, **kwargs: Any) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path, **kwargs) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def metric(server: Served, name: str, **labels: str) -> float | None:
    """One sample of GET /metrics, by name and labels; None when absent."""
    _, _, text = await http_get(server, "/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name and (m.group(2) or "") == want:
            return float(m.group(3))
    return None


async def announce(server: Server, content: str, admin_token: str = "admin") -> int:
    async with aiohttp.ClientSession() as http, http.post(
        server.url + "/api/announcements", json={"content": content},
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as resp:
        return resp.status


@contextlib.asynccontextmanager
async def clients(server: Server, *users: str | tuple[str, str]) -> AsyncIterator[list[WsClient]]:
    """Dev-mode connections, one per user (`"u1"` or `("u1", "Ann")`), closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for user in users:
            uid, name = (user, None) if isinstance(user, str) else user
            out.append(await stack.enter_async_context(await dev_client(server, uid, name)))
        yield out
