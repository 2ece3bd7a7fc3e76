"""The agent's command ledger (no broker is touched here): a command's id is stored in the spool only once
the local broker has taken the command, with the next spool write; the brain's commands are settled
(delivered, stored) before their offsets may be committed; a failed or cancelled write keeps the ids for
the next one."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.mqtt_link import Inbound
from edge_agent.spool import SpoolWriteError
from reflexes import load_rules_text
from schemas import Command
from tests.unit.test_edge_ingest import make_config

RULES = textwrap.dedent(
    """
    version: 1
    reflexes:
      - id: gas-leak
        tier: edge
        when: {kind: gas, value: ">= 10"}
        per: room
        then: [{actuate: {kind: gas_valve, command: close}}]
    """
)


class Link:
    """Stands in for the MQTT link: keeps what is published, and delivers (PUBACKs) when told to."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.unacked: list[Callable[[], None]] = []

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, on_delivered: Callable[[], None] | None = None
    ) -> None:
        if "+" in topic or "#" in topic:  # as paho does
            raise ValueError("Publish topic cannot contain wildcards.")
        self.messages.append((topic, payload))
        if on_delivered is not None:
            self.unacked.append(on_delivered)

    def flush(self) -> None:
        return None

    def deliver_all(self) -> None:
        callbacks, self.unacked = self.unacked, []
        for callback in callbacks:
            callback()


class StuckWrite:
    """Stands in for Spool.append: blocks its worker thread until released, then fails."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, records: Any, ledger: Any = ()) -> int:
        self.entered.set()
        self.release.wait(10)
        raise SpoolWriteError("disk gone")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[EdgeAgent]:
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    edge = EdgeAgent(config, load_rules_text(RULES))
    edge.mqtt = Link()  # type: ignore[assignment]
    edge._stop = asyncio.Event()
    try:
        yield edge
    finally:
        edge.spool.close()


def link(agent: EdgeAgent) -> Link:
    assert isinstance(agent.mqtt, Link)
    return agent.mqtt


def stored(agent: EdgeAgent) -> list[str]:
    return [command_id for _, command_id in agent.spool.ledger()]


def gas(mid: int, value: bytes = b"12") -> Inbound:
    return Inbound(f"sensors/f1/r{100 + mid}/gas-{mid}/gas", value, mid, 1)


def command(command_id: str, target: str = "valve") -> Command:
    return Command(
        id=command_id,
        alert_id="a-1",
        site="yuelu/c12/b3/f1/r1",
        target_by="sensor",
        target=target,
        command="close",
        ts=1.0,
    )


def ignored(agent: EdgeAgent, reason: str) -> float | None:
    return agent.metrics.registry.get_sample_value("nerve_edge_commands_ignored_total", {"reason": reason})


async def test_a_reflex_command_is_stored_once_the_broker_took_it_with_the_next_write(
    agent: EdgeAgent,
) -> None:
    records = agent._ingest_batch([gas(1)])
    ((topic, payload),) = link(agent).messages
    assert topic.endswith("/gas_valve")
    command_id = orjson.loads(payload)["id"]

    assert await agent._append_durably(records) is True
    assert stored(agent) == []  # published, but only in this process so far: a crash would lose it

    link(agent).deliver_all()
    assert await agent._append_durably(agent._ingest_batch([gas(2, b"1")])) is True  # the next write
    assert stored(agent) == [command_id]


async def test_a_repeated_command_is_not_published_again_and_is_counted(agent: EdgeAgent) -> None:
    agent._actuate_from_brain(command("x-1"))
    agent._actuate_from_brain(command("x-1"))
    agent._outside(command("x-2"))
    assert len(link(agent).messages) == 1
    assert ignored(agent, "repeat") == 1
    assert ignored(agent, "outside") == 1


async def test_the_brain_s_commands_settle_once_delivered_and_stored(agent: EdgeAgent) -> None:
    agent._actuate_from_brain(command("x-1"))
    settling = asyncio.create_task(agent._settle_commands())
    done, _ = await asyncio.wait({settling}, timeout=0.5)
    assert not done, "settled before the broker took the command"
    assert stored(agent) == []

    link(agent).deliver_all()
    assert await asyncio.wait_for(settling, 5) is True
    assert stored(agent) == ["x-1"]


async def test_a_stop_before_delivery_leaves_the_batch_unsettled(agent: EdgeAgent) -> None:
    agent._actuate_from_brain(command("x-1"))
    settling = asyncio.create_task(agent._settle_commands())
    assert agent._stop is not None
    agent._stop.set()
    assert await asyncio.wait_for(settling, 5) is False  # its offsets are not committed
    assert stored(agent) == []


async def test_a_failed_ledger_write_is_not_settled_and_the_next_one_stores_it(
    agent: EdgeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    append = agent.spool.append
    failures = [SpoolWriteError("disk full")]

    def flaky(records: Any, ledger: Any = ()) -> int:
        if failures:
            raise failures.pop()
        return append(records, ledger)

    monkeypatch.setattr(agent.spool, "append", flaky)
    agent._actuate_from_brain(command("x-1"))
    link(agent).deliver_all()
    assert await agent._settle_commands() is False
    assert stored(agent) == []
    assert await agent._settle_commands() is True
    assert stored(agent) == ["x-1"]


async def test_a_spool_write_cancelled_at_shutdown_gives_its_ids_back(
    agent: EdgeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    append, stuck = agent.spool.append, StuckWrite()
    agent._actuate_from_brain(command("x-1"))
    link(agent).deliver_all()
    monkeypatch.setattr(agent.spool, "append", stuck)
    writing = asyncio.create_task(agent._append_durably(agent._ingest_batch([gas(3, b"1")])))
    assert await asyncio.to_thread(stuck.entered.wait, 10)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    stuck.release.set()
    monkeypatch.setattr(agent.spool, "append", append)

    assert await agent._store_ledger() is True  # what the final write at shutdown does
    assert stored(agent) == ["x-1"]


async def test_a_command_mqtt_refuses_is_counted_and_settles(agent: EdgeAgent) -> None:
    """A brain's command whose target makes a topic with a wildcard is not published, and neither stops the
    agent nor holds up the batch's commit (a fault would come back with the batch after every restart)."""
    agent._actuate_from_brain(command("x-1", target="valve+1"))
    assert link(agent).messages == []
    assert ignored(agent, "unpublishable") == 1
    assert await asyncio.wait_for(agent._settle_commands(), 5) is True
    agent._actuate_from_brain(command("x-1", target="valve+1"))  # each time it comes, counted again
    assert ignored(agent, "unpublishable") == 2


