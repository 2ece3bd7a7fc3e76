"""The city brain on the real Kafka: `nerve brain run` workers as subprocesses, driven through the topics.

Each test works under its own topic prefix and Faust app id (see brain_kit.City), with workers of 4
partitions and a lateness margin of 0.3 s. Event times are the wall clock; where an example rule waits
minutes, a copy with seconds (or a small rule file) stands in.

Where readings of several buildings meet in one group (per community), they are sent one at a time, each
once the brain has re-keyed the one before (`City.send_in_order`), so that the assertions on the order of
evidence hold; the engine itself gives the same alerts in any arrival order within the lateness.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from brain_bridge.departments import AlertFeed
from schemas import Ack
from tests.integration.brain_kit import (
    EXAMPLES,
    AlertWatch,
    City,
    group_state,
    lagging_commits,
    table_state,
    topic_size,
    wait_for,
)

pytestmark = pytest.mark.integration

#: the example rule sets' lateness (their default) plus the workers' lateness margin, seconds
CITY_DELAY = 5.0 + 0.3


@pytest.fixture
async def city(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[City]:
    c = City(tmp_path, kafka_bootstrap)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def watch(city: City) -> AsyncIterator[AlertWatch]:
    async with AlertWatch(city.kafka, city.prefix) as w:
        yield w


def window_size(group: dict[str, Any]) -> int:
    """How many readings a group's window holds (the engine keeps a window as parallel lists)."""
    window = group["w"]
    return len(window["t"]) if isinstance(window, dict) else len(window)


async def until_wall(t: float) -> None:
    """Let the wall clock reach `t` (epoch seconds): event times in these tests are the wall clock."""
    await asyncio.sleep(max(0.0, t - time.time()))


def fast_city(tmp: Path) -> list[Path]:
    """The example city rules, with the minutes of elevator-entrapment and gateway-silent cut to seconds."""
    edits = {
        "safety.yaml": [
            ("for: 2m}", "for: 2s}"),
            ("escalate: {after: 5m", "escalate: {after: 3s"),
            ("clear: {after: 10m}", "clear: {after: 4s}"),
        ],
        "infrastructure.yaml": [
            ("      for: 2m\n", "      for: 3s\n"),
            ("clear: {after: 1m}", "clear: {after: 2s}"),
        ],
    }
    folder = tmp / "city"
    folder.mkdir()
    for f in sorted(EXAMPLES.glob("*.yaml")):
        if f.name.endswith(".test.yaml"):
            continue
        text = f.read_text()
        for old, new in edits.get(f.name, []):
            assert text.count(old) == 1, f"{f.name}: {old!r} is not there once"
            text = text.replace(old, new)
        (folder / f.name).write_text(text)
    return [folder]


# (reflex, status, group) → the departments whose topic must carry it
CITY_EXPECTED: dict[tuple[str, str, str], set[str]] = {
    ("gas-leak-cluster", "raised", "yuelu/c12"): {"utilities", "fire", "emergency"},
    ("community-power-outage", "raised", "yuelu/c14"): {"utilities", "emergency"},
    ("power-flapping", "raised", "yuelu/c15/b1"): {"utilities"},
    ("river-level-rise", "raised", "gauge-xiang-3"): {"environment", "emergency"},
    ("water-main-pressure-drop", "raised", "press-main-7"): {"utilities"},
    ("station-crowding", "raised", "yuelu/c20/metro-3"): {"transport", "police"},
    ("air-quality-pm25", "raised", "yuelu/c05"): {"environment", "health"},
    ("care-home-cold", "raised", "yuelu/c07/b2/f1/r108"): {"health", "building"},
    ("elevator-entrapment", "raised", "lift-b3-1"): {"building", "emergency"},
    ("elevator-entrapment", "escalated", "lift-b3-1"): {"building", "emergency", "fire"},
    ("elevator-entrapment", "cleared", "lift-b3-1"): {"building", "emergency"},
    ("gateway-silent", "raised", "yuelu/c12/b3"): {"building", "fire"},
    ("gateway-silent", "cleared", "yuelu/c12/b3"): {"building", "fire"},
}
DEPARTMENTS = sorted({d for ds in CITY_EXPECTED.values() for d in ds})


