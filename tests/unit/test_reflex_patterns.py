"""Every pattern of SPEC §3 at its boundaries: exactly D apart, out of order inside the lateness, late beyond
it, cooldown edges, grouping by site level."""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from tests.unit.reflex_kit import ROOM, alerts, commands, engine, ev, run

FIRE = """
- id: kitchen-fire
  tier: edge
  when:
    all:
      - {kind: smoke, value: "> 0.15"}
      - {kind: temperature, value: "> 57"}
  within: 30s
  per: room
  cooldown: 5m
  then:
    - alert: {to: [fire], severity: critical, message: "Fire suspected in {site} ({kind}={value})"}
    - actuate: {kind: gas_valve, command: close}
"""


def test_single_condition_fires_on_each_match_subject_to_cooldown() -> None:
    e = engine(
        "- id: smoke\n  tier: edge\n  when: {kind: smoke, value: '> 0.5'}\n  cooldown: 10s\n  then: [{alert: {to: [fire]}}]\n"
    )
    out = alerts(
        run(e, ev("smoke", 0.4, 100), ev("smoke", 0.6, 101), ev("smoke", 0.7, 110.9), ev("smoke", 0.7, 111))
    )
    assert [a.ts for a in out] == [101, 111]  # cooldown edge: exactly 10 s after fires, 9.9 s does not
    assert out[0].evidence == (ev("smoke", 0.6, 101).id,)


def test_all_within_exactly_d_fires_and_just_beyond_does_not() -> None:
    e = engine(FIRE)
    out = run(e, ev("smoke", 0.2, 1000), ev("temperature", 60, 1030))
    (a,) = alerts(out)
    assert (a.reflex, a.status, a.group, a.site, a.ts, a.first_event_ts) == (
        "kitchen-fire",
        "raised",
        ROOM,
        ROOM,
        1030,
        1000,
    )
    assert a.message == "Fire suspected in yuelu/c1/b1/f1/r101 (temperature=60)"
    (c,) = commands(out)
    assert (c.alert_id, c.site, c.target, c.target_by, c.command) == (
        a.id,
        ROOM,
        "gas_valve",
        "kind",
        "close",
    )
    e = engine(FIRE)
    assert alerts(run(e, ev("smoke", 0.2, 1000), ev("temperature", 60, 1030.001))) == []


def test_all_out_of_order_inside_lateness_still_fires() -> None:
    e = engine(FIRE)
    out = run(e, ev("temperature", 60, 1010), ev("temperature", 40, 1013), ev("smoke", 0.3, 1008))
    (a,) = alerts(out)
    # the alert the sorted stream raises: at 1010, when the heat completed the pattern in event time
    (s,) = alerts(run(engine(FIRE), ev("smoke", 0.3, 1008), ev("temperature", 60, 1010)))
    assert (a.ts, a.first_event_ts, a.id, a.evidence) == (1010, 1008, s.id, s.evidence)


def test_event_late_beyond_lateness_is_counted_not_applied() -> None:
    e = engine(FIRE)
    run(e, ev("temperature", 60, 1010), ev("temperature", 40, 1020))
    assert e.is_late(1014.9) and not e.is_late(1015)
    assert alerts(run(e, ev("smoke", 0.3, 1014))) == []
    assert e.late == 1
    assert (
        len(alerts(run(e, ev("smoke", 0.3, 1015)))) == 1
    )  # at the watermark: applied, and 60 °C at 1010 counts
    e2 = engine(FIRE)
    run(e2, ev("temperature", 60, 1010), ev("temperature", 40, 1015))
    assert len(alerts(run(e2, ev("smoke", 0.3, 1010)))) == 1  # exactly at the watermark: still applied


def test_all_needs_the_same_group() -> None:
    e = engine(FIRE)
    other_room = "yuelu/c1/b1/f1/r102"
    assert alerts(run(e, ev("smoke", 0.2, 1000), ev("temperature", 60, 1001, site=other_room))) == []
    assert (
        alerts(run(e, ev("temperature", 60, 1002, site="yuelu/c1/b1"))) == []
    )  # site too short for per: room


