"""The synthetic city: districts → communities → buildings → floors → rooms, and the sensors in them.

Pure and deterministic: `build_city(shape, seed)` gives the same city for the same arguments. Names follow
examples/city: sites `yuelu/c1/b2/f2/r201`, floor-level slots of a building (`stair-a`, `shaft-1`, `roof`,
basement floor `fb1`), building-level monitors (mains power) and gateways `gw-yuelu-c1-b2`.

Each building's gateway listens under its own topic root (`city/yuelu/c1/b2` by default); the simulator
publishes every sensor on a topic below that root which one of `gateway_subscriptions(building)` decodes.
"""

from __future__ import annotations

import difflib
import math
import random
import string
from dataclasses import dataclass, field
from typing import Any, Final, Literal

DEFAULT_TOPIC_ROOT: Final = "city/{district}/{community}/{building}"
"""Where a building's sensors publish; `{building_path}` (`yuelu/c1/b2`) and `{gateway}` are also allowed."""

ROOT_FIELDS: Final = ("district", "community", "building", "building_path", "gateway")

BASEMENT: Final = ("fb1", "pump-room")
"""The basement slot of every building: floor `fb1`, room `pump-room` (as in examples/city/water.test.yaml)."""

Schedule = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class CityShape:
    """How big the city is. The defaults (1 district, 3 communities, 4 buildings each, 3 floors, 4 rooms,
    about 900 sensors) suit one machine. `opening_hours` are local hours [open, close) of every building;
    `utc_offset_h` turns epoch seconds into local time (Changsha: +8)."""

    districts: tuple[str, ...] = ("yuelu",)
    communities: int = 3
    buildings: int = 4
    floors: int = 3
    rooms: int = 4
    lifts: int = 1
    opening_hours: tuple[int, int] = (7, 22)
    utc_offset_h: float = 8.0

    def __post_init__(self) -> None:
        for name in ("communities", "buildings", "floors", "rooms", "lifts"):
            value = getattr(self, name)
            if not 1 <= value <= 999:
                raise ValueError(f"city shape: {name} must be 1–999 (got {value})")
        if not self.districts or len(set(self.districts)) != len(self.districts):
            raise ValueError(f"city shape: districts must be distinct and not empty (got {self.districts})")
        for district in self.districts:
            if not district or any(c in district for c in "/+#* \t") or "{" in district:
                raise ValueError(
                    f"city shape: {district!r} is not a district name (no '/', wildcards or spaces)"
                )
        opens, closes = self.opening_hours
        if not 0 <= opens <= closes <= 24:
            raise ValueError(
                f"city shape: opening_hours must be 0 <= open <= close <= 24 (got {self.opening_hours})"
            )
        if not math.isfinite(self.utc_offset_h) or abs(self.utc_offset_h) > 14:
            raise ValueError(f"city shape: utc_offset_h must be within ±14 h (got {self.utc_offset_h})")


@dataclass(frozen=True, slots=True)
class Sensor:
    """One device. `slot` is its place below the building: (floor, room), (floor-level slot,) or () for a
    building-level monitor; `baseline` is its own offset from the normal reading (seeded)."""

    id: str
    kind: str
    building: str
    slot: tuple[str, ...]
    unit: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    baseline: float = 0.0
    legacy: bool = False  # a mains monitor of the old type: 1/0 instead of true/false

    @property
    def site(self) -> str:
        """The event site: the building path and the slot."""
        return "/".join((self.building, *self.slot))

    def topic(self, root: str) -> str:
        """The MQTT topic below a building's topic root `root`."""
        if len(self.slot) == 2:
            return f"{root}/sensors/{self.slot[0]}/{self.slot[1]}/{self.id}/{self.kind}"
        if len(self.slot) == 1:
            return f"{root}/sensors/{self.slot[0]}/{self.id}/{self.kind}"
        return f"{root}/meters/{self.id}/{self.kind}"


