"""The example city rule set: it loads, every rule test case passes, and its replay is deterministic."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from nerve_cli.replay_cmd import replay
from reflexes import Engine, load_rules
from reflexes.cases import case_files, run_file

CITY = Path(__file__).resolve().parents[2] / "examples" / "city"


def test_example_city_has_the_promised_breadth() -> None:
    rules = load_rules([CITY])
    assert len(rules.reflexes) >= 15
    assert {r.tier for r in rules.reflexes} == {"edge", "brain"}
    tested = "".join(f.read_text() for f in case_files([CITY]))
    untested = [r.id for r in rules.reflexes if f"reflex: {r.id}" not in tested]
    assert untested == []


@pytest.mark.parametrize("test_file", case_files([CITY]), ids=lambda p: p.name)
def test_example_rule_cases_pass(test_file: Path) -> None:
    results = run_file(test_file)
    assert results
    failed = {r.name: r.failures for r in results if not r.passed}
    assert failed == {}


def _replay(tier: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    engine = Engine(load_rules([CITY]), tier=tier)  # type: ignore[arg-type]
    with (CITY / "events.jsonl").open("rb") as f:
        replay(engine, f, "events.jsonl", out, err)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize("tier", ["edge", "brain", "all"])
def test_example_replay_is_byte_identical(tier: str) -> None:
    first, errors = _replay(tier)
    assert first.count("\n") >= 3
    assert errors == ""
    assert _replay(tier)[0] == first
