"""`nerve bench --quick --only edge`: the edge benchmark runs end to end on the real brokers and writes a
sane report, and the combined report with its plot.

Speed is not judged here: only that every phase measured something and nothing was lost. The run stops
and restarts the local Kafka once (its outage phase), so it takes about half a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.edge_kit import REPO

pytestmark = pytest.mark.integration


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, mqtt_address: tuple[str, int]
) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench-edge")
    host, port = mqtt_address
    done = subprocess.run(
        [sys.executable, "-m", "nerve_cli", "bench", "--quick", "--only", "edge", "--out", str(out)],
        cwd=REPO,
        env=os.environ
        | {"NERVE_KAFKA_BOOTSTRAP": kafka_bootstrap, "NERVE_MQTT_HOST": host, "NERVE_MQTT_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "edge-report.json").read_text(encoding="utf-8"))
    data["_out"] = str(out)
    return data, (out / "edge-report.md").read_text(encoding="utf-8")


def test_report_names_machine_and_load(report: tuple[dict[str, Any], str]) -> None:
    data, md = report
    assert data["name"] == "edge"
    assert data["config"]["quick"] is True
    for key in ("cpu", "cores", "python", "date", "loadavg"):
        assert data["machine"][key], key
    assert len(data["config"]["loadavg_before"]) == len(data["config"]["loadavg_after"]) == 3
    assert "# Edge agent benchmark" in md
    assert "| Metric | Value | Target | Result |" in md
    for target in ("20,000 events/s", "p99 ≤ 5 ms", "≤ 80 MB"):
        assert target in md or target in json.dumps(data["targets"], ensure_ascii=False), target


def test_latencies_are_measured_for_raw_mqtt_and_reflexes(report: tuple[dict[str, Any], str]) -> None:
    data, _ = report
    assert data["baseline"].keys() == data["reflex"].keys() == {"1000"}
    raw, rx = data["baseline"]["1000"], data["reflex"]["1000"]
    assert raw["received"] == raw["count"] > 0
    assert rx["triggers"] > 0
    assert rx["commands"] == rx["triggers"]  # every trigger actuated
    assert rx["missing"] == 0
    for lat in (raw["latency"], rx["latency"]):
        for q in ("p50_ms", "p99_ms", "p999_ms"):
            assert _positive(lat[q]), q
        assert lat["p50_ms"] <= lat["p99_ms"] <= lat["p999_ms"]


def test_throughput_counts_every_event_in_kafka(report: tuple[dict[str, Any], str]) -> None:
    data, _ = report
    for phase in ("live", "backlog"):
        tp = data["throughput"][phase]
        assert tp["delivered"] == tp["events"] > 0, phase
        assert tp["last_ts"] >= tp["first_ts"] > 0
        assert _positive(tp["rss_hwm_mb"])
    live = data["throughput"]["live"]
    assert _positive(live["end_to_end_per_s"])
    assert _positive(live["publisher_per_s"])
    assert _positive(live["cpu_cores"]["agent"])


def test_memory_and_outage_drain_are_reported(report: tuple[dict[str, Any], str]) -> None:
    data, _ = report
    rss = data["rss"]
    assert _positive(rss["idle_mb"])
    assert rss["peak_mb"] >= rss["idle_mb"] * 0.9  # a peak is not far below the idle reading
    assert rss["engine_readings_max"] > 0  # the agent's nerve_edge_engine_readings: its windows' size
    rx = data["reflex"]["1000"]
    assert rss["idle_mb"] * 0.9 <= rx["rss_hwm_mb"] <= rss["peak_mb"]  # the reflex runs come first
    assert rx["engine_readings_max"] > 0
    outage = data["outage"]
    assert outage["spooled"] >= outage["events"] > 0
    assert outage["delivered"] == outage["events"]
    assert _positive(outage["drain_per_s"])
    # Kafka was down until `brokers.sh start kafka` was called: nothing reached it before that. The agent
    # may finish before the launcher's own readiness check returns, so ready → last can be negative.
    assert outage["start_to_last_s"] > 0
    assert outage["start_to_last_s"] >= outage["ready_to_last_s"] - 0.02  # each rounded to 10 ms


def test_the_combined_report_carries_the_edge_figures(report: tuple[dict[str, Any], str]) -> None:
    data, _ = report
    out = Path(data["_out"])
    combined = json.loads((out / "report.json").read_text(encoding="utf-8"))
    [point] = combined["series"]["edge"]
    assert point["p99_ms"] == data["reflex"]["1000"]["latency"]["p99_ms"]
    assert point["raw_p99_ms"] == data["baseline"]["1000"]["latency"]["p99_ms"]
    assert point["ratio_p50"] == round(point["p50_ms"] / point["raw_p50_ms"], 1)
    assert combined["figures"]["edge"]["spool_drain_per_s"] == data["outage"]["drain_per_s"]
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    assert "![latency against rate](report.png)" in (out / "report.md").read_text(encoding="utf-8")
