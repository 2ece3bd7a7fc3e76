"""Incidents injected into the city, each knowing exactly which alerts of examples/city it must cause.

A `Scenario` is a short script of readings (offsets in seconds from its start) for sensors it takes over,
optionally silencing a whole building, and the `ExpectedAlert`s that follow: reflex, tier, group and the
event time after its start at which each fires. Reflex ids, thresholds, `per` levels and durations are
those of examples/city (tests/unit/test_simulator.py replays every scenario through the real engine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from schemas import Scalar
from simulator.city import BASEMENT, Building, City, Sensor

Tier = Literal["edge", "brain"]
Status = Literal["raised", "escalated", "cleared"]

GATEWAY_HEARTBEAT_S: Final = 10.0
"""The gateway agent's default heartbeat interval (edge_agent.config.EdgeConfig.heartbeat_s)."""


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    """An alert a scenario must cause: `after_s` is its event time minus the scenario's start (seconds);
    `tolerance_s` how far either way it may land (only timer-driven alerts that depend on heartbeats the
    simulator does not send have one). Live, brain alerts driven by a timer (`absent`, `escalate`, `clear`)
    come out once the watermark passes them: about `lateness` (5 s) plus the idle margin later."""

    reflex: str
    tier: Tier
    group: str
    status: Status = "raised"
    after_s: float = 0.0
    tolerance_s: float = 0.0

    def describe(self) -> str:
        within = f" ±{self.tolerance_s:g}" if self.tolerance_s else ""
        return f"{self.reflex} ({self.tier}) {self.status} for {self.group} at +{self.after_s:g}{within} s"


@dataclass(frozen=True, slots=True)
class Scripted:
    """One reading a scenario publishes, `offset_s` seconds after its start."""

    offset_s: float
    sensor: Sensor
    value: Scalar


@dataclass(frozen=True, slots=True)
class Scenario:
    """An incident at `site`. While it runs (`span_s` from its start) the sensors it scripts send only its
    readings; a scenario that silences a building (`silence`, the gateway `gateway`) stops all of that
    building's traffic for `silence_s` — the host should stop that gateway's agent for as long."""

    kind: str
    site: str
    readings: tuple[Scripted, ...]
    expected: tuple[ExpectedAlert, ...]
    span_s: float
    note: str = ""
    silence: str | None = None
    gateway: str | None = None
    silence_s: float = 0.0
    after_hours: tuple[ExpectedAlert, ...] = ()  # added when `schedule_of` is closed at the start
    schedule_of: Building | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.site}"

    @property
    def sensors(self) -> frozenset[str]:
        """Ids of the sensors the scenario takes over for `span_s`."""
        return frozenset(r.sensor.id for r in self.readings)

    def expected_alerts(self, start_ts: float) -> tuple[ExpectedAlert, ...]:
        """The alerts when the scenario starts at epoch seconds `start_ts` (door events after hours add some)."""
        if (
            self.after_hours
            and self.schedule_of is not None
            and self.schedule_of.schedule(start_ts) == "closed"
        ):
            return self.expected + self.after_hours
        return self.expected

    @property
    def fires_within_s(self) -> float:
        """Event time after the start by which every `raised` alert has fired (seconds)."""
        return max((a.after_s + a.tolerance_s for a in self.expected if a.status == "raised"), default=0.0)


# ------------------------------------------------------------------ the scenarios


def _room(city: City, site: str) -> tuple[Building, str]:
    """(building, `floor/room` slot) for a room path, or the building's default room (2nd floor, 1st room)."""
    building = city.building(site)
    parts = site.strip("/").split("/")
    if len(parts) == 3:
        floor = building.floors[min(1, len(building.floors) - 1)]
        room = next(r for r in building.rooms if r.startswith(f"{building.path}/{floor}/"))
        return building, room.removeprefix(building.path + "/")
    if len(parts) == 5 and "/".join(parts) in building.rooms:
        return building, "/".join(parts[3:])
    raise ValueError(
        f"{site!r} is not a building or a room of this city (rooms look like {building.rooms[0]})"
    )


def fire(city: City, site: str) -> Scenario:
    """Smoke then heat in one room within 30 s → edge `room-fire` (per room) 5 s after the start."""
    building, slot = _room(city, site)
    smoke, heat = building.sensor("smoke", slot), building.sensor("temperature", slot)
    room = f"{building.path}/{slot}"
    return Scenario(
        kind="fire",
        site=room,
        readings=(
            Scripted(0, smoke, 0.25),
            Scripted(5, heat, 63.0),
            Scripted(10, smoke, 0.32),
            Scripted(15, heat, 71.0),  # within the 5-minute cooldown: no second page
        ),
        expected=(ExpectedAlert("room-fire", "edge", room, after_s=5),),
        span_s=20,
        note="smoke clears after 20 s, far short of smoke-smoldering's 2 minutes; cooldown 5m per room",
    )


