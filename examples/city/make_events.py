"""Write `events.jsonl`: 30 minutes of a small synthetic city for `nerve replay --rules examples/city`.

Deterministic: fixed start time, fixed random seed, events sorted by (ts, sensor). Run it again and the
file is byte-identical:

    python examples/city/make_events.py            # writes examples/city/events.jsonl
    python examples/city/make_events.py -          # writes to stdout

Background telemetry (gateway and smoke-detector heartbeats, air quality, freezer, water mains, lifts)
runs all the time; on top of it these scenarios happen (minute after the start → what fires):

     5  kitchen fire in yuelu/c12/b1/f3/r301             → room-fire at 5:53 (+ gas valve, sounders)
     5  smoke-c12-b3-r202 sends its last heartbeat       → smoke-detector-silent at 20:00
     9  gw-c12-b3 sends its last heartbeat until 18:00   → gateway-silent at 11:00; `cleared` only with
                                                           --until 1767227400 (see examples/README.md)
    10  gas in three buildings of c13 (10:00–15:50)      → gas-leak-room ×3, gas-leak-cluster at 15:50
    14  lift lift-c12-b2-1 stuck 4 minutes, nobody acks  → elevator-entrapment at 16:00, escalated at 21:00
    20  mains lost in four buildings of c07              → community-power-outage at 20:30
    24  water main main-7 bursts                         → water-main-pressure-drop at 24:05
    12+ PM2.5 in c05 climbs                              → air-quality-pm25 at 26:40
    26  rush hour at metro-park                          → station-crowding at 28:00
and a few near misses that must stay quiet: 8 %LEL of gas in c12, a door opened during opening hours,
a slow pressure decline on main-9, a 90-second lift stop in c12/b1, a healthy freezer.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z; every ts is T0 + whole seconds
DURATION = 30 * 60
SEED = 20260101

Event = dict[str, Any]


def ev(
    site: str,
    sensor: str,
    kind: str,
    value: bool | int | float | str,
    t: int,
    unit: str | None = None,
    tags: dict[str, str] | None = None,
) -> Event:
    """One SensorEvent as a plain dict, with a readable deterministic id."""
    e: Event = {
        "id": f"{sensor}@{t}",
        "site": site,
        "sensor": sensor,
        "kind": kind,
        "value": value,
        "ts": T0 + t,
    }
    if unit is not None:
        e["unit"] = unit
    if tags:
        e["tags"] = tags
    return e


def background(rnd: random.Random) -> list[Event]:
    out: list[Event] = []
    # Gateway heartbeats every 60 s; gw-c12-b3 is silent from minute 10 to minute 18.
    for gw in ("b1", "b2", "b3"):
        for t in range(0, DURATION, 60):
            if gw == "b3" and 600 <= t < 1080:
                continue
            out.append(ev(f"yuelu/c12/{gw}", f"gw-c12-{gw}", "heartbeat", True, t))
    # Smoke-detector heartbeats every 5 minutes; smoke-c12-b3-r202 dies after minute 8.
    for room in ("r201", "r202"):
        for t in range(0, DURATION, 300):
            if room == "r202" and t > 480:
                continue
            out.append(ev(f"yuelu/c12/b3/f2/{room}", f"smoke-c12-b3-{room}", "heartbeat", True, t))
    # Air quality in c05 every 2 minutes: clean, then climbing from minute 12.
    for i, mon in enumerate(("aq-school", "aq-market", "aq-park")):
        for t in range(30 + 10 * i, DURATION, 120):
            base = 40 + max(0, t - 720) * 0.06
            out.append(
                ev(
                    f"yuelu/c05/{mon}",
                    f"aq-c05-{i + 1}",
                    "pm25",
                    round(base + rnd.uniform(-4, 4), 1),
                    t,
                    unit="ug/m3",
                )
            )
    # A healthy vaccine freezer, every 5 minutes.
    out.extend(
        ev(
            "yuelu/c12/clinic/f1/pharmacy",
            "freezer-vax-1",
            "temperature",
            round(-20 + rnd.uniform(-1, 1), 1),
            t,
            unit="Cel",
            tags={"appliance": "freezer"},
        )
        for t in range(0, DURATION, 300)
    )
    # Water mains every minute: main-7 bursts at minute 24, main-9 declines slowly (near miss).
    for t in range(0, DURATION, 60):
        p7 = 4.2 if t < 1440 else 2.4
        out.append(
            ev(
                "yuelu/c12/main-7",
                "press-main-7",
                "water_pressure",
                round(p7 + rnd.uniform(-0.05, 0.05), 2),
                t + 5,
                unit="bar",
            )
        )
        out.append(
            ev(
                "yuelu/c13/main-9",
                "press-main-9",
                "water_pressure",
                round(4.0 - t * 0.0008, 2),
                t + 7,
                unit="bar",
            )
        )
    return out


def scenarios() -> list[Event]:
    out: list[Event] = []
    fire_room = "yuelu/c12/b1/f3/r301"
    for k, t in enumerate(range(300, 360, 10)):
        out.append(ev(fire_room, "smoke-c12-b1-r301", "smoke", round(0.05 + 0.06 * k, 2), t, unit="dB/m"))
        out.append(ev(fire_room, "heat-c12-b1-r301", "temperature", 24 + 8 * k, t + 3, unit="Cel"))
    # Gas: three buildings of c13 within 6 minutes; 8 %LEL in c12 is a near miss.
    out.append(ev("yuelu/c13/b1/f1/r102", "gas-c13-b1-r102", "gas", 13, 600, unit="%LEL"))
    out.append(ev("yuelu/c13/b2/f2/r201", "gas-c13-b2-r201", "gas", 17, 780, unit="%LEL"))
    out.append(ev("yuelu/c12/b2/f1/r105", "gas-c12-b2-r105", "gas", 8, 800, unit="%LEL"))
    out.append(ev("yuelu/c13/b4/f1/r101", "gas-c13-b4-r101", "gas", 11, 950, unit="%LEL"))
    # Lifts: lift-c12-b2-1 stuck 4 minutes; lift-c12-b1-1 stops for 90 s only (near miss).
    out.extend(
        ev("yuelu/c12/b2/shaft-1", "lift-c12-b2-1", "elevator", "stuck", t) for t in range(840, 1080, 30)
    )
    out.append(ev("yuelu/c12/b2/shaft-1", "lift-c12-b2-1", "elevator", "moving", 1080))
    out.extend(
        ev("yuelu/c12/b1/shaft-1", "lift-c12-b1-1", "elevator", "stuck", t) for t in range(900, 990, 30)
    )
    out.append(ev("yuelu/c12/b1/shaft-1", "lift-c12-b1-1", "elevator", "moving", 990))
    # Power: four buildings of c07 lose mains within a minute, back 5 minutes later.
    for i, b in enumerate(("b1", "b2", "b3", "b4")):
        out.append(ev(f"yuelu/c07/{b}", f"mains-c07-{b}", "power", False if i % 2 == 0 else 0, 1200 + 15 * i))
        out.append(ev(f"yuelu/c07/{b}", f"mains-c07-{b}", "power", True if i % 2 == 0 else 1, 1500 + 15 * i))
    # A door opened during opening hours (near miss for door-opened-after-hours).
    out.append(ev("yuelu/c12/b1/f1/r100", "door-c12-b1-main", "door", "open", 400, tags={"schedule": "open"}))
    out.append(
        ev("yuelu/c12/b1/f1/r100", "door-c12-b1-main", "door", "closed", 410, tags={"schedule": "open"})
    )
    # Rush hour at metro-park: two gates, every 30 s.
    out.extend(
        ev(
            f"yuelu/c03/metro-park/gate-{gate}",
            f"count-park-{gate}",
            "people_in",
            55 + (t - 1560) // 30 * 3,
            t,
        )
        for t in range(1560, 1800, 30)
        for gate in ("a", "b")
    )
    return out


def main(argv: list[str]) -> None:
    rnd = random.Random(SEED)  # noqa: S311 - reproducible noise, not cryptography
    events = sorted(background(rnd) + scenarios(), key=lambda e: (e["ts"], e["sensor"]))
    text = "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in events)
    if argv[1:] == ["-"]:
        sys.stdout.write(text)
    else:
        (Path(__file__).parent / "events.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
