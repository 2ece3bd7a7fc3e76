"""SensorEvent, event ids, the JSON codec and SchemaError: one test per rule of SPEC §2."""

from __future__ import annotations

import pickle
import sys
import tracemalloc
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import MAX_PAYLOAD_BYTES, SchemaError, SensorEvent, event_id, parse_timestamp

EPOCH = datetime(2026, 11, 25, 8, 0, tzinfo=UTC).timestamp()


_DROP = object()


def reading(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "site": "yuelu/c12/b3/f2/r201",
        "sensor": "smk-201",
        "kind": "smoke",
        "value": 0.2,
        "ts": EPOCH,
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not _DROP}


def rejected(data: dict[str, Any]) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        SensorEvent.from_json(orjson.dumps(data))
    return caught.value


def rejected_dict(data: dict[str, Any]) -> SchemaError:
    """For inputs JSON cannot carry (NaN, inf): validate the dict directly."""
    with pytest.raises(SchemaError) as caught:
        SensorEvent.from_dict(data)
    return caught.value


# ---------------------------------------------------------------- the happy path


def test_minimal_event_gets_defaults_and_an_id() -> None:
    event = SensorEvent.from_json(orjson.dumps(reading()))
    assert event.unit is None
    assert event.tags == {}
    assert len(event.id) == 32
    assert int(event.id, 16) >= 0
    assert event.id == event_id("smk-201", EPOCH, 0.2)


def test_given_id_is_kept() -> None:
    assert SensorEvent.from_json(orjson.dumps(reading(id="evt-1"))).id == "evt-1"


def test_from_json_accepts_str_and_bytes_alike() -> None:
    text = orjson.dumps(reading()).decode()
    assert SensorEvent.from_json(text) == SensorEvent.from_json(text.encode())


def test_to_json_round_trips_compact_orjson() -> None:
    event = SensorEvent.from_dict(reading(unit="Cel", tags={"floor": 2, "zone": "east"}))
    data = event.to_json()
    assert isinstance(data, bytes)
    assert b" " not in data
    assert orjson.loads(data)["ts"] == EPOCH
    assert SensorEvent.from_json(data) == event


