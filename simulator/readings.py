"""What a healthy sensor reports, and the bytes it sends.

Normal readings are noise around a normal value plus a slow diurnal drift (local time of the building),
always well clear of every threshold in examples/city, so that background traffic alone never fires a
reflex. Payloads are SPEC events without site/sensor/kind (the gateway takes those from the topic).
"""

from __future__ import annotations

import math
import random
from typing import Final

import orjson

from schemas import Scalar
from simulator.city import Building, Sensor

BAD_KINDS: Final = ("malformed", "nan")
"""The two kinds of bad payload: truncated JSON, and a JSON-like object whose value is NaN."""


def diurnal(hour: float, peak: float) -> float:
    """A smooth day cycle in [-1, 1] with its maximum at local hour `peak`."""
    return math.cos(2.0 * math.pi * (hour - peak) / 24.0)


def _clip(value: float, low: float, high: float, digits: int) -> float:
    return round(min(high, max(low, value)), digits)


def normal_value(sensor: Sensor, building: Building, ts: float, rng: random.Random) -> Scalar:
    """A healthy reading of `sensor` at epoch seconds `ts` (consumes `rng`)."""
    kind = sensor.kind
    if kind == "smoke":  # clean air; smoke-smoldering starts above 0.08 dB/m
        return _clip(rng.gauss(0.01, 0.004), 0.0, 0.04, 3)
    hour = building.local_hour(ts)
    if kind == "temperature":  # room air; room-fire needs more than 57 °C
        return _clip(22.0 + sensor.baseline + 2.5 * diurnal(hour, 15.0) + rng.gauss(0.0, 0.2), 12.0, 32.0, 1)
    if kind == "gas":  # a trace of methane; gas-leak-room trips at 10 %LEL
        return _clip(rng.gauss(0.5, 0.3), 0.0, 3.0, 2)
    if kind == "water_level":  # a dry basement floor; basement-flooding needs more than 3 cm
        return _clip(rng.gauss(0.3, 0.15), 0.0, 1.5, 2)
    if kind == "pm25":  # air-quality-pm25 averages above 75 µg/m³; rush hours bring more dust
        return _clip(35.0 + sensor.baseline + 12.0 * diurnal(hour, 8.5) + rng.gauss(0.0, 4.0), 3.0, 70.0, 1)
    if kind == "power":
        return 1 if sensor.legacy else True
    daytime = building.schedule(ts) == "open"
    if kind == "motion":
        return rng.random() < (0.6 if daytime else 0.05)
    if kind == "door":  # nobody opens a door after hours in the background (door-opened-after-hours)
        return "open" if daytime and rng.random() < 0.3 else "closed"
    if kind == "badge":  # a refused badge is a scenario's business (door-forced-after-denied-badge)
        return "granted"
    if kind == "elevator":
        return "moving" if rng.random() < (0.5 if daytime else 0.1) else "idle"
    raise ValueError(f"no normal reading for kind {kind!r} (sensor {sensor.id})")


def tags_of(sensor: Sensor, building: Building, ts: float) -> dict[str, str]:
    """The labels an event carries: the sensor's own, and for doors the building's `schedule` at `ts`."""
    tags = dict(sensor.tags)
    if sensor.kind == "door":
        tags["schedule"] = building.schedule(ts)
    return tags


def encode(value: Scalar, ts: float, unit: str | None, tags: dict[str, str]) -> bytes:
    """A SPEC event payload: `{"value", "ts", "unit"?, "tags"?}` (site, sensor and kind come from the topic)."""
    body: dict[str, object] = {"value": value, "ts": ts}
    if unit is not None:
        body["unit"] = unit
    if tags:
        body["tags"] = tags
    return orjson.dumps(body)


def bad_payload(which: str, good: bytes, ts: float) -> bytes:
    """A payload the gateway must dead-letter: `malformed` cuts `good` in half, `nan` sends NaN as the value."""
    if which == "malformed":
        return good[: max(1, len(good) // 2)]
    if which == "nan":
        return b'{"value": NaN, "ts": ' + repr(ts).encode() + b"}"
    raise ValueError(f"unknown bad payload {which!r}; one of {', '.join(BAD_KINDS)}")
