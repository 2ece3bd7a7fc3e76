"""The brain reads the records Faust skipped (an offset jump within an assignment) from the real Kafka."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from faust.types import TP

from brain_bridge.config import BrainConfig, KafkaSettings
from brain_bridge.worker import Brain, OffsetWatch
from tests.integration.conftest import NewTopicFactory

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    """Write (partition, value) records in order, each acknowledged by the broker before the next."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, value in records:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def test_the_records_before_a_jump_are_read_in_order(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("refill", 2)
    await _produce(kafka_bootstrap, topic, [(p, f"p{p}-{i}".encode()) for i in range(10) for p in (1, 0)])
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


async def test_records_deleted_by_retention_are_skipped_without_waiting(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("refill-deleted", 1)
    await _produce(kafka_bootstrap, topic, [(0, f"r{i}".encode()) for i in range(10)])
    tp = TopicPartition(topic, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(5)})  # as retention would: 0..4 are gone
    finally:
        await admin.close()
    worker: Any = SimpleNamespace(config=BrainConfig(kafka=KafkaSettings(bootstrap=kafka_bootstrap)))
    missed = await Brain._missed(worker, topic, 0, 2, 8)  # Faust handed 8 after 1
    assert [(r.offset, r.value) for r in missed] == [(o, f"r{o}".encode()) for o in (5, 6, 7)]
    assert await Brain._missed(worker, topic, 0, 1, 4) == []  # all of it deleted: nothing to wait for


async def test_a_new_assignment_is_watched_from_the_committed_offset(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("refill-committed", 3)
    group = f"{topic}-group"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:  # the group committed 7 on partition 0 and 3 on partition 2, nothing on partition 1
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        await consumer.commit({TopicPartition(topic, 0): 7, TopicPartition(topic, 2): 3})
    finally:
        await consumer.stop()
    # Only what `_assigned` uses: the Kafka settings, the group, the input topic and the watch.
    config = SimpleNamespace(
        kafka=KafkaSettings(bootstrap=kafka_bootstrap), app_id=group, topic=lambda name: topic
    )
    worker: Any = SimpleNamespace(config=config, offsets=OffsetWatch(), level_topic=None)
    worker._committed_offsets = lambda tps: Brain._committed_offsets(worker, tps)
    worker.offsets.saw(topic, 2, 40)  # partition 2 stayed with this worker: what it saw stands
    assigned = {TP(topic, p) for p in range(3)} | {TP("nerve-brain-clock", 0)}
    await Brain._assigned(worker, None, assigned)
    assert worker.offsets.saw(topic, 0, 9) == (7, 9)  # Faust dropped 7 and 8 before handing over 9
    assert worker.offsets.saw(topic, 1, 50) is None  # nothing committed: no start to compare with
    assert worker.offsets.saw(topic, 2, 41) is None
    assert ("nerve-brain-clock", 0) not in worker.offsets.last  # ticks are not watched