def test_all_cooldown_per_group() -> None:
    e = engine(FIRE)
    out = run(
        e,
        ev("smoke", 0.2, 1000),
        ev("temperature", 60, 1001),  # fires
        ev("smoke", 0.2, 1100),
        ev("temperature", 60, 1101),  # inside 5 m cooldown
        ev("smoke", 0.2, 1301),
        ev("temperature", 60, 1301),  # 300 s after 1001: fires again
        ev("smoke", 0.2, 1302, site="yuelu/c1/b1/f1/r999"),
        ev("temperature", 60, 1302, site="yuelu/c1/b1/f1/r999"),
    )
    assert [(a.ts, a.group.rsplit("/", 1)[1]) for a in alerts(out)] == [
        (1001, "r101"),
        (1301, "r101"),
        (1302, "r999"),
    ]


SEQ = """
- id: forced-door
  tier: edge
  when:
    sequence:
      - {kind: door, value: "== 'forced'"}
      - {kind: motion, value: true}
  within: 20s
  per: building
  then: [{alert: {to: [police], severity: critical}}]
"""


def test_sequence_in_order_within_d() -> None:
    e = engine(SEQ)
    assert (
        len(alerts(run(e, ev("door", "forced", 100), ev("motion", True, 120, site="yuelu/c1/b1/f3/r9")))) == 1
    )
    e = engine(SEQ)
    assert alerts(run(e, ev("door", "forced", 100), ev("motion", True, 120.5))) == []
    e = engine(SEQ)
    assert alerts(run(e, ev("motion", True, 100), ev("door", "forced", 101))) == []  # wrong order


def test_sequence_out_of_order_arrival_is_judged_by_event_time() -> None:
    e = engine(SEQ)
    assert alerts(run(e, ev("door", "forced", 110), ev("motion", True, 105))) == []  # motion happened first


FOR = """
- id: door-held
  tier: edge
  when: {kind: door, value: "== 'open'", for: 60s}
  then: [{alert: {to: [building]}}]
"""


def test_for_fires_at_exactly_d_once_per_run() -> None:
    e = engine(FOR)
    out = run(
        e,
        ev("door", "open", 0),
        ev("door", "open", 30),
        ev("door", "open", 59.9),
        ev("door", "open", 60),
        ev("door", "open", 200),
    )
    assert [(a.ts, a.first_event_ts) for a in alerts(out)] == [(60, 0)]


def test_for_run_is_broken_by_a_non_matching_event_of_the_same_sensor_only() -> None:
    e = engine(FOR)
    out = run(
        e, ev("door", "open", 0), ev("door", "closed", 30), ev("door", "open", 40), ev("door", "open", 90)
    )
    assert alerts(out) == []
    out = run(e, ev("door", "closed", 95, sensor="door-2"), ev("door", "open", 100))
    assert [a.first_event_ts for a in alerts(out)] == [40]


COUNT = """
- id: gas-alarms
  tier: brain
  when: {kind: gas, value: "> 50", count: ">= 3"}
  within: 60s
  per: community
  then: [{alert: {to: [utilities]}}]
"""


def test_count_window_edges() -> None:
    e = engine(COUNT)
    out = run(
        e,
        ev("gas", 60, 0, site="yuelu/c1/b1"),
        ev("gas", 40, 10, site="yuelu/c1/b2"),
        ev("gas", 70, 30, site="yuelu/c1/b3"),
        ev("gas", 80, 60, site="yuelu/c1/b4"),
    )
    (a,) = alerts(out)
    assert (a.group, a.ts, a.first_event_ts, len(a.evidence)) == ("yuelu/c1", 60, 0, 3)
    e = engine(COUNT)
    assert alerts(run(e, ev("gas", 60, 0), ev("gas", 70, 30), ev("gas", 80, 60.01))) == []


def test_count_completed_by_an_out_of_order_event_raises_the_in_order_alert() -> None:
    events = [ev("gas", 60, t, sensor=f"g{t}", site="yuelu/c1/b1") for t in (1000, 1001, 1002)]
    (in_order,) = alerts(run(engine(COUNT), *events))
    (late,) = alerts(run(engine(COUNT), events[0], events[2], events[1]))
    assert late == in_order  # same id, ts 1002 (the window's end), first_event_ts, evidence
    assert (late.ts, late.first_event_ts, len(late.evidence)) == (1002, 1000, 3)


