"""The S1 plot of a shared-kit run, drawn so that every step of the ladder can be read.

The kit's own plot puts the offered rates on a log axis, where 400k-1.6M crowd into one
unreadable label. Here each step gets its own slot, and a third panel shows the server's
CPU, which is what sets the latency at the top of the ladder.

    python bench/s1_plot.py bench/results/<stamp>/shared-results.json out.png
"""

import json
import sys
from pathlib import Path
from typing import Any

# The kit keeps the least noisy attempt of a step (../shared/bench/run.py, `one_run`).
NO_BG = 9.0


def ladder(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per server, its S1 steps by rate: the attempt with the least background load."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in results["records"]:
        if rec.get("scenario") != "s1" or rec.get("error") or not rec.get("latency"):
            continue
        key = (rec["server"], rec["rate"])
        bg = rec.get("background_cores")
        held = best.get(key)
        if held is None or (bg if bg is not None else NO_BG) < (
                held.get("background_cores") if held.get("background_cores") is not None
                else NO_BG):
            best[key] = rec
    out: dict[str, list[dict[str, Any]]] = {}
    for (server, _), rec in sorted(best.items(), key=lambda kv: kv[0][1]):
        out.setdefault(server, []).append(rec)
    return out


def label(rate: float) -> str:
    return f"{rate / 1e6:g}M" if rate >= 1e6 else f"{rate / 1e3:g}k"


def plot(results: dict[str, Any], path: Path) -> str | None:
    """Writes the plot; returns why it was skipped, if it was."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is missing (pip install -e '.[bench]'): no S1 plot"
    steps = ladder(results)
    if not steps:
        return "no S1 steps in the results: no S1 plot"
    slo = float(results.get("slo_p99_ms") or 50)
    rates = sorted({rec["rate"] for recs in steps.values() for rec in recs})
    slot = {rate: i for i, rate in enumerate(rates)}
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, (server, recs) in enumerate(sorted(steps.items())):
        x = [slot[r["rate"]] for r in recs]
        color = f"C{i}"
        lat.plot(x, [r["latency"]["p99_ms"] for r in recs], "o-", color=color,
                 label=f"{server} p99")
        lat.plot(x, [r["latency"]["p50_ms"] for r in recs], "s--", color=color, alpha=0.6,
                 label=f"{server} p50")
        cpu.plot(x, [r.get("server_cpu") or 0 for r in recs], "o-", color=color, label=server)
    lat.axhline(slo, color="grey", lw=0.8, ls=":", label=f"p99 target {slo:g} ms")
    lat.set(yscale="log", ylabel="latency, ms (send -> receive)",
            title="S1 fan-out: latency per step")
    cpu.axhline(1.0, color="grey", lw=0.8, ls=":")
    cpu.set(ylim=(0, 1.1), ylabel="server CPU, cores (pinned to one)",
            title="server CPU per step")
    for ax in (lat, cpu):
        ax.set_xticks(range(len(rates)), [label(r) for r in rates], rotation=45)
        ax.set_xlabel("offered deliveries/s (one slot per step)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    why = plot(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    if why:
        print(why, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
