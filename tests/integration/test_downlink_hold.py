"""The downlink on the real Kafka: a batch of commands held back before its commit (the agent waits for the
local broker to take the commands, for as long as Mosquitto is away) is committed once released, and not
delivered again. The consumer stays in its group for up to `hold_max_ms` (a day); held longer, it leaves
the group meanwhile and joins again after the commit."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from edge_agent.downlink import HOLD_MAX_MS, Downlink
from schemas import Command
from tests.integration.conftest import NewTopicFactory
from tests.integration.edge_kit import wait_until

SITE = "city/b1"
HOLD_S = 6.0  # longer than the short hold_max below, and than the consumer's 3 s heartbeat interval


def command(command_id: str) -> bytes:
    return Command(
        id=command_id, alert_id="a-1", site=SITE, target="valve", command="close", ts=time.time()
    ).to_json()


def test_the_default_hold_outlasts_a_long_mosquitto_outage() -> None:
    assert HOLD_MAX_MS >= 24 * 3600 * 1000  # aiokafka's own default is 5 min


@pytest.mark.parametrize(("hold_max_ms", "leaves"), [(2_000, True), (HOLD_MAX_MS, False)])
async def test_a_held_batch_is_committed_once_released_and_not_delivered_again(
    kafka_bootstrap: str,
    new_topic: NewTopicFactory,
    caplog: pytest.LogCaptureFixture,
    hold_max_ms: int,
    leaves: bool,
) -> None:
    topic = await new_topic("commands", 1)
    carried: list[str] = []
    released = asyncio.Event()

    async def settle() -> bool:
        """Holds the batch of `held` for HOLD_S, as while Mosquitto is away; every other batch settles at once."""
        if "held" in carried and not released.is_set():
            await asyncio.sleep(HOLD_S)  # the outage being stood in for, not a wait for a result
            released.set()
        return True

    link = Downlink(
        bootstrap=kafka_bootstrap,
        topic=topic,
        group=f"nerve-test-gw-{uuid.uuid4().hex[:8]}",
        scope=SITE,
        actuate=lambda c: carried.append(c.id),
        settle=settle,
        hold_max_ms=hold_max_ms,
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    try:
        # A new group reads from the end of the topic once it has joined: until then, send again.
        deadline = time.monotonic() + 60
        for n in itertools.count():
            await producer.send_and_wait(topic, command(f"hello-{n}"), key=SITE.encode())
            if carried:
                break
            assert time.monotonic() < deadline, "no command carried out within 60 s"
            await asyncio.sleep(0.5)  # pacing the hellos; the loop ends on a condition, with a deadline
        await asyncio.to_thread(wait_until, lambda: f"hello-{n}" in carried, 10, "the last hello carried out")
        hellos = list(carried)  # those sent before the group had joined were never read: `latest`

        caplog.set_level(logging.INFO, logger="aiokafka.consumer.group_coordinator")
        caplog.clear()
        await producer.send_and_wait(topic, command("held"), key=SITE.encode())
        await asyncio.to_thread(wait_until, released.is_set, 30, "the held batch released")
        left = [r for r in caplog.records if "LeaveGroup" in r.getMessage()]
        await producer.send_and_wait(topic, command("after"), key=SITE.encode())
        await asyncio.to_thread(
            wait_until, lambda: "after" in carried, 60, "the command after the held batch"
        )

        assert carried == [*hellos, "held", "after"]
        assert bool(left) == leaves, [r.getMessage() for r in caplog.records]
        assert not [r for r in caplog.records if r.name == "nerve.edge.downlink"]  # no failed commit
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()