def test_to_json_holds_no_more_memory_than_its_bytes() -> None:
    """orjson ≥ 3.12 hands back its 4 KiB working buffer with every document; an agent keeps thousands of
    encoded events in flight, so to_json's result must own only its own bytes."""
    event = SensorEvent.from_dict(reading())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [event.to_json() for _ in range(1000)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_document = held / len(kept)
    assert per_document < sys.getsizeof(kept[0]) + 64, (
        f"{per_document:.0f} bytes held per {len(kept[0])}-byte document"
    )


def test_event_is_frozen() -> None:
    event = SensorEvent.from_dict(reading())
    with pytest.raises(ValidationError):
        event.value = 1.0  # type: ignore[misc]


def test_fewer_site_levels_are_allowed() -> None:
    assert SensorEvent.from_dict(reading(site="yuelu")).site == "yuelu"


# ---------------------------------------------------------------- id


def test_id_is_the_same_for_every_spelling_of_the_same_time() -> None:
    ids = {
        SensorEvent.from_dict(reading(ts=ts)).id
        for ts in (EPOCH, int(EPOCH), "2026-11-25T08:00:00Z", "2026-11-25T16:00:00+08:00")
    }
    assert len(ids) == 1


def test_id_covers_the_value_type() -> None:
    ids = {event_id("s", EPOCH, value) for value in (1, 1.0, True, "1")}
    assert len(ids) == 4


def test_id_covers_sensor_time_and_value() -> None:
    base = event_id("s", EPOCH, 1.0)
    assert event_id("t", EPOCH, 1.0) != base
    assert event_id("s", EPOCH + 1, 1.0) != base
    assert event_id("s", EPOCH, 2.0) != base
    assert event_id("s", EPOCH, 1.0) == base
    assert event_id("s", EPOCH, 1.0, unit="Cel") != base


def test_id_treats_negative_zero_as_zero() -> None:
    assert event_id("s", 0.0, -0.0) == event_id("s", -0.0, 0.0)


def test_empty_or_long_id_is_rejected() -> None:
    assert rejected(reading(id="")).locations == ["id"]
    assert rejected(reading(id="x" * 129)).locations == ["id"]
    assert SensorEvent.from_dict(reading(id="x" * 128)).id == "x" * 128


# ---------------------------------------------------------------- site, sensor, kind, unit


@pytest.mark.parametrize(
    ("site", "words"),
    [
        ("", "empty"),
        ("/yuelu/c12", "start or end"),
        ("yuelu/c12/", "start or end"),
        ("yuelu//b3", "empty segments"),
        ("yuelu/c 12", "whitespace"),
        ("yuelu/c12\tb3", "whitespace"),
        ("yuelu/*/b3", "wildcard"),
        ("yuelu/c12/b?", "wildcard"),
        ("yuelu/#", "wildcard"),
        ("yuelu/+/b3", "wildcard"),
        ("yuelu/c12\x00", "control"),
        ("y" * 257, "256"),
    ],
)
def test_bad_site_is_rejected_with_a_reason(site: str, words: str) -> None:
    error = rejected(reading(site=site))
    assert error.locations == ["site"]
    assert words in str(error)


@pytest.mark.parametrize("sensor", ["", "smk 201", "smk\n201", "s" * 129])
def test_bad_sensor_is_rejected(sensor: str) -> None:
    assert rejected(reading(sensor=sensor)).locations == ["sensor"]


@pytest.mark.parametrize("kind", ["", "Smoke", "water-level", "gas!", "k" * 65])
def test_bad_kind_is_rejected(kind: str) -> None:
    assert rejected(reading(kind=kind)).locations == ["kind"]


def test_kind_allows_lowercase_digits_underscore() -> None:
    assert SensorEvent.from_dict(reading(kind="water_level2")).kind == "water_level2"


def test_unit_is_at_most_32_characters() -> None:
    assert rejected(reading(unit="u" * 33)).locations == ["unit"]
    assert SensorEvent.from_dict(reading(unit="%RH")).unit == "%RH"


# ---------------------------------------------------------------- value


@pytest.mark.parametrize(
    ("bad", "name"), [(float("nan"), "NaN"), (float("inf"), "inf"), (-float("inf"), "-inf")]
)
def test_non_finite_value_is_rejected_naming_value(bad: float, name: str) -> None:
    assert str(rejected_dict(reading(value=bad))) == f"value: {name} is not allowed"


def test_bool_stays_bool_and_numeric_string_stays_string() -> None:
    assert SensorEvent.from_dict(reading(value=True)).value is True
    as_text = SensorEvent.from_dict(reading(value="12")).value
    assert as_text == "12"
    assert isinstance(as_text, str)
    as_int = SensorEvent.from_dict(reading(value=1)).value
    assert type(as_int) is int
    assert type(SensorEvent.from_dict(reading(value=1.0)).value) is float


def test_short_string_value_up_to_256_characters() -> None:
    assert SensorEvent.from_dict(reading(value="o" * 256)).value == "o" * 256
    assert rejected(reading(value="o" * 257)).locations == ["value"]


@pytest.mark.parametrize("bad", [None, [1], {"a": 1}])
def test_non_scalar_value_is_rejected(bad: object) -> None:
    error = rejected(reading(value=bad))
    assert error.locations == ["value"]
    assert "number, bool or string" in str(error)


def test_integer_value_must_fit_64_bits() -> None:
    assert rejected_dict(reading(value=2**63)).locations == ["value"]
    assert SensorEvent.from_dict(reading(value=2**63 - 1)).value == 2**63 - 1


# ---------------------------------------------------------------- ts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T08:00:00Z", EPOCH),
        ("2026-11-25T08:00:00z", EPOCH),
        ("2026-11-25t08:00:00+00:00", EPOCH),
        ("2026-11-25 08:00:00Z", EPOCH),
        ("2026-11-25T10:00:00+02:00", EPOCH),
        ("2026-11-25T03:30:00-04:30", EPOCH),
        ("2026-11-25T08:00:00.25Z", EPOCH + 0.25),
        ("2026-11-25T08:00:00.123456789Z", EPOCH + 0.123456),
    ],
)
def test_rfc3339_times_become_epoch_seconds_utc(text: str, expected: float) -> None:
    ts = SensorEvent.from_dict(reading(ts=text)).ts
    assert ts == pytest.approx(expected, abs=1e-6)


