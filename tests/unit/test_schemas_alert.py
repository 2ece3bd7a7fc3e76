"""Alert, Command, Ack and DeadLetter: the outputs of the arcs and what comes back (SPEC §4, §5)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import LARGE_PAYLOAD_BYTES, Ack, Alert, Command, DeadLetter, SchemaError, WireModel


def alert(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "a7f3",
        "reflex": "kitchen-fire",
        "tier": "edge",
        "status": "raised",
        "severity": "critical",
        "departments": ["fire"],
        "site": "yuelu/c12/b3/f2/r201",
        "group": "yuelu/c12/b3/f2/r201",
        "message": "Fire suspected in yuelu/c12/b3/f2/r201",
        "ts": 1_795_593_600.0,
        "evidence": ["e1", "e2"],
        "first_event_ts": 1_795_593_590.0,
    }
    return base | changes


def command(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "c1",
        "alert_id": "a7f3",
        "site": "yuelu/c12/b3/f2/r201",
        "target": "gas_valve",
        "command": "close",
        "ts": 1_795_593_600.0,
    }
    return base | changes


def locations(model: type[WireModel], data: dict[str, Any]) -> list[str]:
    with pytest.raises(SchemaError) as caught:
        model.from_dict(data)
    return caught.value.locations


# ---------------------------------------------------------------- Alert


def test_alert_round_trips_and_keeps_tuples() -> None:
    parsed = Alert.from_json(orjson.dumps(alert()))
    assert parsed.departments == ("fire",)
    assert parsed.evidence == ("e1", "e2")
    assert parsed.emitted_at is None
    assert Alert.from_json(parsed.to_json()) == parsed


def test_alert_built_in_python_from_lists() -> None:
    built = Alert(**alert(emitted_at=1_795_593_600.5))
    assert built.departments == ("fire",)
    assert built.emitted_at == 1_795_593_600.5


@pytest.mark.parametrize(
    ("field", "bad"),
    [("tier", "cloud"), ("status", "open"), ("severity", "high"), ("reflex", "Kitchen Fire")],
)
def test_alert_enumerations_and_reflex_id(field: str, bad: str) -> None:
    assert locations(Alert, alert(**{field: bad})) == [field]


def test_alert_literal_message_lists_the_choices() -> None:
    with pytest.raises(
        SchemaError, match=r"^severity: must be one of 'info', 'warning', 'critical' or 'emergency'"
    ):
        Alert.from_dict(alert(severity="high"))


def test_alert_message_is_at_most_1024_characters() -> None:
    assert Alert.from_dict(alert(message="m" * 1024)).message == "m" * 1024
    assert locations(Alert, alert(message="m" * 1025)) == ["message"]


def test_alert_evidence_is_at_most_256_ids() -> None:
    assert len(Alert.from_dict(alert(evidence=[f"e{i}" for i in range(256)])).evidence) == 256
    assert locations(Alert, alert(evidence=[f"e{i}" for i in range(257)])) == ["evidence"]
    assert locations(Alert, alert(evidence=["e1", ""])) == ["evidence[1]"]


def test_alert_departments_name_topics() -> None:
    assert locations(Alert, alert(departments=["fire dept"])) == ["departments[0]"]
    assert (
        Alert.from_dict(alert(departments=["fire", "police.north", "health_2"])).departments[1]
        == "police.north"
    )
    assert locations(Alert, alert(departments="fire")) == ["departments"]


@pytest.mark.parametrize("field", ["ts", "first_event_ts", "emitted_at"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_every_alert_time_rejects_non_finite(field: str, bad: float) -> None:
    with pytest.raises(SchemaError, match=f"^{field}: "):
        Alert.from_dict(alert(**{field: bad}))


def test_alert_large_evidence_still_round_trips() -> None:
    big = Alert.from_dict(alert(evidence=["x" * 128] * 256, message="é" * 1024))
    data = big.to_json()
    assert len(data) > 32 * 1024
    assert Alert.from_json(data) == big
    assert Alert.max_payload_bytes == LARGE_PAYLOAD_BYTES


# ---------------------------------------------------------------- Command


def test_command_defaults_to_a_kind_target() -> None:
    parsed = Command.from_json(orjson.dumps(command()))
    assert parsed.target_by == "kind"
    assert parsed.args == {}
    assert Command.from_json(parsed.to_json()) == parsed


def test_command_kind_target_must_read_as_a_kind() -> None:
    assert locations(Command, command(target="Gas-Valve")) == ["target"]
    by_sensor = Command.from_dict(command(target="GV-201", target_by="sensor"))
    assert by_sensor.target == "GV-201"


def test_command_target_by_is_kind_or_sensor() -> None:
    assert locations(Command, command(target_by="room")) == ["target_by"]


def test_command_args_are_scalars() -> None:
    parsed = Command.from_dict(command(args={"level": 3, "mode": "eco", "force": True, "ratio": 0.5}))
    assert parsed.args["force"] is True
    assert locations(Command, command(args={"level": [3]})) == ["args.level"]
    with pytest.raises(SchemaError, match=r"^args\.ratio: NaN is not allowed$"):
        Command.from_dict(command(args={"ratio": float("nan")}))


def test_command_target_and_command_have_no_whitespace() -> None:
    assert locations(Command, command(command="shut off")) == ["command"]


# ---------------------------------------------------------------- Ack


def test_ack_round_trips_and_accepts_rfc3339() -> None:
    parsed = Ack.from_json(b'{"alert_id": "a7f3", "by": "Fire duty officer", "ts": "2026-11-25T08:00:05Z"}')
    assert parsed.note is None
    assert parsed.ts == 1_795_593_605.0
    assert Ack.from_json(parsed.to_json()) == parsed


def test_ack_requires_who_and_when() -> None:
    assert locations(Ack, {"alert_id": "a7f3", "by": "", "ts": True}) == ["by", "ts"]
    assert locations(Ack, {"alert_id": "a7f3", "by": "x", "ts": 1.0, "note": "n" * 1025}) == ["note"]


# ---------------------------------------------------------------- DeadLetter


def test_dead_letter_keeps_undecodable_input_readable() -> None:
    letter = DeadLetter.of("nerve/yuelu/c12/events", "value: NaN is not allowed", b'{"v": \xff}', 1.5)
    assert letter.raw == '{"v": \ufffd}'
    assert letter.received_at == 1.5
    assert DeadLetter.from_json(letter.to_json()) == letter


def test_dead_letter_cuts_raw_input_to_64_kib() -> None:
    letter = DeadLetter.of("events.jsonl:12", "too big", b"x" * 100_000, 1.0)
    assert len(letter.raw) == 65536
    text_letter = DeadLetter.of("events.jsonl:13", "too big", "é" * 40_000, 1.0)
    assert len(text_letter.raw.encode()) == 65536


def test_dead_letter_cuts_source_and_reason_instead_of_failing() -> None:
    letter = DeadLetter.of("t" * 1000, "r" * 10_000, "", 1.0)
    assert len(letter.source) == 512
    assert len(letter.reason) == 4096
    assert DeadLetter.of("", "", b"", 1.0).source == "unknown"


def test_worst_case_dead_letter_fits_its_own_limit() -> None:
    # Control characters are escaped as \u00XX: six bytes each on the wire.
    letter = DeadLetter.of("s" * 512, "\x01" * 4096, b"\x01" * 65536, 1.0)
    data = letter.to_json()
    assert len(data) > 6 * 65536
    assert DeadLetter.from_json(data) == letter


def test_dead_letter_fields_are_checked() -> None:
    good = {"source": "t", "reason": "r", "raw": "", "received_at": 1.0}
    assert locations(DeadLetter, good | {"raw": "x" * 65537}) == ["raw"]
    assert locations(DeadLetter, good | {"source": ""}) == ["source"]
    assert locations(DeadLetter, good | {"received_at": float("nan")}) == ["received_at"]


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Alert, alert()),
        (Command, command()),
        (Ack, {"alert_id": "a", "by": "b", "ts": 1.0}),
        (DeadLetter, {"source": "t", "reason": "r", "raw": "", "received_at": 1.0}),
    ],
)
def test_every_model_is_closed_frozen_and_strict(model: type[WireModel], data: dict[str, Any]) -> None:
    assert locations(model, data | {"extra": 1}) == ["extra"]
    first = next(iter(data))
    instance = model.from_dict(data)
    with pytest.raises(ValidationError):
        setattr(instance, first, "changed")
    with pytest.raises(SchemaError, match=r"^payload: expected a JSON object"):
        model.from_json(b"[]")
    with pytest.raises(SchemaError, match=r"^payload: not valid JSON"):
        model.from_json(b"{")
    assert locations(model, data | {first: 12}) == [first]
