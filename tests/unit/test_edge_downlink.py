"""The downlink's command consumer at shutdown: a consumer whose close hangs (its last offset commit
retrying while Kafka's group coordinator is unsettled) does not hold up the agent's shutdown."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
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

    async def commit(self) -> None:
        return None

    async def stop(self) -> None:
        self.stop_called = True
        await asyncio.Event().wait()  # a coordinator that never answers


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


class OneBatchConsumer:
    """Stands in for AIOKafkaConsumer: one batch of commands, then nothing; records what is done, in order."""

    done: ClassVar[list[str]] = []
    payloads: ClassVar[list[bytes]] = []

    def __init__(self, *topics: str, **config: Any) -> None:
        OneBatchConsumer.done.append(f"auto_commit={config.get('enable_auto_commit')}")
        self._batch = [SimpleNamespace(value=v) for v in OneBatchConsumer.payloads]

    async def start(self) -> None:
        return None

    async def getmany(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        batch, self._batch = self._batch, []
        if not batch:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        return {"tp": batch}

    async def commit(self) -> None:
        OneBatchConsumer.done.append("commit")

    async def stop(self) -> None:
        OneBatchConsumer.done.append("stop")


async def test_offsets_are_committed_after_the_batch_is_carried_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """No timer commits (a stop has nothing left to commit); each batch is committed once carried out."""
    monkeypatch.setattr(downlink, "AIOKafkaConsumer", OneBatchConsumer)
    commands = [
        Command(id=f"c{i}", alert_id="a", site="a/b/f1", target="valve", command="close", ts=1.0)
        for i in range(2)
    ]
    OneBatchConsumer.done.clear()
    OneBatchConsumer.payloads[:] = [c.to_json() for c in commands]
    link = Downlink(
        bootstrap="unused:9092",
        topic="t",
        group="g",
        scope="a/b",
        actuate=lambda c: OneBatchConsumer.done.append(f"actuate {c.id}"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    deadline = time.monotonic() + 5
    while "commit" not in OneBatchConsumer.done:
        assert time.monotonic() < deadline, OneBatchConsumer.done
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)

    assert OneBatchConsumer.done == ["auto_commit=False", "actuate c0", "actuate c1", "commit", "stop"]


def test_a_command_is_carried_out_once_by_id() -> None:
    ledger = CommandLedger(size=2)
    ids = [
        Command(id=f"c{i}", alert_id="a", site="a/b", target="valve", command="close", ts=1.0).id
        for i in range(3)
    ]

    assert [ledger.first_time(i) for i in ids] == [True, True, True]
    assert ledger.first_time("c2") is False
    assert ledger.first_time("c0") is True  # beyond `size` ids back, forgotten
