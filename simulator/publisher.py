"""The simulator's one MQTT client (QoS 1, paho-mqtt 2.x on its own network thread), and an in-memory
stand-in with the same two methods for tests and dry runs."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, ClassVar, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from schemas.credentials import MqttAuth


class Publisher(Protocol):
    """Where the simulator's messages go."""

    def publish(self, topic: str, payload: bytes) -> None:
        """Send one message; must not block on the network."""

    def flush(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` seconds until everything sent is acknowledged; True when it is."""


class PublishError(Exception):
    """The broker cannot be reached or refused the connection."""

    # A broker that is down may come back; the caller decides whether to retry.
    retriable: ClassVar[bool] = True


class MemoryPublisher:
    """Keeps every message in `sent` as (topic, payload)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.sent.append((topic, payload))

    def flush(self, timeout_s: float) -> bool:
        return True


class MqttPublisher:
    """Publishes at QoS 1 to a broker; `sent` and `acked` count messages and broker acknowledgements."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str | None = None,
        auth: MqttAuth | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or f"nerve-sim-{uuid.uuid4().hex[:10]}"
        self.sent = 0
        self.acked = 0
        self._lock = threading.Lock()
        self._all_acked = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._refused: str | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True, protocol=mqtt.MQTTv311
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)  # while reconnecting, messages wait instead of being dropped
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if auth is not None:
            auth.apply(client)  # TLS and the simulator's user on a secured broker
        self._client = client

    # ---- paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        else:
            self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self.acked += 1
            if self.acked >= self.sent:
                self._all_acked.notify_all()

    # ---- caller's thread
    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and start the network thread; raises PublishError unless connected within `timeout_s`."""
        try:
            # A synchronous first connect: a refused or unknown address fails now, not after the timeout.
            self._client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise PublishError(f"MQTT broker {self.host}:{self.port}: {exc}") from exc
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if self._refused is not None:
                self.close()
                raise PublishError(
                    f"MQTT broker {self.host}:{self.port} refused the connection: {self._refused}"
                )
            if time.monotonic() >= deadline:
                self.close()
                raise PublishError(
                    f"MQTT broker {self.host}:{self.port} did not answer within {timeout_s:g} s"
                )

    def publish(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.sent += 1
        self._client.publish(topic, payload, qos=1)

    def flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self.acked < self.sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._all_acked.wait(left)
        return True

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