def test_epoch_int_is_stored_as_float() -> None:
    ts = SensorEvent.from_dict(reading(ts=1_700_000_000)).ts
    assert type(ts) is float
    assert ts == 1_700_000_000.0


def test_time_without_timezone_is_rejected_as_ambiguous() -> None:
    error = rejected(reading(ts="2026-11-25T08:00:00"))
    assert error.locations == ["ts"]
    assert "timezone" in str(error)


@pytest.mark.parametrize(
    "bad",
    ["1700000000", "yesterday", "2026-11-25", "2026-13-01T00:00:00Z", "2026-11-25T08:00:60Z", True, None],
)
def test_bad_time_is_rejected(bad: object) -> None:
    assert rejected(reading(ts=bad)).locations == ["ts"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 10**400])
def test_non_finite_time_is_rejected(bad: object) -> None:
    assert rejected_dict(reading(ts=bad)).locations == ["ts"]


def test_parse_timestamp_is_public_and_raises_schema_error() -> None:
    assert parse_timestamp("2026-11-25T08:00:00Z") == EPOCH
    assert parse_timestamp(12) == 12.0
    with pytest.raises(SchemaError, match=r"^ts: "):
        parse_timestamp("2026-11-25T08:00:00")


# ---------------------------------------------------------------- tags


def test_tags_take_scalars_up_to_32_keys() -> None:
    tags = {f"t{i}": i for i in range(32)}
    assert SensorEvent.from_dict(reading(tags=tags)).tags == tags
    error = rejected(reading(tags={f"t{i}": i for i in range(33)}))
    assert str(error) == "tags: must have at most 32 items (got 33)"


def test_tag_keys_are_1_to_64_characters() -> None:
    assert rejected(reading(tags={"": 1})).locations == ["tags['']"]
    error = rejected(reading(tags={"k" * 65: 1}))
    assert error.locations[0].startswith("tags[")
    assert "key must be at most 64" in str(error)


def test_tag_values_are_checked_by_name() -> None:
    assert rejected(reading(tags={"floor": [2]})).locations == ["tags.floor"]
    assert str(rejected_dict(reading(tags={"floor": float("nan")}))) == "tags.floor: NaN is not allowed"


# ---------------------------------------------------------------- shape of the document


def test_unknown_field_is_rejected() -> None:
    assert str(rejected(reading(colour="red"))) == "colour: is not a known field"


def test_missing_fields_are_all_named() -> None:
    error = rejected(reading(kind=_DROP, ts=_DROP))
    assert error.locations == ["kind", "ts"]
    assert "is required" in str(error)


def test_no_coercion_of_strings() -> None:
    assert rejected(reading(site=5)).locations == ["site"]
    assert str(rejected(reading(kind=7))) == "kind: must be a string, not number"


@pytest.mark.parametrize("payload", [b"[1]", b'"x"', b"null", b"1", b"true"])
def test_non_object_json_names_payload(payload: bytes) -> None:
    with pytest.raises(SchemaError, match=r"^payload: expected a JSON object"):
        SensorEvent.from_json(payload)


