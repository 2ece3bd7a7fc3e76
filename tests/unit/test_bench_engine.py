"""The engine benchmark runs end to end (`--quick`) and writes a sane report; speed is not judged here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.engine import main
from bench.report import write_report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    assert main(["--quick", "--out", str(out)]) == 0
    data = json.loads((out / "engine-report.json").read_text(encoding="utf-8"))
    return data, (out / "engine-report.md").read_text(encoding="utf-8")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_report_has_machine_config_and_context(report: tuple[dict[str, Any], str]) -> None:
    data, _ = report
    assert data["name"] == "engine"
    for key in ("cpu", "cores", "python", "date", "loadavg"):
        assert data["machine"][key], key
    assert data["config"]["quick"] is True
    assert data["config"]["sensors"] == 10_000
    assert _positive(data["baseline"]["events_per_s"])
    assert _positive(data["parse"]["us_per_event"])


@pytest.mark.parametrize("scenario", ["a", "b"])
def test_scenario_numbers_are_sane(report: tuple[dict[str, Any], str], scenario: str) -> None:
    s = report[0]["scenarios"][scenario]
    assert s["events"] == 20_000
    assert _positive(s["rules"])
    assert _positive(s["load_s"])
    tp = s["throughput"]
    assert _positive(tp["events_per_s"])
    assert _positive(tp["cpu_time_events_per_s"])
    assert tp["events_per_s"] < report[0]["baseline"]["events_per_s"]  # the engine costs more than a no-op
    lat = s["latency_ns"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    mem = s["memory"]
    for key in ("ruleset_bytes_per_rule", "engine_bytes_per_rule", "state_bytes", "state_bytes_per_group"):
        assert _positive(mem[key]), key
    assert mem["engine_bytes_per_rule"] >= mem["ruleset_bytes_per_rule"]
    assert _positive(mem["groups"])
    assert s["stats"]["late_events"] == 0  # the jitter stays inside the lateness
    assert _positive(s["alerts"])  # the synthetic incidents make some reflexes fire


def test_scenario_b_is_generated_with_every_pattern_type(report: tuple[dict[str, Any], str]) -> None:
    b = report[0]["scenarios"]["b"]
    assert set(b["pattern_mix"]) >= {
        "single",
        "for",
        "all",
        "sequence",
        "count",
        "aggregate",
        "change",
        "absent",
        "distinct",
    }
    assert sum(b["pattern_mix"].values()) == b["rules"]


def test_markdown_lists_metrics_against_targets(report: tuple[dict[str, Any], str]) -> None:
    data, md = report
    assert "| Metric | Value | Target | Result |" in md
    assert "≥ 100,000 events/s" in md
    assert "≤ 50 KB" in md
    assert "eKuiper" in md
    assert len(data["targets"]) >= 10
    assert {t["ok"] for t in data["targets"]} <= {True, False, None}


def test_write_report_says_which_targets_are_missed(tmp_path: Path) -> None:
    rows = [("speed", "5 events/s", "≥ 10 events/s", False), ("size", "1 KB", "≤ 2 KB", True)]
    json_path, md_path = write_report("demo", {"x": 1}, rows, tmp_path, title="Demo")
    md = md_path.read_text(encoding="utf-8")
    assert "**Targets missed:**" in md
    assert "- speed: 5 events/s, target ≥ 10 events/s." in md
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert doc["x"] == 1
    assert doc["targets"][0] == {
        "metric": "speed",
        "value": "5 events/s",
        "target": "≥ 10 events/s",
        "ok": False,
    }
