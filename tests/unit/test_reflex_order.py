"""Arrival order inside the lateness does not change what windowed patterns raise (patterns.py docstring).

A stream is generated in event time; its arrival order delays each event by up to the lateness, so none
is late. The sorted stream is the reference."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reflexes import Engine, load_rules_text
from schemas import Alert, SensorEvent

LATENESS = 5.0
COMMUNITY = "yuelu/c1"
SITES = [f"{COMMUNITY}/b{b}/f1/r{r}" for b in (1, 2) for r in (1, 2)] + [f"{COMMUNITY}/b3"]
READINGS: list[tuple[str, list[Any]]] = [
    ("gas", [0, 20, 60, 80]),
    ("water_level", [0, 10, 25, 40]),
    ("smoke", [0.1, 0.3]),
    ("temperature", [20, 60]),
    ("door", ["forced", "closed"]),
    ("motion", [True, False]),
]


def _reflex(rid: str, when: str, within: str, per: str, cooldown: str) -> str:
    per_line = f"    per: {per}\n" if per != "sensor" else ""
    return (
        f"  - id: {rid}\n    tier: brain\n    when: {when}\n    within: {within}\n{per_line}"
        f"    cooldown: {cooldown}\n    then: [{{alert: {{to: [fire]}}}}]\n"
    )


# Tests that only get truer as matches are added: the same alerts in any order.
GROWING = [
    ("count", "{kind: gas, value: '>= 60', count: '>= 3'}", "community"),
    ("distinct", "{kind: gas, value: '>= 60', distinct: building, count: '>= 2'}", "community"),
    ("max", "{kind: gas, max: '>= 60'}", "community"),
    ("min", "{kind: gas, min: '<= 0'}", "building"),
    ("sum", "{kind: gas, sum: '>= 150'}", "community"),
    ("rise", "{kind: water_level, rise: '>= 20'}", "sensor"),
    ("fall", "{kind: water_level, fall: '>= 20'}", "sensor"),
    ("all", "{all: [{kind: smoke, value: '> 0.15'}, {kind: temperature, value: '> 57'}]}", "building"),
    ("sequence", "{sequence: [{kind: door, value: forced}, {kind: motion, value: true}]}", "building"),
]
# Tests that a late match can make false again: every alert of the sorted stream, perhaps more.
SHRINKING = [
    ("avg", "{kind: gas, avg: '> 40'}", "community"),
    ("fewer", "{kind: gas, value: '>= 60', count: '<= 1'}", "community"),
]


def _rules(patterns: list[tuple[str, str, str]], cooldown: str) -> str:
    return f"version: 1\nlateness: {LATENESS:g}s\nreflexes:\n" + "".join(
        _reflex(rid, when, "10s", per, cooldown) for rid, when, per in patterns
    )


event = st.tuples(
    st.integers(0, 4),  # ts step, in half seconds
    st.integers(0, len(READINGS) - 1),
    st.integers(0, 3),  # value
    st.integers(0, len(SITES) - 1),
    st.integers(0, 1),  # sensor at that site
    st.floats(0, LATENESS),  # arrival delay
)


def _streams(
    raw: list[tuple[int, int, int, int, int, float]], *, ties: bool = True
) -> tuple[list[SensorEvent], list[SensorEvent]]:
    """(the stream in event time, the same events in arrival order: each delayed by up to the lateness).

    Without `ties` no two events share a time: the sorted stream judges tied events one by one, each on a
    window missing the others, which a test that a match can make false again notices."""
    clock = 1_000.0
    timed: list[tuple[float, SensorEvent]] = []
    for step, r, v, site, sensor, delay in raw:
        clock += (step if ties else step + 1) / 2
        kind, values = READINGS[r]
        e = SensorEvent(
            site=SITES[site],
            sensor=f"{kind}-{site}-{sensor}",
            kind=kind,
            value=values[v % len(values)],
            ts=clock,
        )
        timed.append((clock + delay, e))
    in_time = [e for _, e in timed]
    arrival = [e for _, e in sorted(timed, key=lambda x: x[0])]  # stable: ties keep event-time order
    return in_time, arrival


def _alerts(rules: str, events: list[SensorEvent]) -> list[Alert]:
    engine = Engine(load_rules_text(rules))
    out = [o for e in events for o in engine.process(e) if isinstance(o, Alert)]
    assert engine.late == 0
    return out


def _ids(alerts: list[Alert]) -> set[tuple[str, str, float]]:
    return {(a.reflex, a.id, a.ts) for a in alerts}


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=60))
def test_growing_patterns_raise_the_sorted_streams_alert_ids_in_any_order(raw: list[Any]) -> None:
    # a cooldown that suppresses nothing: every moment that holds fires
    rules = _rules(GROWING, cooldown="1ms")
    in_time, arrival = _streams(raw)
    assert _ids(_alerts(rules, arrival)) == _ids(_alerts(rules, in_time))


@settings(max_examples=200, deadline=None)
@given(st.lists(event, max_size=60))
def test_shrinking_patterns_raise_at_least_the_sorted_streams_alerts(raw: list[Any]) -> None:
    rules = _rules(SHRINKING, cooldown="1ms")
    in_time, arrival = _streams(raw, ties=False)
    assert _ids(_alerts(rules, arrival)) >= _ids(_alerts(rules, in_time))


@settings(max_examples=200, deadline=None)
@given(st.lists(event, max_size=60), st.sampled_from(["2s", "8s", "1m"]))
def test_with_a_cooldown_the_same_groups_alert_and_never_twice_within_it(
    raw: list[Any], cooldown: str
) -> None:
    seconds = {"2s": 2.0, "8s": 8.0, "1m": 60.0}[cooldown]
    rules = _rules(GROWING, cooldown=cooldown)
    in_time, arrival = _streams(raw)
    sorted_alerts, arrived_alerts = _alerts(rules, in_time), _alerts(rules, arrival)
    assert {(a.reflex, a.group) for a in arrived_alerts} == {(a.reflex, a.group) for a in sorted_alerts}
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for a in arrived_alerts:
        times[(a.reflex, a.group)].append(a.ts)
    for ts in times.values():
        ts.sort()
        assert all(b - a >= seconds for a, b in itertools.pairwise(ts))


@settings(max_examples=100, deadline=None)
@given(st.lists(event, max_size=40), st.lists(st.integers(0, 39), max_size=8))
def test_a_redelivered_out_of_order_event_changes_nothing(raw: list[Any], again: list[int]) -> None:
    rules = _rules(GROWING + SHRINKING, cooldown="1ms")
    _, arrival = _streams(raw)
    doubled = list(arrival)
    for n in sorted(set(again), reverse=True):
        if n < len(arrival):
            doubled.insert(n + 1, arrival[n])
    once, twice = _alerts(rules, arrival), _alerts(rules, doubled)
    assert [a.to_json() for a in twice] == [a.to_json() for a in once]