def test_cooldown_counts_from_each_alert_before_and_after_it() -> None:
    e = engine(
        "- id: smoke\n  tier: edge\n  when: {kind: smoke, value: '> 0.5'}\n  cooldown: 2s\n"
        "  then: [{alert: {to: [fire]}}]\n"
    )
    out = run(e, *[ev("smoke", 0.9, t) for t in (110, 109.5, 107, 108, 105.5, 105)])
    # 109.5 is within 2 s of 110; 107 is not, and fires; 108 and 105.5 are within 2 s of 107; 105 is not
    assert [a.ts for a in alerts(out)] == [110, 107, 105]


AGG = """
- id: pm25-high
  tier: brain
  when: {kind: pm25, avg: "> 75"}
  within: 10m
  per: community
  then: [{alert: {to: [environment]}}]
- id: freezer-warm
  tier: edge
  when: {kind: temperature, tags: {room: freezer}, max: ">= -10"}
  within: 5m
  then: [{alert: {to: [health]}}]
- id: rain-total
  tier: brain
  when: {kind: rain, sum: "> 50"}
  within: 1h
  per: district
  then: [{alert: {to: [transport]}}]
- id: cold-snap
  tier: brain
  when: {kind: temperature, site: "yuelu/**", min: "< -20"}
  within: 1h
  per: district
  then: [{alert: {to: [utilities]}}]
"""


def test_aggregates() -> None:
    e = engine(AGG)
    out = run(e, ev("pm25", 70, 0, sensor="a"), ev("pm25", 90, 100, sensor="b"))
    assert [a.reflex for a in alerts(out)] == ["pm25-high"]  # avg 80
    e = engine(AGG)
    assert alerts(run(e, ev("pm25", 50, 0, sensor="a"), ev("pm25", 100, 600, sensor="b"))) == []  # avg 75
    e = engine(AGG)
    assert (
        len(alerts(run(e, ev("pm25", 51, 0, sensor="a"), ev("pm25", 100, 600, sensor="b")))) == 1
    )  # 0 is in
    e = engine(AGG)
    # 600.1 s later the 50 has left the window: the average is the 100 alone
    assert [a.first_event_ts for a in alerts(run(e, ev("pm25", 50, 0), ev("pm25", 100, 600.1)))] == [600.1]
    e = engine(AGG)
    out = run(
        e,
        ev("temperature", -12, 0, room="freezer"),
        ev("temperature", -10, 1, room="freezer"),
        ev("temperature", 30, 2),
    )
    assert [a.reflex for a in alerts(out)] == ["freezer-warm"]
    out = run(e, ev("rain", 30, 0), ev("rain", "heavy", 1), ev("rain", 21, 2))
    assert [a.reflex for a in alerts(out)] == ["rain-total"]
    assert [a.reflex for a in alerts(run(e, ev("temperature", -25, 3, site="other/c1")))] == []
    assert [a.reflex for a in alerts(run(e, ev("temperature", -25, 4)))] == ["cold-snap"]


CHANGE = """
- id: water-rise
  tier: edge
  when: {kind: water_level, rise: ">= 0.5"}
  within: 10m
  then: [{alert: {to: [utilities]}}]
- id: pressure-drop
  tier: brain
  when: {kind: pressure, fall: "> 1.5"}
  within: 5m
  per: community
  then: [{alert: {to: [utilities]}}]
"""


def test_rise_and_fall_are_per_sensor_within_the_window() -> None:
    e = engine(CHANGE)
    out = run(e, ev("water_level", 1.0, 0), ev("water_level", 1.2, 100), ev("water_level", 1.5, 600))
    (a,) = alerts(out)
    assert (a.ts, a.first_event_ts) == (600, 0)
    e = engine(CHANGE)
    # another sensor's low reading does not count
    assert (
        alerts(run(e, ev("water_level", 0.1, 0, sensor="w2"), ev("water_level", 0.5, 1, sensor="w1"))) == []
    )
    e = engine(CHANGE)
    assert alerts(run(e, ev("water_level", 1.0, 0), ev("water_level", 1.5, 600.1))) == []
    e = engine(CHANGE)
    assert alerts(run(e, ev("pressure", 4.0, 0), ev("pressure", 2.5, 100))) == []  # a drop of exactly 1.5
    e = engine(CHANGE)
    out = run(e, ev("pressure", 4.0, 0), ev("pressure", 3.0, 100), ev("pressure", 2.4, 200))
    assert [(a.reflex, a.first_event_ts) for a in alerts(out)] == [("pressure-drop", 0)]


