"""Field types shared by the Nerve contracts: times, readings, site paths and names.

Checks that pydantic can run in Rust (lengths, patterns) are declared as constraints; the two
that need Python (a reading's type and finiteness, an RFC 3339 time) are single plain
validators with a fast path for the common case, because every event passes through them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Final

from pydantic import Field, PlainValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from schemas.errors import SchemaError

# orjson and most consumers (Java, Go) handle signed 64-bit integers; larger ones would not round-trip.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_TEXT_CHARS: Final = 256
"""Longest string reading, tag value or command argument, in characters."""

Scalar = bool | int | float | str
"""A reading, tag value or command argument: bool, 64-bit int, finite float or short string."""


def problem(kind: str, detail: str) -> PydanticCustomError:
    """A validation error whose message is exactly `detail` (no pydantic prefix)."""
    return PydanticCustomError(kind, "{detail}", {"detail": detail})


def _not_finite(value: float) -> PydanticCustomError:
    name = "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return problem("not_finite", f"{name} is not allowed")


def _checked_int(value: int) -> int:
    if INT64_MIN <= value <= INT64_MAX:
        return value
    raise problem("int_range", "integer is outside the signed 64-bit range")


def _checked_str(value: str) -> str:
    if len(value) > MAX_TEXT_CHARS:
        raise problem(
            "text_too_long", f"string must be at most {MAX_TEXT_CHARS} characters (got {len(value)})"
        )
    if not value.isascii():
        try:  # lone surrogates cannot be sent as JSON; pydantic refuses them in str fields too
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise problem("text_unicode", "string holds characters that are not valid Unicode") from None
    return value


def check_scalar(value: object) -> Scalar:
    """Validate a reading: bool, int, finite float or a string of at most 256 characters.

    Types are kept as given (no coercion): `True` stays a bool, `"12"` stays a string.
    Subclasses (an IntEnum, a numpy float) are normalised to the base type.
    """
    if type(value) is float:
        if value - value == 0.0:  # false for NaN and ±inf, cheaper than math.isfinite
            return value
        raise _not_finite(value)
    if type(value) is int:
        return _checked_int(value)
    if type(value) is str:
        return _checked_str(value)
    if type(value) is bool:
        return value
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):
        return _checked_int(int(value))
    if isinstance(value, float):
        return check_scalar(float(value))
    if isinstance(value, str):
        return _checked_str(str(value))
    raise problem("scalar_type", f"must be a number, bool or string, not {json_type_name(value)}")


_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2}(?:\.\d+)?)([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)


def _rfc3339_seconds(text: str) -> float:
    match = _RFC3339.fullmatch(text)
    shown = text if len(text) <= 40 else text[:40] + "…"
    if match is None:
        raise problem(
            "time_format",
            f"{shown!r} is not an RFC 3339 timestamp such as '2026-11-25T08:00:00Z'",
        )
    date, clock, zone = match.groups()
    if zone is None:
        raise problem(
            "time_zone_missing",
            f"{shown!r} has no timezone, which is ambiguous; add 'Z' or an offset such as '+08:00'",
        )
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as exc:
        raise problem("time_value", f"{shown!r} is not a valid date and time: {exc}") from None
    return moment.timestamp()


def check_epoch_seconds(value: object) -> float:
    """Validate a time: finite epoch seconds (int or float) or an RFC 3339 string with a timezone.

    Returns float seconds since 1970-01-01 UTC. Bools, NaN, ±inf and naive strings are rejected.
    """
    if type(value) is float:
        if value - value == 0.0:
            return value
        raise _not_finite(value)
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise problem("time_range", "integer is too large for epoch seconds") from None
    if type(value) is str:
        return _rfc3339_seconds(value)
    if not isinstance(value, bool):
        if isinstance(value, int | float):
            return check_epoch_seconds(float(value) if isinstance(value, float) else int(value))
        if isinstance(value, str):
            return _rfc3339_seconds(str(value))
    raise problem(
        "time_type",
        f"must be epoch seconds (a number) or an RFC 3339 string, not {json_type_name(value)}",
    )


def parse_timestamp(value: object) -> float:
    """Epoch seconds (float, UTC) from a number or an RFC 3339 string; raises SchemaError."""
    try:
        return check_epoch_seconds(value)
    except PydanticCustomError as exc:
        raise SchemaError.at("ts", exc.message()) from None


def json_type_name(value: object) -> str:
    """The JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_SCALAR_SCHEMA = {
    "anyOf": [
        {"type": "boolean"},
        {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
        {"type": "number"},
        {"type": "string", "maxLength": MAX_TEXT_CHARS},
    ]
}
_TIME_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        {"type": "string", "format": "date-time"},
    ]
}

Reading = Annotated[Scalar, PlainValidator(check_scalar), WithJsonSchema(_SCALAR_SCHEMA)]
"""A bool, signed 64-bit int, finite float or string of at most 256 characters."""

EpochSeconds = Annotated[float, PlainValidator(check_epoch_seconds), WithJsonSchema(_TIME_SCHEMA)]
"""The finite-float time type: seconds since the epoch, UTC; also accepts RFC 3339 strings."""

# Patterns run in Rust. Control characters are excluded along with whitespace: they have no place
# in a name and break logs, MQTT topics and terminals.
SITE_PATTERN: Final = r"^[^/\s*?#+\x00-\x1f\x7f]+(?:/[^/\s*?#+\x00-\x1f\x7f]+)*$"
NAME_PATTERN: Final = r"^[^\s\x00-\x1f\x7f]+$"
KIND_PATTERN: Final = r"^[a-z0-9_]+$"
REFLEX_PATTERN: Final = r"^[a-z0-9-]+$"
# A department names a Kafka topic (`nerve.alerts.<department>`): Kafka's legal characters only.
DEPARTMENT_PATTERN: Final = r"^[A-Za-z0-9._-]+$"

_WILDCARDS = "*?#+"


def _site_hint(text: str) -> str:
    if any(ch.isspace() for ch in text):
        reason = "must not contain whitespace"
    elif any(ch in _WILDCARDS for ch in text):
        reason = "must not contain the wildcard characters * ? # +"
    elif text.startswith("/") or text.endswith("/"):
        reason = "must not start or end with '/'"
    elif "//" in text:
        reason = "must not have empty segments ('//')"
    else:
        reason = "must not contain control characters"
    return f"{reason}; a site is a slash path such as 'yuelu/c12/b3/f2/r201'"


PATTERN_HINTS: Final[dict[str, Callable[[str], str]]] = {
    SITE_PATTERN: _site_hint,
    NAME_PATTERN: lambda _text: "must not contain whitespace or control characters",
    KIND_PATTERN: lambda _text: "must use only lowercase letters, digits and '_' (e.g. 'water_level')",
    REFLEX_PATTERN: lambda _text: "must use only lowercase letters, digits and '-' (e.g. 'kitchen-fire')",
    DEPARTMENT_PATTERN: lambda _text: "must use only letters, digits, '.', '_' and '-' (it names a topic)",
}
"""Readable messages for pattern mismatches, keyed by the pattern (the default one is unreadable)."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NAME_PATTERN)]
SitePath = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=SITE_PATTERN)]
Kind = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=KIND_PATTERN)]
ReflexId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=REFLEX_PATTERN)]
Department = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=DEPARTMENT_PATTERN)]
Unit = Annotated[str, StringConstraints(max_length=32)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Labels = Annotated[dict[Label, Reading], Field(max_length=32)]
"""Free labels (`tags`, command `args`): at most 32 keys of 1–64 characters, scalar values."""