async def test_settling_waits_for_a_write_that_took_the_ids(
    agent: EdgeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool writer has taken the delivered ids and is still writing: the batch is not settled until
    that write has stored them, and when it fails, settling stores them itself."""
    append, stuck = agent.spool.append, StuckWrite()
    agent._actuate_from_brain(command("x-1"))
    link(agent).deliver_all()
    monkeypatch.setattr(agent.spool, "append", stuck)
    writing = asyncio.create_task(agent._append([]))
    assert await asyncio.to_thread(stuck.entered.wait, 10)
    monkeypatch.setattr(agent.spool, "append", append)
    settling = asyncio.create_task(agent._settle_commands())
    done, _ = await asyncio.wait({settling}, timeout=0.5)
    assert not done, "settled while the write holding the ids was under way"

    stuck.release.set()
    with pytest.raises(SpoolWriteError):
        await writing
    assert await asyncio.wait_for(settling, 5) is True
    assert stored(agent) == ["x-1"]


async def test_at_shutdown_the_agent_waits_for_the_broker_to_take_its_last_commands(agent: EdgeAgent) -> None:
    """So that the final ledger write has their ids (and a restart does not carry them out again)."""
    agent._actuate_from_brain(command("x-1"))
    waiting = asyncio.create_task(agent._await_deliveries())
    done, _ = await asyncio.wait({waiting}, timeout=0.3)
    assert not done, "stopped waiting before the broker took the command"
    link(agent).deliver_all()
    await asyncio.wait_for(waiting, 5)
    assert await agent._store_ledger() is True
    assert stored(agent) == ["x-1"]
