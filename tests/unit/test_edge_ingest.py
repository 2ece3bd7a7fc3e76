"""Edge ingest: topic templates, the three payload formats, site composition and a battery of bad input."""

from __future__ import annotations

import json
import os
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import EdgeConfig
from edge_agent.ingest import (
    ROUTE_CACHE_TOPIC_CHARS,
    Decoder,
    Rejected,
    SitePlan,
    TemplateError,
    TopicTemplate,
    parse_reading,
)
from schemas import DeadLetter, SchemaError, SensorEvent, event_id

NOW = 1_767_225_600.0
SITE = "yuelu/c12/b3"
SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"topic": "sensors/+floor/+room/+sensor/+kind"},
    {"topic": "sensors/+floor/+sensor/+kind"},
    {"topic": "senml/+floor/+room", "format": "senml"},
    {"topic": "meters/+sensor", "format": "number", "kind": "power"},
    {"topic": "temp/+floor/+room/+sensor", "format": "number", "kind": "temperature", "unit": "Cel"},
    {"topic": "city/+district/+community/+building/+floor/+room/+sensor/+kind"},
    {"topic": "json/#", "format": "event"},
    {"topic": "raw/+kind"},
]


def make_config(**changes: Any) -> EdgeConfig:
    fields: dict[str, Any] = {
        "gateway": "gw-yuelu-c12-b3",
        "site": SITE,
        "rules": [],
        "mqtt": {"subscriptions": SUBSCRIPTIONS},
    }
    fields.update(changes)
    with pytest.MonkeyPatch.context() as env:  # the environment must not leak into these tests
        for name in list(os.environ):
            if name.upper().startswith("NERVE_EDGE_"):
                env.delenv(name)
        return EdgeConfig(**fields)


DECODER = Decoder(make_config())
STRICT = Decoder(make_config(sensors=["smoke-201", "mk2-201:temp"]))


def one(topic: str, payload: bytes, decoder: Decoder = DECODER) -> SensorEvent:
    (event,) = decoder.decode(topic, payload, NOW)
    return event


def reason(topic: str, payload: bytes, decoder: Decoder = DECODER) -> str:
    with pytest.raises(Rejected) as caught:
        decoder.decode(topic, payload, NOW)
    return caught.value.reason


# ------------------------------------------------------------------ topic templates


def test_template_captures_named_levels() -> None:
    template = TopicTemplate.parse("site/+building/+floor/+room/+sensor/+kind")
    assert template.filter == "site/+/+/+/+/+"
    assert template.captures == ("building", "floor", "room", "sensor", "kind")
    assert template.match("site/b3/f2/r201/smoke-201/smoke") == {
        "building": "b3",
        "floor": "f2",
        "room": "r201",
        "sensor": "smoke-201",
        "kind": "smoke",
    }


@pytest.mark.parametrize(
    "topic",
    ["site/b3/f2/r201/smoke-201", "site/b3/f2/r201/smoke-201/smoke/extra", "other/b3/f2/r201/s/k", "site"],
)
def test_template_refuses_topics_of_another_shape(topic: str) -> None:
    assert TopicTemplate.parse("site/+building/+floor/+room/+sensor/+kind").match(topic) is None


def test_hash_captures_the_rest() -> None:
    template = TopicTemplate.parse("json/+floor/#")
    assert template.filter == "json/+/#"
    assert template.captures == ("floor", "rest")
    assert template.match("json/f2/a/b/c") == {"floor": "f2", "rest": "a/b/c"}
    assert template.match("json/f2") == {"floor": "f2", "rest": ""}  # MQTT: '#' also matches the parent
    assert template.match("other/f2/a") is None


def test_bare_plus_matches_without_capturing() -> None:
    template = TopicTemplate.parse("+/+sensor")
    assert template.filter == "+/+"
    assert template.match("anything/s1") == {"sensor": "s1"}


