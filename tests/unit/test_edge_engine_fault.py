"""A fault of the reflex engine on one event neither stops the agent nor loses the event: it is forwarded,
dead-lettered with the fault, and the next events are applied as usual (no broker is touched here)."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.mqtt_link import Inbound
from edge_agent.spool import Priority, Spool
from reflexes import load_rules_text
from reflexes.deployment import Deployment, digest
from schemas.routing import DepartmentEntry, Routing
from tests.unit.test_edge_ingest import NOW, make_config

RULES = textwrap.dedent(
    """
    version: 1
    reflexes:
      - id: kitchen-smoke
        tier: edge
        when: {kind: smoke, value: "> 0.5"}
        then: [{alert: {to: [fire], severity: critical}}]
    """
)


class Published:
    """Stands in for the MQTT link's publish: what the agent would send to the local broker."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.messages.append((topic, payload))


def test_an_engine_fault_dead_letters_the_event_and_ingest_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    published = Published()
    agent.mqtt = published  # type: ignore[assignment]
    process = agent.engine.process

    def faulty(event: Any) -> Any:
        if event.sensor == "smoke-bad":
            raise KeyError("t")
        return process(event)

    monkeypatch.setattr(agent.engine, "process", faulty)
    batch = [
        Inbound(f"sensors/f1/r101/{sensor}/smoke", b"0.9", mid, 1)
        for mid, sensor in enumerate(("smoke-bad", "smoke-good"), start=1)
    ]
    try:
        records = agent._ingest_batch(batch)
    finally:
        agent.spool.close()
    telemetry = [orjson.loads(r.value)["sensor"] for r in records if r.topic == config.topic("events")]
    assert telemetry == ["smoke-bad", "smoke-good"]  # both accepted and forwarded
    letters = [orjson.loads(r.value) for r in records if r.topic == config.topic("deadletter")]
    assert len(letters) == 1
    assert letters[0]["source"] == "reflexes" and "KeyError('t')" in letters[0]["reason"]
    assert orjson.loads(letters[0]["raw"])["sensor"] == "smoke-bad"
    alerts = [orjson.loads(r.value) for r in records if r.topic == config.topic("alerts")]
    assert [a["reflex"] for a in alerts] == ["kitchen-smoke"]  # the good one still fired
    assert any(topic == config.mqtt.deadletter_topic for topic, _ in published.messages)
    assert agent.metrics.registry.get_sample_value("nerve_edge_dead_lettered_total") == 1