def test_rise_and_fall_judge_each_of_two_readings_at_one_time_in_either_order() -> None:
    low, high = ev("water_level", 0.1, 100), ev("water_level", 0.9, 100)  # one sensor, one instant
    one = alerts(run(engine(CHANGE), low, high))
    other = alerts(run(engine(CHANGE), high, low))
    assert [a.reflex for a in one] == [a.reflex for a in other] == ["water-rise"]
    assert one == other  # the 0.9 rose 0.8 from the 0.1 beside it, whichever arrived first


DISTINCT = """
- id: gas-cluster
  tier: brain
  when: {kind: gas, value: "> 50", distinct: building, count: ">= 3"}
  within: 10m
  per: community
  then: [{alert: {to: [fire, utilities], severity: emergency}}]
"""


def test_distinct_counts_sites_not_events() -> None:
    e = engine(DISTINCT)
    same_building = [ev("gas", 60, t, sensor=f"g{t}", site="yuelu/c1/b1/f1/r1") for t in range(5)]
    assert alerts(run(e, *same_building)) == []
    out = run(e, ev("gas", 60, 10, site="yuelu/c1/b2/f1/r1"), ev("gas", 60, 20, site="yuelu/c1/b3"))
    (a,) = alerts(out)
    assert (a.group, a.departments, a.severity, len(a.evidence)) == (
        "yuelu/c1",
        ("fire", "utilities"),
        "emergency",
        3,
    )
    e = engine(DISTINCT)
    out = run(
        e,
        ev("gas", 60, 0, site="yuelu/c1/b1"),
        ev("gas", 60, 1, site="yuelu/c2/b2"),
        ev("gas", 60, 2, site="yuelu/c1/b3"),
    )
    assert alerts(out) == []  # different communities are different groups
    e = engine(DISTINCT)
    out = run(
        e,
        ev("gas", 60, 0, site="yuelu/c1/b1"),
        ev("gas", 60, 300, site="yuelu/c1/b2"),
        ev("gas", 60, 600.5, site="yuelu/c1/b3"),
    )
    assert alerts(out) == []  # b1 fell out of the window


ABSENT = """
- id: gateway-silent
  tier: brain
  when:
    absent: {kind: heartbeat}
    for: 60s
  per: building
  repeat: 5m
  then:
    - alert: {to: [utilities], message: "{group} silent since {sensor}"}
    - clear: {after: 30s}
"""


def hb(ts: float, b: str = "b1") -> object:
    return ev("heartbeat", 1, ts, sensor=f"gw-{b}", site=f"yuelu/c1/{b}")


def test_absent_fires_when_the_watermark_passes_last_match_plus_d() -> None:
    e = engine(ABSENT)
    run(e, hb(0), hb(30))  # type: ignore[arg-type]
    assert alerts(e.advance(89.9)) == []
    (a,) = alerts(e.advance(90))
    assert (a.ts, a.group, a.status, a.first_event_ts) == (90, "yuelu/c1/b1", "raised", 30)
    assert a.message == "yuelu/c1/b1 silent since gw-b1"
    assert alerts(e.advance(389.9)) == []  # once per silence …
    (r,) = alerts(e.advance(390))  # … plus reminders every `repeat`
    assert r.ts == 390 and r.id != a.id
    (c,) = alerts(run(e, hb(400)) + e.advance(430))  # type: ignore[arg-type]
    assert (c.status, c.id, c.ts) == ("cleared", a.id, 430)