def test_wildcard_templates_do_not_match_dollar_topics() -> None:
    assert TopicTemplate.parse("#").match("$SYS/broker/uptime") is None
    assert TopicTemplate.parse("+sensor/+kind").match("$SYS/x") is None
    assert TopicTemplate.parse("$SYS/#").match("$SYS/broker/uptime") == {"rest": "broker/uptime"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "topic template is empty"),
        (
            "site/+flor/+sensor",
            "topic template 'site/+flor/+sensor': unknown capture '+flor'; did you mean '+floor'?",
        ),
        ("site/+device", "topic template 'site/+device': unknown capture '+device'"),
        ("site/+rest", "unknown capture '+rest'"),
        ("a/#/b", "topic template 'a/#/b': '#' must be the last level"),
        ("a/b+c", "topic template 'a/b+c': level 'b+c' mixes a wildcard with text"),
        ("a/#x", "level '#x' mixes a wildcard with text"),
        ("a/+kind/+kind", "'+kind' is captured twice"),
        ("a/\x00", "contains a NUL character"),
    ],
)
def test_bad_templates_are_errors_naming_the_template(text: str, expected: str) -> None:
    with pytest.raises(TemplateError, match=None) as caught:
        TopicTemplate.parse(text)
    assert expected in str(caught.value)


def test_site_plan_needs_every_level_below_the_gateway() -> None:
    plan = SitePlan(TopicTemplate.parse("x/+district/+floor/+room"), SITE)
    assert plan.site({"district": "yuelu", "floor": "f1", "room": "r1"}) == ("yuelu/c12/b3/f1/r1", True)
    assert plan.site({"district": "tianxin", "floor": "f1", "room": "r1"}) == ("tianxin/c12/b3/f1/r1", False)
    with pytest.raises(TemplateError, match=r"captures \+room but not \+floor"):
        SitePlan(TopicTemplate.parse("x/+room"), SITE)
    with pytest.raises(TemplateError, match=r"captures \+floor but not \+building"):
        SitePlan(TopicTemplate.parse("x/+floor"), "yuelu/c12")


def test_decoder_lists_the_filters_in_config_order() -> None:
    assert DECODER.filters[:3] == ["sensors/+/+/+/+", "sensors/+/+/+", "senml/+/+"]


# ------------------------------------------------------------------ formats and sites


def test_number_payload_takes_site_sensor_and_kind_from_the_topic() -> None:
    event = one("sensors/f2/r201/smoke-201/smoke", b"0.21")
    assert (event.site, event.sensor, event.kind, event.value, event.ts) == (
        "yuelu/c12/b3/f2/r201",
        "smoke-201",
        "smoke",
        0.21,
        NOW,
    )
    assert event.unit is None
    assert event.id == event_id("smoke-201", NOW, 0.21)
    assert one("sensors/f2/r201/smoke-201/smoke", b"0.21") == event  # deterministic


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        (b"12", 12),
        (b" -3 \n", -3),
        (b"1e3", 1000.0),
        (b".5", 0.5),
        (b"true", True),
        (b"false", False),
        (b"open", "open"),
        (b'"closed"', "closed"),
        (b"1_000", "1_000"),  # Python's int() would take it; a reading keeps it as text
        ("温度".encode(), "温度"),
    ],
)
def test_bare_readings(payload: bytes, value: object) -> None:
    event = one("sensors/f2/r201/door-201/door", payload)
    assert event.value == value
    assert type(event.value) is type(value)


def test_fixed_kind_and_unit_from_the_subscription() -> None:
    meter = one("meters/pm-b3", b"false")
    assert (meter.site, meter.sensor, meter.kind, meter.value) == (SITE, "pm-b3", "power", False)
    temp = one("temp/f1/r101/t-101", b"21.5")
    assert (temp.site, temp.kind, temp.unit, temp.value) == (
        "yuelu/c12/b3/f1/r101",
        "temperature",
        "Cel",
        21.5,
    )


