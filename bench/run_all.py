"""Every benchmark of the project in one go (`make bench`), summarised in bench/RESULTS.md.

1. The shared bench kit, ../shared/bench/run.py (next to this repository): hubbub against the Bun
   reference server, scenarios S1-S4, every client authenticating with an HS256 JWT. hubbub runs
   as `.venv/bin/hubbub serve --port {port} --store sqlite:///{tmp}/bench.db --rate-limit 0
   --jwt-secret {jwt_secret}` (rate limits off: S1 must measure the fan-out, not the limiter).
   Its results.md/.json and S1 plot are copied to bench/results/<stamp>/shared-*, and
   bench/s1_plot.py draws s1_latency.png from the same results, one slot per step. A full run
   adds bench/python_floor.py, the reference's job ported to Python on hubbub's libraries, as a
   third server: what Python on this stack scores without hubbub's work (docs/decisions/0032).
2. bench/persisted_chats.py: closed-loop persisted chats, SQLite synchronous FULL and NORMAL,
   and PostgreSQL (a throwaway local cluster when Debian's PostgreSQL is installed).
3. bench/fanout.py: the typing fan-out ladder, 1,000 connections in 10 rooms of 100.

Everything lands in bench/results/<stamp>/ (git-ignored). bench/RESULTS.md gets the date, the
machine, the shared table (scenario x hubbub, Bun reference, ratio) and the two project tables, with
links to the plots (a full run also copies them to bench/plots/, which is kept in the repository
next to RESULTS.md). `--quick` is a smoke run (shared kit: S1 only, two rates, 2 s windows; the
project scripts with --quick); it and `--skip` write RESULTS.md into the stamp folder only, so a
smoke or partial run never replaces the quoted file. Quote ratios from one run, not absolute
numbers (two shared cores, other work on the machine: see ../shared/bench/README.md, "Noise").

Run: .venv/bin/python bench/run_all.py [--quick] [--skip shared,chats,fanout]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import s1_plot
from benchkit import REPO, RESULTS, markdown_table

BENCH = REPO / "bench"
PLOTS = BENCH / "plots"  # the plots RESULTS.md shows, kept in the repository
# A run's plot -> its name in PLOTS.
KEPT_PLOTS = {"s1_latency.png": "s1_latency.png", "fanout.png": "typing_fanout.png"}
SHARED_RUN = REPO.parent / "shared" / "bench" / "run.py"
SERVER_CMD = (".venv/bin/hubbub serve --port {port} --store sqlite:///{tmp}/bench.db "
              "--rate-limit 0 --jwt-secret {jwt_secret}")
FLOOR_CMD = ".venv/bin/python bench/python_floor.py --port {port} --jwt-secret {jwt_secret}"
FLOOR = "python-floor"
# The kit's S1 ladder doubles from 400k to 800k to 1.6M; the steps between say where p99
# passes 50 ms to within 100k (200k above 800k) instead of within a factor of two.
S1_RATES = ("25000,50000,100000,200000,400000,500000,600000,700000,800000,1000000,1200000,"
            "1400000,1600000")
SHARED_FULL = ["--scenarios", "s1,s2,s3,s4", "--rates", S1_RATES]
SHARED_QUICK = ["--scenarios", "s1", "--rates", "25000,100000", "--warmup", "1", "--duration", "2",
                "--repeat", "1", "--quiet-wait", "0"]
SHARED_FILES = ("results.md", "results.json", "s1_latency.png")
REFERENCE = "bun-reference"
PARTS = ("shared", "chats", "fanout")

# summary key of run.py's results.json -> (label, higher is better)
SHARED_ROWS = {
    "s1_slo_delivered_per_s": ("S1 fan-out: delivered/s at p99 <= {slo} ms", True),
    "s1_peak_delivered_per_s": ("S1 fan-out: peak delivered/s", True),
    "s2_rss_per_conn_kib": ("S2 idle: KiB per connection", False),
    "s3_round_trips_per_s": ("S3 signaling relay: round trips/s", True),
    "s4_secs_to_all_joined": ("S4 join storm: s until all joined", False),
}


def progress(message: str) -> None:
    print(f"[run_all] {message}", file=sys.stderr, flush=True)


def run_shared(out: Path, quick: bool, jwt_secret: str) -> Path | None:
    """The shared kit's run.py against hubbub; copies its outputs; returns its run folder."""
    runs = out / "shared-run"
    argv = [sys.executable, str(SHARED_RUN), "--server", SERVER_CMD, "--name", "hubbub",
            *([] if quick else ["--server", FLOOR_CMD, "--name", FLOOR]),
            "--jwt-secret", jwt_secret, "--out", str(runs),
            *(SHARED_QUICK if quick else SHARED_FULL)]
    progress("shared kit: " + " ".join(argv[1:]))
    rc = subprocess.run(argv, cwd=REPO, check=False).returncode
    found = sorted(runs.glob("run-*"))
    if rc != 0 or not found:
        progress(f"shared kit failed (exit {rc})")
        return None
    for name in SHARED_FILES:
        if (found[-1] / name).exists():
            shutil.copy2(found[-1] / name, out / f"shared-{name}")
    if (out / "shared-results.json").exists():
        why = s1_plot.plot(json.loads((out / "shared-results.json").read_text()),
                           out / "s1_latency.png")
        if why:
            progress(why)
    return found[-1]


