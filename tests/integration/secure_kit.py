"""The secured brokers under test: where they are, the vault of `nerve secure init`, MQTT and Kafka clients
that log in as one of the inventory's principals, and processes whose every log line is kept.

The secured pair comes from `scripts/brokers.sh start --secure` (scripts/test.sh starts it). A broker that
does not answer fails the test with that command: an integration test is never skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from nerve_cli.lockdown.inventory import Inventory, load_inventory
from nerve_cli.lockdown.vault import Vault
from schemas.credentials import KafkaAuth, aiokafka_options, tls_context

REPO = Path(__file__).resolve().parents[2]
DEFAULT_KAFKA = "127.0.0.1:29092"
DEFAULT_MQTT_PORT = 28883


@dataclass(frozen=True)
class SecureCity:
    """The secured brokers' addresses, the vault with every principal's password, and the inventory."""

    kafka: str
    mqtt_host: str
    mqtt_port: int
    vault: Vault
    inventory: Inventory

    def password(self, principal: str) -> str:
        return self.vault.password(principal).get_secret_value()

    def secrets(self) -> dict[str, str]:
        """Every principal's password (for the log check)."""
        folder = self.vault.path("passwords")
        return {p.name: self.password(p.name) for p in sorted(folder.iterdir()) if not p.name.startswith(".")}

    def kafka_auth(self, principal: str) -> KafkaAuth:
        return KafkaAuth(
            security_protocol="SASL_SSL",
            username=principal,
            password_file=self.vault.password_file(principal),
            ca_file=self.vault.ca_cert,
        )

    def kafka_options(self, principal: str) -> dict[str, Any]:
        """aiokafka keyword arguments that log in as `principal`."""
        return {"bootstrap_servers": self.kafka, **aiokafka_options(self.kafka_auth(principal))}


def secure_city_from_env() -> SecureCity:
    """The secured city named by NERVE_SECURE_KAFKA_BOOTSTRAP, NERVE_SECURE_MQTT_HOST/PORT, NERVE_SECURE_DIR
    and NERVE_INVENTORY (defaults: the ports and paths of `scripts/brokers.sh start --secure`)."""
    secure_dir = Path(os.environ.get("NERVE_SECURE_DIR", REPO / "var" / "secure"))
    inventory = Path(os.environ.get("NERVE_INVENTORY", REPO / "examples" / "secure" / "inventory.yaml"))
    return SecureCity(
        kafka=os.environ.get("NERVE_SECURE_KAFKA_BOOTSTRAP", DEFAULT_KAFKA),
        mqtt_host=os.environ.get("NERVE_SECURE_MQTT_HOST", "127.0.0.1"),
        mqtt_port=int(os.environ.get("NERVE_SECURE_MQTT_PORT", str(DEFAULT_MQTT_PORT))),
        vault=Vault(secure_dir),
        inventory=load_inventory(inventory),
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass
class Connack:
    """How an MQTT connection attempt ended: the CONNACK's reason, or why there was none."""

    reason: str | None = None
    failure: bool = True
    done: threading.Event = field(default_factory=threading.Event)


def mqtt_client(
    city: SecureCity, *, user: str | None, password: str | None = None, tls: bool = True
) -> mqtt.Client:
    """A paho client for the secured broker; `password` defaults to the user's own."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sec-{uuid.uuid4().hex[:10]}")
    if tls:
        client.tls_set_context(tls_context(city.vault.ca_cert))
    if user is not None:
        client.username_pw_set(user, password if password is not None else city.password(user))
    return client


def try_connect(client: mqtt.Client, city: SecureCity, within_s: float = 10.0) -> Connack:
    """Connect and report the CONNACK (or its absence: a refused TLS handshake, a closed socket)."""
    result = Connack()

    def on_connect(c: mqtt.Client, userdata: object, flags: Any, reason: Any, props: Any) -> None:
        result.reason, result.failure = str(reason), bool(reason.is_failure)
        result.done.set()

    def on_disconnect(c: mqtt.Client, userdata: object, flags: Any, reason: Any, props: Any) -> None:
        if not result.done.is_set():
            result.reason = f"disconnected before any CONNACK ({reason})"
            result.done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(60, 60)  # one attempt: the reconnect would hide the first answer
    try:
        client.connect(city.mqtt_host, city.mqtt_port, keepalive=10)
    except OSError as e:  # TLS handshake refused, connection reset
        result.reason = f"connect failed: {type(e).__name__}: {e}"
        return result
    client.loop_start()
    if not result.done.wait(within_s):
        result.reason = f"no CONNACK within {within_s:.0f} s"
    client.disconnect()
    client.loop_stop()
    return result


class Subscriber:
    """A logged-in subscriber keeping every message it receives."""

    def __init__(self, city: SecureCity, user: str, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt_client(city, user=user)
        subscribed = threading.Event()
        granted: list[Any] = []

        def on_subscribe(c: mqtt.Client, userdata: object, mid: int, codes: Any, props: Any) -> None:
            granted.extend(codes)
            subscribed.set()

        self.client.on_subscribe = on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(city.mqtt_host, city.mqtt_port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        wait_until(subscribed.is_set, 10, f"{user}'s subscription")
        assert all(not code.is_failure for code in granted), f"{user} may not subscribe {topics}: {granted}"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [p for _, p in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """A logged-in publisher whose QoS 1 publishes return once Mosquitto has acknowledged them."""

    def __init__(self, city: SecureCity, user: str) -> None:
        self.client = mqtt_client(city, user=user)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(city.mqtt_host, city.mqtt_port)
        self.client.loop_start()
        wait_until(connected.is_set, 10, f"{user}'s connection")

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Proc:
    """A `nerve …` subprocess with stdout and stderr in one log file."""

    name: str
    log: Path
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, name: str, folder: Path, *argv: str, env: dict[str, str] | None = None) -> Proc:
        log = folder / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nerve_cli", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **(env or {})},
            )
        return cls(name, log, proc)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, within_s: float) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}); log:\n{self.text()[-4000:]}"
                )
            return needle in self.text()

        wait_until(seen, within_s, f"{needle!r} in {self.name}'s log", every=0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
