"""`nerve simulate` against the real Mosquitto: a subscriber counts and decodes what a 3-second run publishes."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import EdgeConfig
from edge_agent.ingest import Decoder, Rejected
from simulator import build_city, gateway_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: seconds for one broker round trip (connect, subscribe)
STEP_TIMEOUT = 10.0
#: seconds for the whole `nerve simulate` process (3 s of traffic plus start-up and flush)
RUN_TIMEOUT = 60.0
#: seconds for the last published message to reach the subscriber after the process has exited
DELIVERY_TIMEOUT = 15.0


class Counter:
    """A QoS 1 subscriber on its own paho thread; `messages` receives (topic, payload)."""

    def __init__(self, address: tuple[str, int], topic_filter: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.granted: queue.Queue[list[Any]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"nerve-sim-test-{uuid.uuid4().hex[:10]}",
            clean_session=True,
        )
        self.client.on_connect = lambda c, u, f, reason, p: (
            None if reason.is_failure else self.connected.set()
        )
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.granted.put(codes)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect(*address, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(STEP_TIMEOUT), f"no CONNACK from {address} within {STEP_TIMEOUT}s"
        self.client.subscribe(topic_filter, qos=1)
        codes = self.granted.get(timeout=STEP_TIMEOUT)
        assert [c.value for c in codes] == [1], f"{topic_filter} not granted at QoS 1: {codes}"

    def take(self, count: int, within_s: float) -> list[tuple[str, bytes]]:
        """Exactly `count` messages, waiting at most `within_s` seconds; then checks nothing more comes."""
        deadline = time.monotonic() + within_s
        got: list[tuple[str, bytes]] = []
        while len(got) < count:
            try:
                got.append(self.messages.get(timeout=max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                pytest.fail(f"only {len(got)} of {count} messages arrived within {within_s}s")
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def root() -> str:
    """A topic root no other test or demo uses."""
    return f"nerve-test/sim-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def counter(mqtt_address: tuple[str, int], root: str) -> Iterator[Counter]:
    peer = Counter(mqtt_address, f"{root}/#")
    yield peer
    peer.close()


def nerve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "nerve_cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def test_simulate_publishes_every_event_once_and_each_decodes_on_its_gateway(
    mqtt_address: tuple[str, int], counter: Counter, root: str
) -> None:
    host, port = mqtt_address
    template = root + "/{building_path}"
    done = nerve(
        *("simulate", "--host", host, "--port", str(port), "--duration", "3", "--rate", "100"),
        *("--topic-root", template, "--seed", "7", "--bad-rate", "0.02", "--summary", "json"),
        *("--scenario", "fire@yuelu/c1/b2", "--at", "0"),
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["acknowledged"] is True
    assert 280 <= report["messages"] <= 310  # 3 s at 100/s, plus the scenario's readings
    received = counter.take(report["messages"], DELIVERY_TIMEOUT)

    city = build_city(seed=7)
    gateways = {b.path: Decoder(EdgeConfig(**gateway_config(b, template))) for b in city.buildings}
    sensors = {s.id: s for s in city.sensors}
    events = []
    rejected = 0
    for topic, payload in received:
        building = "/".join(topic.removeprefix(root + "/").split("/")[:3])
        try:
            (event,) = gateways[building].decode(topic, payload, time.time())
        except Rejected:
            rejected += 1
            continue
        assert sensors[event.sensor].site == event.site
        events.append(event)
    assert rejected == sum(report["bad"].values())
    assert len(events) == report["events"]
    assert len({e.id for e in events}) == len(events)
    (fire,) = report["scenarios"]
    smoke = [e for e in events if e.sensor == "smoke-yuelu-c1-b2-r201" and e.value == 0.25]
    assert [e.ts for e in smoke] == [fire["start_ts"]]


def test_simulate_fails_fast_when_no_broker_listens() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = nerve("simulate", "--host", "127.0.0.1", "--port", str(port), "--duration", "1")
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr
    assert time.monotonic() - started < 30
