"""The engine leaves no cyclic garbage, which is what lets its hosts collect rarely (reflexes/collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.city import build_city, make_events
from bench.rulegen import generate_rules
from reflexes import Engine, load_rules, load_rules_text
from reflexes.collector import FIRST_THRESHOLD, settle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "city"


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.enable()


@pytest.mark.parametrize("rule_set", ["examples", "generated"])
def test_the_engine_makes_no_cyclic_garbage(rule_set: str, collector_restored: None) -> None:
    rules = (
        load_rules([EXAMPLES])
        if rule_set == "examples"
        else load_rules_text(generate_rules(200)[0], "generated.yaml")
    )
    events = make_events(build_city(span=2.0), 20_000)
    engine = Engine(rules)
    gc.collect()
    gc.disable()
    outputs = [out for ev in events for out in engine.process(ev)]
    outputs += engine.advance(events[-1].ts + 3600.0)  # every timer due: absent, escalations, clears
    assert outputs  # the run did raise alerts, so firing paths ran too
    assert gc.collect() == 0  # nothing unreachable that reference counting did not free


def test_settle_freezes_what_is_loaded_and_raises_the_first_threshold(collector_restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    settle()
    assert gc.get_threshold() == (FIRST_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0
