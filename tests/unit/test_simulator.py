"""The city simulator: its model, the topics and payloads a gateway decodes, the traffic stream, and the
key property — every scenario, replayed through the real engine with examples/city, raises exactly the
alerts it promises, alone and amid background traffic (which on its own raises none)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.config import EdgeConfig
from edge_agent.ingest import Decoder, Rejected
from nerve_cli import simulate_cmd
from reflexes import Engine, RuleSet, load_rules
from schemas import Alert, Scalar, SensorEvent
from simulator import (
    DEFAULT_TOPIC_ROOT,
    City,
    CityShape,
    ExpectedAlert,
    Injection,
    MemoryPublisher,
    Message,
    Published,
    Scenario,
    Simulator,
    Traffic,
    all_scenarios,
    build_city,
    gateway_config,
    gateway_subscriptions,
    parse,
    scenario,
)
from simulator.city import topic_root, topic_roots
from simulator.readings import normal_value, tags_of
from simulator.scenarios import BUILDERS, GATEWAY_HEARTBEAT_S

CITY_RULES = Path(__file__).resolve().parents[2] / "examples" / "city"
DAY = 1_767_225_600.0  # 2026-01-01 00:00 UTC: 08:00 in Changsha, buildings open
NIGHT = DAY + 15 * 3600.0  # 23:00 local, buildings closed
CITY = build_city()


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules([CITY_RULES])


def decoders(city: City, template: str = DEFAULT_TOPIC_ROOT) -> dict[str, Decoder]:
    """One Decoder per building, configured with the subscriptions the simulator generates."""
    with pytest.MonkeyPatch.context() as env:  # the environment must not leak into the configs
        for name in list(os.environ):
            if name.upper().startswith("NERVE_EDGE_"):
                env.delenv(name)
        return {b.path: Decoder(EdgeConfig(**gateway_config(b, template))) for b in city.buildings}


def heartbeats(traffic: Traffic, start: float, end: float) -> list[SensorEvent]:
    """What the gateway agents would add: a heartbeat per building every 10 s, none while silenced."""
    beats: list[SensorEvent] = []
    for n, building in enumerate(traffic.city.buildings):
        ts = start + n * 0.5  # gateways do not beat in step
        while ts < end:
            if not traffic.silenced(building.path, ts):
                beats.append(
                    SensorEvent(site=building.path, sensor=building.gateway, kind="heartbeat", value=1, ts=ts)
                )
            ts += GATEWAY_HEARTBEAT_S
    return beats


def run_engine(rules: RuleSet, events: Iterable[SensorEvent], until: float) -> list[Alert]:
    """Both tiers over `events` in event-time order, then the watermark moved to `until`."""
    engine = Engine(rules, tier="all")
    out: list[Any] = []
    for event in sorted(events, key=lambda e: e.ts):
        out.extend(engine.process(event))
    out.extend(engine.advance(until))
    assert engine.late == 0
    return [o for o in out if isinstance(o, Alert)]


def assert_exactly(alerts: list[Alert], injections: list[Injection]) -> None:
    """The alerts are exactly the injections' expected ones, each at its time (within its tolerance)."""
    got = Counter((a.reflex, a.tier, a.group, a.status) for a in alerts)
    want = Counter((e.reflex, e.tier, e.group, e.status) for i in injections for e in i.expected)
    assert got == want
    for injection in injections:
        for expected in injection.expected:
            (alert,) = [
                a
                for a in alerts
                if (a.reflex, a.tier, a.group, a.status)
                == (expected.reflex, expected.tier, expected.group, expected.status)
            ]
            offset = alert.ts - injection.start_ts
            assert abs(offset - expected.after_s) <= expected.tolerance_s, (expected, offset)


# ------------------------------------------------------------------ the city model


