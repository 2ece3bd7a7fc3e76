"""Value windows forget the event ids of readings older than the watermark (but for the MAX_EVIDENCE just
before it): nothing the engine says changes — alerts, their ids and their evidence are those of an engine
that keeps every id — while a reading then costs its window two doubles, not its id's bytes too."""

from __future__ import annotations

import random
import textwrap
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from reflexes import Engine
from reflexes.engine import Output
from reflexes.judging import MAX_EVIDENCE
from reflexes.store import META_KEY, MemoryStore
from reflexes.windows import Ids, compact, insert_value, jsonable, value_window
from schemas import SensorEvent
from tests.unit.reflex_kit import alerts, bytes_per_reading, engine, run

AGGREGATES = """
- id: warm-room
  tier: edge
  when: {kind: temperature, avg: "> 50"}
  within: 10s
  per: room
  cooldown: 1s
  then: [{alert: {to: [fire]}}]
- id: peak
  tier: edge
  when: {kind: temperature, max: ">= 97"}
  within: 4s
  per: room
  then: [{alert: {to: [fire]}}]
- id: cold-floor
  tier: edge
  when: {kind: temperature, min: "< 3"}
  within: 6s
  per: floor
  cooldown: 2s
  then: [{alert: {to: [fire]}}]
- id: total
  tier: edge
  when: {kind: temperature, sum: "> 4000"}
  within: 8s
  per: room
  cooldown: 500ms
  then: [{alert: {to: [fire]}}]
"""

ROOMS = ["d/c/b/f1/r1", "d/c/b/f1/r2", "d/c/b/f2/r1"]


def stream(seed: int, n: int = 400) -> list[SensorEvent]:
    """Readings in rough time order: most a little after the one before, some up to 1.5 s earlier (late
    for a 1 s lateness, or not), some again (the same event twice)."""
    rnd = random.Random(seed)
    out: list[SensorEvent] = []
    ts = 1e9
    for i in range(n):
        if out and rnd.random() < 0.05:
            out.append(rnd.choice(out[-50:]))
            continue
        ts += rnd.choice((0.0, 0.01, 0.05, 0.1))
        at = ts - (rnd.random() * 1.5 if rnd.random() < 0.2 else 0.0)
        room = rnd.choice(ROOMS)
        out.append(
            SensorEvent(
                id=f"e{i:05d}",
                site=room,
                sensor=f"t-{room[-4:]}-{rnd.randrange(3)}",
                kind="temperature",
                value=rnd.choice((rnd.uniform(0, 100), rnd.randrange(0, 100))),
                ts=at,
            )
        )
    return out


def readings(n: int, value: float) -> list[SensorEvent]:
    """One sensor's readings of `value`, 10 a second."""
    return [
        SensorEvent(
            id=f"e{i:04d}", site=ROOMS[0], sensor="t-1", kind="temperature", value=value, ts=1e9 + i / 10
        )
        for i in range(n)
    ]


def keeping(e: Engine) -> Engine:
    """`e`, made to keep every id (the control)."""
    for family in e._families.values():
        family.keeps_ids = True
    return e


def id_windows(e: Engine) -> list[Ids]:
    return [w["i"] for _, w in e.store.items() if isinstance(w, dict) and isinstance(w.get("i"), Ids)]


def said(outputs: list[Output]) -> list[dict[str, Any]]:
    return [o.model_dump() for o in outputs]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_forgetting_ids_changes_nothing_the_engine_says(seed: int) -> None:
    forgets, keeps = engine(AGGREGATES, lateness="1s"), keeping(engine(AGGREGATES, lateness="1s"))
    events = stream(seed)
    out, control = run(forgets, *events), run(keeps, *events)

    assert said(out) == said(control)
    assert all("" not in a.evidence for a in alerts(out))
    assert forgets.late == keeps.late
    assert forgets.stats()["readings"] == keeps.stats()["readings"]
    forgotten = sum(ids.skip for ids in id_windows(forgets))
    assert forgotten > 0 and not any(ids.skip for ids in id_windows(keeps))


PEAK = """
- id: peak
  tier: edge
  when: {kind: temperature, max: ">= 97"}
  within: 30s
  per: room
  then: [{alert: {to: [fire]}}]
"""


def test_ids_are_kept_for_the_readings_a_late_event_can_still_be_judged_with() -> None:
    """An event right at the watermark (the oldest one still applied) names the MAX_EVIDENCE readings up to
    it; older ids are forgotten."""
    e = engine(PEAK, lateness="1s")
    events = readings(200, 60.0)
    run(e, *events)
    (ids,) = id_windows(e)
    before = sum(1 for x in events if x.ts < e.watermark)  # readings older than the watermark
    assert before - MAX_EVIDENCE - 8 <= ids.skip <= before - MAX_EVIDENCE  # forgotten every 8 readings
    late = SensorEvent(id="late", site=ROOMS[0], sensor="t-2", kind="temperature", value=99.0, ts=e.watermark)
    (alert,) = alerts(e.process(late))
    kept = [x.id for x in events if x.ts <= late.ts][-(MAX_EVIDENCE - 1) :]
    assert list(alert.evidence) == [*kept, "late"]


RISE = """
- id: surge
  tier: edge
  when: {kind: temperature, rise: ">= 50"}
  within: 60s
  then: [{alert: {to: [fire]}}]
"""