def test_absent_needs_a_previous_match_and_rearms() -> None:
    e = engine(ABSENT)
    assert alerts(e.advance(10_000)) == []  # a building never seen is not silent
    run(e, hb(10_000))  # type: ignore[arg-type]
    assert len(alerts(e.advance(10_060))) == 1
    assert alerts(run(e, hb(10_070)) + e.advance(10_099)) == []  # type: ignore[arg-type]
    out = alerts(run(e, hb(10_100)) + e.advance(10_159))  # type: ignore[arg-type]
    assert [(x.status, x.ts) for x in out] == [("cleared", 10_100)]  # back for 30 s since 10_070
    out = alerts(e.advance(10_160))
    assert [(x.status, x.ts) for x in out] == [("raised", 10_160)]  # silent again after 10_100


def test_absent_events_drive_the_watermark_too() -> None:
    e = engine(ABSENT)
    out = run(e, hb(0, "b1"), hb(0, "b2"), hb(50, "b2"), hb(100, "b2"))  # type: ignore[arg-type]
    assert [(a.group, a.ts) for a in alerts(out)] == [("yuelu/c1/b1", 60)]


ESC = """
- id: elevator-stuck
  tier: brain
  when: {kind: elevator, value: "== 'stuck'", for: 2m}
  per: building
  then:
    - alert: {to: [building], severity: critical, message: "Elevator stuck in {site}"}
    - escalate: {after: 5m, to: [fire]}
"""


def test_escalation_without_ack_and_cancelled_by_ack() -> None:
    e = engine(ESC)
    (a,) = alerts(run(e, ev("elevator", "stuck", 0), ev("elevator", "stuck", 120)))
    assert alerts(e.advance(419.9)) == []
    (x,) = alerts(e.advance(420))
    assert (x.id, x.status, x.departments, x.ts) == (a.id, "escalated", ("building", "fire"), 420)
    e = engine(ESC)
    (a,) = alerts(run(e, ev("elevator", "stuck", 0), ev("elevator", "stuck", 120)))
    assert e.acknowledge(a.id) is True
    assert e.acknowledge(a.id) is False
    assert alerts(e.advance(1000)) == []


CLEAR = """
- id: flood
  tier: edge
  when: {kind: water_level, value: "> 0.3"}
  cooldown: 1m
  then:
    - alert: {to: [utilities]}
    - clear: {after: 2m}
"""


def test_clear_after_the_pattern_stops_matching() -> None:
    e = engine(CLEAR)
    (a,) = alerts(run(e, ev("water_level", 0.5, 0), ev("water_level", 0.6, 30)))  # second is in cooldown
    assert alerts(e.advance(149)) == []  # 30 + 120 not yet passed
    (c,) = alerts(e.advance(150))
    assert (c.id, c.status, c.ts) == (a.id, "cleared", 150)
    assert alerts(e.advance(10_000)) == []


def test_alert_ids_are_deterministic_and_tier_filter_works() -> None:
    events = [ev("smoke", 0.2, 1000), ev("temperature", 60, 1010)]
    a1 = alerts(run(engine(FIRE), *events))
    a2 = alerts(run(engine(FIRE), *events))
    assert [a.id for a in a1] == [a.id for a in a2] and len(a1) == 1
    assert alerts(run(engine(FIRE, tier="brain"), *events)) == []
    assert len(alerts(run(engine(FIRE, tier="edge"), *events))) == 1


def test_events_of_other_kinds_do_not_touch_a_reflex() -> None:
    e = engine(FIRE + COUNT)
    run(e, *[ev("humidity", 50, t) for t in range(100)])
    assert e.stats()["groups"] == 0
    assert e.indexed("humidity", ROOM) == []
    assert e.indexed("gas", ROOM) == ["gas-alarms"]


def test_clear_is_armed_by_the_first_alert() -> None:
    e = engine(
        "- id: gas\n  tier: edge\n  when: {kind: gas, value: '>= 10'}\n  per: room\n  cooldown: 5m\n"
        "  then: [{alert: {to: [fire]}}, {clear: {after: 2m}}]\n"
    )
    (a,) = alerts(run(e, ev("gas", 12, 1000)))
    (c,) = alerts(e.advance(2000))
    assert (c.id, c.status, c.ts) == (a.id, "cleared", 1120)


HELD_CLEAR = """
- id: lift-stuck
  tier: brain
  when: {kind: elevator, value: "== 'stuck'", for: 2m}
  then:
    - alert: {to: [building]}
    - clear: {after: 1m}
"""