def test_floor_level_devices() -> None:
    assert one("sensors/stair-a/smoke-sa-3/smoke", b"0.3").site == "yuelu/c12/b3/stair-a"


def test_captures_at_or_above_the_gateway_site_must_agree() -> None:
    event = one("city/yuelu/c12/b3/f2/r201/gas-201/gas", b"12")
    assert event.site == "yuelu/c12/b3/f2/r201"
    assert reason("city/yuelu/c12/b4/f2/r201/gas-201/gas", b"12") == (
        "topic site 'yuelu/c12/b4/f2/r201' is outside this gateway's site 'yuelu/c12/b3' "
        "(topic 'city/yuelu/c12/b4/f2/r201/gas-201/gas')"
    )


def test_event_payload_fills_missing_fields_from_the_topic() -> None:
    event = one("sensors/f2/r201/smoke-201/smoke", b'{"value": 0.21, "tags": {"floor": "2"}}')
    assert (event.site, event.sensor, event.kind, event.value, event.ts) == (
        "yuelu/c12/b3/f2/r201",
        "smoke-201",
        "smoke",
        0.21,
        NOW,
    )
    assert event.tags == {"floor": "2"}
    assert event.id == event_id("smoke-201", NOW, 0.21)


def test_event_payload_wins_over_the_topic() -> None:
    payload = {
        "id": "e-1",
        "site": "yuelu/c12/b3/f3/r301",
        "sensor": "smoke-301",
        "kind": "smoke",
        "value": 0.5,
        "unit": "dB/m",
        "ts": "2026-01-01T00:00:00Z",
    }
    event = one("sensors/f2/r201/smoke-201/smoke", orjson.dumps(payload))
    assert event.model_dump() == {**payload, "ts": 1_767_225_600.0, "tags": {}}


def test_event_subscription_unit_fills_only_a_missing_unit() -> None:
    assert one("temp/f1/r101/t-101", b"21").unit == "Cel"
    event = one("json/x", b'{"sensor": "t-9", "kind": "temperature", "value": 21, "unit": "K"}')
    assert (event.site, event.unit) == (SITE, "K")


def test_senml_pack_becomes_events_at_the_topic_site() -> None:
    pack = [
        {"bn": "mk2-201:", "bt": NOW, "n": "temp", "u": "Cel", "v": 23.1},
        {"n": "hum", "u": "%RH", "v": 40},
        {"n": "door", "vb": True, "t": 5},
    ]
    events = DECODER.decode("senml/f2/r201", orjson.dumps(pack), NOW)
    assert [(e.site, e.sensor, e.kind, e.value, e.ts) for e in events] == [
        ("yuelu/c12/b3/f2/r201", "mk2-201:temp", "temp", 23.1, NOW),
        ("yuelu/c12/b3/f2/r201", "mk2-201:hum", "hum", 40.0, NOW),
        ("yuelu/c12/b3/f2/r201", "mk2-201:door", "door", True, NOW + 5),
    ]


def test_auto_format_dispatches_on_the_first_character() -> None:
    topic = "sensors/f2/r201/smoke-201/smoke"
    assert one(topic, b'  {"value": 1}').value == 1
    (senml,) = DECODER.decode(topic, b'\n[{"n": "s-9", "v": 2}]', NOW)
    assert (senml.sensor, senml.value, senml.site) == ("s-9", 2.0, "yuelu/c12/b3/f2/r201")
    assert senml.kind == "smoke"  # the topic's kind wins over the name's
    assert one(topic, b"3").value == 3


def test_known_sensors_pass() -> None:
    assert one("sensors/f2/r201/smoke-201/smoke", b"1", STRICT).sensor == "smoke-201"


