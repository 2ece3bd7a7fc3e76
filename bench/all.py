"""`nerve bench`: the edge and brain benchmarks and their raw transport baselines in one run, on this machine.

    python -m bench.all [--quick] [--out DIR] [--only edge|brain]

Runs `bench.edge` (raw MQTT round trip, edge reflex latency, edge throughput, RSS, spool drain after a
Kafka outage) and `bench.brain` (raw aiokafka produce → consume, brain trigger → department latency,
throughput per worker core) one after the other, each writing its own report into DIR, then writes the
combined `report.json`, `report.md` and `report.png` (latency against rate per tier, next to its raw
transport) into DIR. `combine(DIR)` alone rebuilds the combined report from the two reports already there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import Row, machine_info, render_markdown

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TIERS: dict[str, dict[str, str]] = {
    # tier → its report's sections: raw transport, the tier's end-to-end latency
    "edge": {"raw": "baseline", "tier": "reflex", "transport": "MQTT round trip"},
    "brain": {"raw": "baseline", "tier": "brain", "transport": "aiokafka produce → consume"},
}
TARGETS = {
    "edge_throughput": 20_000.0,  # events/s per agent core (edge issue)
    "edge_p99_ms": 5.0,  # reflex latency at 5,000 events/s
    "edge_rss_mb": 80.0,
    "brain_throughput": 15_000.0,  # events/s per worker core (brain issue)
    "brain_p99_ms": 50.0,  # produce → department topic at 5,000 events/s
}


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}-report.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _rate_rows(tier: str, report: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Row]]:
    keys = TIERS[tier]
    series: list[dict[str, Any]] = []
    rows: list[Row] = []
    for rate in sorted(report[keys["tier"]], key=float):
        lat = report[keys["tier"]][rate]["latency"]
        raw = report[keys["raw"]].get(rate, {}).get("latency")
        point = {
            "rate": float(rate),
            "p50_ms": lat["p50_ms"],
            "p99_ms": lat["p99_ms"],
            "p999_ms": lat.get("p999_ms"),
            "n": lat["n"],
            "raw_p50_ms": raw["p50_ms"] if raw else None,
            "raw_p99_ms": raw["p99_ms"] if raw else None,
            "raw_p999_ms": raw.get("p999_ms") if raw else None,
        }
        if raw:
            point["ratio_p50"] = round(lat["p50_ms"] / raw["p50_ms"], 1) if raw["p50_ms"] else None
            point["ratio_p99"] = round(lat["p99_ms"] / raw["p99_ms"], 1) if raw["p99_ms"] else None
        missing = report[keys["tier"]][rate].get("missing")
        point["missing"] = missing
        series.append(point)
        r = f"{float(rate):,.0f}/s"
        rows.append(
            (
                f"{tier} latency at {r}: p50 / p99 / p99.9 (raw {keys['transport']})",
                f"{_ms(lat['p50_ms'])} / {_ms(lat['p99_ms'])} / {_ms(lat.get('p999_ms'))} "
                f"(raw {_ms(point['raw_p50_ms'])} / {_ms(point['raw_p99_ms'])} / {_ms(point['raw_p999_ms'])}; "
                f"×{point.get('ratio_p50', '—')} / ×{point.get('ratio_p99', '—')})"
                + (f"; {missing} alerts missing" if missing else ""),
                "—",
                None,
            )
        )
    return series, rows


def _edge_figures(edge: dict[str, Any]) -> tuple[dict[str, Any], list[Row]]:
    live = edge["throughput"]["live"]
    agent_cores = live["cpu_cores"]["agent"] or None
    per_core = live["end_to_end_per_s"] / agent_cores if agent_cores else None
    p99_5k = edge["reflex"].get("5000", {}).get("latency", {}).get("p99_ms")
    rss = edge["rss"]
    outage = edge["outage"]
    figures = {
        "throughput_per_s": live["end_to_end_per_s"],
        "agent_cores": agent_cores,
        "throughput_per_core": per_core,
        "p99_ms_at_5000": p99_5k,
        "rss_idle_mb": rss["idle_mb"],
        "rss_peak_mb": rss["peak_mb"],
        "spool_drain_per_s": outage["drain_per_s"],
        "outage_events": outage["events"],
        "outage_delivered": outage["delivered"],
    }
    rows: list[Row] = [
        (
            "edge throughput (MQTT in → Kafka acknowledged), per agent core",
            f"{live['end_to_end_per_s']:,.0f} events/s on {agent_cores} cores"
            + (f" = {per_core:,.0f} per core" if per_core else ""),
            f"≥ {TARGETS['edge_throughput']:,.0f} events/s",
            None if per_core is None else per_core >= TARGETS["edge_throughput"],
        ),
        (
            "edge reflex p99 at 5,000 events/s",
            _ms(p99_5k),
            f"≤ {TARGETS['edge_p99_ms']:.0f} ms",
            None if p99_5k is None else p99_5k <= TARGETS["edge_p99_ms"],
        ),
        (
            "edge agent RSS idle / peak",
            f"{rss['idle_mb']:.0f} / {rss['peak_mb']:.0f} MB",
            f"≤ {TARGETS['edge_rss_mb']:.0f} MB",
            rss["peak_mb"] <= TARGETS["edge_rss_mb"],
        ),
        (
            "edge spool drain after a Kafka outage",
            f"{outage['drain_per_s']:,.0f} events/s ({outage['delivered']:,} of {outage['events']:,} delivered)",
            "—",
            None,
        ),
    ]
    return figures, rows


def _brain_figures(brain: dict[str, Any]) -> tuple[dict[str, Any], list[Row]]:
    tp = brain["throughput"]
    p99_5k = brain["brain"].get("5000", {}).get("latency", {}).get("p99_ms")
    figures = {
        "throughput_per_s": tp["events_per_s"],
        "throughput_per_core": tp["events_per_cpu_s"],
        "p99_ms_at_5000": p99_5k,
    }
    rows: list[Row] = [
        (
            "brain throughput per worker core (events per CPU second)",
            f"{tp['events_per_cpu_s']:,.0f} events/s ({tp['events_per_s']:,.0f} events/s wall)",
            f"≥ {TARGETS['brain_throughput']:,.0f} events/s",
            tp["events_per_cpu_s"] >= TARGETS["brain_throughput"],
        ),
        (
            "brain produce → department topic p99 at 5,000 events/s",
            _ms(p99_5k),
            f"≤ {TARGETS['brain_p99_ms']:.0f} ms",
            None if p99_5k is None else p99_5k <= TARGETS["brain_p99_ms"],
        ),
    ]
    return figures, rows


def plot(series: dict[str, list[dict[str, Any]]], path: Path, title: str) -> Path | None:
    """Latency (p50 solid, p99 dashed) against rate for each tier and its raw transport; None without
    matplotlib (`pip install -e '.[bench]'`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = {"edge": "tab:red", "brain": "tab:blue"}
    for tier, points in series.items():
        rates = [p["rate"] for p in points]
        transport = TIERS[tier]["transport"]
        for q, style in (("p50", "-"), ("p99", "--")):
            ax.plot(
                rates,
                [p[f"{q}_ms"] for p in points],
                style,
                marker="o",
                color=colours[tier],
                label=f"{tier} {q}",
            )
            raw = [p[f"raw_{q}_ms"] for p in points]
            if all(v is not None for v in raw):
                ax.plot(
                    rates,
                    raw,
                    style,
                    marker="x",
                    color=colours[tier],
                    alpha=0.4,
                    label=f"raw {transport} {q}",
                )
    ax.set_xlabel("events per second")
    ax.set_ylabel("latency, ms (log)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def combine(out: Path) -> dict[str, Any]:
    """Build report.json / report.md / report.png in `out` from its edge and brain reports."""
    reports = {name: data for name in ("edge", "brain") if (data := _load(out, name)) is not None}
    if not reports:
        raise FileNotFoundError(f"no edge-report.json or brain-report.json in {out}")
    machine = machine_info()  # where the reports were combined; each note says where its report was measured
    series: dict[str, list[dict[str, Any]]] = {}
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    notes: list[str] = []
    for name, data in reports.items():
        tier_series, tier_rows = _rate_rows(name, data)
        series[name] = tier_series
        figs, fig_rows = (_edge_figures if name == "edge" else _brain_figures)(data)
        figures[name] = figs
        rows += fig_rows + tier_rows
        m = data.get("machine", {})
        commit = (m.get("git") or {}).get("commit") or data.get("config", {}).get("code", {}).get(
            "commit", "?"
        )
        notes.append(
            f"{name}: measured {m.get('date', '?')} at commit {commit}, load average {m.get('loadavg', '?')}, "
            f"{'quick' if data.get('config', {}).get('quick') else 'full'} run; details in {name}-report.md"
        )
    notes.append(
        "Latencies are end to end: edge = MQTT publish of the triggering reading → the agent's command "
        "received over MQTT; brain = produce to nerve.events → alert consumed from nerve.alerts.<department>. "
        "Each is shown next to its raw transport measured in the same run (×N = ratio to it)."
    )
    png = plot(
        series, out / "report.png", f"Nerve latency against rate ({machine['cpu']}, {machine['cores']} cores)"
    )
    if png is None:
        notes.append("No plot: matplotlib is not installed (pip install -e '.[bench]').")
    doc = {
        "name": "nerve-bench",
        "machine": machine,
        "series": series,
        "figures": figures,
        "targets": [{"metric": m, "value": v, "target": t, "ok": ok} for m, v, t, ok in rows],
        "notes": notes,
        "plot": png.name if png else None,
    }
    (out / "report.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = render_markdown("Nerve benchmark: edge and brain against their raw transports", machine, rows, notes)
    if png is not None:
        md += f"\n![latency against rate]({png.name})\n"
    (out / "report.md").write_text(md, encoding="utf-8")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nerve bench", description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="the short runs of both benchmarks (a few minutes)")
    ap.add_argument("--out", type=Path, default=BENCH, help="report directory (default bench/)")
    ap.add_argument(
        "--only", choices=("edge", "brain"), help="run one benchmark (the other's report is reused)"
    )
    ap.add_argument("--combine", action="store_true", help="only rebuild the combined report from DIR")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.combine:
        for name in ("edge", "brain"):
            if args.only not in (None, name):
                continue
            command = [
                sys.executable,
                "-m",
                f"bench.{name}",
                "--out",
                str(args.out),
                *(["--quick"] if args.quick else []),
            ]
            print(f"==> {' '.join(command[1:])}", flush=True)
            started = time.monotonic()
            code = subprocess.run(command, cwd=REPO, env=dict(os.environ), check=False).returncode
            if code != 0:
                print(f"bench.{name} failed with exit code {code}", file=sys.stderr)
                return code
            print(f"    done in {time.monotonic() - started:.0f} s", flush=True)
    doc = combine(args.out)
    print((args.out / "report.md").read_text(encoding="utf-8"))
    return 1 if not doc["targets"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