async def test_a_failing_spool_write_is_retried_and_nothing_is_acked_before_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full or failing disk stops the acks, not the agent: the write is tried again until it holds."""
    from edge_agent import agent as agent_module
    from edge_agent.spool import SpoolWriteError

    monkeypatch.setattr(agent_module, "SPOOL_RETRY_S", 0.01)
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    append = agent.spool.append
    failures = [SpoolWriteError("disk full"), SpoolWriteError("disk full")]
    calls: list[int] = []

    def flaky(records: Any, ledger: Any = ()) -> int:
        calls.append(len(records))
        if failures:
            raise failures.pop(0)
        return append(records, ledger)

    monkeypatch.setattr(agent.spool, "append", flaky)
    records = agent._ingest_batch([Inbound("sensors/f1/r101/t1/temperature", b"21", 1, 1)])
    try:
        assert await agent._append_durably(records) is True
        assert calls == [len(records)] * 3  # two failures, then the write that holds
        assert agent.spool.stats().telemetry == 1
        agent._stopping = True  # at shutdown a failing disk is given up on, leaving the input unacked
        failures.append(SpoolWriteError("disk full"))
        assert await agent._append_durably(records) is False
    finally:
        agent.spool.close()


async def test_a_failing_agent_task_stops_the_agent_and_is_logged_when_it_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    stop = agent._stop = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("uplink bug")

    async def fine() -> None:
        return None

    try:
        for coro, name in ((fine(), "tick"), (broken(), "uplink"), (broken(), "downlink")):
            task = asyncio.create_task(coro, name=name)
            task.add_done_callback(agent._watch)
            await asyncio.wait([task])
            await asyncio.sleep(0)  # done callbacks run on the next loop iteration
            if name == "tick":
                assert not stop.is_set()  # a task that ends normally stops nothing
    finally:
        agent.spool.close()
    assert stop.is_set() and agent.failed == "uplink"  # the first failure is the one reported
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [
        "uplink failed; the agent stops",
        "downlink failed; the agent stops",
    ]
    assert errors[0].exc_info is not None and "uplink bug" in str(errors[0].exc_info[1])


class Inbox(Published):
    """Stands in for the MQTT link: an inbox to `take` from, and publishes recorded."""

    def __init__(self, messages: list[Inbound]) -> None:
        super().__init__()
        self.inbox = list(messages)

    def take(self, limit: int) -> list[Inbound]:
        taken, self.inbox = self.inbox[:limit], self.inbox[limit:]
        return taken

    def flush(self) -> None:
        return None


async def test_ingest_on_the_read_callback_stops_at_a_full_pipe_and_keeps_the_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read callbacks ingest while the spool pipe has room and leave the rest in the link's inbox for the
    ingest task (which waits for room); batches enter the pipe in the order they were read."""
    from edge_agent import agent as agent_module
    from edge_agent.agent import _SpoolPipe

    monkeypatch.setattr(agent_module, "SPOOL_PIPELINE", 10)
    monkeypatch.setattr(agent_module, "INGEST_BATCH", 4)
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    link = Inbox([Inbound(f"sensors/f1/r101/smoke-{i}/smoke", b"0.1", i + 1, 1) for i in range(25)])
    agent.mqtt = link  # type: ignore[assignment]
    pipe = agent._pipe = _SpoolPipe()
    try:
        agent._ingest_now()
        taken = [m.mid for _, batch in pipe._items for m in batch]
        assert taken == list(range(1, 13))  # 4 + 4 + 4: the last batch filled the pipe past 10
        assert not pipe.has_room() and len(link.inbox) == 13
        agent._ingest_now()  # full: nothing more
        assert len(link.inbox) == 13
        assert await pipe.take() is not None
        pipe.written()  # the writer made room
        agent._ingest_now()
        assert [m.mid for _, batch in pipe._items for m in batch] == list(range(13, 25))
        records = [r for batch_records, _ in pipe._items for r in batch_records]
        assert [orjson.loads(r.value)["sensor"] for r in records] == [f"smoke-{i}" for i in range(12, 24)]
        agent._stopping = True  # ingest has ended: callbacks leave everything to the broker
        pipe.written()
        agent._ingest_now()
        assert len(link.inbox) == 1
    finally:
        agent.spool.close()