def test_dead_letter_keeps_topic_reason_and_raw_input() -> None:
    letter = DECODER.dead_letter("sensors/f2/r201/s/k", b"\xff\xfeoops", "payload: not valid UTF-8", NOW)
    assert isinstance(letter, DeadLetter)
    assert (letter.source, letter.reason, letter.received_at) == (
        "sensors/f2/r201/s/k",
        "payload: not valid UTF-8",
        NOW,
    )
    assert letter.raw.endswith("oops")
    assert DeadLetter.from_json(letter.to_json()) == letter


def test_routes_of_very_long_topics_are_not_cached() -> None:
    decoder = Decoder(make_config())
    long_topic = "json/" + "x/" * ROUTE_CACHE_TOPIC_CHARS + "end"
    assert one(long_topic, b'{"sensor": "s1", "kind": "smoke", "value": 1}', decoder).sensor == "s1"
    assert decoder._routes == {}
    one("sensors/f1/r1/s1/smoke", b"1", decoder)
    assert list(decoder._routes) == ["sensors/f1/r1/s1/smoke"]


# ------------------------------------------------------------------ the bad input battery

ROOM = "sensors/f2/r201/smoke-201/smoke"
BATTERY = [
    # (case, topic, payload, what the reason must say)
    ("malformed JSON", ROOM, b'{"value": 1,', "payload: not valid JSON"),
    ("JSON with a trailing comma", ROOM, b'{"value": 1,}', "payload: not valid JSON"),
    (
        "value of a wrong type",
        ROOM,
        b'{"value": [1, 2]}',
        "value: must be a number, bool or string, not array",
    ),
    ("value null", ROOM, b'{"value": null}', "value: must be a number, bool or string, not null"),
    ("ts of a wrong type", ROOM, b'{"value": 1, "ts": true}', "ts: must be epoch seconds"),
    (
        "ts without a timezone",
        ROOM,
        b'{"value": 1, "ts": "2026-01-01T00:00:00"}',
        "ts: '2026-01-01T00:00:00' has no timezone",
    ),
    ("tags not a map", ROOM, b'{"value": 1, "tags": "x"}', "tags: must be an object"),
    ("unknown field", ROOM, b'{"value": 1, "colour": "red"}', "colour: is not a known field"),
    ("no value", ROOM, b'{"unit": "Cel"}', "value: is required"),
    ("JSON NaN", ROOM, b'{"value": NaN}', "payload: NaN is not allowed"),
    ("JSON Infinity", ROOM, b'{"value": -Infinity}', "payload: -inf is not allowed"),
    ("JSON 1e999", ROOM, b'{"value": 1e999}', "infinity"),
    ("bare NaN", ROOM, b"NaN", "value: NaN is NaN, which is not allowed"),
    ("bare +inf", ROOM, b"+inf", "value: +inf is inf, which is not allowed"),
    ("bare -Infinity", ROOM, b"-Infinity", "value: -Infinity is -inf, which is not allowed"),
    ("bare 1e999", ROOM, b"1e999", "value: 1e999 is inf"),
    ("bare integer beyond 64 bits", ROOM, b"9" * 30, "value: integer is outside the signed 64-bit range"),
    ("bare null", ROOM, b"null", "payload: null is not a reading"),
    ("oversized", ROOM, b"1" * (64 * 1024 + 1), "payload: 65537 bytes exceeds the 65536-byte limit"),
    ("oversized JSON", ROOM, b'{"value": "' + b"x" * 70_000 + b'"}', "payload: 70013 bytes exceeds"),
    ("empty payload", ROOM, b"", "payload: is empty"),
    ("whitespace payload", ROOM, b" \r\n\t", "payload: is empty"),
    ("invalid UTF-8", ROOM, b"\xff\xfe1", "payload: not valid UTF-8 (byte 0xff at offset 0)"),
    (
        "invalid UTF-8 in JSON",
        ROOM,
        b'{"value": "\xc3\x28"}',
        "payload: not valid JSON: str is not valid UTF-8",
    ),
    ("array of numbers", ROOM, b"[1, 2, 3]", "senml[0]: expected a SenML record (an object), got number"),
    ("array of odd objects", ROOM, b'[{"foo": 1}]', "senml[0].n: a name is required"),
    (
        "SenML with a string v",
        "senml/f1/r1",
        b'[{"n": "a", "v": "1"}]',
        "senml[0].v: must be a finite number",
    ),
    ("object on a SenML topic", "senml/f1/r1", b'{"n": "a", "v": 1}', "payload: expected a SenML pack"),
    (
        "JSON on a number topic",
        "meters/pm-b3",
        b'{"value": true}',
        "payload: JSON on a 'number' subscription",
    ),
    ("number for a template without sensor", "raw/smoke", b"1", "topic: 'raw/smoke' names no sensor"),
    (
        "event without sensor on a template without it",
        "json/x",
        b'{"kind": "smoke", "value": 1}',
        "sensor: is required: not in the payload, and the topic template 'json/#' has no +sensor",
    ),
    (
        "event array on an event topic",
        "json/x",
        b"[1]",
        "payload: expected a JSON object (a SensorEvent), got array",
    ),
    ("bare string too long", ROOM, b"x" * 257, "payload: a bare reading is at most 256 characters (got 257)"),
    (
        "JSON string too long",
        ROOM,
        b'{"value": "' + b"x" * 300 + b'"}',
        "value: string must be at most 256 characters (got 300)",
    ),
    (
        "event outside the gateway's site",
        ROOM,
        b'{"value": 1, "site": "yuelu/c12/b4/f1"}',
        "site: 'yuelu/c12/b4/f1' is outside this gateway's site 'yuelu/c12/b3'",
    ),
    (
        "event site that is a prefix only",
        ROOM,
        b'{"value": 1, "site": "yuelu/c12/b33"}',
        "is outside this gateway's site",
    ),
    ("topic of no subscription", "lights/f1/r1", b"1", "topic 'lights/f1/r1' matches no subscription"),
    ("empty topic level", "sensors/f2//smoke-201/smoke", b"1", "level +room is empty"),
    ("sensor with a space", "sensors/f2/r201/smoke 201/smoke", b"1", "sensor: must not contain whitespace"),
    ("kind not lowercase", "sensors/f2/r201/smoke-201/Smoke", b"1", "kind: must use only lowercase"),
    (
        "site level with a wildcard",
        "sensors/f2/r+1/smoke-201/smoke",
        b"1",
        "site: must not contain the wildcard",
    ),
]


