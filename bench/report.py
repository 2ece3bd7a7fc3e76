"""The one report format every benchmark writes: `<name>-report.json` (all numbers) and `<name>-report.md`
(a table of metrics next to their targets, saying plainly which targets are missed).

    rows = [("Throughput", "123,456 events/s", "≥ 100,000 events/s", True)]
    write_report("engine", data, rows, Path("bench"), title="Reflex engine", notes=["…"])

`ok` is True/False against the target, or None for a metric reported without a target.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import measure_baseline

Row = tuple[str, str, str, bool | None]  # metric, value, target ("—" for none), ok


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, Python and the current load, for the report header."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_mb": _mem_total_mb(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def python_speed(calls: int = 300_000, repeats: int = 5) -> float:
    """This machine's speed right now: calls per second of a no-op in a Python loop (the engine bench's
    raw baseline, median of `repeats`). The VMs these benchmarks run on drift by tens of percent within a
    day; reports carry this number so that runs can be compared (34 M/s on a normal day of the project's
    bench machine)."""
    return float(round(measure_baseline(list(range(calls)), repeats)["events_per_s"], -3))


def git_state(*paths: str) -> dict[str, Any]:
    """The commit of the work tree and whether `paths` have uncommitted changes (what was measured)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.rstrip("\n") if done.returncode == 0 else ""  # status lines start with a space

    status = git("status", "--porcelain", "--", *paths)
    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "subject": git("log", "-1", "--format=%s") or None,
        "dirty": sorted({line[3:] for line in status.splitlines()}),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(
    title: str, machine: Mapping[str, Any], rows: Sequence[Row], notes: Sequence[str] = ()
) -> str:
    verdict = {True: "✅ met", False: "❌ **missed**", None: "—"}
    lines = [
        f"# {title}",
        "",
        f"{machine.get('date', '')} · {machine.get('cpu', '?')} · {machine.get('cores', '?')} cores · "
        f"Python {machine.get('python', '?')} · load average {machine.get('loadavg', '?')}",
        "",
    ]
    git = machine.get("git")
    if git:
        dirty = f", uncommitted changes in {', '.join(git['dirty'])}" if git.get("dirty") else ""
        lines += [f"Measured at commit {git.get('commit')} ({git.get('subject')}){dirty}.", ""]
    lines += [
        "| Metric | Value | Target | Result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {_cell(m)} | {_cell(v)} | {_cell(t)} | {verdict[ok]} |" for m, v, t, ok in rows]
    missed = [(m, v, t) for m, v, t, ok in rows if ok is False]
    lines.append("")
    if missed:
        lines.append("**Targets missed:**")
        lines += [f"- {m}: {v}, target {t}." for m, v, t in missed]
    else:
        lines.append("All targets met.")
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_report(
    name: str,
    data: Mapping[str, Any],
    rows: Sequence[Row],
    out_dir: Path | str,
    *,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write `<name>-report.json` and `<name>-report.md` into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    machine = data.get("machine") or machine_info()
    doc = {
        "name": name,
        **data,
        "machine": machine,
        "targets": [{"metric": m, "value": v, "target": t, "ok": ok} for m, v, t, ok in rows],
        "notes": list(notes),
    }
    json_path = out / f"{name}-report.json"
    md_path = out / f"{name}-report.md"
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(title or f"{name} benchmark", machine, rows, notes), encoding="utf-8")
    return json_path, md_path


def wait_quiet(max_load: float, max_wait_s: float) -> dict[str, Any]:
    """Wait until the 1-minute load average is below `max_load`, for at most `max_wait_s` seconds."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= max_load and time.monotonic() - t0 < max_wait_s:
        time.sleep(5)
    load = os.getloadavg()[0]
    return {
        "max_load": max_load,
        "waited_s": round(time.monotonic() - t0, 1),
        "load_1m": round(load, 2),
        "quiet": load < max_load,
    }