def test_default_city_is_small_and_complete() -> None:
    assert [b.path for b in CITY.buildings[:5]] == [
        "yuelu/c1/b1",
        "yuelu/c1/b2",
        "yuelu/c1/b3",
        "yuelu/c1/b4",
        "yuelu/c2/b1",
    ]
    assert len(CITY.buildings) == 12
    assert CITY.communities == ["yuelu/c1", "yuelu/c2", "yuelu/c3"]
    b = CITY.building("yuelu/c1/b2")
    assert len(b.rooms) == 12
    assert b.rooms[0] == "yuelu/c1/b2/f1/r101"
    assert b.gateway == "gw-yuelu-c1-b2"
    sensors = CITY.sensors
    assert len({s.id for s in sensors}) == len(sensors) == 12 * (12 * 6 + 5)
    assert {s.kind for s in sensors} == {
        "smoke",
        "temperature",
        "gas",
        "motion",
        "door",
        "badge",
        "elevator",
        "pm25",
        "water_level",
        "power",
    }
    flood = b.sensor("water_level", "fb1/pump-room")
    assert flood.site == "yuelu/c1/b2/fb1/pump-room"
    assert dict(flood.tags) == {"gauge": "floor"}
    assert b.sensor("power").site == "yuelu/c1/b2"
    assert b.sensor("elevator", "shaft-1").site == "yuelu/c1/b2/shaft-1"
    assert b.sensor("smoke", "stair-a").site == "yuelu/c1/b2/stair-a"
    assert b.heartbeat.id == "gw-yuelu-c1-b2"
    assert b.heartbeat not in b.sensors  # the gateway agent beats, not the simulator


def test_city_is_deterministic_for_a_seed() -> None:
    assert build_city(seed=3) == build_city(seed=3)
    assert build_city(seed=3) != build_city(seed=4)  # per-sensor offsets and meter types
    bigger = build_city(
        CityShape(districts=("yuelu", "tianxin"), communities=2, buildings=3, floors=2, rooms=2)
    )
    assert len(bigger.buildings) == 12
    assert bigger.buildings[-1].path == "tianxin/c2/b3"
    assert len({s.id for s in bigger.sensors}) == len(bigger.sensors)