def test_a_for_condition_that_still_holds_is_not_cleared() -> None:
    e = engine(HELD_CLEAR)
    out = run(e, *[ev("elevator", "stuck", t) for t in range(0, 400, 30)])
    assert [a.status for a in alerts(out)] == ["raised"]  # at 120; still stuck every 30 s until 390
    assert alerts(e.advance(449)) == []
    out = run(e, ev("elevator", "ok", 420)) + e.advance(451)
    assert [(a.status, a.ts) for a in alerts(out)] == [("cleared", 450)]  # 1 m after the last stuck report


def test_absent_clear_counts_from_the_first_match_after_the_silence() -> None:
    e = engine(ABSENT)
    run(e, hb(1000))  # type: ignore[arg-type]
    assert [a.status for a in alerts(e.advance(1100))] == ["raised"]
    out = run(e, *[hb(t) for t in range(2000, 2100, 10)])  # type: ignore[arg-type]
    # reminders every 5 m while silent, then cleared 30 s after the first heartbeat back (not pushed on)
    assert [(a.status, a.ts) for a in alerts(out)] == [
        ("raised", 1360),
        ("raised", 1660),
        ("raised", 1960),
        ("cleared", 2030),
    ]


def test_index_by_kind_and_site_prefix_skips_reflexes_that_cannot_match() -> None:
    e = engine(
        "- id: c3\n  tier: brain\n  when: {kind: gas, site: 'd1/c3/**'}\n  then: [{alert: {to: [fire]}}]\n"
        "- id: d1\n  tier: brain\n  when: {kind: gas, site: 'd1/*/b2'}\n  then: [{alert: {to: [fire]}}]\n"
        "- id: any\n  tier: brain\n  when: {kind: gas, site: '*/c3/**'}\n  then: [{alert: {to: [fire]}}]\n"
        "- id: b2\n  tier: brain\n  when: {kind: gas, site: 'd1/c3/b2/**'}\n  then: [{alert: {to: [fire]}}]\n"
    )
    assert e.indexed("gas", "d2/c3/b2") == ["any"]
    assert e.indexed("gas", "d1/c4/b2") == ["d1", "any"]
    assert e.indexed("gas", "d1/c3/b1") == ["c3", "d1", "any"]
    assert e.indexed("gas", "d1/c3/b2/f1") == ["c3", "d1", "any", "b2"]  # any depth of literal prefix
    assert [a.reflex for a in alerts(run(e, ev("gas", 1, 1, site="d1/c3/b2")))] == ["c3", "d1", "any", "b2"]
    assert [a.reflex for a in alerts(run(e, ev("gas", 1, 2, sensor="g2", site="d1/c4/b2")))] == ["d1"]
    assert [a.reflex for a in alerts(run(e, ev("gas", 1, 3, sensor="g3", site="d2/c3/b2")))] == ["any"]
    assert [a.reflex for a in alerts(run(e, ev("gas", 1, 4, sensor="g4", site="d1/c3")))] == ["c3", "any"]


def test_index_by_kind_and_district_skips_reflexes_that_cannot_match() -> None:
    e = engine(AGG)  # cold-snap watches temperature only under yuelu/**
    assert e.indexed("temperature", "yuelu/c1") == ["freezer-warm", "cold-snap"]
    assert e.indexed("temperature", "other/c1") == ["freezer-warm"]
    assert alerts(run(e, ev("temperature", -30, 1, site="other/c1"))) == []


THRESHOLDS = """
- id: hot
  tier: edge
  when: {kind: temperature, value: "> 57"}
  then: [{alert: {to: [fire]}}]
- id: warm
  tier: edge
  when: {kind: temperature, value: ">= 30"}
  then: [{alert: {to: [fire]}}]
- id: cold
  tier: edge
  when: {kind: temperature, value: "< 0"}
  then: [{alert: {to: [utilities]}}]
- id: frost
  tier: edge
  when: {kind: temperature, value: "<= 0"}
  then: [{alert: {to: [utilities]}}]
- id: band
  tier: edge
  when: {kind: temperature, between: [20, 30]}
  then: [{alert: {to: [health]}}]
- id: expr
  tier: edge
  when: {kind: temperature, where: "value > 40 and tags.zone == 'kitchen'"}
  then: [{alert: {to: [fire]}}]
- id: mirrored
  tier: edge
  when: {kind: temperature, where: "35 < value"}
  then: [{alert: {to: [fire]}}]
- id: label
  tier: edge
  when: {kind: temperature, in: [-1, 'broken']}
  then: [{alert: {to: [building]}}]
- id: other
  tier: edge
  when: {kind: temperature, value: "!= 30"}
  then: [{alert: {to: [building]}}]
"""


