"""The brain reads the records Faust skipped (an offset jump within an assignment) from the real Kafka."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from brain_bridge.config import BrainConfig, KafkaSettings
from brain_bridge.worker import Brain, OffsetWatch
from tests.integration.conftest import NewTopicFactory

pytestmark = pytest.mark.integration


async def test_the_records_before_a_jump_are_read_in_order(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("refill", 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"p1-{i}".encode(), partition=1)
            await producer.send_and_wait(topic, f"p0-{i}".encode(), partition=0)
    finally:
        await producer.stop()
    # Only the two methods `_missed` uses: its watch and its Kafka settings.
    worker: Any = SimpleNamespace(
        offsets=OffsetWatch(), config=BrainConfig(kafka=KafkaSettings(bootstrap=kafka_bootstrap))
    )
    assert await Brain._missed(worker, topic, 1, 2) == []  # the first record seen: nothing to compare with
    assert await Brain._missed(worker, topic, 1, 3) == []  # in turn
    missed = await Brain._missed(worker, topic, 1, 8)  # Faust handed 8 after 3
    assert [(r.partition, r.offset, r.value) for r in missed] == [
        (1, o, f"p1-{o}".encode()) for o in (4, 5, 6, 7)
    ]
    assert worker.offsets.skipped == 4
