"""Mosquitto smoke test: QoS 1 messages reach a persistent-session subscriber in order, online and offline."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.integration.edge_kit import forget_mqtt_session

pytestmark = pytest.mark.integration

MESSAGES = 200
#: seconds to wait for any single broker round trip (connect, subscribe, a publish acknowledgement)
STEP_TIMEOUT = 10.0
#: seconds for all messages of a test to arrive
DELIVERY_TIMEOUT = 20.0


class Peer:
    """A paho-mqtt 2.x client on its own network thread that records what the broker tells it."""

    def __init__(self, address: tuple[str, int], client_id: str, *, clean_session: bool) -> None:
        self.address = address
        self.client_id = client_id
        self.clean_session = clean_session
        self.client = self._new_client()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.session_present: bool | None = None
        self.subscribed: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=self.clean_session
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            self.session_present = flags.session_present
            self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.disconnected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subscribed.put(reason_codes)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def connect(self) -> None:
        """Connects and starts the network thread; returns once the broker accepted the connection."""
        if self.connected.is_set():
            # paho 2.2 leaks its wake-up socket pair when loop_start() runs twice on one client object; a
            # new object with the same client id is also what a restarted process would bring.
            self.client = self._new_client()
        self.connected.clear()
        self.disconnected.clear()
        self.client.connect(*self.address, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(STEP_TIMEOUT), f"no CONNACK from {self.address} within {STEP_TIMEOUT}s"

    def disconnect(self) -> None:
        """Disconnects cleanly and stops the network thread."""
        self.client.disconnect()
        assert self.disconnected.wait(STEP_TIMEOUT), "the client did not disconnect"
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        """Subscribes at QoS 1; returns once the broker granted QoS 1."""
        self.client.subscribe(topic, qos=1)
        granted = self.subscribed.get(timeout=STEP_TIMEOUT)
        assert [code.value for code in granted] == [1], (
            f"subscription to {topic} not granted at QoS 1: {granted}"
        )

    def publish(self, topic: str, payloads: list[bytes]) -> None:
        """Publishes at QoS 1; returns once the broker acknowledged every message (PUBACK)."""
        infos = [self.client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(timeout=STEP_TIMEOUT)
            assert info.is_published(), f"no PUBACK for message {info.mid} within {STEP_TIMEOUT}s"

    def receive(self, count: int) -> list[mqtt.MQTTMessage]:
        """The next `count` messages, waiting at most DELIVERY_TIMEOUT seconds for all of them."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        received: list[mqtt.MQTTMessage] = []
        while len(received) < count:
            remaining = deadline - time.monotonic()
            try:
                received.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                pytest.fail(f"only {len(received)} of {count} messages arrived within {DELIVERY_TIMEOUT}s")
        return received


@pytest.fixture
def names() -> tuple[str, str]:
    """A unique (topic, subscriber client id) so that runs and tests never share a session."""
    tag = uuid.uuid4().hex[:12]
    return f"nerve/test/smoke/{tag}", f"nerve-smoke-sub-{tag}"


@pytest.fixture
def publisher(mqtt_address: tuple[str, int]) -> Iterator[Peer]:
    peer = Peer(mqtt_address, f"nerve-smoke-pub-{uuid.uuid4().hex[:12]}", clean_session=True)
    peer.connect()
    yield peer
    peer.disconnect()


def payloads(start: int, count: int) -> list[bytes]:
    return [f"reading-{seq:05d}".encode() for seq in range(start, start + count)]


def test_qos1_messages_arrive_in_order(
    mqtt_address: tuple[str, int], publisher: Peer, names: tuple[str, str]
) -> None:
    topic, subscriber_id = names
    subscriber = Peer(mqtt_address, subscriber_id, clean_session=False)
    subscriber.connect()
    try:
        subscriber.subscribe(topic)
        publisher.publish(topic, payloads(0, MESSAGES))

        received = subscriber.receive(MESSAGES)

        assert [message.payload for message in received] == payloads(0, MESSAGES)
        assert {message.qos for message in received} == {1}
        assert {message.topic for message in received} == {topic}
        subscriber.disconnect()
    finally:
        subscriber.client.loop_stop()
        forget_mqtt_session(*mqtt_address, subscriber_id)


def test_persistent_session_keeps_messages_while_subscriber_is_offline(
    mqtt_address: tuple[str, int], publisher: Peer, names: tuple[str, str]
) -> None:
    topic, subscriber_id = names
    subscriber = Peer(mqtt_address, subscriber_id, clean_session=False)
    subscriber.connect()
    try:
        subscriber.subscribe(topic)
        publisher.publish(topic, payloads(0, 10))
        assert [m.payload for m in subscriber.receive(10)] == payloads(0, 10)
        subscriber.disconnect()

        # While the subscriber is away the broker queues QoS 1 messages for its session.
        publisher.publish(topic, payloads(10, MESSAGES))
        subscriber.connect()

        assert subscriber.session_present is True
        first, fresh = set(payloads(0, 10)), list[bytes]()
        while len(fresh) < MESSAGES:
            (message,) = subscriber.receive(1)
            # QoS 1 is at least once: what was not yet acknowledged at the disconnect may come again first.
            if message.payload not in first:
                fresh.append(bytes(message.payload))
        assert fresh == payloads(10, MESSAGES)
        subscriber.disconnect()
    finally:
        subscriber.client.loop_stop()
        forget_mqtt_session(*mqtt_address, subscriber_id)