@dataclass(frozen=True, slots=True)
class Building:
    """One building and its gateway. `rooms` are room site paths, `sensors` every device that publishes;
    `heartbeat` is the gateway's own heartbeat (the gateway agent sends it, the simulator does not)."""

    district: str
    community: str
    name: str
    floors: tuple[str, ...]
    rooms: tuple[str, ...]
    sensors: tuple[Sensor, ...]
    opening_hours: tuple[int, int]
    utc_offset_h: float
    _by_slot: dict[tuple[str, str], Sensor] = field(repr=False, compare=False)

    @property
    def path(self) -> str:
        """The building's site path: `district/community/building`."""
        return f"{self.district}/{self.community}/{self.name}"

    @property
    def community_path(self) -> str:
        return f"{self.district}/{self.community}"

    @property
    def gateway(self) -> str:
        """The id of the building's gateway, e.g. `gw-yuelu-c1-b2`."""
        return f"gw-{self.district}-{self.community}-{self.name}"

    @property
    def heartbeat(self) -> Sensor:
        """The gateway's heartbeat as a sensor (kind `heartbeat`, building-level site)."""
        return Sensor(id=self.gateway, kind="heartbeat", building=self.path, slot=())

    def sensor(self, kind: str, slot: str = "") -> Sensor:
        """The sensor of `kind` at `slot` ("" building level, `f2/r201`, `stair-a`, `fb1/pump-room`)."""
        found = self._by_slot.get((kind, slot))
        if found is None:
            raise KeyError(f"no {kind} sensor at {self.path}/{slot}".rstrip("/"))
        return found

    def of_kind(self, kind: str) -> list[Sensor]:
        return [s for s in self.sensors if s.kind == kind]

    def local_hour(self, ts: float) -> float:
        """Local time of day in hours [0, 24) for epoch seconds `ts`."""
        return ((ts + self.utc_offset_h * 3600.0) % 86400.0) / 3600.0

    def schedule(self, ts: float) -> Schedule:
        """Whether the building is open at `ts` (the `schedule` tag its door events carry)."""
        opens, closes = self.opening_hours
        return "open" if opens <= self.local_hour(ts) < closes else "closed"


@dataclass(frozen=True, slots=True)
class City:
    """The whole city; `sensors` lists every publishing device, buildings in path order."""

    shape: CityShape
    seed: int
    buildings: tuple[Building, ...]

    @property
    def sensors(self) -> list[Sensor]:
        return [s for b in self.buildings for s in b.sensors]

    @property
    def communities(self) -> list[str]:
        """Community paths (`yuelu/c1`), in order."""
        return list(dict.fromkeys(b.community_path for b in self.buildings))

    def building(self, path: str) -> Building:
        """The building at `path` (`yuelu/c1/b2`, or any site below it); ValueError names close matches."""
        head = "/".join(path.strip("/").split("/")[:3])
        for b in self.buildings:
            if b.path == head:
                return b
        close = difflib.get_close_matches(head, [b.path for b in self.buildings], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"no building {head!r} in this city{hint}")

    def community(self, path: str) -> list[Building]:
        """The buildings of the community at `path` (`yuelu/c1`, or any site below it)."""
        head = "/".join(path.strip("/").split("/")[:2])
        found = [b for b in self.buildings if b.community_path == head]
        if not found:
            close = difflib.get_close_matches(head, self.communities, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"no community {head!r} in this city{hint}")
        return found


def _room_sensors(building: str, code: str, floor: str, room: str, rng: random.Random) -> list[Sensor]:
    slot = (floor, room)
    return [
        Sensor(f"smoke-{code}-{room}", "smoke", building, slot, "dB/m"),
        Sensor(f"heat-{code}-{room}", "temperature", building, slot, "Cel", baseline=rng.uniform(-1.5, 1.5)),
        Sensor(f"gas-{code}-{room}", "gas", building, slot, "%LEL"),
        Sensor(f"motion-{code}-{room}", "motion", building, slot),
        Sensor(f"door-{code}-{room}", "door", building, slot),
        Sensor(f"reader-{code}-{room}", "badge", building, slot),
    ]