def test_a_rise_names_the_first_reading_of_its_span_however_old() -> None:
    """A rise or fall's evidence is the span's first and last reading: its family keeps every id."""
    e = engine(RISE, lateness="1s")
    events = readings(300, 10.0)
    out = run(e, *events)
    assert not alerts(out) and not any(ids.skip for ids in id_windows(e))
    hot = SensorEvent(id="hot", site=ROOMS[0], sensor="t-1", kind="temperature", value=70.0, ts=1e9 + 30.0)
    (alert,) = alerts(e.process(hot))
    assert alert.evidence[-1] == "hot" and alert.evidence[0].startswith("e0")


def test_a_reading_older_than_the_watermark_costs_its_window_no_id_bytes() -> None:
    """A 30 s room average at an edge keeps every reading of 30 s, but the ids of only the last second:
    two doubles a reading (and the block summaries and the arrays' spare room), not 20 bytes more."""
    rule = """
        - id: hot-room
          tier: edge
          when: {kind: temperature, avg: "> 400"}
          within: 30s
          per: room
          then: [{alert: {to: [fire]}}]
        """
    forgets, keeps = engine(rule, lateness="1s"), keeping(engine(rule, lateness="1s"))
    id_suffix = "-0123456789"  # 20-character ids: what a kept id costs
    lean, full = bytes_per_reading(forgets, id_suffix), bytes_per_reading(keeps, id_suffix)
    assert lean < 24 and full - lean > 18, f"{lean:.1f} against {full:.1f} bytes per reading"


def test_a_rise_given_a_window_that_forgot_its_ids_names_no_empty_id() -> None:
    """A reload adds a rise reflex to a sensor's window an average kept (and forgot the old ids of): its
    alert leaves out the first reading's forgotten id, and from then on the window keeps every id."""
    average = """
        - id: warm
          tier: edge
          when: {kind: temperature, avg: "> 90"}
          within: 60s
          then: [{alert: {to: [fire]}}]
        """
    e = engine(average, lateness="1s")
    events = readings(300, 10.0)
    run(e, *events)
    (ids,) = id_windows(e)
    assert ids.skip > 0
    e.reload(engine(textwrap.dedent(average) + RISE, lateness="1s").rules)
    hot = SensorEvent(id="hot", site=ROOMS[0], sensor="t-1", kind="temperature", value=70.0, ts=1e9 + 30.0)
    (alert,) = [a for a in alerts(e.process(hot)) if a.reflex == "surge"]
    assert "" not in alert.evidence and alert.evidence[-1] == "hot"
    skip = ids.skip
    run(e, *[ev.model_copy(update={"id": f"n{i}", "ts": ev.ts + 31.0}) for i, ev in enumerate(events[:50])])
    assert ids.skip == skip  # a rise/fall reflex reads it now: nothing more forgotten


def test_a_host_that_restores_an_older_watermark_takes_events_before_forgotten_ids_as_applied() -> None:
    """The edge's periodic snapshot checkpoints the watermark before it writes the windows, which may have
    forgotten ids against a later one. Restored from it, an event older than a forgotten reading is taken
    as applied (it was late when that id was forgotten: a repeat is not counted twice); a repeat of a
    reading whose id is kept is recognised; an alert never names a forgotten id, and the engine goes on."""
    e = engine(PEAK, lateness="1s")
    events = readings(200, 60.0)
    run(e, *events[:100])
    e.checkpoint()
    early = e.store.get(META_KEY)
    assert early is not None
    run(e, *events[100:])
    (ids,) = id_windows(e)
    skip = ids.skip
    assert skip > 40
    saved = {key: orjson.loads(orjson.dumps(state, default=jsonable)) for key, state in e.store.items()}
    saved[META_KEY] = orjson.loads(orjson.dumps(early))  # as a snapshot whose windows were written later
    restored = Engine(e.rules, MemoryStore(saved))
    assert restored.watermark < events[skip - 5].ts and id_windows(restored)[0].skip == skip
    held = restored.stats()["readings"]

    assert run(restored, events[skip - 5], events[skip + 1]) == []  # repeats: a forgotten id, a kept one
    before = events[skip - 5].model_copy(
        update={"id": "before", "value": 99.0, "ts": events[skip - 5].ts + 0.01}
    )
    assert run(restored, before) == []  # older than a forgotten reading: was late
    assert restored.stats()["readings"] == held
    hot = events[skip + 3].model_copy(update={"id": "hot", "value": 99.0, "ts": events[skip + 3].ts + 0.01})
    (alert,) = alerts(restored.process(hot))
    assert alert.evidence == (*(x.id for x in events[skip : skip + 4]), "hot")
    assert restored.stats()["readings"] == held + 1


def test_a_window_of_long_ids_read_back_with_forgotten_ones_is_compact_again() -> None:
    """Forgotten ids come back from JSON as "": they are no id length, so ids all of one length over WIDE
    bytes (long hashes) still come back as Ids, which go on forgetting, not as a list."""
    w = value_window()
    for i in range(100):
        insert_value(w, float(i), 1.0, f"{i:0100d}")
    w["i"].forget(60)
    again = orjson.loads(orjson.dumps(w, default=jsonable))
    compact(again)
    assert isinstance(again["i"], Ids) and again["i"].skip == 60
    assert again["i"].tolist() == w["i"].tolist()
