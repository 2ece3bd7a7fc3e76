"""Kafka smoke test: an idempotent producer with acks=all and a consumer agree on keys, values and order."""

# aiokafka ships no py.typed marker; its objects are Any here.

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

pytestmark = pytest.mark.integration

MESSAGES = 200
PARTITIONS = 4
SENSORS = 12
#: one partition's records as (offset, key, value)
Records = list[tuple[int, bytes, bytes]]
#: the `new_topic` fixture from conftest
NewTopicFactory = Callable[[str, int], Awaitable[str]]


async def produce(bootstrap: str, topic: str) -> dict[int, Records]:
    """Sends MESSAGES keyed messages and returns what the broker acknowledged, per partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        async with asyncio.timeout(30):
            pending = []
            for seq in range(MESSAGES):
                key = f"sensor-{seq % SENSORS}".encode()
                value = f"{seq}".encode()
                pending.append((key, value, await producer.send(topic, key=key, value=value)))
            acked: dict[int, Records] = defaultdict(list)
            for key, value, delivery in pending:
                metadata = await delivery
                acked[metadata.partition].append((metadata.offset, key, value))
    finally:
        await producer.stop()
    return acked


async def consume(bootstrap: str, topic: str, expected: int) -> dict[int, Records]:
    """Reads the topic from the beginning until `expected` records arrived (30 s deadline)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[int, Records] = defaultdict(list)
    count = 0
    try:
        async with asyncio.timeout(30):
            while count < expected:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    received[tp.partition].extend((r.offset, r.key, r.value) for r in records)
                    count += len(records)
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            end_offsets = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    # The log holds exactly what was sent: no duplicate from a producer retry, nothing beyond.
    assert sum(end_offsets.values()) == MESSAGES
    return received


async def test_idempotent_producer_round_trip(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("kafka-smoke", PARTITIONS)

    acked = await produce(kafka_bootstrap, topic)
    received = await consume(kafka_bootstrap, topic, MESSAGES)

    assert sum(len(records) for records in acked.values()) == MESSAGES
    assert received == acked, "the consumer must see each partition's records in the order they were sent"
    for partition, records in acked.items():
        offsets = [offset for offset, _, _ in records]
        assert offsets == list(range(len(records))), f"partition {partition}: gaps or duplicates {offsets}"
        values = [int(value) for _, _, value in records]
        assert values == sorted(values), f"partition {partition}: send order lost"
    # The default partitioner hashes the key: one sensor's messages always share a partition.
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, records in received.items():
        for _, key, _ in records:
            partitions_of_key[key].add(partition)
    assert len(partitions_of_key) == SENSORS
    assert all(len(parts) == 1 for parts in partitions_of_key.values()), partitions_of_key
    assert len(received) > 1, "12 keys over 4 partitions should use more than one partition"
