"""Fixtures for integration tests: the addresses of the real Kafka and Mosquitto brokers, fresh topics.

The brokers come from `scripts/brokers.sh start` (or `make test`, which starts them). A broker that does
not answer fails the test with the command that fixes it: an integration test is never skipped.
"""

# aiokafka ships no py.typed marker; its objects are Any here.

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_MQTT_HOST = "127.0.0.1"
DEFAULT_MQTT_PORT = 1883
#: how long a fixture waits for a broker port (seconds); covers a broker that is still starting
REACH_TIMEOUT = 10.0


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (the port may follow an IPv6 address in brackets) as a (host, port) tuple."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


def port_answers(host: str, port: int, timeout: float = REACH_TIMEOUT) -> bool:
    """True once a TCP connection to host:port succeeds within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def _not_reachable(what: str, address: str, variable: str) -> str:
    return (
        f"{what} is not reachable at {address}: start it with `scripts/brokers.sh start` or run `make test` "
        f"(set {variable} if it listens elsewhere)"
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The Kafka bootstrap address `host:port` (NERVE_KAFKA_BOOTSTRAP, default 127.0.0.1:9092)."""
    bootstrap = os.environ.get("NERVE_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)
    # Several bootstrap servers may be given; the first one must answer.
    host, port = split_address(bootstrap.split(",")[0].strip())
    if not port_answers(host, port):
        pytest.fail(_not_reachable("Kafka", bootstrap, "NERVE_KAFKA_BOOTSTRAP"), pytrace=False)
    return bootstrap


@pytest.fixture(scope="session")
def mqtt_address() -> tuple[str, int]:
    """The Mosquitto address (NERVE_MQTT_HOST, NERVE_MQTT_PORT; default 127.0.0.1:1883)."""
    host = os.environ.get("NERVE_MQTT_HOST", DEFAULT_MQTT_HOST)
    port = int(os.environ.get("NERVE_MQTT_PORT", str(DEFAULT_MQTT_PORT)))
    if not port_answers(host, port):
        pytest.fail(
            _not_reachable("Mosquitto", f"{host}:{port}", "NERVE_MQTT_HOST/NERVE_MQTT_PORT"), pytrace=False
        )
    return host, port


#: new_topic(hint, partitions) creates a topic with a unique name and returns that name
NewTopicFactory = Callable[[str, int], Awaitable[str]]


@pytest.fixture
async def new_topic(kafka_bootstrap: str) -> AsyncIterator[NewTopicFactory]:
    """Creates uniquely named topics with explicit partitions (replication 1); deletes them afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=15_000)
    await admin.start()
    created: list[str] = []

    async def create(hint: str, partitions: int) -> str:
        name = f"nerve-test-{hint}-{uuid.uuid4().hex[:12]}"
        response = await admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=15_000)
        # topic_errors holds (topic, error_code, error_message) tuples; 0 is "no error".
        errors = [entry for entry in response.topic_errors if entry[1] != 0]
        assert not errors, f"creating topic {name} failed: {errors}"
        created.append(name)
        return name

    try:
        yield create
    finally:
        try:
            if created:
                await admin.delete_topics(created, timeout_ms=15_000)
        finally:
            await admin.close()
