"""Measurements shared by the benchmarks: throughput, per-call latency and memory of an `Engine` over
prebuilt events, the raw per-event floor of a Python loop, the cost of parsing, and a cProfile table.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from reflexes import Engine, RuleSet
from reflexes.collector import settle
from schemas import Alert, Command, SensorEvent


def _noop(ev: object) -> None:
    return None


def _median_rate(n: int, runs_ns: Sequence[int]) -> tuple[float, list[float]]:
    rates = [n / (ns / 1e9) for ns in runs_ns]
    return statistics.median(rates), [round(r, 1) for r in rates]


def measure_baseline(events: Sequence[object], repeats: int) -> dict[str, Any]:
    """The floor of Python per-event overhead: iterate the prebuilt events and call a no-op."""
    runs: list[int] = []
    noop = _noop
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for ev in events:
            noop(ev)
        runs.append(time.perf_counter_ns() - t0)
    rate, rates = _median_rate(len(events), runs)
    return {"events_per_s": round(rate, 1), "ns_per_event": round(1e9 / rate, 1), "runs_events_per_s": rates}


def measure_parse(events: Sequence[SensorEvent], sample: int = 20_000) -> dict[str, Any]:
    """Cost of `SensorEvent.from_json` per event (context: the engine's benchmark excludes parsing)."""
    payloads = [e.to_json() for e in events[:sample]]
    t0 = time.perf_counter_ns()
    for p in payloads:
        SensorEvent.from_json(p)
    ns = (time.perf_counter_ns() - t0) / len(payloads)
    return {
        "sample": len(payloads),
        "us_per_event": round(ns / 1e3, 2),
        "events_per_s": round(1e9 / ns, 1),
        "mean_payload_bytes": round(sum(map(len, payloads)) / len(payloads), 1),
    }


def measure_rule_memory(load: Callable[[], RuleSet]) -> dict[str, Any]:
    """tracemalloc of the loaded rule set, then of the engine built on it (before any event)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rules = load()
    gc.collect()
    loaded = tracemalloc.get_traced_memory()[0]
    engine = Engine(rules)
    gc.collect()
    built = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n = len(rules.reflexes)
    del engine
    return {
        "ruleset_bytes": loaded - base,
        "ruleset_bytes_per_rule": round((loaded - base) / n, 1),
        "engine_bytes": built - base,
        "engine_bytes_per_rule": round((built - base) / n, 1),
    }


def hosted(rules: RuleSet) -> Engine:
    """A fresh engine as a host runs one (`reflexes.collector.settle`, as the edge agent and the brain
    worker do at start): what is loaded by then (rule set, index, plans) is frozen out of the garbage
    collector, and what the engine allocates while running is collected every 10,000 new containers."""
    engine = Engine(rules)
    settle()
    return engine


def measure_throughput(rules: RuleSet, events: Sequence[SensorEvent], repeats: int) -> dict[str, Any]:
    """Wall time of `engine.process` over all events, a fresh engine per repeat; median of the repeats."""
    runs: list[int] = []
    cpu_runs: list[int] = []
    for _ in range(repeats):
        process = hosted(rules).process
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        for ev in events:
            process(ev)
        runs.append(time.perf_counter_ns() - t0)
        cpu_runs.append(time.process_time_ns() - c0)
    rate, rates = _median_rate(len(events), runs)
    cpu_rate, _ = _median_rate(len(events), cpu_runs)
    return {
        "events_per_s": round(rate, 1),
        "best_events_per_s": max(rates),
        "runs_events_per_s": rates,
        "ns_per_event": round(1e9 / rate, 1),
        # by process CPU time instead of wall time: what a core of our own would give under the same load
        "cpu_time_events_per_s": round(cpu_rate, 1),
        # CPU time / wall time per run: below 1 means another process took the core from us
        "cpu_share": [round(c / w, 3) for c, w in zip(cpu_runs, runs, strict=True)],
    }


def _timer_overhead_ns() -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(10_000):
        t0 = clock()
        samples.append(clock() - t0)
    return int(statistics.median(samples))


def measure_latency(rules: RuleSet, events: Sequence[SensorEvent]) -> dict[str, Any]:
    """Each `process` call timed on its own; also collects the outputs and the engine's counters."""
    lat = [0] * len(events)
    outputs: list[Alert | Command] = []
    engine = hosted(rules)
    process, clock = engine.process, time.perf_counter_ns
    for i, ev in enumerate(events):
        t0 = clock()
        out = process(ev)
        lat[i] = clock() - t0
        if out:
            outputs.extend(out)
    lat.sort()
    n = len(lat)
    alerts = [o for o in outputs if isinstance(o, Alert)]
    fired = Counter(a.reflex for a in alerts if a.status == "raised")
    return {
        "latency_ns": {
            "p50": lat[n // 2],
            "p90": lat[min(n - 1, n * 9 // 10)],
            "p99": lat[min(n - 1, n * 99 // 100)],
            "p999": lat[min(n - 1, n * 999 // 1000)],
            "max": lat[-1],
            "mean": round(sum(lat) / n, 1),
            "timer_overhead_ns": _timer_overhead_ns(),
        },
        "alerts": len(alerts),
        "alerts_by_status": dict(Counter(a.status for a in alerts)),
        "commands": sum(1 for o in outputs if isinstance(o, Command)),
        "reflexes_fired": len(fired),
        "top_reflexes": dict(fired.most_common(15)),
        "stats": engine.stats(),
    }


def _deep_size(root: object) -> int:
    """Bytes of every object reachable from `root` through dicts, lists and tuples, each counted once."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
    return total


def measure_state_memory(rules: RuleSet, events: Sequence[SensorEvent]) -> dict[str, Any]:
    """tracemalloc of what the engine keeps after the run (state, timers, caches), per group or shared value
    window."""
    engine = Engine(rules)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for ev in events:
        engine.process(ev)
    gc.collect()
    state = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    stats = engine.stats()
    groups, windows = int(stats["groups"]), int(stats["windows"])
    deep = _deep_size(dict(engine.store.items()))
    return {
        "state_bytes": state,
        "groups": groups,
        "windows": windows,
        "state_bytes_per_group": round(state / max(groups + windows, 1), 1),
        "store_deep_bytes": deep,  # also counts strings shared with the events (ids kept as evidence)
        "store_deep_bytes_per_group": round(deep / max(groups + windows, 1), 1),
    }


def profile_text(rules: RuleSet, events: Sequence[SensorEvent], top: int = 15) -> str:
    """cProfile of `engine.process` over `events`: the `top` functions by cumulative and by own time,
    named by qualified name (`AggregateEval.match`) and place (`patterns.py:216`)."""
    engine = Engine(rules)
    prof = cProfile.Profile()
    prof.enable()
    for ev in events:
        engine.process(ev)
    prof.disable()
    names: dict[tuple[str, int, str], str] = {}
    for entry in prof.getstats():
        code = entry.code
        if not isinstance(code, str):
            names[(code.co_filename, code.co_firstlineno, code.co_name)] = code.co_qualname
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = max(ct for _, _, _, ct, _ in raw.values())
    buf = io.StringIO()
    buf.write(f"{len(events):,} events, {total:.2f} s under the profiler\n")
    for title, cumulative in (("cumulative", True), ("own (tottime)", False)):
        buf.write(f"\n--- top {top} by {title} time ---\n")
        buf.write(
            f"{'calls':>10} {'own s':>7} {'own %':>6} {'cum s':>7} {'cum %':>6} {'µs/call':>8}  function\n"
        )
        for key, (_, nc, tt, ct, _) in sorted(
            raw.items(), key=lambda kv: -(kv[1][3] if cumulative else kv[1][2])
        )[:top]:
            file, line, func = key
            where = f"{file.rsplit('/', 1)[-1]}:{line}" if line else "built-in"
            name = names.get(key, func)
            buf.write(
                f"{nc:>10,} {tt:>7.2f} {100 * tt / total:>5.1f}% {ct:>7.2f} {100 * ct / total:>5.1f}% {1e6 * ct / max(nc, 1):>8.2f}  {name} ({where})\n"
            )
    return buf.getvalue()
