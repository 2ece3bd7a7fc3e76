"""The brain's topics, created before the Faust worker starts so that every partition count is explicit.

Faust subscribes to its source topics when it starts; one that does not exist yet is ignored until the
next rebalance, and one created later by a producer gets the broker's default partition count. Creating
them here, with the brain's `partitions`, avoids both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from brain_bridge.config import BrainConfig
from schemas.credentials import aiokafka_options


def brain_topics(
    config: BrainConfig, level_topic: str | None, department_topics: Iterable[str] = ()
) -> dict[str, dict[str, str]]:
    """Topic name → configs, for every topic the brain reads or writes.

    `department_topics` are the alert topics of the departments the rules and the departments file name:
    created up front, a department subscribing before the first alert of its kind misses nothing.
    """
    compacted = {"cleanup.policy": "compact"}
    topics: dict[str, dict[str, str]] = {
        config.topic(name): {}
        # edge-actuations: where edge agents log what they actuated on their own (`kafka.actuation_log`),
        # created here so that an unsecured city whose broker does not create topics has it
        for name in ("events", "alerts", "commands", "acks", "deadletter", "edge-actuations")
    }
    topics[config.topic("rules")] = compacted
    topics[f"{config.app_id}-clock"] = {"retention.ms": str(3_600_000)}  # ticks are worthless after an hour
    if level_topic is not None:
        topics[level_topic] = {}
    for topic in department_topics:
        topics.setdefault(topic, {})
    return topics


async def ensure_topics(config: BrainConfig, topics: dict[str, dict[str, str]]) -> list[str]:
    """Create the missing ones (rules with one partition, the rest with `config.partitions`, each with
    `config.replication` replicas); returns them. A secured city provisions them in advance
    (`nerve secure provision`), so the brain's principal needs no right to create them."""
    replication = config.replication
    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka.bootstrap, **aiokafka_options(config.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        for name in missing:
            partitions = 1 if name == config.topic("rules") else config.partitions
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created it meanwhile
                await admin.create_topics(
                    [NewTopic(name, partitions, replication, topic_configs=topics[name])]
                )
        return missing
    finally:
        await admin.close()
