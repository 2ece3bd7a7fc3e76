"""`nerve bench --quick --only brain` on the real Kafka: it runs end to end and writes a sane report.

Speed is not judged here (the machine is shared); only that every phase measured something real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _latency(lat: dict[str, Any]) -> None:
    assert lat["n"] > 0
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]


def test_quick_brain_benchmark_writes_a_sane_report(tmp_path: Path, kafka_bootstrap: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nerve_cli", "bench", "--quick", "--only", "brain", "--out", str(tmp_path)],
        cwd=REPO,
        env=os.environ | {"NERVE_KAFKA_BOOTSTRAP": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    report = json.loads((tmp_path / "brain-report.json").read_text(encoding="utf-8"))
    md = (tmp_path / "brain-report.md").read_text(encoding="utf-8")

    assert report["name"] == "brain"
    assert report["config"]["quick"] is True
    assert {"baseline", "brain", "throughput", "machine", "targets", "notes", "config"} <= report.keys()
    assert report["baseline"].keys() == report["brain"].keys() == {"1000"}

    raw, brain = report["baseline"]["1000"], report["brain"]["1000"]
    assert raw["received"] == raw["count"] > 0 and raw["send_errors"] == 0
    _latency(raw["latency"])
    assert brain["events"] > 0 and brain["triggers"] > 0 and brain["send_errors"] == 0
    assert 0 < brain["alerts_matched"] <= brain["triggers"]
    _latency(brain["latency"])
    assert brain["ratio_to_raw"]["p50"] > 0
    assert {"send_to_rekeyed", "rekeyed_to_emitted", "emitted_to_received"} <= brain["hops"].keys()

    tp = report["throughput"]
    assert tp["events"] == report["config"]["sizes"]["throughput"] > 0
    assert tp["backlog"]["send_errors"] == 0
    records = [t["records"] for t in tp["topics"].values()]
    assert records[0] >= tp["events"]  # every event read
    assert all(r > 0 for r in records[1:])  # the re-keyed topic: bundles of them, and in-band ticks
    assert tp["drain_s"] > 0 and tp["events_per_s"] > 0
    assert tp["cpu_s"] > 0 and tp["cpu_share"] > 0 and tp["events_per_cpu_s"] > 0
    assert tp["startup_s"] > 0

    metrics = [t["metric"] for t in report["targets"]]
    assert any(m.startswith("Raw aiokafka produce → consume") for m in metrics)
    assert any(m.startswith("Brain trigger → alert") for m in metrics)
    assert any(m.startswith("Throughput per worker core") for m in metrics)
    judged = [t for t in report["targets"] if t["ok"] is not None]
    assert judged, "the throughput row is always judged against its target"
    assert "| Metric | Value | Target | Result |" in md

    combined = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    [point] = combined["series"]["brain"]
    assert point["p50_ms"] == brain["latency"]["p50_ms"]
    assert point["raw_p50_ms"] == raw["latency"]["p50_ms"]
    assert combined["figures"]["brain"]["throughput_per_core"] == tp["events_per_cpu_s"]
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")
