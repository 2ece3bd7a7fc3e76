"""The agent's clock task goes on while a periodic engine snapshot is being written: heartbeats (and the
wall-clock watermark that reports silent sensors) do not wait for the snapshot."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge_agent import agent as agent_module
from edge_agent.agent import EdgeAgent
from reflexes import Engine, load_rules_text
from tests.unit.test_edge_ingest import make_config

RULES = "version: 1\nreflexes: []\n"


async def test_heartbeats_go_on_while_a_snapshot_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0, heartbeat_s=0.1)
    agent = EdgeAgent(config, load_rules_text(RULES))
    release, started = asyncio.Event(), asyncio.Event()
    snapshots: list[float] = []

    async def slow_snapshot(engine: Engine, path: Path) -> None:
        snapshots.append(time.monotonic())
        started.set()
        await release.wait()  # a snapshot that takes as long as the test wants

    monkeypatch.setattr(agent_module, "save_snapshot", slow_snapshot)
    monkeypatch.setattr(agent_module, "SNAPSHOT_EVERY_S", 0.0)
    monkeypatch.setattr(agent_module, "TICK_S", 0.02)
    stop = asyncio.Event()
    tick = asyncio.create_task(agent._tick(stop))
    try:
        await asyncio.wait_for(started.wait(), 5)
        beats_at_start = agent.spool.stats().telemetry
        deadline = time.monotonic() + 5
        while agent.spool.stats().telemetry < beats_at_start + 3:
            assert time.monotonic() < deadline, "no heartbeats while the snapshot was being written"
            await asyncio.sleep(0.02)

        assert agent.spool.stats().telemetry >= beats_at_start + 3  # heartbeats while the snapshot hangs
        assert len(snapshots) == 1  # no second snapshot while the first is under way
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(tick, 5)
        if agent._snapshotting is not None:
            await agent._snapshotting
        agent.spool.close()


async def test_a_failing_disk_delays_the_clock_s_records_and_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock's records (heartbeats, timers' alerts, already published on MQTT and fired in the engine)
    are written like ingest's: a failing disk is retried until it holds, not a fault that stops the agent
    (the restart would lose the alert's copy for Kafka)."""
    from edge_agent.spool import SpoolWriteError

    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0, heartbeat_s=0.05)
    agent = EdgeAgent(config, load_rules_text(RULES))
    monkeypatch.setattr(agent_module, "SPOOL_RETRY_S", 0.01)
    monkeypatch.setattr(agent_module, "TICK_S", 0.02)
    append = agent.spool.append
    failures = [SpoolWriteError("disk full")] * 3

    def flaky(records: list[object], ledger: object = ()) -> int:
        if failures:
            raise failures.pop()
        return append(records, ledger)  # type: ignore[arg-type]

    monkeypatch.setattr(agent.spool, "append", flaky)
    stop = asyncio.Event()
    agent._stop = stop
    tick = asyncio.create_task(agent._tick(stop))
    tick.add_done_callback(agent._watch)
    try:
        deadline = time.monotonic() + 5
        while agent.spool.stats().telemetry < 2:  # heartbeats stored once the disk holds again
            assert not tick.done(), tick
            assert time.monotonic() < deadline, "no heartbeat was stored"
            await asyncio.sleep(0.02)
        assert not failures and agent.failed is None and not stop.is_set()
    finally:
        stop.set()
        await asyncio.wait_for(tick, 5)
        agent.spool.close()