def run_script(script: str, out: Path, quick: bool) -> bool:
    argv = [sys.executable, str(BENCH / script), "--out", str(out), *(["--quick"] if quick else [])]
    progress(" ".join(argv[1:]))
    return subprocess.run(argv, cwd=REPO, check=False).returncode == 0


def machine() -> str:
    """CPU model and core count, as `lscpu` tells them."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    info = dict(line.split(":", 1) for line in lines.splitlines() if ":" in line)
    model = info.get("Model name", platform.machine()).strip()
    return f"{model}, {info.get('CPU(s)', str(os.cpu_count())).strip()} CPUs"


def ratio(ours: float | None, ref: float | None) -> str:
    return "-" if ours is None or not ref else f"{ours / ref:.2f}"


def number(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if key.startswith(("s2_", "s4_")) else f"{value:,.0f}"


def shared_table(results: dict[str, Any]) -> str:
    """Scenario x (hubbub, Bun reference, hubbub / reference) from run.py's summary, and the
    Python floor beside them when the run had it."""
    summary = results.get("summary", {})
    ours, ref = summary.get("hubbub", {}), summary.get(REFERENCE, {})
    floor = summary.get(FLOOR)
    verdict = {True: "ok", False: "FAIL", None: "-"}
    rows = [["protocol verify", verdict[ours.get("verify")], verdict[ref.get("verify")], ""]
            + ([verdict[floor.get("verify")], ""] if floor else []) + [""]]
    for key, (label, higher) in SHARED_ROWS.items():
        if ours.get(key) is None and ref.get(key) is None:
            continue
        rows.append([label.format(slo=f"{results.get('slo_p99_ms', 50):g}"),
                     number(ours.get(key), key), number(ref.get(key), key),
                     ratio(ours.get(key), ref.get(key))]
                    + ([number(floor.get(key), key), ratio(floor.get(key), ref.get(key))]
                       if floor else [])
                    + ["higher" if higher else "lower"])
    head = ["scenario", "hubbub", "Bun reference", "hubbub ÷ ref"]
    if floor:
        head += ["Python floor", "floor ÷ ref"]
    return markdown_table([*head, "better"], rows)


def section_table(out: Path, name: str) -> str:
    path = out / f"{name}.md"
    return path.read_text().strip() if path.exists() else "(not run or failed: see the console)"


def link(target: Path, results_md: Path) -> str:
    return os.path.relpath(target, results_md.parent)


def plot_link(out: Path, name: str, results_md: Path) -> str:
    """A plot of this run: from bench/plots/ when RESULTS.md is the quoted one (kept), else
    from the run's own folder."""
    if results_md.parent == BENCH and (out / name).exists():
        PLOTS.mkdir(exist_ok=True)
        shutil.copy2(out / name, PLOTS / KEPT_PLOTS[name])
        return link(PLOTS / KEPT_PLOTS[name], results_md)
    return link(out / name, results_md)


