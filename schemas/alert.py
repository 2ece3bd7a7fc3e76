"""What the arcs send out and what comes back: alerts, commands, acks, dead letters (SPEC §4, §5)."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Final, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from schemas.fields import (
    KIND_PATTERN,
    Department,
    EpochSeconds,
    Identifier,
    Labels,
    Name,
    ReflexId,
    SitePath,
    problem,
)
from schemas.wire import LARGE_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, WireModel

MAX_RAW_BYTES: Final = MAX_PAYLOAD_BYTES
"""Longest raw input a dead letter quotes, in bytes (64 KiB) before decoding."""

Message = Annotated[str, StringConstraints(max_length=1024)]
_KIND = re.compile(KIND_PATTERN)


class Alert(WireModel):
    """An alert raised, escalated or cleared by a reflex (SPEC §4); on `nerve.alerts[.<department>]`.

    `ts` is the event time that fired it and `first_event_ts` the start of its evidence, both epoch
    seconds; `emitted_at` is the wall clock when it left the engine, for latency measurement.
    """

    max_payload_bytes: ClassVar[int] = LARGE_PAYLOAD_BYTES

    id: Identifier = Field(description="Deterministic from reflex, group and window start.")
    reflex: ReflexId = Field(description="Id of the reflex that fired, [a-z0-9-]+.")
    tier: Literal["edge", "brain"]
    status: Literal["raised", "escalated", "cleared"]
    severity: Literal["info", "warning", "critical", "emergency"]
    departments: tuple[Department, ...] = Field(strict=False, max_length=32)
    site: SitePath = Field(description="The group's site path (for per: sensor, the sensor's site).")
    group: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="The group key: a site path cut at the reflex's `per` level, or a sensor id."
    )
    message: Message
    ts: EpochSeconds = Field(description="Event time that fired the alert (or a timer's due time).")
    evidence: tuple[Identifier, ...] = Field(
        strict=False, max_length=256, description="Ids of the events that made the alert."
    )
    first_event_ts: EpochSeconds = Field(description="Event time of the earliest evidence.")
    emitted_at: EpochSeconds | None = Field(default=None, description="Wall clock at emission.")


class Command(WireModel):
    """A command to devices at a site (SPEC §4); on `nerve.commands`, the efferent path to the edges.

    `target` names a device kind (`target_by="kind"`, every device of that kind at `site`) or one
    sensor id (`target_by="sensor"`). `ts` is the event time of the alert behind it, epoch seconds.
    """

    id: Identifier
    alert_id: Identifier
    site: SitePath
    target_by: Literal["kind", "sensor"] = "kind"
    target: Name = Field(description="A device kind or a sensor id, per target_by.")
    command: Name = Field(description="What the device should do, e.g. close.")
    args: Labels = Field(default_factory=dict)
    ts: EpochSeconds

    @field_validator("target")
    @classmethod
    def _target_fits_kind(cls, target: str, info: ValidationInfo) -> str:
        if info.data.get("target_by", "kind") == "kind" and _KIND.fullmatch(target) is None:
            raise problem(
                "kind_pattern", "must be a kind (lowercase letters, digits and '_') when target_by is kind"
            )
        return target


class Ack(WireModel):
    """A department's acknowledgement of an alert; on `nerve.acks`. `ts` in epoch seconds."""

    alert_id: Identifier
    by: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="Who acknowledged: a person or a system."
    )
    ts: EpochSeconds
    note: Message | None = None


def _clip(text: str | bytes, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes and decoded with U+FFFD for anything undecodable."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    return raw[:limit].decode("utf-8", "replace")


class DeadLetter(WireModel):
    """Input that was rejected, with the reason; on `nerve.deadletter` (SPEC §2: never dropped silently).

    `raw` is the input decoded as UTF-8 (errors replaced) and cut to 64 KiB; `received_at` is the
    wall clock at receipt, epoch seconds. Build one with `DeadLetter.of`, which never fails on
    odd input.
    """

    max_payload_bytes: ClassVar[int] = LARGE_PAYLOAD_BYTES

    source: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="Where the input came from: an MQTT topic, a Kafka topic, `file.jsonl:12`, …"
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    raw: Annotated[str, StringConstraints(max_length=MAX_RAW_BYTES)]
    received_at: EpochSeconds

    @classmethod
    def of(cls, source: str, reason: str, raw: bytes | str, received_at: float) -> DeadLetter:
        """A dead letter for `raw` input: decoded (errors replaced) and cut to 64 KiB.

        `source` and `reason` are cut to their limits (512 and 4096 bytes) rather than refused.
        """
        return cls(
            source=_clip(source, 512) or "unknown",
            reason=_clip(reason, 4096) or "unknown",
            raw=_clip(raw, MAX_RAW_BYTES),
            received_at=received_at,
        )