@pytest.mark.parametrize("payload", [b"{", b"", b"\xff\xfe", b"{'a': 1}", b'{"value": NaN}'])
def test_invalid_json_names_payload(payload: bytes) -> None:
    with pytest.raises(SchemaError) as caught:
        SensorEvent.from_json(payload)
    assert caught.value.locations == ["payload"]
    assert "not valid JSON" in str(caught.value)


def test_non_text_input_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"^payload: "):
        SensorEvent.from_json(12)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the 64 KiB limit


def _padded(size: int) -> bytes:
    body = orjson.dumps(reading())
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_payload_of_exactly_64_kib_is_accepted() -> None:
    assert MAX_PAYLOAD_BYTES == 65536
    assert SensorEvent.from_json(_padded(65536)).kind == "smoke"


def test_payload_over_64_kib_is_rejected_before_parsing() -> None:
    with pytest.raises(SchemaError) as caught:
        SensorEvent.from_json(_padded(65537))
    assert str(caught.value) == "payload: 65537 bytes exceeds the 65536-byte limit"
    # Not JSON at all: the size is what is reported, so nothing was parsed.
    with pytest.raises(SchemaError, match=r"^payload: 70000 bytes exceeds the 65536-byte limit$"):
        SensorEvent.from_json(b"\x00" * 70000)


def test_limit_counts_utf8_bytes_of_str_input() -> None:
    text = '{"x": "' + "é" * 33000 + '"}'  # 33 009 characters, 66 009 bytes
    assert len(text) < 65536
    with pytest.raises(SchemaError, match=r"^payload: 66009 bytes exceeds"):
        SensorEvent.from_json(text)


# ---------------------------------------------------------------- SchemaError


def test_schema_error_is_a_value_error_with_problems() -> None:
    error = rejected(reading(kind="Smoke", value=None))
    assert isinstance(error, ValueError)
    assert error.retriable is False
    assert error.locations == ["kind", "value"]
    assert all(isinstance(message, str) for _, message in error.problems)
    assert str(error).startswith("kind: ")
    assert "; value: " in str(error)


def test_schema_error_pickles_as_itself() -> None:
    error = SchemaError.at("value", "NaN is not allowed")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert isinstance(copy, SchemaError)
    assert copy.problems == error.problems
    assert str(copy) == "value: NaN is not allowed"


def test_lone_surrogates_are_refused_so_that_to_json_cannot_fail() -> None:
    assert rejected_dict(reading(sensor="s\ud800")).locations == ["sensor"]
    assert rejected_dict(reading(value="\ud800")).locations == ["value"]
    assert rejected_dict(reading(tags={"a": "\udfff"})).locations == ["tags.a"]


def test_event_id_accepts_any_python_string() -> None:
    assert len(event_id("s\ud800", 1.0, "\udfff")) == 32


def test_worst_case_event_still_fits_64_kib() -> None:
    # Control characters are escaped as \u00XX (six bytes each) in every field that allows them.
    worst = SensorEvent(
        id="\x01" * 128,
        site="s" * 256,
        sensor="s" * 128,
        kind="k" * 64,
        value="\x01" * 256,
        unit="\x01" * 32,
        ts=-1.2345678901234567e-300,
        tags={"\x01" * 62 + chr(65 + i) * 2: "\x01" * 256 for i in range(32)},
    )
    data = worst.to_json()
    assert len(data) <= MAX_PAYLOAD_BYTES
    assert SensorEvent.from_json(data) == worst


def test_to_json_refuses_to_exceed_the_limit() -> None:
    class TinyEvent(SensorEvent):
        max_payload_bytes = 100

    event = TinyEvent.from_dict(reading())
    with pytest.raises(SchemaError, match=r"^payload: \d+ bytes exceeds the 100-byte limit$"):
        event.to_json()


def test_dict_subclasses_are_objects_too() -> None:
    assert SensorEvent.from_dict(OrderedDict(reading())).kind == "smoke"
