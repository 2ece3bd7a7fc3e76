"""The agent's one MQTT client: a persistent QoS 1 session whose messages are acknowledged only once they are
safe on the spool, plus the publishes of commands, local alerts and dead letters.

paho-mqtt runs its network loop on its own thread; received messages cross to the asyncio loop through a
deque and one wake-up per batch, so ingest can take them in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from schemas.credentials import MqttAuth

log = logging.getLogger("nerve.edge.mqtt")


@dataclass(slots=True)
class Inbound:
    """One received message; `mid`/`qos` are what `MqttLink.ack` needs."""

    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttLink:
    """Subscribe with a persistent session (clean session off, QoS 1, manual acks) and publish at QoS 1."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        filters: list[str],
        loop: asyncio.AbstractEventLoop,
        keepalive: int = 30,
        auth: MqttAuth | None = None,
    ) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.filters = filters
        self._loop = loop
        self._inbox: deque[Inbound] = deque()
        self._wake = asyncio.Event()
        self._wake_pending = threading.Event()
        self.connected = asyncio.Event()
        self.connects = 0
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)  # outgoing publishes queue while disconnected, not dropped
        client.reconnect_delay_set(1, 5)
        if auth is not None:
            auth.apply(client)  # TLS and the gateway's user, when the broker is secured
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # ---- paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt connect refused", extra={"reason": str(reason)})
            return
        if self.filters:
            client.subscribe([(f, 1) for f in self.filters])
        self.connects += 1
        log.info(
            "mqtt connected",
            extra={"broker": f"{self.host}:{self.port}", "session_present": flags.session_present},
        )
        self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        log.warning("mqtt disconnected; reconnecting", extra={"reason": str(reason)})
        self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.append(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
        if not self._wake_pending.is_set():
            self._wake_pending.set()
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---- asyncio side
    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after any loss."""
        self._client.connect_async(self.host, self.port, self.keepalive)
        self._client.loop_start()

    async def wait_messages(self, within_s: float) -> None:
        """Return when messages are waiting, or after `within_s` seconds."""
        if self._inbox:
            return
        self._wake_pending.clear()
        if self._inbox:  # arrived between the check and the clear
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), within_s)

    def take(self, limit: int) -> list[Inbound]:
        """Up to `limit` received messages, oldest first."""
        inbox = self._inbox
        n = min(limit, len(inbox))
        return [inbox.popleft() for _ in range(n)]

    def ack(self, message: Inbound) -> None:
        """Acknowledge a message to the broker (it is safe on the spool)."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue a publish; QoS 1 publishes made while disconnected go out after the reconnect."""
        self._client.publish(topic, payload, qos=qos)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
