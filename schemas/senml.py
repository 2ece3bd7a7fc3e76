"""SenML (RFC 8428) JSON packs → `SensorEvent`s, for edge agents that receive `application/senml+json`.

Resolution follows RFC 8428 §4: base fields (`bn`, `bt`, `bu`, `bv`, `bs`, `bver`) apply to their own
record and every later one until a record sets them again; the name is `bn + n`, the time `bt + t`,
the unit `u` else `bu`, the number `bv + v` and the sum `bs + s` (§4.5.4: when only one of them is
present the other counts as zero).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from schemas.errors import SchemaError
from schemas.event import SensorEvent, event_id
from schemas.fields import Scalar, SitePath, json_type_name
from schemas.wire import MAX_PAYLOAD_BYTES, load_json, problems

RELATIVE_TIME_LIMIT: Final = 2**28
"""Resolved SenML times below this many seconds are relative to "now" (RFC 8428 §4.5.3)."""

SENML_VERSION: Final = 10
"""The SenML version understood here; packs declaring a higher `bver` are refused (§4.4)."""

UNIT_KINDS: Final[dict[str, str]] = {
    "Cel": "temperature",
    "K": "temperature",
    "%RH": "humidity",
    "Pa": "pressure",
    "V": "voltage",
    "A": "current",
    "W": "power",
    "J": "energy",
    "Hz": "frequency",
    "lx": "illuminance",
    "lat": "latitude",
    "lon": "longitude",
    "%EL": "battery",
    "beat/min": "heart_rate",
    "m/s": "speed",
    "m3/s": "flow",
    "l/s": "flow",
    "pH": "ph",
    "NTU": "turbidity",
    "Bspl": "sound_level",
}
"""Kinds implied by SenML units (RFC 8428 §12.1) that measure one thing only; `ppm` or `%` do not."""

KindOf = Callable[[str, str | None], str]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*")  # RFC 8428 §4.5.1
_WORD: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HEX_ID: Final = re.compile(r"[0-9a-f]{8,}")
_VALUE_FIELDS: Final = ("v", "vs", "vb", "vd")
_SITE: Final[TypeAdapter[str]] = TypeAdapter(SitePath)


def default_kind(name: str, unit: str | None) -> str:
    """The kind of a SenML measurement when no `kind_of` is given.

    1. The last segment of the resolved name after ':' or '/', lowercased with '-' and '.' turned
       into '_', if it reads as a word: it starts with a letter and is not a hex device id
       (`urn:dev:ow:10e2073a01080063:voltage` → `voltage`).
    2. Otherwise the kind implied by the unit (`UNIT_KINDS`: `Cel` → `temperature`, `%RH` → `humidity`).
    3. Otherwise `unknown`.
    """
    segment = re.split(r"[:/]", name)[-1].lower().replace("-", "_").replace(".", "_")
    if _WORD.fullmatch(segment) and not _HEX_ID.fullmatch(segment):
        return segment
    if unit is not None and unit in UNIT_KINDS:
        return UNIT_KINDS[unit]
    return "unknown"


def _number(record: dict[str, Any], key: str, where: str, errors: list[tuple[str, str]]) -> float | None:
    """The finite number at `record[key]` as a float, None when absent; a bad one is noted in `errors`."""
    if key not in record:
        return None
    value = record[key]
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float, only from Python callers
            number = math.inf
        if math.isfinite(number):
            return number
    shown = "a non-finite number" if isinstance(value, float) else json_type_name(value)
    errors.append((f"{where}.{key}", f"must be a finite number, not {shown}"))
    return None


def _text(record: dict[str, Any], key: str, where: str, errors: list[tuple[str, str]]) -> str | None:
    if key not in record:
        return None
    value = record[key]
    if isinstance(value, str):
        return value
    errors.append((f"{where}.{key}", f"must be a string, not {json_type_name(value)}"))
    return None


class _Base:
    """The base fields in force while walking a pack (RFC 8428 §4.1)."""

    def __init__(self) -> None:
        self.name = ""
        self.time = 0.0
        self.unit: str | None = None
        self.value: float | None = None
        self.sum: float | None = None

    def update(self, record: dict[str, Any], where: str, errors: list[tuple[str, str]]) -> None:
        if "bver" in record:
            version = record["bver"]
            if type(version) is not int or version < 1:
                errors.append((f"{where}.bver", f"must be a positive integer, not {version!r}"))
            elif version > SENML_VERSION:
                errors.append((f"{where}.bver", f"version {version} is newer than {SENML_VERSION}"))
        if (name := _text(record, "bn", where, errors)) is not None:
            self.name = name
        if (time := _number(record, "bt", where, errors)) is not None:
            self.time = time
        if (unit := _text(record, "bu", where, errors)) is not None:
            self.unit = unit
        if (value := _number(record, "bv", where, errors)) is not None:
            self.value = value
        if (total := _number(record, "bs", where, errors)) is not None:
            self.sum = total


def _resolve(
    record: dict[str, Any],
    where: str,
    base: _Base,
    now: float,
    errors: list[tuple[str, str]],
) -> tuple[str, float, str | None, Scalar, str, float | None] | None:
    """(name, time, unit, value, value field, sum) of one record, or None after noting its errors."""
    count = len(errors)
    own = _text(record, "n", where, errors)
    name = base.name + (own or "")
    mistyped = own is None and "n" in record  # already noted by _text
    if not name and not mistyped:
        errors.append((f"{where}.n", "a name is required (no n and no bn)"))
    elif name and _NAME.fullmatch(name) is None:
        field = "n" if "n" in record else "bn"
        shown = name if len(name) <= 40 else name[:40] + "…"
        errors.append((f"{where}.{field}", f"{shown!r} is not a SenML name (RFC 8428 §4.5.1)"))
    time = base.time + (_number(record, "t", where, errors) or 0.0)
    if time < RELATIVE_TIME_LIMIT:
        time += now
    unit = _text(record, "u", where, errors) if "u" in record else base.unit
    _number(record, "ut", where, errors)  # checked, not used: Nerve detects silence with `absent`

    present = [key for key in _VALUE_FIELDS if key in record]
    if len(present) > 1:
        errors.append((f"{where}.{present[1]}", f"a record has one value field, found {', '.join(present)}"))
    value: Scalar | None = None
    if present == ["v"]:
        number = _number(record, "v", where, errors)
        if number is not None:
            value = number + (base.value or 0.0)
    elif present == ["vs"] or present == ["vd"]:  # vd (base64url data) is kept as its text
        value = _text(record, present[0], where, errors)
    elif present == ["vb"]:
        if type(record["vb"]) is bool:
            value = record["vb"]
        else:
            errors.append((f"{where}.vb", f"must be a boolean, not {json_type_name(record['vb'])}"))
    total = _number(record, "s", where, errors)
    if total is not None or base.sum is not None:
        total = (total or 0.0) + (base.sum or 0.0)
    if not present and total is None:
        errors.append((where, "has no value (v, vs, vb, vd) and no sum (s)"))
    if len(errors) > count:
        return None
    if value is None:  # no value field: the sum stands in (it is set, or an error was noted above)
        return name, time, unit, total or 0.0, "s", total
    return name, time, unit, value, present[0], total


def events_from_senml(
    data: bytes | str | list[Any],
    *,
    site: str,
    kind_of: KindOf | None = None,
    now: float,
) -> list[SensorEvent]:
    """Resolve a SenML JSON pack (RFC 8428) into SensorEvents at `site`, one per record.

    `data` is the pack as JSON (at most 64 KiB) or already parsed. `now` is the receiver's clock in
    epoch seconds: a resolved time below 2**28 s is relative to it (§4.5.3; absent time means now).

    - sensor: the resolved name `bn + n`; kind: `kind_of(name, unit)`, else `default_kind`.
    - value: `bv + v` as a float, or `vs`, or `vb`; a data value `vd` is kept as its base64url text.
      A record with a sum (`bs + s`) also carries it as the tag `sum`; with no value field at all
      the sum is the value. A record with neither is refused.
    - ts: `bt + t` in epoch seconds. The event id hashes name, time, value and unit.
    - Unknown fields are ignored; fields ending in `_` (must-understand, §4.4) are refused.

    Raises SchemaError listing every bad record as `senml[i].field: message`; one bad record refuses
    the whole pack, so that it goes to the dead letters intact. Exceptions from `kind_of` propagate.
    """
    pack = data if isinstance(data, list) else load_json(data, limit=MAX_PAYLOAD_BYTES)
    if not isinstance(pack, list):
        raise SchemaError.at("payload", f"expected a SenML pack (a JSON array), got {json_type_name(pack)}")
    try:
        _SITE.validate_python(site, strict=True)
    except ValidationError as exc:
        raise SchemaError(problems(exc, prefix="site")) from None
    errors: list[tuple[str, str]] = []
    events: list[SensorEvent] = []
    base = _Base()
    for index, record in enumerate(pack):
        where = f"senml[{index}]"
        if not isinstance(record, dict):
            errors.append((where, f"expected a SenML record (an object), got {json_type_name(record)}"))
            continue
        if odd := [key for key in record if isinstance(key, str) and key.endswith("_")]:
            errors.extend((f"{where}.{key}", "must-understand field is not supported") for key in odd)
            continue
        base.update(record, where, errors)
        resolved = _resolve(record, where, base, now, errors)
        if resolved is None:
            continue
        name, time, unit, value, field, total = resolved
        kind = kind_of(name, unit) if kind_of is not None else default_kind(name, unit)
        fields = {
            "id": event_id(name, time, value, unit=unit),
            "site": site,
            "sensor": name,
            "kind": kind,
            "value": value,
            "unit": unit,
            "ts": time,
            "tags": {} if total is None else {"sum": total},
        }
        try:
            events.append(SensorEvent.model_validate(fields))
        except ValidationError as exc:
            rename = {"sensor": "n", "ts": "t", "value": field, "unit": "u", "tags": "s"}
            errors.extend(problems(exc, prefix=where, rename=rename))
    if errors:
        raise SchemaError(errors)
    return events
