"""`SensorEvent`: one reading from one sensor, the unit of data on `nerve.events` (SPEC §2)."""

from __future__ import annotations

from hashlib import blake2b
from typing import Any, Self

import orjson
from pydantic import Field, model_validator

from schemas.fields import EpochSeconds, Identifier, Kind, Labels, Name, Reading, Scalar, SitePath, Unit
from schemas.wire import WireModel

_TYPE_TAGS = {bool: "bool", int: "int", float: "float", str: "str"}


def event_id(sensor: str, ts: float, value: Scalar, *, unit: str | None = None) -> str:
    """The deterministic id of a reading: 32 hex characters (blake2b, 16-byte digest).

    It hashes a canonical JSON encoding of the sensor id, the event time as float epoch seconds
    (so `1700000000` and `1700000000.0` agree) and the value together with its type (so `1`,
    `1.0`, `True` and `"1"` differ). Replaying the same reading therefore yields the same id and
    deduplicates. `unit`, when given, is hashed too: SenML packs may report several quantities
    under one name told apart only by their unit.
    """
    parts: list[Any] = [sensor, float(ts) + 0.0, _TYPE_TAGS.get(type(value), "str")]
    # + 0.0 folds -0.0 into 0.0, which compares equal and must hash equal.
    parts.append(value + 0.0 if type(value) is float else value)
    if unit is not None:
        parts.append(unit)
    try:
        encoded = orjson.dumps(parts)
    except orjson.JSONEncodeError:  # lone surrogates, only reachable from Python callers
        encoded = repr(parts).encode("utf-8", "surrogatepass")
    return blake2b(encoded, digest_size=16).hexdigest()


def _without_default(schema: dict[str, Any]) -> None:
    # The "" default is an internal "absent" marker; to a producer the id is simply optional.
    schema.pop("default", None)


class SensorEvent(WireModel):
    """One reading from one sensor, as carried on `nerve.events` (SPEC §2).

    `ts` is the event time (when the sensor measured) in float epoch seconds UTC; RFC 3339
    strings with a timezone are accepted on input. Without an `id`, the event gets the
    deterministic `event_id(sensor, ts, value)`.
    """

    id: Identifier = Field(
        default="",
        description="Unique event id, 1–128 characters; if absent, the hash of sensor, ts and value.",
        json_schema_extra=_without_default,
    )
    site: SitePath = Field(description="Slash path from the top of the city down, e.g. yuelu/c12/b3/f2/r201.")
    sensor: Name = Field(description="Device id, unique within the city; no whitespace.")
    kind: Kind = Field(description="What is measured: smoke, temperature, gas, water_level, door, …")
    value: Reading = Field(description="The reading: bool, number (finite) or string of ≤ 256 characters.")
    unit: Unit | None = Field(default=None, description="Unit of the value, e.g. Cel, %RH, ppm (SenML).")
    ts: EpochSeconds = Field(description="Event time: epoch seconds UTC, or RFC 3339 with a timezone.")
    tags: Labels = Field(default_factory=dict, description="Free labels: at most 32, scalar values.")

    @model_validator(mode="after")
    def _fill_id(self) -> Self:
        if not self.id:
            # Frozen: write through __dict__, exactly as pydantic itself does during validation.
            self.__dict__["id"] = event_id(self.sensor, self.ts, self.value)
        return self