@pytest.mark.parametrize(
    ("topic", "payload", "expected"), [c[1:] for c in BATTERY], ids=[c[0] for c in BATTERY]
)
def test_bad_input_is_rejected_with_a_reason(topic: str, payload: bytes, expected: str) -> None:
    assert expected in reason(topic, payload)


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        (
            ROOM.replace("smoke-201", "smoke-999"),
            b"1",
            "sensor: unknown sensor 'smoke-999': not in this gateway's sensors",
        ),
        (ROOM, b'{"sensor": "intruder", "value": 1}', "unknown sensor 'intruder'"),
        (
            "senml/f2/r201",
            b'[{"bn": "mk2-201:", "n": "temp", "v": 1}, {"n": "x", "v": 2}]',
            "unknown sensor 'mk2-201:x' (senml[1])",
        ),
    ],
)
def test_unknown_sensor_is_rejected(topic: str, payload: bytes, expected: str) -> None:
    assert expected in reason(topic, payload, STRICT)


def test_parse_reading_raises_schema_errors_naming_the_field() -> None:
    with pytest.raises(SchemaError) as caught:
        parse_reading(b"nan")
    assert caught.value.locations == ["value"]


# ------------------------------------------------------------------ never anything but Rejected

TOPICS = st.one_of(
    st.sampled_from(
        [
            ROOM,
            "sensors/stair-a/smoke-sa/smoke",
            "senml/f1/r1",
            "meters/pm-b3",
            "temp/f1/r101/t-101",
            "city/yuelu/c12/b3/f1/r1/s/k",
            "json/a/b",
            "raw/smoke",
            "",
            "/",
            "$SYS/x",
        ]
    ),
    st.lists(st.text(max_size=6), min_size=1, max_size=9).map("/".join),
)


