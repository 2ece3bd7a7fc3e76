"""State that can move: snapshot/restore equivalence, hot reload, determinism of replays."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from reflexes import Engine, load_rules_text
from reflexes.engine import Output
from schemas import Alert, SensorEvent
from tests.unit.test_reflex_patterns import ABSENT, AGG, CHANGE, CLEAR, COUNT, DISTINCT, ESC, FIRE, FOR, SEQ

RULES = "version: 1\nlateness: 5s\nreflexes:\n" + "".join(
    "\n".join("  " + line for line in block.strip("\n").splitlines()) + "\n"
    for block in (FIRE, SEQ, FOR, COUNT, CHANGE, DISTINCT, ABSENT, ESC, CLEAR, AGG)
)
SITES = ["yuelu/c1/b1/f1/r101", "yuelu/c1/b1/f1/r102", "yuelu/c1/b2/f1/r201", "yuelu/c2/b3", "yuelu/c1/b4"]
READINGS = [
    ("smoke", [0.1, 0.3]),
    ("temperature", [40, 60]),
    ("door", ["open", "closed", "forced"]),
    ("motion", [True]),
    ("gas", [30, 60]),
    ("water_level", [0.2, 0.8, 1.5]),
    ("pressure", [4.0, 2.0]),
    ("heartbeat", [1]),
    ("elevator", ["stuck", "ok"]),
    ("pm25", [50, 90]),
    ("rain", [20, 40]),
]

step = st.one_of(
    st.tuples(
        st.just("event"),
        st.integers(0, len(READINGS) - 1),
        st.integers(0, 2),
        st.sampled_from(SITES),
        st.integers(0, 1),
        st.floats(-4, 40, allow_nan=False),
    ),
    st.tuples(st.just("advance"), st.floats(0, 200, allow_nan=False)),
    st.tuples(st.just("ack"), st.integers(0, 5)),
)


def _apply(engine: Engine, steps: list[tuple[Any, ...]], clock: list[float], seen: list[Output]) -> list[str]:
    out: list[Output] = []
    for s in steps:
        if s[0] == "event":
            _, r, v, site, sensor, dt = s
            kind, values = READINGS[r]
            clock[0] += dt
            e = SensorEvent(
                site=site,
                sensor=f"{kind}-{sensor}-{site}",
                kind=kind,
                value=values[v % len(values)],
                ts=1_000 + clock[0],
            )
            out.extend(engine.process(e))
        elif s[0] == "advance":
            out.extend(engine.advance(1_000 + clock[0] + s[1]))
        else:
            raised = [o.id for o in seen + out if getattr(o, "status", None) == "raised"]
            if raised:
                engine.acknowledge(raised[s[1] % len(raised)])
    seen.extend(out)
    return [o.to_json().decode() for o in out]


@settings(max_examples=120, deadline=None)
@given(st.lists(step, max_size=80), st.lists(st.integers(0, 80), max_size=4))
def test_snapshot_restore_at_any_cut_gives_identical_alerts(
    steps: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    rules = load_rules_text(RULES)
    clock, seen = [0.0], list[Output]()
    uncut = _apply(Engine(rules), steps, clock, seen)

    clock, seen = [0.0], []
    engine = Engine(rules)
    pieces: list[str] = []
    bounds = sorted({c for c in cuts if c < len(steps)} | {0, len(steps)})
    for lo, hi in itertools.pairwise(bounds):
        pieces.extend(_apply(engine, steps[lo:hi], clock, seen))
        engine = Engine.restore(rules, engine.snapshot())  # through JSON bytes, into a fresh engine
    assert pieces == uncut


def test_snapshot_is_json_and_carries_the_clock() -> None:
    rules = load_rules_text(RULES)
    e = Engine(rules)
    e.process(SensorEvent(site=SITES[0], sensor="s", kind="smoke", value=0.3, ts=50))
    e.process(SensorEvent(site=SITES[0], sensor="s", kind="smoke", value=0.3, ts=10))  # late
    data = orjson.loads(e.snapshot())
    assert data["~meta"] == {"wm": 45.0, "max": 50.0, "late": 1}
    restored = Engine.restore(rules, e.snapshot())
    assert restored.watermark == 45.0 and restored.is_late(44)


def test_hot_reload_keeps_state_of_unchanged_reflexes_only() -> None:
    rules = load_rules_text(RULES)
    e = Engine(rules)
    e.process(SensorEvent(site=SITES[0], sensor="s1", kind="smoke", value=0.3, ts=100))  # fire: half of `all`
    e.process(SensorEvent(site="yuelu/c1/b1", sensor="g1", kind="gas", value=60, ts=100))  # count: 1 of 3
    e.process(SensorEvent(site="yuelu/c1/b1", sensor="g1", kind="gas", value=60, ts=101))  # count: 2 of 3
    changed = load_rules_text(RULES.replace('value: "> 50", count: ">= 3"', 'value: "> 50", count: ">= 2"'))
    assert e.reload(changed) == ["gas-alarms"]
    out = e.process(SensorEvent(site=SITES[0], sensor="t1", kind="temperature", value=60, ts=102))
    assert [getattr(o, "reflex", None) for o in out][:1] == ["kitchen-fire"]  # its half-made window survived
    out = e.process(SensorEvent(site="yuelu/c1/b1", sensor="g1", kind="gas", value=60, ts=103))
    assert out == []  # the changed reflex starts afresh: 1 of 2
    assert [
        getattr(o, "reflex", None)
        for o in e.process(SensorEvent(site="yuelu/c1/b1", sensor="g1", kind="gas", value=60, ts=104))
    ] == ["gas-alarms"]
    assert "gas-alarms" in set(e.reflex_ids())


def _replay(tmp: Path, rules: Path, events: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "nerve_cli",
            "replay",
            "--rules",
            str(rules),
            "--events",
            str(events),
            "--until",
            "1100",
        ],
        capture_output=True,
        check=False,
        cwd=tmp,
    )


def test_replay_cli_is_byte_identical_and_reports_bad_lines(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    lines = [
        SensorEvent(site=SITES[0], sensor="s1", kind="smoke", value=0.3, ts=1000).to_json().decode(),
        "{not json",
        '{"site": "a/b", "sensor": "x", "kind": "smoke", "value": NaN, "ts": 1}',
        SensorEvent(site=SITES[0], sensor="t1", kind="temperature", value=70, ts=1010).to_json().decode(),
        SensorEvent(site="yuelu/c1/b1", sensor="gw", kind="heartbeat", value=1, ts=1011).to_json().decode(),
        SensorEvent(site=SITES[0], sensor="t1", kind="temperature", value=70, ts=900).to_json().decode(),
        "",
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    first, second = _replay(tmp_path, rules, events), _replay(tmp_path, rules, events)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    alerts = [orjson.loads(x) for x in first.stdout.splitlines()]
    assert [(a["reflex"], a["status"]) for a in alerts] == [
        ("kitchen-fire", "raised"),
        ("gateway-silent", "raised"),
    ]
    err = first.stderr.decode()
    assert "events.jsonl:2: rejected:" in err
    assert "events.jsonl:3: rejected:" in err
    assert "events.jsonl:6: late:" in err
    assert "3 applied, 2 rejected, 1 late" in err


def test_rules_check_cli_exit_codes(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(RULES)
    bad.write_text(
        "version: 1\nreflexes:\n  - id: x\n    tier: edge\n    when: {kind: smoke, valeu: 1}\n"
        "    then: [{alert: {to: [fire]}}]\n"
    )
    ok = subprocess.run(
        [sys.executable, "-m", "nerve_cli", "rules", "check", str(good)], capture_output=True, check=False
    )
    assert ok.returncode == 0 and b"14 reflexes (6 edge, 8 brain)" in ok.stdout
    ko = subprocess.run(
        [sys.executable, "-m", "nerve_cli", "rules", "check", str(bad)], capture_output=True, check=False
    )
    assert ko.returncode == 1
    assert f"{bad}:5: x: unknown key 'valeu' in when — did you mean 'value'?".encode() in ko.stderr


@settings(max_examples=120, deadline=None)
@given(st.lists(step, max_size=80), st.lists(st.integers(0, 80), max_size=10))
def test_applying_events_twice_changes_nothing(steps: list[tuple[Any, ...]], repeats: list[int]) -> None:
    """At-least-once delivery made effectively exactly-once: a redelivered event adds no state and no alert."""
    rules = load_rules_text(RULES)
    clock, seen = [0.0], list[Output]()
    once = _apply(Engine(rules), steps, clock, seen)
    doubled: list[tuple[Any, ...]] = []
    for n, s in enumerate(steps):
        doubled.append(s)
        if s[0] == "event" and n in repeats:
            doubled.append((*s[:5], 0.0))  # the same reading again, same time: the same event id
    clock, seen = [0.0], list[Output]()
    assert _apply(Engine(rules), doubled, clock, seen) == once


def test_state_kept_in_the_previous_versions_form_is_upgraded_on_restore() -> None:
    rules = load_rules_text(RULES)
    room, community = SITES[0], "yuelu/c1"
    old: dict[str, Any] = {
        "~meta": {"wm": 95.0, "max": 100.0, "late": 0},
        # distinct kept the latest match per place; value windows had index blocks (lo/hi/s)
        "gas-cluster|yuelu/c1": {
            "s": community,
            "w": {"yuelu/c1/b1": [99.0, "g1"], "yuelu/c1/b2": [100.0, "g2"]},
        },
        "water-rise|w1": {
            "s": room,
            "w": {"w1": {"t": [99.0], "i": ["x1"], "v": [0.2], "lo": [0.2], "hi": [0.2], "s": [0.2]}},
        },
        # all: a condition that had not matched yet was an empty dict
        f"kitchen-fire|{room}": {"s": room, "w": [{}, {"t": [99.0], "i": ["t1"]}]},
        "pm25-high|yuelu/c1": {
            "s": community,
            "w": {"t": [98.0, 99.0], "i": ["p1", "p2"], "v": [70, 80], "lo": [70], "hi": [80], "s": [150]},
        },
    }
    e = Engine.restore(rules, orjson.dumps(old))
    out = e.process(SensorEvent(site="yuelu/c1/b3", sensor="g3", kind="gas", value=60, ts=101))
    out += e.process(SensorEvent(site=room, sensor="w1", kind="water_level", value=0.8, ts=101))
    out += e.process(SensorEvent(site="yuelu/c1/b4", sensor="p3", kind="pm25", value=90, ts=101))
    out += e.process(SensorEvent(site=room, sensor="s1", kind="smoke", value=0.3, ts=101))
    fired = {a.reflex: a for a in out if isinstance(a, Alert)}
    assert {"gas-cluster", "water-rise", "pm25-high", "kitchen-fire"} <= set(fired)
    assert fired["kitchen-fire"].evidence[1] == "t1"  # the heat kept from before the upgrade
    assert fired["gas-cluster"].first_event_ts == 99.0 and fired["water-rise"].evidence[0] == "x1"
    assert fired["pm25-high"].first_event_ts == 98.0  # (70 + 80 + 90) / 3 = 80 > 75