def pairs_of(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(a["id"], a["status"]) for a in alerts}


def describe(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> str:
    """The alerts only one side has, as readable lines."""
    want, have = pairs_of(expected), pairs_of(got)
    lines = [
        f"missing {a['reflex']} {a['status']} {a['group']} ts={a['ts']:.3f} {a['id']}"
        for a in expected
        if (a["id"], a["status"]) not in have
    ]
    lines += [
        f"extra   {a['reflex']} {a['status']} {a['group']} ts={a['ts']:.3f} {a['id']}"
        for a in got
        if (a["id"], a["status"]) not in want
    ]
    return "\n".join(lines)


async def test_city_patterns_reach_their_departments_and_match_the_replay(
    city: City, watch: AlertWatch
) -> None:
    rules = fast_city(city.tmp)
    await city.start("w1", rules)
    ev = city.event
    readings: list[tuple[str, str, str, Any, dict[str, Any]]] = [
        # gas-leak-cluster: gas in 3 buildings of c12 (each room also trips the edge-only gas-leak-room)
        ("yuelu/c12/b1/f1/r101", "gas-b1-r101", "gas", 14, {"unit": "%LEL"}),
        ("yuelu/c12/b2/f1/r103", "gas-b2-r103", "gas", 11, {"unit": "%LEL"}),
        ("yuelu/c12/b5/f2/r204", "gas-b5-r204", "gas", 18, {"unit": "%LEL"}),
        # community-power-outage: mains lost in 3 buildings of c14 (bool and 0/1 monitors)
        ("yuelu/c14/b1", "mains-c14-b1", "power", False, {}),
        ("yuelu/c14/b2", "mains-c14-b2", "power", 0, {}),
        ("yuelu/c14/b4", "mains-c14-b4", "power", False, {}),
        # power-flapping: one building loses mains 3 times
        ("yuelu/c15/b1", "mains-c15-b1", "power", False, {}),
        ("yuelu/c15/b1", "mains-c15-b1", "power", True, {}),
        ("yuelu/c15/b1", "mains-c15-b1", "power", 0, {}),
        ("yuelu/c15/b1", "mains-c15-b1", "power", 1, {}),
        ("yuelu/c15/b1", "mains-c15-b1", "power", False, {}),
        # river-level-rise: +55 cm on one gauge
        (
            "yuelu/riverside/xiang-east",
            "gauge-xiang-3",
            "water_level",
            120,
            {"unit": "cm", "tags": {"gauge": "river"}},
        ),
        (
            "yuelu/riverside/xiang-east",
            "gauge-xiang-3",
            "water_level",
            175,
            {"unit": "cm", "tags": {"gauge": "river"}},
        ),
        # water-main-pressure-drop: -1.6 bar on one logger
        ("yuelu/c12/main-7", "press-main-7", "water_pressure", 4.2, {"unit": "bar"}),
        ("yuelu/c12/main-7", "press-main-7", "water_pressure", 4.1, {"unit": "bar"}),
        ("yuelu/c12/main-7", "press-main-7", "water_pressure", 2.6, {"unit": "bar"}),
        # station-crowding: 650 entries through the gates of one station
        ("yuelu/c20/metro-3/gate-a", "gate-m3-a", "people_in", 250, {}),
        ("yuelu/c20/metro-3/gate-b", "gate-m3-b", "people_in", 200, {}),
        ("yuelu/c20/metro-3/gate-a", "gate-m3-a", "people_in", 200, {}),
        # air-quality-pm25: three monitors of c05 average 76 µg/m³
        ("yuelu/c05/aq-school", "aq-c05-1", "pm25", 70, {"unit": "ug/m3"}),
        ("yuelu/c05/aq-market", "aq-c05-2", "pm25", 80, {"unit": "ug/m3"}),
        ("yuelu/c05/aq-park", "aq-c05-3", "pm25", 78, {"unit": "ug/m3"}),
        # care-home-cold: the warmest reading of the hour (the only one) is 13.5 °C
        (
            "yuelu/c07/b2/f1/r108",
            "temp-ch-r108",
            "temperature",
            13.5,
            {"unit": "Cel", "tags": {"use": "care_home"}},
        ),
        # elevator-entrapment starts (stuck for 2 s → raised, 3 s unacknowledged → escalated, 4 s → cleared)
        ("yuelu/c12/b3/shaft-1", "lift-b3-1", "elevator", "stuck", {}),
        # gateway-silent: a heartbeat, then 3 s of silence
        ("yuelu/c12/b3", "gw-b3", "heartbeat", True, {}),
    ]
    for site, sensor, kind, value, fields in readings:
        await city.send_in_order(ev(site, sensor, kind, value, **fields))  # event time = when it is sent
    stuck, beat = city.sent[-2:]
    await until_wall(stuck["ts"] + 1.0)
    await city.send_in_order(ev("yuelu/c12/b3/shaft-1", "lift-b3-1", "elevator", "stuck"))
    await until_wall(stuck["ts"] + 2.1)
    await city.send_in_order(ev("yuelu/c12/b3/shaft-1", "lift-b3-1", "elevator", "stuck"))
    await wait_for(watch.has(reflex="elevator-entrapment", status="raised"), 10, "the lift's raised alert")
    # The gateway comes back after more than 3 s: its heartbeat proves the silence, then clears it 2 s later.
    await until_wall(beat["ts"] + 4.0)
    await city.send_in_order(ev("yuelu/c12/b3", "gw-b3", "heartbeat", True))

    # past every timer these events set (the gateway's 30 min reminder aside)
    until = city.sent[-1]["ts"] + 3.5
    expected = city.replay(rules, city.sent, until)
    assert {(a["reflex"], a["status"], a["group"]) for a in expected} == set(CITY_EXPECTED)

    # Once the live watermark has passed `until`, every timer up to it has fired in the brain as well.
    await wait_for(
        lambda: time.time() > until + CITY_DELAY + 1.0, 30, "the watermark to pass the replay's end"
    )
    await wait_for(
        lambda: pairs_of(watch.on()) >= pairs_of(expected),
        10,
        "every replayed alert",
        detail=lambda: describe(expected, watch.on()),
    )
    assert pairs_of(watch.on()) == pairs_of(expected), "tier parity: the brain and the replay differ"
    assert all(a["tier"] == "brain" for a in watch.on()), "an edge reflex ran in the brain"

    for department in DEPARTMENTS:
        want = {key for key, departments in CITY_EXPECTED.items() if department in departments}
        got = {(a["reflex"], a["status"], a["group"]) for a in watch.on(department)}
        assert got == want, f"alerts.{department}"
    by_key = {(a["reflex"], a["status"], a["group"]): a for a in watch.on()}
    replayed = {(a["id"], a["status"]): a for a in expected}
    for a in by_key.values():
        twin = replayed[(a["id"], a["status"])]
        for name in (
            "reflex",
            "severity",
            "departments",
            "site",
            "group",
            "message",
            "ts",
            "evidence",
            "first_event_ts",
        ):
            assert a[name] == twin[name], f"{a['reflex']} {a['status']}: {name}"
    # The timer-driven alerts carry their due time, not the time the watermark passed it.
    raised = by_key[("elevator-entrapment", "raised", "lift-b3-1")]
    assert by_key[("elevator-entrapment", "escalated", "lift-b3-1")]["ts"] == pytest.approx(
        raised["ts"] + 3.0
    )
    assert by_key[("elevator-entrapment", "cleared", "lift-b3-1")]["ts"] == pytest.approx(raised["ts"] + 4.0)


FAILOVER_RULES = """\
version: 1
reflexes:
  - id: busy-community
    tier: brain
    when: {kind: footfall, count: ">= 4"}
    within: 1s
    per: community
    cooldown: 1s
    then:
      - alert: {to: [transport], severity: info, message: "Busy {site}"}
  - id: crowded-rooms
    tier: brain
    when: {kind: footfall, distinct: room, count: ">= 3"}
    within: 2s
    per: community
    cooldown: 2s
    then:
      - alert: {to: [police], severity: info, message: "Crowded rooms in {site}"}
  - id: long-busy
    tier: brain
    when: {kind: footfall, count: ">= 30"}
    within: 8s
    per: community
    cooldown: 8s
    then:
      - alert: {to: [transport, police], severity: warning, message: "Busy for long in {site}"}
  - id: marker
    tier: brain
    when: {kind: marker}
    per: community
    then:
      - alert: {to: [ops], severity: info, message: "end of stream in {site}"}
"""
COMMUNITIES = 8


def same_but_emitted_at(records: list[dict[str, Any]]) -> bool:
    """Whether every record with one (id, status) is the same alert (only `emitted_at` may differ)."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for a in records:
        body = {k: v for k, v in a.items() if k != "emitted_at"}
        if first.setdefault((a["id"], a["status"]), body) != body:
            return False
    return True


async def test_a_killed_worker_loses_no_alert(city: City, watch: AlertWatch) -> None:
    rules = [city.write_rules("failover.yaml", FAILOVER_RULES)]
    first = city.worker("a", rules)
    second = city.worker("b", rules)
    first.start()
    await first.ready()
    second.start()
    await second.ready()
    changelog = f"{city.app_id}-engine-state-changelog"
    await wait_for(
        lambda: bool(first.assigned(changelog)) and bool(second.assigned(changelog)),
        20,
        "both workers to own partitions of the engine's table",
        detail=lambda: (first.assigned(changelog), second.assigned(changelog)),
    )
    # Each community's readings come from one building (one partition of <prefix>events, in order), from
    # five rooms in turn; the brain re-keys them by community.
    started = time.time()
    for step in range(75):  # 15 s, 8 readings every 0.2 s
        await until_wall(started + step * 0.2)
        await city.send(
            *(
                city.event(f"yuelu/c{c}/b1/f1/r{step % 5}", f"gate-c{c}-r{step % 5}", "footfall", 1)
                for c in range(COMMUNITIES)
            )
        )
        if step == 30:
            first.kill()  # mid-stream, without shutdown, commit or flush
            killed_at = time.time()
            survivor_log_from = len(second.log())
    await city.send(*(city.event(f"yuelu/c{c}/b1", f"end-c{c}", "marker", True) for c in range(COMMUNITIES)))
    expected = city.replay(rules, city.sent, city.sent[-1]["ts"])
    assert len(expected) > 100

    # The markers come last in every partition: once all are out, the survivor has handled every reading.
    await wait_for(
        lambda: len(watch.find(reflex="marker")) >= COMMUNITIES,
        60,
        "the end-of-stream markers from the survivor",
        detail=lambda: second.log()[-3000:],
    )
    recovered = time.time() - killed_at
    assert second.running
    # The survivor took every partition over and read the table's changelog for the ones it gained.
    after_kill = second.log()[survivor_log_from:]
    assert second.assigned(changelog) == {0, 1, 2, 3}, after_kill[-3000:]
    assert "Restoring state from changelog topics" in after_kill, after_kill[-3000:]
    if pairs_of(watch.on()) != pairs_of(expected):  # keep the evidence for a post-mortem
        await second.stop()  # a clean stop commits everything the survivor acknowledged
        inputs = [city.topic("events"), f"{city.app_id}-events-by-level1"]
        stuck = await lagging_commits(city.kafka, city.app_id, inputs)
        evidence = {"sent": city.sent, "expected": expected, "got": watch.on(), "killed_at": killed_at}
        (city.tmp / "failover-evidence.json").write_bytes(orjson.dumps(evidence))
        raise AssertionError(
            f"{describe(expected, watch.on())}\ncommits short of the end after a clean stop (records read but"
            f" never handled, e.g. dropped by Faust when its recovery resumes the flow): {stuck}\n"
            + "\n".join(
                line for line in second.log().splitlines() if "never reached the brain from Faust" in line
            )
        )
    assert same_but_emitted_at(watch.on()), "two different alerts share an (id, status)"
    repeats = sum(watch.pairs().values()) - len(watch.pairs())
    # how often brain_bridge/recovery_watch.py had to re-read a changelog partition (Faust lost its records)
    rereads = after_kill.count("stalled: the consumer read up to")
    print(
        f"failover: {len(expected)} alerts, {repeats} repeated records, killed at +{killed_at - started:.1f}s,"
        f" every partition handled {recovered:.1f}s after the kill, {rereads} stalled changelog restores re-read"
    )

    # A department that drops repeated (id, status) pairs sees every one of its alerts exactly once.
    for department in ("transport", "police"):
        want = pairs_of([a for a in expected if department in a["departments"]])
        seen: list[tuple[str, str]] = []
        async with AlertFeed(city.kafka, department, prefix=city.prefix, from_beginning=True) as feed:
            async with asyncio.timeout(30):
                async for alert in feed:
                    seen.append((alert.id, alert.status))
                    if len(seen) == len(want):
                        break
        assert len(seen) == len(set(seen)) and set(seen) == want, department


RESTART_RULES = """\
version: 1
lateness: 500ms
reflexes:
  - id: gas-cluster
    tier: brain
    when: {kind: gas, value: ">= 10", distinct: building, count: ">= 3"}
    within: 2m
    per: community
    then:
      - alert: {to: [utilities], severity: emergency, message: "Gas in several buildings of {site}"}
  - id: gateway-quiet
    tier: brain
    when:
      absent: {kind: heartbeat, sensor: "gw-*"}
      for: 15s
    per: building
    then:
      - alert: {to: [building], severity: critical, message: "Gateway of {site} silent"}
"""
RESTART_DELAY = 0.5 + 0.3  # the rule set's lateness + the workers' lateness margin, seconds


async def test_a_restarted_worker_completes_its_window_and_fires_its_timer_on_time(
    city: City, watch: AlertWatch
) -> None:
    rules = [city.write_rules("restart.yaml", RESTART_RULES)]
    worker = await city.start("w1", rules)
    ev = city.event
    first = [ev("yuelu/c1/b1/f1/r101", "gas-b1", "gas", 14), ev("yuelu/c1/b2/f3/r301", "gas-b2", "gas", 12)]
    beat = ev("yuelu/c2/b7", "gw-b7", "heartbeat", True)
    await city.send_in_order(*first, beat)
    due = beat["ts"] + 15.0

    async def applied() -> bool:
        state = await table_state(city.kafka, city.app_id)
        cluster = group_state(state, "gas-cluster", "yuelu/c1")
        return bool(
            cluster and window_size(cluster) == 2 and group_state(state, "gateway-quiet", "yuelu/c2/b7")
        )

    deadline = time.monotonic() + 15
    # The half window and the timer are in the changelog: the restart must keep them.
    while not await applied():
        assert time.monotonic() < deadline, (
            f"the first events never reached the engine's table: {await table_state(city.kafka, city.app_id)}"
        )
    assert await worker.stop() == 0, worker.log()[-3000:]

    worker.start()  # same worker name, config and datadir
    await worker.ready()
    restarted = time.time()
    assert restarted < due - 1.0, "the restart took too long for this test to see the timer fire after it"
    assert not watch.on(), "an alert before the window was complete or the silence was long enough"

    last = ev("yuelu/c1/b5/f2/r201", "gas-b5", "gas", 18)
    await city.send_in_order(last)
    await wait_for(watch.has(reflex="gas-cluster"), 10, "the window completed after the restart")
    [cluster] = watch.find(reflex="gas-cluster")
    assert cluster["evidence"] == [e["id"] for e in (*first, last)]
    assert cluster["first_event_ts"] == first[0]["ts"]
    assert cluster["ts"] == last["ts"]

    await wait_for(
        watch.has(reflex="gateway-quiet"), due + RESTART_DELAY + 10 - time.time(), "the silence alert"
    )
    [silent] = watch.find(reflex="gateway-quiet")
    assert silent["ts"] == pytest.approx(due), "the silence alert carries the timer's due time"
    arrived = watch.received_at(silent["id"], "raised")
    assert due + RESTART_DELAY - 0.1 <= arrived <= due + RESTART_DELAY + 4.0, (
        f"the silence was reported {arrived - due:+.2f}s after it was due"
    )
    assert sum(watch.pairs().values()) == 2, watch.on()
    assert "Traceback" not in worker.log()


DUPLICATE_RULES = """\
version: 1
lateness: 1s
reflexes:
  - id: dup-count
    tier: brain
    when: {kind: footfall, count: ">= 3"}
    within: 10s
    per: building
    cooldown: 1m
    then: [{alert: {to: [transport], severity: info, message: "count {site}"}}]
  - id: dup-distinct
    tier: brain
    when: {kind: gas, value: ">= 10", distinct: building, count: ">= 2"}
    within: 10s
    per: community
    then: [{alert: {to: [utilities], severity: critical, message: "distinct {site}"}}]
  - id: dup-avg
    tier: brain
    when: {kind: pm25, avg: "> 75"}
    within: 10s
    per: community
    then: [{alert: {to: [environment], severity: warning, message: "avg {site}"}}]
  - id: dup-rise
    tier: brain
    when: {kind: water_level, rise: ">= 50"}
    within: 10s
    then: [{alert: {to: [environment], severity: critical, message: "rise {sensor}"}}]
  - id: dup-all
    tier: brain
    when:
      all:
        - {kind: smoke, value: "> 0.15"}
        - {kind: temperature, value: "> 57"}
    within: 10s
    per: room
    then: [{alert: {to: [fire], severity: emergency, message: "all {site}"}}]
  - id: dup-sequence
    tier: brain
    when:
      sequence:
        - {kind: badge, value: "== 'denied'"}
        - {kind: door, value: "== 'open'"}
    within: 10s
    per: room
    then: [{alert: {to: [police], severity: critical, message: "sequence {site}"}}]
  - id: dup-for
    tier: brain
    when: {kind: elevator, value: "== 'stuck'", for: 1s}
    then:
      - alert: {to: [building], severity: critical, message: "for {sensor}"}
      - escalate: {after: 2s, to: [fire]}
      - clear: {after: 2s}
  - id: dup-single
    tier: brain
    when: {kind: alarm, value: "== true"}
    per: building
    then: [{alert: {to: [police], severity: warning, message: "single {site}"}}]
  - id: dup-absent
    tier: brain
    when:
      absent: {kind: heartbeat}
      for: 2s
    per: building
    then:
      - alert: {to: [building], severity: warning, message: "absent {site}"}
      - clear: {after: 1s}
"""


async def test_every_event_twice_raises_every_alert_once(city: City, watch: AlertWatch) -> None:
    rules = [city.write_rules("duplicates.yaml", DUPLICATE_RULES)]
    # No first filter of recent ids: the engine's own idempotence is what a restarted worker relies on.
    await city.start("w1", rules, dedup_window=0)
    ev = city.event

    async def twice(*events: dict[str, Any]) -> None:
        for e in events:
            await city.send_in_order(e)
            await city.send(e, record=False)

    for reading in [
        ("yuelu/c1/b1/gate", "gate-1", "footfall", 1),
        ("yuelu/c1/b1/gate", "gate-1", "footfall", 1),
        ("yuelu/c1/b1/gate", "gate-1", "footfall", 1),
        ("yuelu/c2/b1/f1/r1", "gas-c2-b1", "gas", 12),
        ("yuelu/c2/b2/f1/r1", "gas-c2-b2", "gas", 15),
        ("yuelu/c3/aq-1", "aq-1", "pm25", 70),
        ("yuelu/c3/aq-2", "aq-2", "pm25", 90),
        ("yuelu/c4/river", "gauge-4", "water_level", 100),
        ("yuelu/c4/river", "gauge-4", "water_level", 160),
        ("yuelu/c5/b1/f1/r1", "smoke-5", "smoke", 0.3),
        ("yuelu/c5/b1/f1/r1", "heat-5", "temperature", 70),
        ("yuelu/c6/b1/f1/r1", "badge-6", "badge", "denied"),
        ("yuelu/c6/b1/f1/r1", "door-6", "door", "open"),
        ("yuelu/c7/b1", "alarm-7", "alarm", True),
        ("yuelu/c7/b1", "alarm-7", "alarm", True),
        ("yuelu/c8/b1/shaft", "lift-8", "elevator", "stuck"),
        ("yuelu/c9/b1", "gw-9", "heartbeat", True),
    ]:
        await twice(ev(*reading))  # event time = when it is sent
    stuck, beat = city.sent[-2:]
    await until_wall(stuck["ts"] + 1.1)
    await twice(ev("yuelu/c8/b1/shaft", "lift-8", "elevator", "stuck"))  # stuck for 1 s: raised
    await until_wall(beat["ts"] + 2.5)
    await twice(ev("yuelu/c9/b1", "gw-9", "heartbeat", True))  # after 2 s of silence: raised, then cleared

    until = city.sent[-1]["ts"] + 4.0  # past the lift's escalation and clear and the gateway's clear
    expected = city.replay(rules, city.sent, until)
    assert {a["reflex"] for a in expected} == {
        "dup-count",
        "dup-distinct",
        "dup-avg",
        "dup-rise",
        "dup-all",
        "dup-sequence",
        "dup-for",
        "dup-single",
        "dup-absent",
    }
    assert {a["status"] for a in expected} == {"raised", "escalated", "cleared"}
    await wait_for(
        lambda: time.time() > until + 1.0 + 0.3 + 1.0, 30, "the watermark to pass the replay's end"
    )
    await wait_for(
        lambda: pairs_of(watch.on()) >= pairs_of(expected),
        10,
        "every replayed alert",
        detail=lambda: describe(expected, watch.on()),
    )
    assert pairs_of(watch.on()) == pairs_of(expected), describe(expected, watch.on())
    repeated = {pair: n for pair, n in watch.pairs().items() if n > 1}
    assert not repeated, f"alerts raised more than once: {repeated}"


RELOAD_RULES = """\
version: 1
lateness: 500ms
reflexes:
  - id: hot-room
    tier: brain
    when: {kind: temperature, value: "> THRESHOLD"}
    per: room
    cooldown: 1m
    then:
      - alert: {to: [building], severity: warning, message: "Hot room {site}: {value} °C"}
  - id: gas-cluster
    tier: brain
    when: {kind: gas, value: ">= 10", distinct: building, count: ">= 3"}
    within: 2m
    per: community
    then:
      - alert: {to: [utilities], severity: emergency, message: "Gas in several buildings of {site}"}
"""


async def test_a_deployed_rule_set_takes_over_within_seconds_and_a_broken_one_is_refused(
    city: City, watch: AlertWatch
) -> None:
    rules_a = city.write_rules("a.yaml", RELOAD_RULES.replace("THRESHOLD", "50"))
    (city.tmp / "b").mkdir()
    rules_b = city.write_rules("b/city.yaml", RELOAD_RULES.replace("THRESHOLD", "40"))
    (city.tmp / "broken").mkdir()
    broken = city.write_rules(
        "broken/city.yaml", RELOAD_RULES.replace("THRESHOLD", "40") + "  - {id: [oops\n"
    )
    worker = await city.start("w1", [rules_a])
    ev = city.event

    # Half of gas-cluster's window, applied under rule set A.
    first = [ev("yuelu/c9/b1/f1/r1", "gas-c9-b1", "gas", 14), ev("yuelu/c9/b2/f1/r1", "gas-c9-b2", "gas", 12)]
    await city.send_in_order(*first)

    async def half_window() -> bool:
        cluster = group_state(await table_state(city.kafka, city.app_id), "gas-cluster", "yuelu/c9")
        return bool(cluster and window_size(cluster) == 2)

    deadline = time.monotonic() + 15
    while not await half_window():
        assert time.monotonic() < deadline, "the first gas readings never reached the engine's table"

    # A steady 45 °C in one room: too cool for A (> 50), hot for B (> 40).
    async def steady(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await city.send(ev("yuelu/c3/b1/f1/r1", "temp-r1", "temperature", 45))
            await asyncio.sleep(0.2)

    stop = asyncio.Event()
    flow = asyncio.create_task(steady(stop))
    try:
        await until_wall(time.time() + 1.5)
        assert not watch.find(reflex="hot-room"), "rule set A alerted on 45 °C"
        deployed = city.deploy(rules_b)
        returned = time.time()
        assert deployed.returncode == 0, deployed.stderr
        assert "version 1" in deployed.stdout
        await wait_for(watch.has(reflex="hot-room"), 5.0, "an alert that only rule set B raises")
        took = watch.received_at(watch.find(reflex="hot-room")[0]["id"], "raised") - returned
        assert "rules version 1 received (2 brain reflexes" in worker.log()
    finally:
        stop.set()
        await flow
    print(f"hot reload: B in force {took:.2f}s after `nerve rules deploy` returned")

    # gas-cluster did not change: its half window survived the reload and completes now.
    last = ev("yuelu/c9/b5/f1/r1", "gas-c9-b5", "gas", 18)
    await city.send_in_order(last)
    await wait_for(watch.has(reflex="gas-cluster"), 10, "the window filled before the reload to complete")
    [cluster] = watch.find(reflex="gas-cluster")
    assert cluster["evidence"] == [e["id"] for e in (*first, last)]
    assert cluster["first_event_ts"] == first[0]["ts"]

    # A rule set that does not parse is refused before anything reaches <prefix>rules.
    before = await topic_size(city.kafka, city.topic("rules"))
    refused = city.deploy(broken)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not deployed" in refused.stderr
    assert str(broken) in refused.stderr, "the error names the file"
    assert await topic_size(city.kafka, city.topic("rules")) == before == 1
    # … and the worker keeps running rule set B.
    await city.send_in_order(ev("yuelu/c3/b1/f1/r2", "temp-r2", "temperature", 45))
    await wait_for(watch.has(reflex="hot-room", group="yuelu/c3/b1/f1/r2"), 10, "rule set B still in force")
    assert worker.running
    assert "rules version 2" not in worker.log()
    assert "Traceback" not in worker.log()


ACK_RULES = """\
version: 1
lateness: 500ms
reflexes:
  - id: lift-alarm
    tier: brain
    when: {kind: lift_alarm, value: "== true"}
    per: building
    then:
      - alert: {to: [building], severity: critical, message: "Lift alarm in {site}"}
      - escalate: {after: 4s, to: [fire]}
"""


async def test_an_acknowledged_alert_is_not_escalated(city: City, watch: AlertWatch) -> None:
    rules = [city.write_rules("ack.yaml", ACK_RULES)]
    await city.start("w1", rules)
    acked, ignored = "yuelu/c1/b1", "yuelu/c1/b2"
    await city.send(
        city.event(acked, "alarm-b1", "lift_alarm", True), city.event(ignored, "alarm-b2", "lift_alarm", True)
    )
    await wait_for(lambda: len(watch.find(status="raised")) == 2, 10, "both raised alerts")
    [raised] = watch.find(group=acked, status="raised")
    ack = Ack.from_dict({"alert_id": raised["id"], "by": "lift-contractor", "ts": time.time()})
    await city.produce(city.topic("acks"), ack.to_json(), key=raised["id"].encode())
    acked_at = time.time()

    await wait_for(watch.has(group=ignored, status="escalated"), 10, "the unacknowledged alert's escalation")
    [escalated] = watch.find(group=ignored, status="escalated")
    assert escalated["departments"] == ["building", "fire"]
    await until_wall(max(acked_at + 5.0, raised["ts"] + 4.0 + RESTART_DELAY + 1.0))
    assert not watch.find(group=acked, status="escalated"), "escalated although acknowledged"