def test_predicates_found_through_the_index_are_exactly_those_that_hold() -> None:
    readings: list[tuple[object, dict[str, str]]] = [
        (v, {}) for v in (-5, -1, 0, 0.0, 19.99, 20, 25, 30, 30.0, 35, 35.5, 41, 57, 57.01, 99)
    ]
    readings += [(41, {"zone": "kitchen"}), ("broken", {}), (True, {}), ("30", {})]
    expected: dict[str, Callable[[Any, str | None], bool]] = {
        "hot": lambda v, z: v > 57,
        "warm": lambda v, z: v >= 30,
        "cold": lambda v, z: v < 0,
        "frost": lambda v, z: v <= 0,
        "band": lambda v, z: 20 <= v <= 30,
        "expr": lambda v, z: v > 40 and z == "kitchen",
        "mirrored": lambda v, z: v > 35,
        "label": lambda v, z: v == -1,
        "other": lambda v, z: v != 30,
    }
    for n, (value, tags) in enumerate(readings):
        e = engine(THRESHOLDS)
        fired = [a.reflex for a in alerts(run(e, ev("temperature", value, n, **tags)))]
        numeric = type(value) in (int, float)
        want = [
            rid
            for rid, holds in expected.items()
            if (numeric and holds(value, tags.get("zone")))
            or (rid == "label" and value == "broken")
            or (rid == "other" and not numeric)
        ]
        assert fired == want, (value, tags)


@pytest.mark.parametrize("seed", [6, 8, 10, 23])
def test_a_sum_of_readings_that_cancel_out_is_exactly_zero(seed: int) -> None:
    # runs of +x and −x: their float sum in any order strays from 0 by a few ulps, on either side
    e = engine(
        """
        - id: net-positive
          tier: edge
          when: {kind: flow, sum: "> 0"}
          within: 200s
          cooldown: 1s
          then: [{alert: {to: [utilities]}}]
        """,
        lateness="10m",
    )
    rng = random.Random(seed)
    x = rng.choice([99.9, 0.3, 777.7])
    values: list[float] = []
    while len(values) < 400:
        values += [rng.choice([x, -x])] * rng.choice([64, 32, 128, 65, 63])
    readings = [(1000.0 + i, v) for i, v in enumerate(values[:400])]
    fired = alerts(run(e, *(ev("flow", v, t, sensor="f1") for t, v in readings)))
    exact = [sum(Fraction(v) for t, v in readings if a.ts - 200 <= t <= a.ts) for a in fired]
    assert fired and all(s > 0 for s in exact)


def test_a_sum_beyond_the_largest_float_is_infinite_not_an_error() -> None:
    e = engine(
        """
        - id: big-flow
          tier: edge
          when: {kind: flow, sum: "> 100"}
          within: 60s
          cooldown: 1s
          then: [{alert: {to: [utilities]}}]
        - id: net-flow
          tier: edge
          when: {kind: flow, sum: "< 1.5e308"}
          within: 60s
          cooldown: 1s
          then: [{alert: {to: [utilities]}}]
        """
    )
    fired = [
        [a.reflex for a in alerts(e.process(ev("flow", v, 1000.0 + i, sensor="f1")))]
        for i, v in enumerate([1e308, 1e308, -1e308, 1.0, 1.7e308])
    ]
    # the sums: 1e308, 2e308 (inf as a float), 1e308 exactly, 1e308 + 1 (1e308 as a float), inf
    assert fired == [
        ["big-flow", "net-flow"],
        ["big-flow"],
        ["big-flow", "net-flow"],
        ["big-flow", "net-flow"],
        ["big-flow"],
    ]