async def test_the_spool_writer_stops_gathering_once_the_pipe_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer gathers batches for up to SPOOL_GATHER_S before a write; a pipe that fills meanwhile is
    written at once (ingest is waiting for room), so a small pipe does not cap throughput at its size per
    gather."""
    from edge_agent import agent as agent_module
    from edge_agent.agent import _SpoolPipe

    monkeypatch.setattr(agent_module, "SPOOL_PIPELINE", 4)
    loop = asyncio.get_running_loop()
    pipe = _SpoolPipe()
    started = loop.time()
    await pipe.filled(0.05)  # nothing comes: the whole gather
    assert loop.time() - started >= 0.04
    gather = asyncio.create_task(pipe.filled(30.0))
    pipe.put_nowait([], [Inbound("t", b"1", 1, 1)] * 3)
    await asyncio.sleep(0.01)
    assert not gather.done()  # room left: still gathering
    pipe.put_nowait([], [Inbound("t", b"1", 2, 1)])
    await asyncio.wait_for(gather, 5.0)  # full: long before its 30 s
    started = loop.time()
    await pipe.filled(30.0)  # still full: returns at once
    pipe.close()
    await pipe.filled(30.0)  # closed: nothing more to gather
    assert loop.time() - started < 5.0


async def test_after_a_fault_on_the_read_callback_the_ingest_task_takes_nothing_more(tmp_path: Path) -> None:
    """A fault in ingest (here flagged as the read callback flags it) ends ingest: no later message is
    spooled or acked ahead of the one that failed (PUBACKs must keep the order of the messages)."""
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    link = Inbox([Inbound(f"sensors/f1/r101/smoke-{i}/smoke", b"0.1", i + 1, 1) for i in range(10)])

    async def wait_messages(within_s: float) -> None:
        await asyncio.sleep(0)

    link.wait_messages = wait_messages  # type: ignore[attr-defined]
    agent.mqtt = link  # type: ignore[assignment]
    agent.failed = "ingest"
    try:
        await asyncio.wait_for(agent._ingest(asyncio.Event()), 5)
        assert len(link.inbox) == 10
        assert agent.spool.stats().telemetry == 0
    finally:
        agent.spool.close()


def test_equal_readings_without_a_time_in_one_batch_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readings that carry no time take their receipt time, and their ids hash it: a door that opened,
    closed and opened again while the agent was away arrives in one batch, and each reading is its own
    event, not a repeat of the one before (they were once given the batch's one time and dropped)."""
    monkeypatch.setattr("edge_agent.agent.time.time", lambda: NOW)  # a coarse clock: every call the same
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    agent.mqtt = Published()  # type: ignore[assignment]
    payloads = [b"open", b"closed", b"open", b"closed", b"21.5", b"21.5"]
    batch = [Inbound("sensors/f1/r101/door-1/door", p, mid, 1) for mid, p in enumerate(payloads, start=1)]
    batch.append(Inbound("json/t-1", b'{"sensor": "t-1", "kind": "temperature", "value": 21.5}', 7, 1))
    batch.append(Inbound("json/t-1", b'{"sensor": "t-1", "kind": "temperature", "value": 21.5}', 8, 1))
    try:
        records = agent._ingest_batch(batch)
        later = agent._ingest_batch([Inbound("sensors/f1/r101/door-1/door", b"open", 9, 1)])
    finally:
        agent.spool.close()
    events = [orjson.loads(r.value) for r in records + later if r.priority is Priority.TELEMETRY]
    assert [e["value"] for e in events] == [
        "open",
        "closed",
        "open",
        "closed",
        21.5,
        21.5,
        21.5,
        21.5,
        "open",
    ]
    assert len({e["id"] for e in events}) == len(events)
    assert all(a["ts"] < b["ts"] for a, b in itertools.pairwise(events))  # receipt order, strictly
    assert agent.metrics.registry.get_sample_value("nerve_edge_duplicates_total") in (None, 0)


async def test_a_stop_before_the_mqtt_broker_ever_answers_still_shuts_down_cleanly(tmp_path: Path) -> None:
    """SIGTERM while the local broker is unreachable (nothing listens on its port): `run` returns, with
    the spool closed, instead of waiting for a connection for ever."""
    config = make_config(
        spool={"path": str(tmp_path / "spool")},
        metrics_port=0,
        mqtt={"subscriptions": [{"topic": "sensors/+floor/+room/+sensor/+kind"}], "port": 1},
        kafka={"bootstrap": "127.0.0.1:2"},
    )
    agent = EdgeAgent(config, load_rules_text(RULES))
    stop, ready = asyncio.Event(), asyncio.Event()
    run = asyncio.create_task(agent.run(stop, ready))
    deadline = asyncio.get_running_loop().time() + 10
    while agent.mqtt is None:  # the link has started
        assert asyncio.get_running_loop().time() < deadline, "the agent never started its MQTT link"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(run, timeout=30)
    assert not ready.is_set() and agent.failed is None
    Spool(tmp_path / "spool", max_bytes=1 << 20).close()  # closed: a restarted agent can open it again


