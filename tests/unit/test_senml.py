"""SenML (RFC 8428) packs → SensorEvents, starting from the RFC's own examples (§5.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import SchemaError, SensorEvent, default_kind, events_from_senml

NOW = 1_800_000_000.0
SITE = "yuelu/c12/b3"


def resolve(pack: Any, **options: Any) -> list[SensorEvent]:
    data = pack if isinstance(pack, str | bytes) else json.dumps(pack)
    return events_from_senml(data, site=SITE, now=NOW, **options)


def refused(pack: Any, **options: Any) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        events_from_senml(pack, site=options.pop("site", SITE), now=NOW, **options)
    return caught.value


# ---------------------------------------------------------------- RFC 8428 §5.1 examples

SINGLE_DATAPOINT = '[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]'

MULTIPLE_DATAPOINTS = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"""

MULTIPLE_DATAPOINTS_TIMED = """[
  {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
   "bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]"""

MULTIPLE_MEASUREMENTS = """[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
  {"u":"lon","v":24.30621},
  {"u":"lat","v":60.07965},
  {"t":60,"v":20.3},
  {"u":"lon","t":60,"v":24.30622},
  {"u":"lat","t":60,"v":60.07965},
  {"t":120,"v":20.7},
  {"u":"lon","t":120,"v":24.30623},
  {"u":"lat","t":120,"v":60.07966},
  {"u":"%EL","t":150,"v":98},
  {"t":180,"v":21.2},
  {"u":"lon","t":180,"v":24.30628},
  {"u":"lat","t":180,"v":60.07967}
]"""


def test_rfc_single_datapoint() -> None:
    (event,) = resolve(SINGLE_DATAPOINT)
    assert event.sensor == "urn:dev:ow:10e2073a01080063"
    assert event.kind == "temperature"
    assert event.unit == "Cel"
    assert event.value == 23.1
    assert event.ts == NOW  # no time: "roughly now"
    assert event.site == SITE


def test_rfc_multiple_datapoints() -> None:
    voltage, current = resolve(MULTIPLE_DATAPOINTS)
    assert (voltage.sensor, voltage.kind, voltage.unit, voltage.value) == (
        "urn:dev:ow:10e2073a01080063:voltage",
        "voltage",
        "V",
        120.1,
    )
    assert (current.sensor, current.kind, current.unit, current.value) == (
        "urn:dev:ow:10e2073a01080063:current",
        "current",
        "A",
        1.2,
    )
    assert voltage.ts == current.ts == NOW


