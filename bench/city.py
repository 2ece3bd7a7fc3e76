"""A synthetic city of 10,000 sensors and a deterministic stream of their readings, for the benchmarks.

Layout: 4 districts × 5 communities × 10 buildings; each building has 50 sensors — 6 on the building
(gateway heartbeat, mains monitor, 2 lifts, outdoor PM2.5, water-main pressure), a stairwell smoke
detector, a basement water gauge and 4 floors × 3 rooms with smoke, heat and door sensors plus a gas
detector per kitchen, a CO detector and a badge reader or motion sensor. A few buildings are metro stations
(people counters instead of gas), clinics (freezer thermometers) or care homes (tagged thermometers).

Readings are mostly normal. Incidents — a room on fire, a building losing power and lifts, a community
with a grid outage and smog, a rising river — make the sensors of one place abnormal for a while, a few
single readings cross thresholds at random, and a few gateways and detectors fall silent. Event time rises
monotonically at `rate` events per simulated second with up to `jitter` seconds of disorder (less than the
rule sets' 5 s lateness, so no event is late).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from schemas import SensorEvent

Scalar = bool | int | float | str
DISTRICTS, COMMUNITIES, BUILDINGS, FLOORS, ROOMS = 4, 5, 10, 4, 3
T0 = 1_760_000_000.0
SPURIOUS = 0.0005  # chance that a normal reading crosses its threshold on its own
HEARTBEAT_SHARE = 0.1  # share of a smoke detector's messages that are heartbeats
UNITS = {
    "smoke": "dB/m",
    "temperature": "Cel",
    "gas": "%LEL",
    "co": "ppm",
    "pm25": "ug/m3",
    "water_level": "cm",
    "water_pressure": "bar",
}


@dataclass(slots=True)
class Sensor:
    sensor: str
    kind: str
    site: str
    role: str  # the value model: usually the kind; "freezer", "river", "power_int", … for variants
    tags: dict[str, Scalar]
    hot: tuple[float, float] | None = None  # incident window, seconds from the start
    silent_after: float | None = None  # stops reporting at this many seconds from the start


def _u(lo: float, hi: float) -> Callable[[float], float]:
    return lambda u: round(lo + (hi - lo) * u, 3)


# role → (normal reading, incident reading), each a function of a uniform draw u in [0, 1)
_VALUES: dict[str, tuple[Callable[[float], Scalar], Callable[[float], Scalar]]] = {
    "smoke": (_u(0.0, 0.03), _u(0.2, 0.9)),
    "temperature": (_u(19.0, 26.0), _u(60.0, 85.0)),
    "freezer": (_u(-22.0, -18.0), _u(-12.0, -8.0)),
    "care_home": (_u(20.0, 24.0), _u(12.0, 15.0)),
    "gas": (_u(0.0, 3.0), _u(12.0, 40.0)),
    "co": (_u(0.0, 9.0), _u(40.0, 120.0)),
    "pm25": (_u(15.0, 60.0), _u(90.0, 180.0)),
    "heartbeat": (lambda u: True, lambda u: True),
    "power": (lambda u: True, lambda u: False),
    "power_int": (lambda u: 1, lambda u: 0),
    "elevator": (lambda u: "moving" if u < 0.5 else "idle", lambda u: "stuck"),
    "door": (lambda u: "open" if u < 0.05 else "closed", lambda u: "open" if u < 0.5 else "closed"),
    "badge": (lambda u: "denied" if u < 0.03 else "granted", lambda u: "denied" if u < 0.5 else "granted"),
    "motion": (lambda u: u < 0.1, lambda u: u < 0.8),
    "people_in": (lambda u: int(u * 6), lambda u: 20 + int(u * 20)),
    "floor": (_u(0.0, 1.0), _u(5.0, 25.0)),
    "underpass": (_u(0.0, 3.0), _u(18.0, 40.0)),
    "river": (_u(180.0, 195.0), _u(180.0, 195.0)),  # the incident is a ramp, see _value
    "water_pressure": (_u(4.0, 4.6), _u(1.5, 2.5)),
}


@dataclass
class City:
    sensors: list[Sensor]
    buildings: list[str]
    rooms: list[str]


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sensors: list[Sensor] = []
        self.by_site: dict[str, list[Sensor]] = {}

    def add(self, prefix: str, kind: str, site: str, role: str = "", **tags: Scalar) -> Sensor:
        s = Sensor(f"{prefix}-{len(self.sensors):05d}", kind, site, role or kind, dict(tags))
        self.sensors.append(s)
        self.by_site.setdefault(site, []).append(s)
        return s

    def building(self, d: int, c: int, b: int) -> tuple[str, list[str]]:
        rng, add = self.rng, self.add
        site = f"d{d}/c{c}/b{b}"
        r = rng.random()
        btype = "station" if r < 0.05 else "clinic" if r < 0.10 else "care_home" if r < 0.15 else "home"
        schedule = "closed" if rng.random() < 0.15 else "open"
        add("gw", "heartbeat", site)
        add("power", "power", site, "power_int" if rng.random() < 0.3 else "power")
        add("lift", "elevator", site)
        add("lift", "elevator", site)
        add("pm25", "pm25", site)
        add("main", "water_pressure", site)
        add("smoke", "smoke", f"{site}/stair-a")
        gauge = "river" if (c, b) == (1, 1) else "underpass" if (c, b) == (1, 2) else "floor"
        add("level", "water_level", f"{site}/f0/r001", gauge, gauge=gauge)
        rooms = []
        for f in range(1, FLOORS + 1):
            for k in range(1, ROOMS + 1):
                room = f"{site}/f{f}/r{f}0{k}"
                rooms.append(room)
                add("smoke", "smoke", room)
                if btype == "care_home":
                    add("temp", "temperature", room, "care_home", use="care_home")
                elif btype == "clinic" and k == 3:
                    add("temp", "temperature", room, "freezer", appliance="freezer")
                else:
                    add("temp", "temperature", room)
                add("door", "door", room, schedule=schedule)
                if k == 1:
                    if btype == "station":
                        add("gate", "people_in", room)
                    else:
                        add("gas", "gas", room)
                if (f, k) == (1, 1):
                    add("co", "co", room)
                if (f, k) == (1, 2):
                    if rng.random() < 0.5:
                        add("badge", "badge", room)
                    else:
                        add("motion", "motion", room)
        return site, rooms

    def window(self, span: float) -> tuple[float, float]:
        start = self.rng.uniform(0.0, 0.6) * span
        return start, start + self.rng.uniform(0.25, 0.4) * span


def build_city(span: float, seed: int = 7) -> City:
    """The city, with incidents placed within the first `span` simulated seconds."""
    rng = random.Random(seed)
    bld = _Builder(rng)
    buildings: list[str] = []
    rooms: list[str] = []
    for d in range(1, DISTRICTS + 1):
        for c in range(1, COMMUNITIES + 1):
            for b in range(1, BUILDINGS + 1):
                site, rs = bld.building(d, c, b)
                buildings.append(site)
                rooms.extend(rs)
    for room in rng.sample(rooms, max(1, len(rooms) * 15 // 1000)):  # 1.5 % of rooms: fire, gas, flood
        hot = bld.window(span)
        for s in bld.by_site[room]:
            s.hot = hot
    for site in rng.sample(buildings, max(1, len(buildings) * 3 // 100)):  # 3 % of buildings: plant trouble
        hot = bld.window(span)
        for s in bld.sensors:
            if s.site.startswith(site + "/f0/") or s.site.startswith(site + "/stair") or s.site == site:
                s.hot = None if s.kind == "heartbeat" else hot
    communities = sorted({b.rsplit("/", 1)[0] for b in buildings})
    for community in rng.sample(communities, 2):  # grid outage and smog across a community
        hot = bld.window(span)
        for s in bld.sensors:
            if s.kind in ("power", "pm25") and s.site.startswith(community + "/"):
                s.hot = hot
    for s in bld.sensors:
        if s.role == "river":
            s.hot = (0.1 * span, 0.9 * span)
        elif (s.sensor.startswith("gw-") and rng.random() < 0.01) or (
            s.kind == "smoke" and rng.random() < 0.005
        ):
            s.silent_after = rng.uniform(0.1, 0.5) * span
    return City(bld.sensors, buildings, rooms)


def _value(s: Sensor, rel: float, rng: random.Random) -> Scalar:
    normal, incident = _VALUES[s.role]
    u = rng.random()
    if s.hot is not None and s.hot[0] <= rel < s.hot[1]:
        if s.role == "river":  # a flood wave: the level climbs 90 cm over the incident
            return round(185.0 + 90.0 * (rel - s.hot[0]) / (s.hot[1] - s.hot[0]) + 5.0 * u, 3)
        return incident(u)
    if rng.random() < SPURIOUS:
        return incident(u)
    return normal(u)


def make_events(
    city: City, n: int, rate: float = 20_000.0, seed: int = 11, jitter: float = 1.0
) -> list[SensorEvent]:
    """`n` validated events: sensors report round-robin (in a shuffled order) at `rate` events per second."""
    rng = random.Random(seed)
    sensors = city.sensors[:]
    rng.shuffle(sensors)
    out: list[SensorEvent] = []
    j = 0
    while len(out) < n:
        s = sensors[j % len(sensors)]
        j += 1
        rel = len(out) / rate
        if s.silent_after is not None and rel >= s.silent_after:
            continue
        kind: str = s.kind
        value: Scalar
        if kind == "smoke" and rng.random() < HEARTBEAT_SHARE:
            kind, value = "heartbeat", True
        else:
            value = _value(s, rel, rng)
        ts = round(T0 + rel - rng.random() * jitter, 6)
        out.append(
            SensorEvent(
                site=s.site, sensor=s.sensor, kind=kind, value=value, unit=UNITS.get(kind), ts=ts, tags=s.tags
            )
        )
    return out