def write_results_md(out: Path, results_md: Path, shared_dir: Path | None, quick: bool) -> None:
    shared_json = out / "shared-results.json"
    shared = (shared_table(json.loads(shared_json.read_text())) if shared_json.exists()
              else "(not run or failed: see the console)")
    lines = [
        "# hubbub benchmarks",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}" + (" (quick smoke run)" if quick else ""),
        f"- Machine: {machine()}; server pinned to CPU 0, load generators to CPU 1; "
        f"Python {platform.python_version()}",
        f"- Raw output: [{link(out, results_md)}/]({link(out, results_md)}/) (git-ignored, local)",
        "- Quote ratios from one run, never absolute numbers across runs: other work on this "
        "2-core machine moves them by ±10 % (../shared/bench/README.md, \"Noise\").",
        "",
        "## Shared bench kit: hubbub vs the Bun reference (JWT auth)",
        "",
        "`../shared/bench/run.py`, server command `" + SERVER_CMD + "`.",
        "",
        shared,
        "",
        f"S1 plot: [s1_latency.png]({plot_link(out, 's1_latency.png', results_md)}) "
        f"(the kit's own: [shared-s1_latency.png]"
        f"({link(out / 'shared-s1_latency.png', results_md)})) · "
        f"details and \"Read with\" notes: [shared-results.md]"
        f"({link(out / 'shared-results.md', results_md)})"
        + (f" · logs: `{link(shared_dir / 'logs', results_md)}/`" if shared_dir else ""),
        "",
        "## Persisted chats (issues 3, 8): 100 closed-loop senders, 10 rooms of 10",
        "",
        "`bench/persisted_chats.py`: chats/s = acks/s (committed before the ack); ack latency. "
        "SQLite rows by `--sqlite-synchronous`; the PostgreSQL row runs on a throwaway local "
        "cluster (not pinned: its processes show as bg cores).",
        "",
        section_table(out, "persisted_chats"),
        "",
        "## Typing fan-out (issue 2): 1,000 connections, 10 rooms of 100",
        "",
        "`bench/fanout.py`: offered = typing broadcasts/s x 99 receivers; latency send -> receive.",
        "",
        section_table(out, "fanout"),
        "",
        f"Plot: [typing_fanout.png]({plot_link(out, 'fanout.png', results_md)})",
        "",
    ]
    results_md.write_text("\n".join(lines))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run of every part (~2 minutes)")
    ap.add_argument("--skip", default="", help=f"comma list of parts to skip: {','.join(PARTS)}")
    ap.add_argument("--jwt-secret", default="hubbub-bench-secret",
                    help="HS256 secret for the shared kit's clients and the servers")
    args = ap.parse_args(argv)
    args.skip = {p for p in args.skip.split(",") if p}
    if args.skip - set(PARTS):
        ap.error(f"--skip takes {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "shared" not in args.skip and not SHARED_RUN.exists():
        raise SystemExit(f"the shared bench kit is missing: {SHARED_RUN} "
                         "(expected ../shared/bench/run.py next to the repository)")
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    ok, shared_dir = True, None
    if "shared" not in args.skip:
        shared_dir = run_shared(out, args.quick, args.jwt_secret)
        ok = shared_dir is not None
    if "chats" not in args.skip:
        ok = run_script("persisted_chats.py", out, args.quick) and ok
    if "fanout" not in args.skip:
        ok = run_script("fanout.py", out, args.quick) and ok
    partial = args.quick or bool(args.skip)
    results_md = out / "RESULTS.md" if partial else BENCH / "RESULTS.md"
    write_results_md(out, results_md, shared_dir, args.quick)
    progress(f"wrote {results_md} ({'all parts ok' if ok else 'SOME PARTS FAILED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