def dumps(value: object) -> bytes:
    # The standard library writes integers of any size, which orjson refuses to produce.
    return json.dumps(value).encode()


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["id", "site", "sensor", "kind", "value", "unit", "ts", "tags", "n", "bn", "v", "vb", "t", "bt", "u"]
)
PAYLOADS = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(dumps),
    st.dictionaries(FIELDS, JSON_VALUES, max_size=6).map(dumps),
    st.lists(st.dictionaries(FIELDS, JSON_VALUES, max_size=5), max_size=4).map(dumps),
    st.text(max_size=40).map(str.encode),
)


@settings(max_examples=400, deadline=None)
@given(topic=TOPICS, payload=PAYLOADS)
def test_arbitrary_input_only_ever_raises_rejected(topic: str, payload: bytes) -> None:
    for decoder in (DECODER, STRICT):
        try:
            events = decoder.decode(topic, payload, NOW)
        except Rejected as exc:
            assert exc.reason
            assert decoder.dead_letter(topic, payload, exc.reason, NOW).reason
        else:
            assert all(isinstance(e, SensorEvent) for e in events)
            assert all(e.site == SITE or e.site.startswith(SITE + "/") for e in events)


# ------------------------------------------------------------------ event times ahead of the clock
def test_an_event_time_far_ahead_of_the_gateway_clock_is_dead_lettered() -> None:
    """One device with a wrong clock (or milliseconds as seconds) would move the watermark years ahead:
    every later reading late, every silence timer fired. Beyond max_ahead_s (300 s) it is refused."""
    topic = "sensors/f2/r201/smoke-201/smoke"
    assert one(topic, orjson.dumps({"value": 1, "ts": NOW + 299})).ts == NOW + 299  # a clock a bit fast
    why = reason(topic, orjson.dumps({"value": 1, "ts": NOW + 301}))
    assert why.startswith("ts: ") and "301 s ahead" in why and "max_ahead_s (300 s)" in why
    assert "milliseconds" in reason(topic, orjson.dumps({"value": 1, "ts": NOW * 1000}))


def test_one_senml_record_ahead_of_the_clock_refuses_its_pack_and_names_it() -> None:
    pack = [
        {"bn": "mk2-201:", "bt": NOW, "n": "temp", "u": "Cel", "v": 21.5},
        {"n": "hum", "t": 3600, "v": 40},
    ]
    why = reason("senml/f2/r201", orjson.dumps(pack))
    assert why.startswith("senml[1].ts: ") and "3,600 s ahead" in why


def test_max_ahead_s_null_takes_any_event_time() -> None:
    decoder = Decoder(make_config(max_ahead_s=None))
    later = NOW + 10 * 365 * 86400
    assert (
        one("sensors/f2/r201/smoke-201/smoke", orjson.dumps({"value": 1, "ts": later}), decoder).ts == later
    )


def test_a_utf8_byte_order_mark_before_a_payload_is_skipped() -> None:
    """Some devices' JSON libraries start with a BOM: the payload is read as what follows it (it used to
    become the text reading '\\ufeff{"value": 50}' of an auto subscription)."""
    bom = b"\xef\xbb\xbf"
    assert one("sensors/f2/r201/gas-1/gas", bom + b'{"value": 50}').value == 50
    assert one("meters/m-1", bom + b"21.5").value == 21.5
    assert [e.sensor for e in DECODER.decode("senml/f2/r201", bom + b'[{"n": "x", "v": 1}]', NOW)] == ["x"]