def gas_leak_cluster(city: City, site: str) -> Scenario:
    """Gas ≥ 10 %LEL in one room of 3 buildings of a community within 40 s → edge `gas-leak-room` in each
    room, brain `gas-leak-cluster` for the community at the third."""
    buildings = city.community(site)
    if len(buildings) < 3:
        raise ValueError(
            f"gas-leak-cluster needs a community of 3 or more buildings; {site!r} has {len(buildings)}"
        )
    community = buildings[0].community_path
    readings: list[Scripted] = []
    expected: list[ExpectedAlert] = []
    for offset, value, building in zip((0, 20, 40), (14.0, 11.0, 18.0), buildings[:3], strict=True):
        slot = building.rooms[0].removeprefix(building.path + "/")
        readings.append(Scripted(offset, building.sensor("gas", slot), value))
        expected.append(ExpectedAlert("gas-leak-room", "edge", building.rooms[0], after_s=offset))
    expected.append(ExpectedAlert("gas-leak-cluster", "brain", community, after_s=40))
    return Scenario(
        kind="gas-leak-cluster",
        site=community,
        readings=tuple(readings),
        expected=tuple(expected),
        span_s=50,
        note="cooldowns: gas-leak-room 5m per room, gas-leak-cluster 30m per community",
    )


def flooding(city: City, site: str) -> Scenario:
    """Basement water above 3 cm, reported every 10 s for 2 minutes → edge `basement-flooding` at +120 s."""
    building = city.building(site)
    gauge = building.sensor("water_level", "/".join(BASEMENT))
    readings = tuple(Scripted(t, gauge, 4.0 + 0.5 * (t // 10)) for t in range(0, 131, 10))
    return Scenario(
        kind="flooding",
        site=building.path,
        readings=readings,
        expected=(ExpectedAlert("basement-flooding", "edge", gauge.id, after_s=120),),
        span_s=130,
        note="basement-flooding needs the water held for 2m (for: 2m); cooldown 30m per gauge",
    )


def power_outage(city: City, site: str) -> Scenario:
    """Mains lost in 3 buildings of a community within 30 s → brain `community-power-outage` at +30 s.
    The meters stay silent (on battery) for 90 s, then report mains present again."""
    buildings = city.community(site)
    if len(buildings) < 3:
        raise ValueError(
            f"power-outage needs a community of 3 or more buildings; {site!r} has {len(buildings)}"
        )
    readings = []
    for offset, building in zip((0, 15, 30), buildings[:3], strict=True):
        mains = building.sensor("power")
        readings.append(Scripted(offset, mains, 0 if mains.legacy else False))
    community = buildings[0].community_path
    return Scenario(
        kind="power-outage",
        site=community,
        readings=tuple(readings),
        expected=(ExpectedAlert("community-power-outage", "brain", community, after_s=30),),
        span_s=90,
        note="a building losing mains 3 times within 30m also raises power-flapping: run it at most twice "
        "per 30 minutes on one community; cooldown 30m",
    )


def silent_gateway(city: City, site: str, silence_s: float = 150.0) -> Scenario:
    """A building falls silent: the simulator stops its traffic and the host stops its gateway for
    `silence_s` → brain `gateway-silent` 2 minutes after the gateway's last heartbeat, `cleared` 1 minute
    after it is back (assuming the gateway restarts at `silence_s` and beats at once)."""
    if silence_s <= 120.0 + GATEWAY_HEARTBEAT_S:
        raise ValueError(
            f"silent-gateway: silence_s must exceed 2 minutes plus one heartbeat (got {silence_s})"
        )
    building = city.building(site)
    return Scenario(
        kind="silent-gateway",
        site=building.path,
        readings=(),
        expected=(
            ExpectedAlert(
                "gateway-silent", "brain", building.path, after_s=120, tolerance_s=GATEWAY_HEARTBEAT_S
            ),
            ExpectedAlert(
                "gateway-silent", "brain", building.path, "cleared", silence_s + 60, GATEWAY_HEARTBEAT_S
            ),
        ),
        span_s=silence_s,
        silence=building.path,
        gateway=building.gateway,
        silence_s=silence_s,
        note=f"stop {building.gateway} at the start and restart it after {silence_s:g} s; absent for: 2m",
    )


def elevator_entrapment(city: City, site: str) -> Scenario:
    """A lift stuck between floors, re-reported every 30 s for 150 s, then moving → brain
    `elevator-entrapment` at +120 s, `escalated` at +420 s unless acknowledged, `cleared` at +750 s."""
    building = city.building(site)
    parts = site.strip("/").split("/")
    slot = parts[3] if len(parts) == 4 else "shaft-1"
    lift = building.sensor("elevator", slot)
    readings = [Scripted(t, lift, "stuck") for t in range(0, 151, 30)]
    readings.append(Scripted(180, lift, "moving"))
    return Scenario(
        kind="elevator-entrapment",
        site=lift.site,
        readings=tuple(readings),
        expected=(
            ExpectedAlert("elevator-entrapment", "brain", lift.id, after_s=120),
            ExpectedAlert("elevator-entrapment", "brain", lift.id, "escalated", 420),
            ExpectedAlert("elevator-entrapment", "brain", lift.id, "cleared", 750),
        ),
        span_s=180,
        note="long: for 2m; escalate after 5m unless acked; clear 10m after the last 'stuck'; cooldown 30m",
    )


def door_forced(city: City, site: str) -> Scenario:
    """A badge refused and the door opening 4 s later → edge `door-forced-after-denied-badge` at +4 s
    (and `door-opened-after-hours` too when the building is closed)."""
    building, slot = _room(city, site)
    room = f"{building.path}/{slot}"
    reader, door = building.sensor("badge", slot), building.sensor("door", slot)
    return Scenario(
        kind="door-forced",
        site=room,
        readings=(Scripted(0, reader, "denied"), Scripted(4, door, "open"), Scripted(20, door, "closed")),
        expected=(ExpectedAlert("door-forced-after-denied-badge", "edge", room, after_s=4),),
        span_s=20,
        after_hours=(ExpectedAlert("door-opened-after-hours", "edge", room, after_s=4),),
        schedule_of=building,
        note="cooldown 5m per room",
    )


BUILDERS: Final[dict[str, Callable[[City, str], Scenario]]] = {
    "fire": fire,
    "gas-leak-cluster": gas_leak_cluster,
    "flooding": flooding,
    "power-outage": power_outage,
    "silent-gateway": silent_gateway,
    "elevator-entrapment": elevator_entrapment,
    "door-forced": door_forced,
}
ALIASES: Final = {
    "gas": "gas-leak-cluster",
    "gas-leak": "gas-leak-cluster",
    "flood": "flooding",
    "power": "power-outage",
    "gateway-silent": "silent-gateway",
    "elevator": "elevator-entrapment",
    "lift": "elevator-entrapment",
}


def scenario(city: City, kind: str, site: str) -> Scenario:
    """The scenario `kind` (a name of `BUILDERS` or an alias) at `site`; ValueError explains a bad one."""
    name = ALIASES.get(kind, kind)
    builder = BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown scenario {kind!r}; one of {', '.join(BUILDERS)}")
    return builder(city, site)


def parse(city: City, spec: str) -> Scenario:
    """A scenario from `KIND@SITE`, e.g. `fire@yuelu/c1/b2` or `power-outage@yuelu/c2`."""
    kind, at, site = spec.partition("@")
    if not at or not kind or not site:
        raise ValueError(f"scenario {spec!r}: expected KIND@SITE, e.g. fire@yuelu/c1/b2")
    return scenario(city, kind.strip(), site.strip())


def all_scenarios(city: City, first_at_s: float = 5.0, gap_s: float = 10.0) -> list[tuple[Scenario, float]]:
    """Every scenario once, one after the other: (scenario, start offset in seconds). Each starts `gap_s`
    after the previous one has run its course and raised its alerts; each uses its own building."""
    communities = city.communities
    big = [c for c in communities if len(city.community(c)) >= 3]
    if not big:
        raise ValueError("the city has no community of 3 or more buildings (gas and power need one)")
    buildings = city.buildings

    def building(n: int) -> str:
        return buildings[n % len(buildings)].path

    plan = [
        fire(city, building(0)),
        gas_leak_cluster(city, big[min(1, len(big) - 1)]),
        flooding(city, building(1)),
        power_outage(city, big[min(2, len(big) - 1)]),
        door_forced(city, building(3)),
        elevator_entrapment(city, building(2)),
        silent_gateway(city, building(len(buildings) - 1)),
    ]
    out: list[tuple[Scenario, float]] = []
    at = first_at_s
    for item in plan:
        out.append((item, at))
        at += max(item.span_s, item.fires_within_s) + gap_s
    return out
