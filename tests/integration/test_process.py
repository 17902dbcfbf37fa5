"""`hubbub` as a real process: the operating contract of PROTOCOL §Running the server."""

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import jwt
import pytest

from tests.support.server import Process, start_process
from tests.support.wsclient import WsClient

MEMORY = ("--store", "sqlite://:memory:")


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[Process]:
    proc = start_process(*MEMORY, *args, env=env)
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
        proc.proc.wait(10)
        for stream in (proc.proc.stdout, proc.proc.stderr):
            if stream is not None:
                stream.close()


def hubbub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubbub", *args], capture_output=True,
                          text=True, timeout=30)


def cli_token(*args: str) -> str:
    done = hubbub("token", "--jwt-secret", "s", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_serve_prints_the_listening_line_with_the_real_port():
    with serving() as proc:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", proc.url)
        assert match, proc.url
        assert int(match.group(1)) != 0
        async with aiohttp.ClientSession() as http, http.get(proc.url + "/healthz") as resp:
            assert resp.status == 200


async def test_sigterm_closes_websocket_clients_with_1001_and_exits_0():
    with serving() as proc:
        clients = [await WsClient.open(proc.ws) for _ in range(2)]
        try:
            await clients[0].auth("u1")
            await clients[0].join("r")
            await clients[1].auth("u2")
            exit_code = asyncio.get_running_loop().run_in_executor(None, proc.terminate)
            for c in clients:
                assert await c.closed(timeout=10.0) == 1001
            assert await exit_code == 0
        finally:
            for c in clients:
                await c.close()


async def healthy(proc: Process) -> None:
    async with aiohttp.ClientSession() as http, http.get(proc.url + "/healthz") as resp:
        assert resp.status == 200


async def test_sigterm_with_no_clients_exits_0():
    with serving() as proc:
        await healthy(proc)
        assert await asyncio.to_thread(proc.terminate) == 0


async def test_sigterm_sent_as_soon_as_the_listening_line_is_read_exits_0():
    with serving() as proc:
        assert await asyncio.to_thread(proc.terminate) == 0


def test_workers_without_redis_exits_non_zero_mentioning_redis():
    done = hubbub("serve", "--port", "0", *MEMORY, "--workers", "2")
    assert done.returncode != 0
    assert "--redis" in done.stderr
    assert "listening on" not in done.stdout


@pytest.mark.parametrize("store", ["foo://bar", "sqlite:////nonexistent-dir/x/hubbub.db"])
def test_a_store_it_cannot_open_is_one_line_on_stderr_and_exit_2(store):
    done = hubbub("serve", "--port", "0", "--store", store)  # dev identity mode
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("hubbub: ")


@pytest.mark.parametrize("workers", [(), ("--workers", "2", "--redis", "redis://127.0.0.1:1/0")])
def test_a_port_in_use_is_one_line_on_stderr_and_exit_2(tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = hubbub("serve", "--port", port, "--store", f"sqlite:///{tmp_path}/h.db", *workers)
    assert done.returncode == 2
    assert done.stderr == f"hubbub: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert "listening on" not in done.stdout


def test_a_host_that_is_not_this_machines_is_one_line_on_stderr_and_exit_2():
    done = hubbub("serve", "--host", "192.0.2.1", "--port", "0", *MEMORY)  # TEST-NET-1
    assert done.returncode == 2
    assert done.stderr.startswith("hubbub: cannot listen on 192.0.2.1:0: "), done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr


def test_token_command_prints_a_jwt_with_the_given_claims():
    tok = cli_token("--user", "u1", "--rooms", "a*")
    claims = jwt.decode(tok, "s", algorithms=["HS256"])
    assert claims["sub"] == "u1"
    assert claims["rooms"] == ["a*"]
    assert claims["exp"] > claims["iat"]


def test_token_command_without_a_secret_exits_non_zero():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")}
    done = subprocess.run([sys.executable, "-m", "hubbub", "token", "--user", "u1"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode != 0
    assert "jwt-secret" in done.stderr


async def test_token_from_the_cli_is_accepted_by_the_server():
    tok = cli_token("--user", "u1", "--rooms", "a*")
    with serving("--jwt-secret", "s") as proc:
        async with await WsClient.open(f"{proc.ws}?token={tok}") as c:
            welcome = await c.expect("welcome")
            assert welcome["payload"]["userId"] == "u1"
            assert (await c.request("join_room", {"roomId": "abc"}, id="j1"))["type"] == "ack"
            err = await c.request("join_room", {"roomId": "b"}, id="j2")
            assert err["payload"]["code"] == "forbidden"


async def test_settings_are_read_from_the_environment():
    tok = cli_token("--user", "u1")
    with serving(env={"HUBBUB_JWT_SECRET": "s"}) as proc:
        async with await WsClient.open(proc.ws) as c:
            await c.send("auth", {"token": tok})
            assert (await c.expect("welcome"))["payload"]["userId"] == "u1"
        async with await WsClient.open(f"{proc.ws}?token=garbage") as c:
            assert await c.closed() == 4001


async def test_dev_identity_mode_is_announced_loudly_at_start():
    with serving() as proc:
        await healthy(proc)
        assert await asyncio.to_thread(proc.terminate) == 0
        assert proc.proc.stderr is not None
        assert "DEV IDENTITY MODE" in proc.proc.stderr.read()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_logs_never_contain_the_token(log_format):
    good = cli_token("--user", "u1")
    expired = jwt.encode({"sub": "u2", "exp": 1}, "s", algorithm="HS256")
    forged = jwt.encode({"sub": "u3"}, "not-the-secret", algorithm="HS256")
    with serving("--jwt-secret", "s", "--log-level", "debug",
                 "--log-format", log_format) as proc:
        async with await WsClient.open(f"{proc.ws}?token={good}") as c:
            await c.expect("welcome")
        for bad in (expired, forged):
            async with await WsClient.open(f"{proc.ws}?token={bad}") as c:
                assert await c.closed() == 4001
        async with await WsClient.open(proc.ws) as c:
            await c.send("auth", {"token": forged})
            assert await c.closed() == 4001
        async with aiohttp.ClientSession() as http, http.post(
                proc.url + "/api/announcements", json={"content": "x"},
                headers={"Authorization": f"Bearer {good}"}) as resp:
            assert resp.status == 401
        assert await asyncio.to_thread(proc.terminate) == 0
        assert proc.proc.stderr is not None
        logs = proc.proc.stderr.read()
    assert "authenticated" in logs  # the log is there, just without secrets
    for tok in (good, expired, forged):
        assert tok not in logs
        assert tok.split(".")[2] not in logs  # not even the signature
