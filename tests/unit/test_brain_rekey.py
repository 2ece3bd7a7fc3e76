"""The brain's re-key step on a batch of events, without Kafka: bundles stay under Kafka's record limit,
and a batch that fails midway is kept from being committed (Faust's take_events acks it regardless)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest

from brain_bridge.worker import BUNDLE, BUNDLE_MAX_BYTES, Brain, OffsetWatch

FAUST_MAX_REQUEST = 1_000_000  # faust's producer_max_request_size default, bytes


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: float = 1.0
    refcount: int = 1

    def incref(self) -> None:
        self.refcount += 1


@dataclass
class Event:
    message: Message
    value: bytes


@dataclass
class Rekeyed:
    sent: list[tuple[bytes | None, bytes, int]] = field(default_factory=list)
    fail_after: int | None = None

    async def send(self, *, key: bytes | None, value: bytes, partition: int) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise RuntimeError("broker refused the record")
        self.sent.append((key, value, partition))


def brain(rekeyed: Rekeyed) -> Any:
    """A Brain with only what re-keying reads (one community level, 4 re-keyed partitions)."""
    b: Any = Brain.__new__(Brain)
    b.clock_name, b.level, b.rekeyed = "nerve-clock", 1, rekeyed
    b.offsets, b.partition_of, b.next_offset, b.appended = OffsetWatch(), {}, {}, {}
    b.config = SimpleNamespace(partitions=4)
    return b


def events(n: int, tag_bytes: int) -> list[Event]:
    """`n` events of one community, each about `tag_bytes` long, offsets 0..n-1 of events partition 0."""
    out = []
    for i in range(n):
        value = orjson.dumps(
            {
                "id": f"ev-{i:05d}",
                "site": f"yuelu/c12/b{i % 7}/f1/r1",
                "sensor": f"s-{i}",
                "kind": "gas",
                "value": 1.0,
                "ts": 1_700_000_000.0 + i,
                "tags": {f"note{k}": "x" * (tag_bytes // 4) for k in range(4)},  # a tag holds ≤ 256
            }
        )
        out.append(Event(Message("nerve.events", 0, i), value))
    return out


async def test_a_bundle_never_outgrows_kafkas_record_limit_and_keeps_every_event_in_order() -> None:
    rekeyed = Rekeyed()
    batch = events(1000, 1000)  # ~1.1 MB of one community: one re-keyed partition
    await Brain._rekey_batch(brain(rekeyed), cast(Any, batch))
    assert len(rekeyed.sent) >= 2
    assert all(key == BUNDLE and len(value) <= BUNDLE_MAX_BYTES + 2_000 for key, value, _ in rekeyed.sent)
    assert BUNDLE_MAX_BYTES + 2_000 < FAUST_MAX_REQUEST
    lines = [line for _, value, _ in rekeyed.sent for line in value.split(b"\n")]
    assert [orjson.loads(line)["id"] for line in lines] == [f"ev-{i:05d}" for i in range(1000)]


async def test_a_batch_that_fails_midway_keeps_a_reference_to_every_event() -> None:
    rekeyed = Rekeyed(fail_after=1)
    batch = events(1000, 1000)

    async def take_events(*args: Any, **kwargs: Any) -> Any:
        yield batch

    stream: Any = SimpleNamespace(take_events=take_events)
    with pytest.raises(RuntimeError, match="refused"):
        await Brain._rekey(brain(rekeyed), stream)
    assert {e.message.refcount for e in batch} == {2}  # Faust's ack in its finally leaves them unacked
