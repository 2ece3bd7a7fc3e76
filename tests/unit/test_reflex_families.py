"""Shared value windows: aggregate and change reflexes that read the same readings share one window (a
family); each must alert exactly as it does alone."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflexes import Engine, load_rules_text
from schemas import SensorEvent
from tests.unit.reflex_kit import alerts, engine, run

# (id, condition extras, pattern, within, per, cooldown): ten reflexes over temperature readings that fall
# into five families — per sensor (the change and per-sensor aggregates whatever their globs), per room,
# per building (decided globs), per building with a glob the group does not decide, per community
REFLEXES = [
    ("avg-sensor", "", 'avg: "> 55"', "15s", None, None),
    ("rise-b1", "site: yuelu/c1/b1/**, ", 'rise: ">= 15"', "30s", None, "20s"),
    ("rise-bld", "", 'rise: ">= 20"', "60s", "building", None),
    ("fall-b2", "site: '*/*/b2/**', ", 'fall: ">= 10"', "45s", None, None),
    ("avg-room", "", 'avg: "> 50"', "30s", "room", None),
    ("avg-room-b1", "site: yuelu/c1/b1/**, ", 'avg: "> 40"', "60s", "room", "10s"),
    ("max-bld", "site: yuelu/c1/**, ", 'max: "> 70"', "20s", "building", None),
    ("min-bld-glob", "site: '*/c1/*/**', ", 'min: "> 30"', "40s", "building", None),
    ("min-bld-glob-2", "site: '*/c1/*/**', ", 'min: "< 20"', "25s", "building", None),
    ("sum-comm", "", 'sum: ">= 300"', "10s", "community", "5s"),
]
SENSORS = {  # a sensor has one site (SPEC §2)
    "t1": "yuelu/c1/b1/f1/r101",
    "t2": "yuelu/c1/b1/f1/r101",
    "t3": "yuelu/c1/b1/f2/r201",
    "t4": "yuelu/c1/b2/f1/r101",
    "t5": "yuelu/c2/b2/f1/r101",
}


def _rules(ids: set[str]) -> str:
    body = ""
    for rid, extra, pattern, within, per, cooldown in REFLEXES:
        if rid in ids:
            body += f"- id: {rid}\n  tier: edge\n  when: {{kind: temperature, {extra}{pattern}}}\n"
            body += f"  within: {within}\n" + (f"  per: {per}\n" if per else "")
            body += f"  cooldown: {cooldown}\n" if cooldown else ""
            body += "  then: [{alert: {to: [fire]}}]\n"
    return "version: 1\nlateness: 8s\nreflexes:\n" + textwrap.indent(body, "  ")


def _run(ids: set[str], events: list[SensorEvent]) -> tuple[Engine, list[str]]:
    e = Engine(load_rules_text(_rules(ids)))
    out = [a.to_json().decode() for a in alerts(run(e, *events))]
    out += [a.to_json().decode() for a in e.advance(10_000)]
    return e, out


reading = st.tuples(st.sampled_from(sorted(SENSORS)), st.integers(0, 100), st.floats(-6, 6, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(st.lists(reading, min_size=30, max_size=150), st.lists(st.integers(0, 119), max_size=5))
def test_each_reflex_alerts_in_company_exactly_as_alone(readings: list[Any], repeats: list[int]) -> None:
    events, clock = [], 1_000.0
    for n, (sensor, value, dt) in enumerate(readings):
        clock += max(dt, 0.0)
        ts = clock + min(dt, 0.0)  # a negative step: a reading out of order, inside the lateness or not
        events.append(
            SensorEvent(site=SENSORS[sensor], sensor=sensor, kind="temperature", value=value, ts=ts)
        )
        if n in repeats:
            events.append(events[-1])  # delivered twice
    together, out = _run({r[0] for r in REFLEXES}, events)
    for rid, *_ in REFLEXES:
        alone = _run({rid}, events)[1]
        assert [a for a in out if f'"reflex":"{rid}"' in a] == alone, rid
    windows = {key.split("|", 1)[0] for key, _ in together.store.items() if key[0] == "~" and "|" in key}
    assert len(windows) <= 5  # per sensor, room, building (decided), building (the glob), community


def test_a_sensor_that_moves_starts_its_readings_afresh() -> None:
    e = engine(
        """
        - id: warm
          tier: edge
          when: {kind: temperature, avg: "> 50"}
          within: 60s
          then: [{alert: {to: [fire]}}]
        """
    )
    old = [SensorEvent(site="a/b1/f1/r1", sensor="t", kind="temperature", value=10, ts=t) for t in (1, 2)]
    moved = SensorEvent(site="a/b7/f1/r1", sensor="t", kind="temperature", value=60, ts=3)
    fired = alerts(run(e, *old, moved))
    assert [(a.site, list(a.evidence)) for a in fired] == [("a/b7/f1/r1", [moved.id])]  # not (10+10+60)/3


def test_reload_keeps_a_familys_readings_for_unchanged_reflexes_and_drops_unread_windows() -> None:
    both = load_rules_text(_rules({"avg-room", "avg-room-b1", "max-bld"}))
    e = Engine(both)
    site = SENSORS["t1"]
    run(e, *(SensorEvent(site=site, sensor="t1", kind="temperature", value=38, ts=t) for t in (1, 2, 3)))
    before = {k for k, _ in e.store.items() if k[0] == "~" and "|" in k}
    assert len(before) == 2  # the room's window (two reflexes) and the building's
    dropped = e.reload(load_rules_text(_rules({"avg-room-b1"})))
    assert dropped == ["avg-room", "max-bld"]
    kept = {k for k, _ in e.store.items() if k[0] == "~" and "|" in k}
    assert len(kept) == 1 and kept < before  # the building's window, read by no reflex now, is gone
    # the room's readings stayed: 38, 38, 38 and 50 average 41 > 40 within the minute
    fired = alerts(e.process(SensorEvent(site=site, sensor="t1", kind="temperature", value=50, ts=4)))
    assert [a.reflex for a in fired] == ["avg-room-b1"] and len(fired[0].evidence) == 4


def test_a_window_read_by_many_reflexes_is_stored_once() -> None:
    e = Engine(load_rules_text(_rules({r[0] for r in REFLEXES})))
    for sensor, site in SENSORS.items():
        e.process(SensorEvent(site=site, sensor=sensor, kind="temperature", value=25, ts=1))
    shared: dict[str, int] = {}
    for key, state in e.store.items():
        if key[0] == "~" and "|" in key:
            shared[key.split("|", 1)[0]] = shared.get(key.split("|", 1)[0], 0) + len(state["t"])
    # per sensor: 5 readings; per room: 4 rooms hold 5; per building: c1's 3 hold 4, with the glob the
    # same 3 hold 4; per community: 5
    assert sorted(shared.values()) == [4, 4, 5, 5, 5]


@pytest.mark.parametrize(
    "predicate", ['value: "> 0"', 'where: "value > 0"', "between: [0, 100]", "in: [60, 70]"]
)
def test_an_aggregate_with_a_predicate_reads_only_the_readings_that_pass_it(predicate: str) -> None:
    e = engine(
        f"""
        - id: avg-passing
          tier: edge
          when: {{kind: temperature, {predicate}, avg: "> 50"}}
          within: 30s
          per: room
          then: [{{alert: {{to: [fire]}}}}]
        - id: avg-all
          tier: edge
          when: {{kind: temperature, avg: "> 50"}}
          within: 30s
          per: room
          then: [{{alert: {{to: [fire]}}}}]
        """
    )
    readings = [(-100, 1.0), (60, 2.0), (70, 3.0)]  # avg-all: -100, -20, 10; avg-passing: 60 at 2
    events = [
        SensorEvent(site="yuelu/c1/b1/f1/r101", sensor="t1", kind="temperature", value=v, ts=t)
        for v, t in readings
    ]
    fired = alerts(run(e, *events))
    assert [(a.reflex, a.ts, list(a.evidence)) for a in fired] == [("avg-passing", 2.0, [events[1].id])]


def test_a_change_with_a_predicate_reads_only_the_readings_that_pass_it() -> None:
    e = engine(
        """
        - id: rise-below-90
          tier: edge
          when: {kind: temperature, value: "< 90", rise: ">= 20"}
          within: 30s
          then: [{alert: {to: [fire]}}]
        - id: rise-any
          tier: edge
          when: {kind: temperature, rise: ">= 20"}
          within: 30s
          then: [{alert: {to: [fire]}}]
        """
    )
    events = [
        SensorEvent(site="yuelu/c1/b1/f1/r101", sensor="t1", kind="temperature", value=v, ts=t)
        for v, t in [(10, 1.0), (95, 2.0), (35, 3.0)]
    ]
    fired = alerts(run(e, *events))
    # rise-any: 95 − 10 at 2 (then cooling); rise-below-90 never sees 95: 35 − 10 at 3
    assert [(a.reflex, a.ts) for a in fired] == [("rise-any", 2.0), ("rise-below-90", 3.0)]