def test_rfc_multiple_datapoints_with_base_time_and_offsets() -> None:
    events = resolve(MULTIPLE_DATAPOINTS_TIMED)
    assert len(events) == 7
    assert events[0].unit == "V"  # the record's own unit wins over bu
    assert [e.unit for e in events[1:]] == ["A"] * 6
    assert [e.value for e in events[1:]] == [1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    base = 1.276020076001e09
    assert [e.ts for e in events] == pytest.approx(
        [base, base - 5, base - 4, base - 3, base - 2, base - 1, base]
    )


def test_rfc_multiple_measurements() -> None:
    events = resolve(MULTIPLE_MEASUREMENTS)
    assert len(events) == 13
    assert {e.sensor for e in events} == {"urn:dev:ow:10e2073a01080063"}
    assert [e.kind for e in events[:3]] == ["humidity", "longitude", "latitude"]
    assert events[9].kind == "battery"
    assert events[9].unit == "%EL"
    assert events[9].ts == 1.320067464e09 + 150
    assert events[10].value == 21.2
    assert events[10].unit == "%RH"  # back to the base unit
    assert len({e.id for e in events}) == 13


# ---------------------------------------------------------------- resolution rules


def test_relative_times_count_from_now() -> None:
    events = resolve([{"n": "a", "t": -5, "v": 1}, {"bt": -10, "n": "b", "t": 2, "v": 1}, {"n": "c", "v": 1}])
    assert [e.ts for e in events] == [NOW - 5, NOW - 8, NOW - 10]


def test_relative_time_threshold_is_2_to_the_28() -> None:
    below, at = resolve([{"n": "a", "t": 2**28 - 1, "v": 1}, {"n": "a", "t": 2**28, "v": 1}])
    assert below.ts == NOW + 2**28 - 1
    assert at.ts == 2**28


def test_base_value_adds_to_numbers_only() -> None:
    events = resolve(
        [{"bn": "m:", "bv": 100, "n": "a", "v": 1.5}, {"n": "b", "vs": "open"}, {"n": "c", "v": 2}]
    )
    assert [e.value for e in events] == [101.5, "open", 102.0]


def test_numbers_are_floats_and_other_values_keep_their_type() -> None:
    number, flag, text, data = resolve(
        [{"n": "a", "v": 20}, {"n": "b", "vb": True}, {"n": "c", "vs": "12"}, {"n": "d", "vd": "aGk"}]
    )
    assert type(number.value) is float
    assert flag.value is True
    assert text.value == "12"
    assert data.value == "aGk"  # data values are kept as their base64url text


def test_sum_with_and_without_value() -> None:
    both, only_sum = resolve(
        [{"bn": "meter:", "bs": 1000, "n": "energy", "v": 5, "s": 20}, {"n": "total", "s": 7}]
    )
    assert both.value == 5.0
    assert both.tags == {"sum": 1020.0}
    assert only_sum.value == 1007.0
    assert only_sum.tags == {"sum": 1007.0}


def test_base_fields_hold_until_changed() -> None:
    events = resolve(
        [
            {"bn": "dev1:", "bu": "Cel", "n": "t1", "v": 20},
            {"n": "t2", "v": 21},
            {"bn": "dev2:", "n": "t1", "v": 22},
            {"bu": "K", "n": "t2", "v": 300},
        ]
    )
    assert [(e.sensor, e.unit) for e in events] == [
        ("dev1:t1", "Cel"),
        ("dev1:t2", "Cel"),
        ("dev2:t1", "Cel"),
        ("dev2:t2", "K"),
    ]


def test_unknown_fields_are_ignored() -> None:
    (event,) = resolve([{"n": "a", "v": 1, "l": "link", "ut": 60, "x": {"y": 1}}])
    assert event.value == 1.0


def test_parsed_pack_is_accepted() -> None:
    assert resolve(json.loads(SINGLE_DATAPOINT)) == resolve(SINGLE_DATAPOINT)


def test_ids_are_deterministic_and_tell_units_apart() -> None:
    assert [e.id for e in resolve(MULTIPLE_MEASUREMENTS)] == [e.id for e in resolve(MULTIPLE_MEASUREMENTS)]
    humidity, battery = resolve([{"bn": "dev", "u": "%RH", "v": 20}, {"u": "%EL", "v": 20}])
    assert humidity.id != battery.id


def test_kind_of_decides_the_kind() -> None:
    seen: list[tuple[str, str | None]] = []

    def kind_of(name: str, unit: str | None) -> str:
        seen.append((name, unit))
        return "smoke"

    events = resolve(MULTIPLE_DATAPOINTS, kind_of=kind_of)
    assert {e.kind for e in events} == {"smoke"}
    assert seen == [
        ("urn:dev:ow:10e2073a01080063:voltage", "V"),
        ("urn:dev:ow:10e2073a01080063:current", "A"),
    ]


@pytest.mark.parametrize(
    ("name", "unit", "kind"),
    [
        ("urn:dev:ow:10e2073a01080063:voltage", "V", "voltage"),
        ("building/b3/room-201/water-level", None, "water_level"),
        ("urn:dev:ow:10e2073a01080063", "Cel", "temperature"),
        ("urn:dev:mac:0024befffe804ff1", "%RH", "humidity"),
        ("urn:dev:mac:abcdef0123", None, "unknown"),
        ("urn:dev:ow:10e2073a01080063", "ppm", "unknown"),
        ("Room1:CO2", "ppm", "co2"),
    ],
)
def test_default_kind(name: str, unit: str | None, kind: str) -> None:
    assert default_kind(name, unit) == kind


# ---------------------------------------------------------------- refusals


def test_record_without_value_or_sum_is_refused() -> None:
    error = refused('[{"n": "a", "v": 1}, {"n": "b"}]')
    assert str(error) == "senml[1]: has no value (v, vs, vb, vd) and no sum (s)"


@pytest.mark.parametrize(
    ("record", "location"),
    [
        ({"n": "a", "v": "1"}, "senml[0].v"),
        ({"n": "a", "v": True}, "senml[0].v"),
        ({"n": "a", "vb": 1}, "senml[0].vb"),
        ({"n": "a", "vs": 1}, "senml[0].vs"),
        ({"n": "a", "v": 1, "t": "now"}, "senml[0].t"),
        ({"n": "a", "v": 1, "u": 5}, "senml[0].u"),
        ({"n": 5, "v": 1}, "senml[0].n"),
        ({"bt": "x", "n": "a", "v": 1}, "senml[0].bt"),
        ({"n": "a", "v": 1, "vs": "x"}, "senml[0].vs"),
        ({"n": "a b", "v": 1}, "senml[0].n"),
        ({"n": "-a", "v": 1}, "senml[0].n"),
        ({"bn": "a b", "v": 1}, "senml[0].bn"),
        ({"v": 1}, "senml[0].n"),
        ({"n": "a", "v": 1, "bver": 11}, "senml[0].bver"),
        ({"n": "a", "v": 1, "bver": 0}, "senml[0].bver"),
        ({"n": "a", "v": 1, "custom_": 1}, "senml[0].custom_"),
        ({"n": "a", "vs": "x" * 257}, "senml[0].vs"),
        ({"n": "a", "v": 1, "u": "u" * 33}, "senml[0].u"),
        ({"n": "a" * 129, "v": 1}, "senml[0].n"),
    ],
)
def test_bad_record_is_named_by_index_and_field(record: dict[str, Any], location: str) -> None:
    assert refused(json.dumps([record])).locations == [location]


def test_non_finite_numbers_from_python_are_refused() -> None:
    assert refused([{"n": "a", "v": float("nan")}]).locations == ["senml[0].v"]
    assert refused([{"n": "a", "v": 10**400}]).locations == ["senml[0].v"]
    assert str(refused([{"bt": 1e308, "n": "a", "t": 1e308, "v": 1}])) == "senml[0].t: inf is not allowed"
    assert refused([{"bv": 1e308, "n": "a", "v": 1e308}]).locations == ["senml[0].v"]


def test_every_bad_record_is_reported() -> None:
    error = refused(json.dumps([{"n": "a", "v": 1}, {"n": "b"}, {"n": "c", "v": "x"}]))
    assert error.locations == ["senml[1]", "senml[2].v"]


def test_invalid_kind_from_kind_of_is_named() -> None:
    error = refused(SINGLE_DATAPOINT, kind_of=lambda _name, _unit: "Not A Kind")
    assert error.locations == ["senml[0].kind"]


def test_invalid_site_is_named_once() -> None:
    error = refused(MULTIPLE_DATAPOINTS, site="yuelu//b3")
    assert error.locations == ["site"]


@pytest.mark.parametrize(
    ("pack", "words"),
    [
        ('{"n": "a", "v": 1}', "expected a SenML pack"),
        ("[1]", "expected a SenML record"),
        ("[", "not valid JSON"),
        (b"[" + b" " * 70_000 + b"]", "exceeds the 65536-byte limit"),
    ],
)
def test_bad_pack_is_refused(pack: str | bytes, words: str) -> None:
    error = refused(pack)
    assert words in str(error)
    assert error.locations[0] in {"payload", "senml[0]"}


def test_empty_pack_gives_no_events() -> None:
    assert resolve("[]") == []
