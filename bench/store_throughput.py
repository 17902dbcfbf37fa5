"""Store throughput: persisted chats/s with 100 concurrent `append_chat` callers, SQLite vs
PostgreSQL (issue "Scale-out"). Store level only: no server, no WebSocket clients.

Method
  Each row is a fresh store (or stores) on a fresh database:
  - SQLite: a new file in a temporary folder, `synchronous=FULL` (the default: fsync per group
    commit) and `NORMAL`.
  - PostgreSQL: a throwaway cluster started the way the tests start it (tests/support/services.py:
    initdb + pg_ctl, `fsync=on`, `synchronous_commit=on`, the defaults), one new database per
    row; or the database of `--dsn` (rooms carry a per-run token so every room starts at seq 1).
    "2 nodes" is two PostgresStores on one database, 50 callers each, writing to the same rooms.
  100 callers (asyncio tasks) in 10 rooms, each a closed loop: `append_chat` with a unique
  clientMsgId, then the next one as soon as it returns (100 in flight in all). Warm up for
  `--warmup` s, then count the calls that return in a `--duration` s window, with their latency.
  At the end every room's `last_seq` must equal the chats appended to it (gapless, no duplicates).

What the numbers mean
  chats/s = appends returned in the window / window: each is committed (durable) when it returns.
  writes/commit = how many writes group commit put in one transaction on average. p50/p99 are the
  latency of one `append_chat` in ms; with 100 in flight it is mostly queueing (~100 / chats/s).
  The database server (PostgreSQL) runs on the same machine and competes for its cores.

Run: .venv/bin/python bench/store_throughput.py [--duration 5] [--warmup 1] [--dsn postgresql://...]
Not run by the tests; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit import Latency, fmt, fmt_ms, markdown_table, run_async, throwaway_postgres

from hubbub.store.base import NewChat, Store
from hubbub.store.sqlite import SqliteStore

CALLERS = 100
ROOMS = 10


async def measure(stores: list[Store], warmup: float, duration: float) -> dict[str, Any]:
    """100 closed-loop callers spread over `stores`; returns the row's numbers."""
    token = secrets.token_hex(4)
    appended: Counter[str] = Counter()
    latency = Latency()
    window: dict[str, float] = {}
    in_window = 0
    stop = False

    async def caller(i: int) -> None:
        nonlocal in_window
        store = stores[i % len(stores)]
        room = f"{token}-{i % ROOMS}"
        n = 0
        while not stop:
            n += 1
            started = time.perf_counter()
            await store.append_chat(NewChat(
                room_id=room, user_id=f"u{i}", username=f"U{i}", content=f"message {n}",
                created_at=int(time.time() * 1000), client_msg_id=f"{token}-{i}-{n}"))
            done = time.perf_counter()
            appended[room] += 1
            if window and window["start"] <= done < window["end"]:
                in_window += 1
                latency.samples.append(done - started)

    tasks = [asyncio.create_task(caller(i)) for i in range(CALLERS)]
    await asyncio.sleep(warmup)
    commits = [getattr(s, "commits", 0) for s in stores]
    writes = [getattr(s, "committed_writes", 0) for s in stores]
    now = time.perf_counter()
    window.update(start=now, end=now + duration)
    await asyncio.sleep(duration)
    commits = [getattr(s, "commits", 0) - c for s, c in zip(stores, commits, strict=True)]
    writes = [getattr(s, "committed_writes", 0) - w for s, w in zip(stores, writes, strict=True)]
    stop = True
    await asyncio.gather(*tasks)
    for room, count in appended.items():  # every chat acked once, seqs gapless
        for store in stores:
            last = await store.last_seq(room)
            if last != count:
                raise AssertionError(f"room {room}: last_seq {last}, appended {count}")
    summary = latency.summary()
    return {"chats_per_s": in_window / duration,
            "writes_per_commit": sum(writes) / sum(commits) if sum(commits) else None,
            "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"]}


async def run_row(make: Callable[[], list[Store]], warmup: float,
                  duration: float) -> dict[str, Any]:
    stores = make()
    for store in stores:
        await store.open()
    try:
        return await measure(stores, warmup, duration)
    finally:
        for store in stores:
            await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before it, s")
    parser.add_argument("--dsn", help="an existing PostgreSQL database (default: a throwaway "
                        "cluster, as the tests start it)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
        for mode in ("FULL", "NORMAL"):
            path = str(Path(tmp) / f"{mode}.sqlite")
            rows.append((f"SQLite synchronous={mode}", run_async(run_row(
                lambda path=path, mode=mode: [SqliteStore(path, synchronous=mode)],
                args.warmup, args.duration))))
            print(f"{rows[-1][0]}: {fmt(rows[-1][1]['chats_per_s'])} chats/s", file=sys.stderr)

    if not args.skip_postgres:
        from hubbub.store.postgres import PostgresStore

        server = None
        if args.dsn:
            dsns = [args.dsn, args.dsn]
        else:
            server = throwaway_postgres()
            dsns = [server.new_database(), server.new_database()] if server else []
        try:
            for (label, nodes), dsn in zip((("PostgreSQL, 1 node", 1),
                                            ("PostgreSQL, 2 nodes", 2)), dsns, strict=False):
                rows.append((label, run_async(run_row(
                    lambda dsn=dsn, nodes=nodes: [PostgresStore(dsn) for _ in range(nodes)],
                    args.warmup, args.duration))))
                print(f"{label}: {fmt(rows[-1][1]['chats_per_s'])} chats/s", file=sys.stderr)
        finally:
            if server is not None:
                server.stop()

    print(f"\n{CALLERS} concurrent append_chat callers in {ROOMS} rooms, "
          f"{args.duration:g} s window\n")
    print(markdown_table(
        ["store", "chats/s", "writes/commit", "p50 ms", "p99 ms"],
        [[label, fmt(r["chats_per_s"]), fmt(r["writes_per_commit"], 1), fmt_ms(r["p50_ms"]),
          fmt_ms(r["p99_ms"])] for label, r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