def test_city_schedule_follows_local_opening_hours() -> None:
    b = CITY.buildings[0]
    assert b.local_hour(DAY) == pytest.approx(8.0)
    assert b.schedule(DAY) == "open"
    assert b.schedule(NIGHT) == "closed"
    assert b.schedule(DAY - 3600.0 - 1) == "closed"  # 06:59:59 local
    assert b.schedule(DAY + 14 * 3600.0 - 1) == "open"  # 21:59:59 local


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"communities": 0}, "communities must be 1–999"),
        ({"districts": ()}, "districts must be distinct"),
        ({"districts": ("a/b",)}, "not a district name"),
        ({"opening_hours": (22, 7)}, "opening_hours"),
    ],
)
def test_city_shape_is_validated(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CityShape(**changes)


def test_lookups_name_close_matches() -> None:
    with pytest.raises(ValueError, match=r"no building 'yuelu/c1/b9'.*did you mean"):
        CITY.building("yuelu/c1/b9")
    with pytest.raises(ValueError, match=r"no community 'yuelu/c7'.*did you mean"):
        CITY.community("yuelu/c7")
    assert CITY.building("yuelu/c2/b3/f1/r101").path == "yuelu/c2/b3"


def test_topic_roots_are_validated_and_distinct() -> None:
    b = CITY.building("yuelu/c1/b2")
    assert topic_root(b) == "city/yuelu/c1/b2"
    assert topic_root(b, "sim/{building_path}") == "sim/yuelu/c1/b2"
    assert topic_root(b, "{gateway}") == "gw-yuelu-c1-b2"
    with pytest.raises(ValueError, match=r"unknown placeholder \{floor\}"):
        topic_root(b, "city/{floor}")
    with pytest.raises(ValueError, match="without"):
        topic_root(b, "city/+")
    with pytest.raises(ValueError, match="its own root"):
        topic_roots(CITY, "city/{district}")
    assert gateway_subscriptions(b) == [
        "city/yuelu/c1/b2/sensors/+floor/+room/+sensor/+kind",
        "city/yuelu/c1/b2/sensors/+floor/+sensor/+kind",
        "city/yuelu/c1/b2/meters/+sensor/+kind",
    ]


# ------------------------------------------------------------------ topics and payloads on a gateway


def one_per_sensor(city: City, template: str = DEFAULT_TOPIC_ROOT, start: float = DAY) -> list[Message]:
    traffic = Traffic(city, start_ts=start, rate=1000.0, seed=5, topic_root=template, bad_rate=0.0)
    messages = traffic.until(start + (len(city.sensors) - 1) / 1000.0)
    assert len(messages) == len(city.sensors)
    return messages


@pytest.mark.parametrize("template", [DEFAULT_TOPIC_ROOT, "sim/{building_path}", "nerve/{gateway}"])
def test_every_sensor_decodes_on_its_gateway(template: str) -> None:
    gateways = decoders(CITY, template)
    messages = one_per_sensor(CITY, template)
    assert {m.sensor.id for m in messages} == {s.id for s in CITY.sensors}
    for m in messages:
        (event,) = gateways[m.sensor.building].decode(m.topic, m.payload, m.due + 0.01)
        sensor = m.sensor
        assert (event.site, event.sensor, event.kind) == (sensor.site, sensor.id, sensor.kind)
        assert event.value == m.value and type(event.value) is type(m.value)
        assert event.ts == m.due  # the sensor's time, not the gateway's receipt time
        assert event.unit == sensor.unit
        assert event.id == m.event_id  # so a host can match alert evidence to publish records
        expected_tags = dict(sensor.tags) | ({"schedule": "open"} if sensor.kind == "door" else {})
        assert event.tags == expected_tags


def test_payloads_are_spec_events_without_site_sensor_kind() -> None:
    for m in one_per_sensor(CITY):
        body = orjson.loads(m.payload)
        assert set(body) <= {"value", "ts", "unit", "tags"}
        assert {"value", "ts"} <= set(body)


def test_a_gateway_takes_only_its_own_building() -> None:
    gateways = decoders(CITY)
    for m in one_per_sensor(CITY)[:50]:
        other = next(p for p in gateways if p != m.sensor.building)
        with pytest.raises(Rejected, match="matches no subscription"):
            gateways[other].decode(m.topic, m.payload, DAY)


def test_bad_payloads_are_dead_lettered_and_good_ones_decode() -> None:
    gateways = decoders(CITY)
    traffic = Traffic(CITY, start_ts=DAY, rate=500.0, seed=2, bad_rate=0.2)
    messages = traffic.until(DAY + 10)
    bad = Counter(m.bad for m in messages if m.bad)
    assert set(bad) == {"malformed", "nan"}
    assert 0.15 < sum(bad.values()) / len(messages) < 0.25
    for m in messages:
        decoder = gateways[m.sensor.building]
        if m.bad is None:
            assert decoder.decode(m.topic, m.payload, DAY)[0].id == m.event_id
        else:
            with pytest.raises(Rejected, match="NaN is not allowed" if m.bad == "nan" else "not valid JSON"):
                decoder.decode(m.topic, m.payload, DAY)


def test_gateway_config_is_a_valid_edge_config() -> None:
    b = CITY.building("yuelu/c3/b4")
    config = EdgeConfig(**gateway_config(b, rules=[str(CITY_RULES)], port=1884, heartbeat_s=5.0))
    assert config.gateway == "gw-yuelu-c3-b4" and config.site == "yuelu/c3/b4"
    assert config.mqtt.port == 1884 and config.heartbeat_s == 5.0
    assert Decoder(config).filters == [
        "city/yuelu/c3/b4/sensors/+/+/+/+",
        "city/yuelu/c3/b4/sensors/+/+/+",
        "city/yuelu/c3/b4/meters/+/+",
    ]


# ------------------------------------------------------------------ the traffic stream


def test_traffic_keeps_the_rate_and_event_time_order() -> None:
    traffic = Traffic(CITY, start_ts=DAY, rate=200.0, seed=1)
    first = traffic.until(DAY + 5)
    second = traffic.until(DAY + 10)
    assert len(first) == 1001 and len(second) == 1000
    dues = [m.due for m in first + second]
    assert dues == sorted(dues)
    assert traffic.until(DAY + 10) == []
    assert traffic.next_due == pytest.approx(DAY + 10.005)


def test_traffic_is_deterministic_for_a_seed() -> None:
    def payloads(seed: int) -> list[tuple[str, bytes]]:
        traffic = Traffic(CITY, start_ts=DAY, rate=300.0, seed=seed, bad_rate=0.01)
        traffic.inject(scenario(CITY, "fire", "yuelu/c1/b1"), DAY + 1)
        return [(m.topic, m.payload) for m in traffic.until(DAY + 30)]

    assert payloads(9) == payloads(9)
    assert payloads(9) != payloads(10)


def test_scenario_sensors_are_taken_over_for_its_span() -> None:
    traffic = Traffic(CITY, start_ts=DAY, rate=100.0, seed=1, bad_rate=0.0)
    flood = scenario(CITY, "flooding", "yuelu/c1/b3")
    injection = traffic.inject(flood, DAY + 10.2)
    assert injection.start_ts == DAY + 11  # rounded up to a whole second
    gauge = "flood-yuelu-c1-b3-b1"
    messages = [m for m in traffic.until(DAY + 200) if m.sensor.id == gauge]
    during = [m for m in messages if DAY + 11 <= m.due <= DAY + 11 + flood.span_s]
    assert [m.value for m in during] == [4.0 + 0.5 * n for n in range(14)]
    assert all(m.scenario == "flooding@yuelu/c1/b3" for m in during)
    assert any(m.due < DAY + 11 for m in messages) and any(m.due > DAY + 141 for m in messages)


def test_a_silent_building_sends_nothing_while_silenced() -> None:
    traffic = Traffic(CITY, start_ts=DAY, rate=500.0, seed=1)
    silent = scenario(CITY, "silent-gateway", "yuelu/c2/b2")
    assert silent.gateway == "gw-yuelu-c2-b2" and silent.silence_s == 150
    traffic.inject(silent, DAY + 20)
    fire = scenario(CITY, "fire", "yuelu/c2/b2")  # in the silent building: its readings are not sent either
    traffic.inject(fire, DAY + 30)
    messages = [m for m in traffic.until(DAY + 200) if m.sensor.building == "yuelu/c2/b2"]
    assert not [m for m in messages if DAY + 20 <= m.due < DAY + 170]
    assert [m for m in messages if m.due < DAY + 20] and [m for m in messages if m.due >= DAY + 170]
    assert sum(m.scenario is not None for m in messages) == 0


@pytest.mark.parametrize("when", [DAY, NIGHT, DAY + 7 * 3600.0])
def test_normal_readings_stay_clear_of_every_threshold(when: float) -> None:
    rng = random.Random(1)
    seen: dict[str, list[Any]] = {}
    for sensor in CITY.sensors:
        building = CITY.building(sensor.building)
        for n in range(20):
            seen.setdefault(sensor.kind, []).append(normal_value(sensor, building, when + n * 600.0, rng))
    assert max(seen["smoke"]) <= 0.04
    assert min(seen["temperature"]) >= 12 and max(seen["temperature"]) <= 32
    assert max(seen["gas"]) <= 3.0
    assert max(seen["water_level"]) <= 1.5
    assert max(seen["pm25"]) <= 70.0
    assert set(seen["badge"]) == {"granted"}
    assert {(type(v), v) for v in seen["power"]} == {(bool, True), (int, 1)}  # new and legacy meters
    assert set(seen["elevator"]) <= {"moving", "idle"}


# ------------------------------------------------------------------ scenarios


def test_scenarios_parse_from_kind_at_site() -> None:
    assert parse(CITY, "fire@yuelu/c1/b2").site == "yuelu/c1/b2/f2/r201"
    assert parse(CITY, "fire@yuelu/c1/b2/f3/r304").site == "yuelu/c1/b2/f3/r304"
    assert parse(CITY, "gas@yuelu/c2").kind == "gas-leak-cluster"
    assert parse(CITY, "gateway-silent@yuelu/c1/b1").kind == "silent-gateway"
    assert parse(CITY, "elevator@yuelu/c1/b1/shaft-1").site == "yuelu/c1/b1/shaft-1"
    with pytest.raises(ValueError, match="unknown scenario 'earthquake'; one of fire"):
        parse(CITY, "earthquake@yuelu/c1")
    with pytest.raises(ValueError, match="KIND@SITE"):
        parse(CITY, "fire")
    with pytest.raises(ValueError, match="not a building or a room"):
        parse(CITY, "fire@yuelu/c1/b2/f9/r901")
    small = build_city(CityShape(buildings=2))
    with pytest.raises(ValueError, match="3 or more buildings"):
        parse(small, "power-outage@yuelu/c1")


def test_expected_alerts_name_real_reflexes_of_their_tier(rules: RuleSet) -> None:
    tiers = {r.id: r.tier for r in rules.reflexes}
    for item, _ in all_scenarios(CITY):
        for expected in item.expected + item.after_hours:
            assert tiers[expected.reflex] == expected.tier, expected


def scenario_events(item: Scenario, start: float) -> list[SensorEvent]:
    """The scenario's readings as the gateway would decode them (door events carry the schedule tag)."""
    events = []
    for r in item.readings:
        ts = start + r.offset_s
        tags: dict[str, Scalar] = dict(tags_of(r.sensor, CITY.building(r.sensor.building), ts))
        events.append(
            SensorEvent(
                site=r.sensor.site, sensor=r.sensor.id, kind=r.sensor.kind, value=r.value, ts=ts, tags=tags
            )
        )
    return events


@pytest.mark.parametrize(
    ("spec", "start"),
    [
        ("fire@yuelu/c1/b2", DAY),
        ("gas-leak-cluster@yuelu/c2", DAY),
        ("flooding@yuelu/c1/b3", DAY),
        ("power-outage@yuelu/c3", DAY),
        ("silent-gateway@yuelu/c1/b4", DAY),
        ("elevator-entrapment@yuelu/c2/b1", DAY),
        ("door-forced@yuelu/c3/b1/f1/r102", DAY),
        ("door-forced@yuelu/c3/b1/f1/r102", NIGHT),
    ],
)
def test_each_scenario_alone_fires_exactly_its_expected_alerts(
    rules: RuleSet, spec: str, start: float
) -> None:
    item = parse(CITY, spec)
    traffic = Traffic(CITY, start_ts=start - 600, rate=1.0)  # only for its silence bookkeeping
    injection = traffic.inject(item, start)
    events = scenario_events(item, start)
    if item.gateway is not None:  # the brain needs to have seen the gateway before it can miss it
        building = CITY.building(item.site)
        events += [e for e in heartbeats(traffic, start - 300, start + 1200) if e.site == building.path]
    horizon = start + 1200
    alerts = run_engine(rules, events, horizon)
    assert_exactly(alerts, [injection])
    assert (spec, start) != ("door-forced@yuelu/c3/b1/f1/r102", NIGHT) or len(injection.expected) == 2


def test_scenario_timing_promises() -> None:
    fires = {
        kind: BUILDERS[kind](CITY, site).fires_within_s
        for kind, site in [
            ("fire", "yuelu/c1/b1"),
            ("gas-leak-cluster", "yuelu/c1"),
            ("flooding", "yuelu/c1/b1"),
            ("power-outage", "yuelu/c1"),
            ("silent-gateway", "yuelu/c1/b1"),
            ("elevator-entrapment", "yuelu/c1/b1"),
            ("door-forced", "yuelu/c1/b1"),
        ]
    }
    assert fires == {
        "fire": 5,
        "gas-leak-cluster": 40,
        "flooding": 120,
        "power-outage": 30,
        "silent-gateway": 130,
        "elevator-entrapment": 120,
        "door-forced": 4,
    }


SMALL = build_city(CityShape(communities=2, buildings=3, floors=2, rooms=2), seed=5)


@pytest.mark.parametrize(
    ("city", "start", "gap_s"),
    [(CITY, DAY, 10.0), (SMALL, NIGHT, 3.0)],
    ids=["default-city-by-day", "small-city-by-night"],
)
def test_all_scenarios_amid_background_traffic_fire_exactly_their_alerts(
    rules: RuleSet, city: City, start: float, gap_s: float
) -> None:
    """The full afferent path without brokers: simulated topics and payloads → each building's Decoder →
    the engine with examples/city, plus gateway heartbeats; bad payloads are rejected, nothing else fires."""
    traffic = Traffic(city, start_ts=start, rate=60.0, seed=11, bad_rate=0.002)
    plan = all_scenarios(city, first_at_s=30.0, gap_s=gap_s)
    injections = [traffic.inject(item, start + at) for item, at in plan]
    horizon = max(i.start_ts + max(e.after_s + e.tolerance_s for e in i.expected) for i in injections) + 5
    gateways = decoders(city)
    events: list[SensorEvent] = []
    rejected = 0
    for m in traffic.until(horizon):
        try:
            events.extend(gateways[m.sensor.building].decode(m.topic, m.payload, m.due))
        except Rejected:
            rejected += 1
            assert m.bad is not None
    assert rejected > 0
    events += heartbeats(traffic, start, horizon)
    alerts = run_engine(rules, events, horizon - 5)  # lateness: everything up to the horizon is settled
    assert_exactly(alerts, injections)
    after_hours = [e for i in injections for e in i.expected if e.reflex == "door-opened-after-hours"]
    assert len(after_hours) == (start == NIGHT)


def test_background_traffic_alone_raises_nothing_day_or_night(rules: RuleSet) -> None:
    for start in (DAY, NIGHT):
        traffic = Traffic(CITY, start_ts=start, rate=80.0, seed=4)
        events: list[SensorEvent] = []
        gateways = decoders(CITY)
        for m in traffic.until(start + 900):
            if m.bad is None:
                events.extend(gateways[m.sensor.building].decode(m.topic, m.payload, m.due))
        events += heartbeats(traffic, start, start + 900)
        assert run_engine(rules, events, start + 895) == []


# ------------------------------------------------------------------ the live shell, without a broker


async def test_simulator_paces_publishes_and_records_publish_times() -> None:
    publisher = MemoryPublisher()
    seen: list[Published] = []
    simulator = Simulator(CITY, publisher, rate=200.0, seed=3, bad_rate=0.0, on_publish=seen.append)
    assert simulator.inject(scenario(CITY, "door-forced", "yuelu/c1/b1"), 0.0) is None  # waits for the run
    summary = await asyncio.wait_for(simulator.run(duration_s=1.5), 10)
    assert summary.elapsed_s == pytest.approx(1.5, abs=0.5)
    assert 290 <= summary.events <= 310 and summary.messages == len(publisher.sent) == len(seen)
    assert [p.message.topic for p in seen] == [t for t, _ in publisher.sent]
    (injection,) = summary.injections
    assert injection.label == "door-forced@yuelu/c1/b1/f2/r201"
    assert summary.scripted == 1  # the refused badge at +0; the door opens at +4, after the end
    perfs = [p.perf for p in seen]
    assert perfs == sorted(perfs)
    for p in seen:
        assert p.wall >= p.message.due - 0.01  # never published before the sensor measured
        assert p.message.event_id is not None and simulator.records[p.message.event_id] is p
    assert sum(summary.by_kind.values()) == summary.events


async def test_simulator_stops_on_the_event_and_injects_while_running() -> None:
    stop = asyncio.Event()
    simulator = Simulator(CITY, MemoryPublisher(), rate=100.0)
    injected: list[Injection | None] = []

    def on_publish(record: Published) -> None:
        if not injected:
            injected.append(simulator.inject(scenario(CITY, "fire", "yuelu/c1/b1")))
        if len(simulator.records) >= 50:
            stop.set()

    simulator.on_publish = on_publish
    summary = await asyncio.wait_for(simulator.run(stop), 10)
    assert 50 <= summary.messages <= 100  # the batch in flight when stop was set
    assert injected[0] is not None and injected[0].expected == (
        ExpectedAlert("room-fire", "edge", "yuelu/c1/b1/f2/r201", after_s=5),
    )
    assert summary.injections == [injected[0]]
    assert not simulator.running


# ------------------------------------------------------------------ the command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nerve")
    simulate_cmd.register(p.add_subparsers())
    return p


def test_cli_pairs_each_at_with_its_scenario() -> None:
    args = parser().parse_args(
        [
            "simulate",
            "--scenario",
            "fire@yuelu/c1/b2",
            "--at",
            "10",
            "--scenario",
            "power@yuelu/c2",
            "--rate",
            "50",
        ]
    )
    assert args.planned == [["fire@yuelu/c1/b2", 10.0], ["power@yuelu/c2", None]]
    assert args.rate == 50.0 and args.duration == 60.0 and args.topic_root == DEFAULT_TOPIC_ROOT


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--at", "10"],
        ["simulate", "--scenario", "fire@yuelu/c1/b2", "--at", "1", "--at", "2"],
        ["simulate", "--scenario", "fire@yuelu/c1/b2", "--at", "-1"],
    ],
)
def test_cli_rejects_a_stray_or_negative_at(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    assert "--at" in capsys.readouterr().err


def test_cli_dry_run_prints_a_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(
        [
            *("simulate", "--dry-run", "--duration", "0.5", "--rate", "100", "--summary", "json"),
            *("--scenario", "flood@yuelu/c1/b1", "--at", "0", "--scenario", "fire@yuelu/c1/b2", "--at", "60"),
        ]
    )
    assert args.func(args) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert 45 <= report["messages"] <= 56 and report["broker"] is None
    (flood,) = report["scenarios"]
    assert flood["label"] == "flooding@yuelu/c1/b1" and flood["cut_short"] is True
    assert flood["expected"] == [
        {
            "reflex": "basement-flooding",
            "tier": "edge",
            "group": "flood-yuelu-c1-b1-b1",
            "status": "raised",
            "after_s": 120,
            "tolerance_s": 0.0,
        }
    ]
    assert report["not_reached"] == [{"label": "fire@yuelu/c1/b2/f2/r201", "at_s": 60.0}]


def test_cli_text_summary_lists_scenarios_and_the_gateway_to_stop(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(
        [
            "simulate",
            "--dry-run",
            "--duration",
            "0.3",
            "--scenario",
            "silent-gateway@yuelu/c2/b2",
            "--at",
            "0",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "silent-gateway@yuelu/c2/b2 — stop gateway gw-yuelu-c2-b2 for 150 s" in out
    assert "expects gateway-silent (brain) raised for yuelu/c2/b2 at +120 ±10 s" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "fire@yuelu/c9/b1"], "no building 'yuelu/c9/b1'"),
        (["--topic-root", "city"], "its own root"),
        (["--rate", "0"], "--rate must be > 0"),
    ],
)
def test_cli_explains_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser().parse_args(["simulate", "--dry-run", *argv])
    assert args.func(args) == 2
    assert message in capsys.readouterr().err
