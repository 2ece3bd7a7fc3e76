"""Drive a real `nerve edge run` process against the real brokers: config, start/kill, MQTT and Kafka probes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.uplink import Uplink

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "scripts" / "brokers.sh"

RULES = """\
version: 1
lateness: 300ms
reflexes:
  - id: gas-leak
    tier: edge
    when: {kind: gas, value: ">= 10"}
    per: room
    then:
      - alert: {to: [fire], severity: critical, message: "Gas in {site}"}
      - actuate: {kind: gas_valve, command: close}
  - id: sensor-silent
    tier: edge
    when:
      absent: {kind: heartbeat, sensor: "hb-*"}
      for: 2s
    then:
      - alert: {to: [building], severity: warning, message: "{sensor} silent"}
  - id: city-only
    tier: brain
    when: {kind: gas}
    then: [{alert: {to: [utilities]}}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


async def run_uplink_until(
    uplink: Uplink, condition: Callable[[], bool], what: str, within_s: float = 60
) -> None:
    """Run `uplink` until `condition` holds, then stop it; fail naming `what` after `within_s` seconds, or
    at once if the uplink stops by itself."""
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        deadline = time.monotonic() + within_s
        while not condition():
            assert not task.done(), task
            assert time.monotonic() < deadline, f"timed out after {within_s:.0f}s waiting for {what}"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def forget_mqtt_session(host: str, port: int, client_id: str, timeout: float = 10.0) -> None:
    """Drop the persistent session of `client_id` at the broker: a connect with clean session discards it
    and what is queued for it. Mosquitto writes every session's queue to disk at each autosave (2 s in our
    configs) and stalls delivery meanwhile, so sessions a test or a bench leaves behind (a unique client id
    per gateway, never resumed) would slow every later run on the same broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(host, port, keepalive=10)
    try:
        deadline = time.monotonic() + timeout
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s connecting as {client_id} to drop its session"
                )
            client.loop(0.05)
    finally:
        client.disconnect()
        client.loop(0.05)


def launcher(*args: str) -> None:
    """scripts/brokers.sh with this process's environment (the ports `make test` exported)."""
    subprocess.run(["bash", str(LAUNCHER), *args], check=True, capture_output=True, timeout=180)


@dataclass
class Gateway:
    """One edge agent under test, isolated by a unique topic root and Kafka prefix."""

    tmp: Path
    kafka: str
    mqtt_host: str
    mqtt_port: int
    uid: str = field(default_factory=lambda: "e" + uuid.uuid4().hex[:10])
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def site(self) -> str:
        return f"{self.uid}/c1/b1"

    @property
    def prefix(self) -> str:
        return f"{self.uid}."

    @property
    def log(self) -> Path:
        return self.tmp / "agent.log"

    def write_config(self, request_timeout_ms: int = 3000, departments: str | None = None) -> Path:
        (self.tmp / "rules.yaml").write_text(RULES)
        if departments is not None:
            (self.tmp / "departments.yaml").write_text(departments)
        config = self.tmp / "gateway.yaml"
        config.write_text(
            f"""gateway: gw-{self.uid}
site: {self.site}
rules: [rules.yaml]
{"departments: departments.yaml" if departments is not None else ""}
mqtt:
  host: {self.mqtt_host}
  port: {self.mqtt_port}
  subscriptions:
    - topic: "{self.uid}/+floor/+room/+sensor/+kind"
  command_topic: "{self.uid}/cmd/{{site}}/{{target}}"
  alert_topic: "{self.uid}/alerts/{{department}}"
  deadletter_topic: "{self.uid}/dead"
kafka:
  bootstrap: "{self.kafka}"
  prefix: "{self.prefix}"
  request_timeout_ms: {request_timeout_ms}
spool:
  path: {self.tmp / "spool"}
lateness_margin_s: 0.4
heartbeat_s: 1.0
metrics_port: {self.metrics_port}
"""
        )
        return config

    def start(self) -> None:
        config = self.tmp / "gateway.yaml"
        if not config.exists():
            self.write_config()
        self.starts += 1
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nerve_cli", "edge", "run", "--config", str(config)],
                stdout=log,
                stderr=log,
                cwd=REPO,
                env=dict(os.environ),
            )
        wait_until(
            lambda: self.log.read_text().count('"edge agent ready"') >= self.starts,
            30,
            "the agent's ready line",
        )

    def metric(self, name: str, labels: str = "") -> float | None:
        """The value of metric `name` (with exactly `labels`, e.g. 'reason="repeat"', if given)."""
        prefixes = (f"{name}{{{labels}}} ",) if labels else (name + " ", name + "{")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(prefixes):
                return float(line.rsplit(" ", 1)[1])
        return None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def forget_session(self) -> None:
        """Drop the stopped agent's MQTT session (and what the broker queued for it): its client id is never
        used again."""
        assert self.proc is None or self.proc.poll() is not None, "the agent still runs"
        if self.starts:
            forget_mqtt_session(self.mqtt_host, self.mqtt_port, f"gw-{self.uid}")


class MqttProbe:
    """A publisher and a subscriber on their own paho threads; received messages are kept with the time."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.received: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self.sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-sub-{uuid.uuid4().hex[:8]}")
        self.sub.on_message = self._on_message
        subscribed = threading.Event()
        self.sub.on_subscribe = lambda *a: subscribed.set()
        self.sub.connect(host, port)
        self.sub.subscribe([(t, 1) for t in topics])
        self.sub.loop_start()
        wait_until(subscribed.is_set, 10, "the probe's subscription")
        self.pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-pub-{uuid.uuid4().hex[:8]}")
        self.pub.max_inflight_messages_set(1000)
        self.pub.connect(host, port)
        self.pub.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((time.perf_counter(), msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes, wait: bool = True) -> mqtt.MQTTMessageInfo:
        info = self.pub.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)
        return info

    def on(self, prefix: str) -> list[tuple[float, str, bytes]]:
        with self._lock:
            return [m for m in self.received if m[1].startswith(prefix)]

    def close(self) -> None:
        for c in (self.sub, self.pub):
            c.disconnect()
            c.loop_stop()


async def read_topics(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[tuple[str, int, bytes | None, bytes]]], bool],
    within_s: float,
) -> list[tuple[str, int, bytes | None, bytes]]:
    """(topic, timestamp ms, key, value) of every record from the start until `done(records)` or `within_s` seconds."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[tuple[str, int, bytes | None, bytes]] = []
    deadline = time.monotonic() + within_s
    try:
        while not done(records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {within_s:.0f}s reading {topics}: {len(records)} records"
                )
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend((m.topic, m.timestamp, m.key, m.value) for m in batch)
    finally:
        await consumer.stop()
    return records
