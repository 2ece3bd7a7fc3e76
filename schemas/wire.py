"""How the contracts travel: the JSON codec, payload size limits and error translation.

Every model here is a `WireModel`: frozen, closed to unknown fields, strict about types, with
`from_json` / `to_json` that speak orjson and raise only `SchemaError` on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sized
from typing import Any, ClassVar, Final, Self

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from schemas.errors import SchemaError
from schemas.fields import PATTERN_HINTS, json_type_name

MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Largest JSON document accepted for an event, command or ack, in bytes (64 KiB)."""

LARGE_PAYLOAD_BYTES: Final = 512 * 1024
"""Largest alert or dead letter, in bytes: a dead letter quotes up to 64 KiB of raw input, and JSON
escaping can grow that up to six times (a control character becomes `\\u00XX`)."""


_join = b"".join


def _trimmed(data: bytes) -> bytes:
    """`data` in a bytes object of its own size. orjson (3.12 and later) returns its whole working buffer,
    4 KiB at least, whatever the document's length: an agent holding a few thousand encoded events (its
    spool pipeline, batches on their way to Kafka) kept 4 KiB for each 200-byte event. The copy costs about
    0.25 µs."""
    return _join((data, b""))


def _byte_size(data: bytes | bytearray | memoryview | str, limit: int) -> int:
    """The UTF-8 size of `data` in bytes, computed exactly only when it could exceed `limit`."""
    if not isinstance(data, str):
        return data.nbytes if isinstance(data, memoryview) else len(data)
    if len(data) * 4 <= limit:  # at most 4 bytes per character: surely small enough
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


def load_json(data: object, *, limit: int = MAX_PAYLOAD_BYTES) -> object:
    """Parse a JSON document of at most `limit` bytes with orjson; raises SchemaError naming `payload`.

    The size is checked before parsing, so an oversized payload costs no parse.
    """
    if type(data) is bytes:  # the hot path: a Kafka or MQTT payload
        size = len(data)
    elif isinstance(data, bytes | bytearray | memoryview | str):
        size = _byte_size(data, limit)
    else:
        raise SchemaError.at("payload", f"expected JSON as bytes or str, not {type(data).__name__}")
    if size > limit:
        raise SchemaError.at("payload", f"{size} bytes exceeds the {limit}-byte limit")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaError.at("payload", f"not valid JSON: {exc}") from None


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TYPE_WORDS: Final = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "int_type": "an integer",
    "float_type": "a number",
    "dict_type": "an object",
    "tuple_type": "an array",
    "list_type": "an array",
    "model_type": "an object",
}


def describe(error: ErrorDetails) -> str:
    """A readable message for one pydantic error (the location is reported separately)."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    given = error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "string_unicode":
        return "string holds characters that are not valid Unicode"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, not {json_type_name(given)}"
    if kind == "string_pattern_mismatch" and isinstance(given, str):
        hint = PATTERN_HINTS.get(str(ctx.get("pattern")))
        if hint is not None:
            return hint(given)
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_too_long" and isinstance(given, str):
        return f"must be at most {ctx.get('max_length')} characters (got {len(given)})"
    if kind == "too_long":
        count = len(given) if isinstance(given, Sized) else ctx.get("actual_length")
        return f"must have at most {ctx.get('max_length')} items (got {count})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {_short(given)})"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return error["msg"]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _location(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """Render a pydantic location as `a.b[3]`; a dict-key error becomes a note on the message."""
    text = ""
    note = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            note = "key "
        elif not text:
            text = part
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}"
        else:  # an odd dict key: quoted, and shortened so that the location stays readable
            text += f"[{_short(part, 40)}]"
    return text, note


def problems(
    exc: ValidationError,
    *,
    prefix: str = "",
    rename: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Translate a ValidationError into `(location, message)` pairs.

    `prefix` is put before every location (`senml[2]`); `rename` maps a top-level field name to the
    name the caller's input used for it (`ts` → `t`), in which case deeper parts are dropped.
    """
    out: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if rename and loc and isinstance(loc[0], str) and loc[0] in rename:
            loc = (rename[loc[0]],)
        where, note = _location(loc)
        if prefix:
            where = f"{prefix}.{where}" if where else prefix
        out.append((where or "payload", note + describe(error)))
    return out


class WireModel(BaseModel):
    """Base of every contract: frozen, unknown fields rejected, no type coercion, orjson on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_payload_bytes: ClassVar[int] = MAX_PAYLOAD_BYTES
    """Largest JSON document `from_json` accepts and `to_json` produces, in bytes."""

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Parse and validate one JSON object (UTF-8 bytes or str); raises only SchemaError.

        Payloads over `max_payload_bytes` are refused before parsing.
        """
        return cls.from_dict(load_json(data, limit=cls.max_payload_bytes))

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Validate an already parsed JSON object (a dict); raises only SchemaError."""
        if not isinstance(data, dict):
            raise SchemaError.at("payload", f"expected a JSON object, got {json_type_name(data)}")
        try:
            # The validator directly: model_validate adds ~0.3 µs of argument handling per call.
            return cls.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise SchemaError(problems(exc)) from None

    def to_json(self) -> bytes:
        """The model as compact UTF-8 JSON bytes; raises SchemaError if it cannot be sent.

        Validation leaves nothing orjson cannot encode, so in practice this happens only when the
        document would exceed `max_payload_bytes` (whatever `to_json` returns, `from_json` accepts).
        """
        try:
            # The fields are plain JSON values (no nested models), so __dict__ needs no model_dump.
            data = _trimmed(orjson.dumps(self.__dict__))
        except orjson.JSONEncodeError as exc:
            raise SchemaError.at("payload", f"cannot be encoded as JSON: {exc}") from None
        if len(data) > self.max_payload_bytes:
            raise SchemaError.at(
                "payload", f"{len(data)} bytes exceeds the {self.max_payload_bytes}-byte limit"
            )
        return data