def test_a_hot_reloaded_rule_set_naming_an_unknown_department_is_refused(tmp_path: Path) -> None:
    """As at start, a rule set whose alerts go to a department the departments file does not know (it has
    no topic to page) is refused on the rules topic too: the running rules stay."""
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    routing = Routing(departments={"fire": DepartmentEntry()})
    agent = EdgeAgent(config, load_rules_text(RULES), routing)

    def deployment(version: int, to: str) -> bytes:
        files = [("rules.yaml", RULES.replace("to: [fire]", f"to: [{to}]"))]
        return Deployment(config.rule_set, version, tuple(files), digest(files), 0.0).to_json()

    key = config.rule_set.encode()
    try:
        assert agent._consider_rules(key, deployment(2, "fyre"), 1) == 1  # refused: the version stays
        assert list(agent.engine.rules.departments()) == ["fire"]
        assert agent._consider_rules(key, deployment(3, "fire"), 1) == 3  # a known one is taken
    finally:
        agent.spool.close()


def test_reflex_latency_counts_from_when_the_message_came_off_the_socket(tmp_path: Path) -> None:
    """`nerve_edge_reflex_seconds` starts at the message's receipt, so time it waited in the link's inbox
    (behind a backlog, behind the spool) is in it."""
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    agent.mqtt = Published()  # type: ignore[assignment]
    waited = Inbound("sensors/f1/r101/smoke-1/smoke", b"0.9", 1, 1, 0, time.perf_counter() - 0.25)
    try:
        agent._ingest_batch([waited])
    finally:
        agent.spool.close()
    registry = agent.metrics.registry
    assert registry.get_sample_value("nerve_edge_reflex_seconds_count") == 1
    assert (registry.get_sample_value("nerve_edge_reflex_seconds_sum") or 0.0) >= 0.25


async def test_dead_letters_through_an_outage_stay_within_the_spool_bound(tmp_path: Path) -> None:
    """A device sending garbage while Kafka is away: its dead letters are spooled as telemetry, so
    spool.max_bytes bounds them (the oldest go, counted) instead of growing the spool past it; every one
    is still counted and published locally."""
    limit = 64 * 1024
    config = make_config(spool={"path": str(tmp_path / "spool"), "max_bytes": limit}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    published = Published()
    agent.mqtt = published  # type: ignore[assignment]
    try:
        for _ in range(20):
            batch = [
                Inbound("sensors/f1/r101/t-1/temperature", b'{"value": [1, 2]}', m, 1) for m in range(100)
            ]
            assert await agent._append_durably(agent._ingest_batch(batch))
        stats = agent.spool.stats()
        assert stats.bytes <= limit and stats.dropped_telemetry > 0, stats
        assert stats.urgent == 0
        assert agent.metrics.registry.get_sample_value("nerve_edge_dead_lettered_total") == 2000
        assert sum(topic == config.mqtt.deadletter_topic for topic, _ in published.messages) == 2000
    finally:
        agent.spool.close()


async def test_a_connection_lost_as_soon_as_made_is_waited_past() -> None:
    """`run` waits for MQTT or a stop; a `connected` set and cleared again before the waiter looked (the
    broker closed right after CONNACK) is not taken for either: the wait goes on until one holds."""
    from edge_agent.agent import _first

    connected, stop = asyncio.Event(), asyncio.Event()
    waiting = asyncio.create_task(_first(connected, stop))
    for _ in range(3):  # the waiter, then its waits on each event, have run: all are waiting
        await asyncio.sleep(0)
    connected.set()
    connected.clear()
    await asyncio.sleep(0.01)
    assert not waiting.done()
    stop.set()
    assert await asyncio.wait_for(waiting, 5) is stop


def test_receipt_times_follow_a_clock_set_back_by_more_than_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock read twice alike, or going back a little, still gives later times; one set back by NTP by
    more than a second is followed (otherwise every reading would get the old time for as long)."""
    config = make_config(spool={"path": str(tmp_path / "spool")}, metrics_port=0)
    agent = EdgeAgent(config, load_rules_text(RULES))
    agent.spool.close()
    readings = iter([NOW, NOW, NOW - 0.5, NOW - 60, NOW - 59.5])
    monkeypatch.setattr("edge_agent.agent.time.time", lambda: next(readings))
    got = [agent._receipt_time() for _ in range(5)]
    assert got[0] == NOW and NOW < got[1] < got[2] < NOW + 1e-5
    assert got[3:] == [NOW - 60, NOW - 59.5]
