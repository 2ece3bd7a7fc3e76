"""The downlink's command consumer at shutdown: a consumer whose close hangs (its last offset commit
retrying while Kafka's group coordinator is unsettled) does not hold up the agent's shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import pytest

from edge_agent import downlink
from edge_agent.downlink import CommandLedger, Downlink
from schemas import Command


class HangingConsumer:
    """Stands in for AIOKafkaConsumer: starts, has nothing to read, and never finishes `stop`."""

    instances: ClassVar[list[HangingConsumer]] = []

    def __init__(self, *topics: str, **config: Any) -> None:
        self.stop_called = False
        HangingConsumer.instances.append(self)

    async def start(self) -> None:
        return None

    async def getmany(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def stop(self) -> None:
        self.stop_called = True
        await asyncio.Event().wait()  # the commit that never gets through


async def test_shutdown_does_not_wait_for_a_consumer_that_cannot_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(downlink, "AIOKafkaConsumer", HangingConsumer)
    monkeypatch.setattr(downlink, "CONSUMER_STOP_S", 0.3)
    HangingConsumer.instances.clear()
    link = Downlink(bootstrap="unused:9092", topic="t", group="g", scope="a/b", actuate=lambda _c: None)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    started = time.monotonic()

    await asyncio.wait_for(task, 5)

    assert HangingConsumer.instances and HangingConsumer.instances[0].stop_called
    assert time.monotonic() - started < 2.0


def test_a_command_is_carried_out_once_by_id() -> None:
    ledger = CommandLedger(size=2)
    ids = [
        Command(id=f"c{i}", alert_id="a", site="a/b", target="valve", command="close", ts=1.0).id
        for i in range(3)
    ]

    assert [ledger.first_time(i) for i in ids] == [True, True, True]
    assert ledger.first_time("c2") is False
    assert ledger.first_time("c0") is True  # beyond `size` ids back, forgotten
