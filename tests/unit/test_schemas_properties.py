"""Property tests: every valid model survives the wire, and no input makes a parser raise anything but
SchemaError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Ack, Alert, Command, DeadLetter, SchemaError, SensorEvent, WireModel, events_from_senml

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters a name may hold: no whitespace (Z*), control (Cc) or surrogate (Cs) characters.
name_chars = st.characters(exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs"))
any_text = st.text(st.characters(codec="utf-8"), max_size=40)
identifiers = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
names = st.text(name_chars, min_size=1, max_size=30)
segments = st.text(
    st.characters(exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs"), exclude_characters="/*?#+"),
    min_size=1,
    max_size=8,
)
sites = st.lists(segments, min_size=1, max_size=5).map("/".join)
kinds = st.from_regex(r"[a-z0-9_]{1,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
times = finite | st.integers(-(2**40), 2**40).map(float)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    finite,
    st.text(st.characters(codec="utf-8"), max_size=40),
)
labels = st.dictionaries(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20), scalars, max_size=5)

_event_fields = {
    "site": sites,
    "sensor": names,
    "kind": kinds,
    "value": scalars,
    "unit": st.none() | st.text(st.characters(codec="utf-8"), max_size=32),
    "ts": times,
    "tags": labels,
}
# With an id, and without one (then the deterministic id is filled in).
events = st.builds(SensorEvent, id=identifiers, **_event_fields) | st.builds(SensorEvent, **_event_fields)
alerts = st.builds(
    Alert,
    id=identifiers,
    reflex=st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
    tier=st.sampled_from(["edge", "brain"]),
    status=st.sampled_from(["raised", "escalated", "cleared"]),
    severity=st.sampled_from(["info", "warning", "critical", "emergency"]),
    departments=st.lists(st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True), max_size=4).map(tuple),
    site=sites,
    group=identifiers,
    message=any_text,
    ts=times,
    evidence=st.lists(identifiers, max_size=6).map(tuple),
    first_event_ts=times,
    emitted_at=st.none() | times,
)
commands = st.one_of(
    st.builds(
        Command,
        id=identifiers,
        alert_id=identifiers,
        site=sites,
        target_by=st.just("kind"),
        target=kinds,
        command=names,
        args=labels,
        ts=times,
    ),
    st.builds(
        Command,
        id=identifiers,
        alert_id=identifiers,
        site=sites,
        target_by=st.just("sensor"),
        target=names,
        command=names,
        args=labels,
        ts=times,
    ),
)
acks = st.builds(Ack, alert_id=identifiers, by=identifiers, ts=times, note=st.none() | any_text)
dead_letters = st.builds(
    DeadLetter.of,
    source=identifiers,
    reason=identifiers,
    raw=st.binary(max_size=200) | any_text,
    received_at=times,
)

MODELS: list[type[WireModel]] = [SensorEvent, Alert, Command, Ack, DeadLetter]


@FAST
@given(st.one_of(events, alerts, commands, acks, dead_letters))
def test_every_model_round_trips(model: WireModel) -> None:
    assert type(model).from_json(model.to_json()) == model


@FAST
@given(events)
def test_event_id_survives_the_wire(event: SensorEvent) -> None:
    again = SensorEvent.from_json(event.to_json())
    assert again.id == event.id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _encoded(value: Any) -> bytes:
    # The stdlib encoder writes what orjson would refuse (NaN, huge integers, lone surrogates).
    return json.dumps(value).encode("utf-8", "surrogatepass")


def _field_soup(model: type[WireModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's own keys (and a stray one) holding arbitrary JSON values."""
    keys = st.sampled_from([*model.model_fields, "extra"])
    return st.dictionaries(keys, json_values, max_size=len(model.model_fields) + 1)


def _only_schema_errors(model: type[WireModel], data: bytes | str) -> None:
    with contextlib.suppress(SchemaError):
        model.from_json(data)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FAST
@given(junk=st.binary(max_size=200))
def test_junk_bytes_raise_only_schema_error(model: type[WireModel], junk: bytes) -> None:
    _only_schema_errors(model, junk)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FAST
@given(value=json_values)
def test_arbitrary_json_raises_only_schema_error(model: type[WireModel], value: Any) -> None:
    _only_schema_errors(model, _encoded(value))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FAST
@given(data=st.data())
def test_objects_with_model_keys_raise_only_schema_error(model: type[WireModel], data: st.DataObject) -> None:
    document = data.draw(_field_soup(model))
    _only_schema_errors(model, _encoded(document))
    with contextlib.suppress(SchemaError):
        model.from_dict(document)


senml_keys = st.sampled_from(
    ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", "x_"]
)
senml_records = st.dictionaries(senml_keys, json_values | st.floats(-1e9, 1e9), max_size=6)


@FAST
@given(pack=st.lists(senml_records, max_size=5) | json_values)
def test_senml_raises_only_schema_error(pack: Any) -> None:
    try:
        events = events_from_senml(_encoded(pack), site="yuelu/c12", now=1_800_000_000.0)
    except SchemaError:
        return
    assert all(isinstance(event, SensorEvent) for event in events)


@FAST
@given(junk=st.binary(max_size=200))
def test_senml_junk_bytes_raise_only_schema_error(junk: bytes) -> None:
    with pytest.raises(SchemaError):
        events_from_senml(junk + b"\xff", site="yuelu/c12", now=1_800_000_000.0)


senml_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9:./_-]{0,30}", fullmatch=True)


@FAST
@given(st.lists(st.fixed_dictionaries({"n": senml_names, "v": finite, "t": finite}), max_size=5))
def test_senml_of_plain_records_round_trips(records: list[dict[str, Any]]) -> None:
    events = events_from_senml(orjson.dumps(records), site="yuelu/c12", now=1_800_000_000.0)
    assert [event.sensor for event in events] == [record["n"] for record in records]
    for event in events:
        assert SensorEvent.from_json(event.to_json()) == event
