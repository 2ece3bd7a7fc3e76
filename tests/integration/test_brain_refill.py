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
    # Only what `_missed` uses: the worker's Kafka settings.
    worker: Any = SimpleNamespace(config=BrainConfig(kafka=KafkaSettings(bootstrap=kafka_bootstrap)))
    watch = OffsetWatch()
    assert watch.saw(topic, 1, 2) is None  # the first record seen: nothing to compare with
    assert watch.saw(topic, 1, 3) is None  # in turn
    gap = watch.saw(topic, 1, 8)  # Faust handed 8 after 3
    assert gap == (4, 8)
    missed = await Brain._missed(worker, topic, 1, *gap)
    assert [(r.partition, r.offset, r.value) for r in missed] == [
        (1, o, f"p1-{o}".encode()) for o in (4, 5, 6, 7)
    ]
    assert watch.skipped == 4