def _building(shape: CityShape, district: str, community: str, name: str, rng: random.Random) -> Building:
    path = f"{district}/{community}/{name}"
    code = f"{district}-{community}-{name}"
    floors = tuple(f"f{n}" for n in range(1, shape.floors + 1))
    rooms: list[str] = []
    sensors: list[Sensor] = []
    for number, floor in enumerate(floors, start=1):
        for index in range(1, shape.rooms + 1):
            room = f"r{number * 100 + index}"
            rooms.append(f"{path}/{floor}/{room}")
            sensors.extend(_room_sensors(path, code, floor, room, rng))
    sensors.append(Sensor(f"smoke-{code}-stair-a", "smoke", path, ("stair-a",), "dB/m"))
    sensors.extend(
        Sensor(f"lift-{code}-{n}", "elevator", path, (f"shaft-{n}",)) for n in range(1, shape.lifts + 1)
    )
    sensors.append(Sensor(f"pm25-{code}", "pm25", path, ("roof",), "ug/m3", baseline=rng.uniform(-5, 5)))
    sensors.append(Sensor(f"flood-{code}-b1", "water_level", path, BASEMENT, "cm", (("gauge", "floor"),)))
    sensors.append(Sensor(f"mains-{code}", "power", path, (), legacy=rng.random() < 0.3))
    by_slot = {(s.kind, "/".join(s.slot)): s for s in sensors}
    return Building(
        district=district,
        community=community,
        name=name,
        floors=floors,
        rooms=tuple(rooms),
        sensors=tuple(sensors),
        opening_hours=shape.opening_hours,
        utc_offset_h=shape.utc_offset_h,
        _by_slot=by_slot,
    )


def build_city(shape: CityShape | None = None, seed: int = 0) -> City:
    """The city of `shape` (default `CityShape()`); `seed` sets per-sensor offsets and monitor types."""
    shape = shape or CityShape()
    rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
    buildings = [
        _building(shape, district, f"c{c}", f"b{b}", rng)
        for district in shape.districts
        for c in range(1, shape.communities + 1)
        for b in range(1, shape.buildings + 1)
    ]
    return City(shape=shape, seed=seed, buildings=tuple(buildings))


# ------------------------------------------------------------------ topics and gateway configs


def check_topic_root(template: str) -> str:
    """Validate a topic root template: only `ROOT_FIELDS` placeholders, no wildcards; returns it."""
    if not template or "+" in template or "#" in template or "\x00" in template:
        raise ValueError(f"topic root {template!r}: must be non-empty, without + # or NUL")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"topic root {template!r}: {exc}") from None
    for name in names:
        if name not in ROOT_FIELDS:
            allowed = ", ".join("{" + f + "}" for f in ROOT_FIELDS)
            raise ValueError(f"topic root {template!r}: unknown placeholder {{{name}}}; allowed: {allowed}")
    return template


def topic_root(building: Building, template: str = DEFAULT_TOPIC_ROOT) -> str:
    """The building's topic root, e.g. `city/yuelu/c1/b2`."""
    root = check_topic_root(template).format(
        district=building.district,
        community=building.community,
        building=building.name,
        building_path=building.path,
        gateway=building.gateway,
    )
    if any(not level for level in root.split("/")):
        raise ValueError(f"topic root {root!r} (from {template!r}) has an empty level")
    return root


def topic_roots(city: City, template: str = DEFAULT_TOPIC_ROOT) -> dict[str, str]:
    """Building path → topic root; ValueError when two buildings would share a root (and a gateway)."""
    roots = {b.path: topic_root(b, template) for b in city.buildings}
    seen: dict[str, str] = {}
    for path, root in roots.items():
        if root in seen:
            raise ValueError(
                f"topic root {template!r} gives {root!r} to both {seen[root]} and {path}: each building's "
                "gateway needs its own root (use {building_path} or {district}/{community}/{building})"
            )
        seen[root] = path
    return roots


def gateway_subscriptions(building: Building, template: str = DEFAULT_TOPIC_ROOT) -> list[str]:
    """The topic templates (format `auto`) under which the building's gateway decodes every simulated topic:
    room devices, floor-level devices (stairwells, lift shafts, roof) and building-level meters."""
    root = topic_root(building, template)
    return [
        f"{root}/sensors/+floor/+room/+sensor/+kind",
        f"{root}/sensors/+floor/+sensor/+kind",
        f"{root}/meters/+sensor/+kind",
    ]


def gateway_config(
    building: Building,
    template: str = DEFAULT_TOPIC_ROOT,
    *,
    rules: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 1883,
    **extra: Any,
) -> dict[str, Any]:
    """The fields of an `EdgeConfig` for the building's gateway (`extra` adds or overrides top-level keys)."""
    config: dict[str, Any] = {
        "gateway": building.gateway,
        "site": building.path,
        "rules": list(rules or []),
        "mqtt": {
            "host": host,
            "port": port,
            "subscriptions": [{"topic": t} for t in gateway_subscriptions(building, template)],
        },
    }
    config.update(extra)
    return config
