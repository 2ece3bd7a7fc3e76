"""A fault of the reflex engine on one event neither stops the agent nor loses the event: it is forwarded,
dead-lettered with the fault, and the next events are applied as usual (no broker is touched here)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.mqtt_link import Inbound
from edge_agent.spool import Priority
from reflexes import load_rules_text
from tests.unit.test_edge_ingest import make_config

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
    telemetry = [orjson.loads(r.value)["sensor"] for r in records if r.priority is Priority.TELEMETRY]
    assert telemetry == ["smoke-bad", "smoke-good"]  # both accepted and forwarded
    letters = [orjson.loads(r.value) for r in records if r.topic == config.topic("deadletter")]
    assert len(letters) == 1
    assert letters[0]["source"] == "reflexes" and "KeyError('t')" in letters[0]["reason"]
    assert orjson.loads(letters[0]["raw"])["sensor"] == "smoke-bad"
    alerts = [orjson.loads(r.value) for r in records if r.topic == config.topic("alerts")]
    assert [a["reflex"] for a in alerts] == ["kitchen-smoke"]  # the good one still fired
    assert any(topic == config.mqtt.deadletter_topic for topic, _ in published.messages)
    assert agent.metrics.registry.get_sample_value("nerve_edge_dead_lettered_total") == 1
