"""Nerve's contracts: the pydantic models every part of the arc exchanges, and their JSON Schema.

Imported by everyone; imports nothing else from the project.
"""

from schemas.alert import Ack, Alert, Command, DeadLetter
from schemas.errors import SchemaError
from schemas.event import SensorEvent, event_id
from schemas.fields import EpochSeconds, Reading, Scalar, parse_timestamp
from schemas.senml import default_kind, events_from_senml
from schemas.wire import LARGE_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, WireModel

__all__ = [
    "LARGE_PAYLOAD_BYTES",
    "MAX_PAYLOAD_BYTES",
    "Ack",
    "Alert",
    "Command",
    "DeadLetter",
    "EpochSeconds",
    "Reading",
    "Scalar",
    "SchemaError",
    "SensorEvent",
    "WireModel",
    "default_kind",
    "event_id",
    "events_from_senml",
    "parse_timestamp",
]
