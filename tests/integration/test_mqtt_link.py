"""The edge agent's MQTT link against the real Mosquitto: messages and acks both ways, a broker that keeps
dropping the link (a second client with the same id) does not make it reconnect in a tight loop, and
publishes report their delivery (also across a broker restart)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.mqtt_link import INBOX_HIGH, RECONNECT_DELAYS, MqttLink
from tests.integration.edge_kit import launcher

pytestmark = pytest.mark.integration


def link(address: tuple[str, int], client_id: str, filters: list[str]) -> MqttLink:
    return MqttLink(
        host=address[0],
        port=address[1],
        client_id=client_id,
        filters=filters,
        loop=asyncio.get_running_loop(),
        keepalive=5,
    )


@contextlib.asynccontextmanager
async def subscribed(address: tuple[str, int]) -> AsyncIterator[tuple[str, MqttLink, mqtt.Client]]:
    """(topic root, a started link subscribed to it, a sensor client publishing to the broker)."""
    root = f"lk-{uuid.uuid4().hex[:8]}"
    first = link(address, f"{root}-agent", [f"{root}/#"])
    first.start()
    await asyncio.wait_for(first.connected.wait(), 10)
    sensor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{root}-sensor")
    sensor.connect(*address)
    sensor.loop_start()
    try:
        # The subscription is in place once a probe gets through.
        deadline = time.monotonic() + 10
        while not any(m.topic.endswith("/probe") for m in first.take(1000)):
            assert time.monotonic() < deadline, "the link's subscription never took effect"
            sensor.publish(f"{root}/probe", b"-1", qos=0)
            await first.wait_messages(0.2)
        yield root, first, sensor
    finally:
        sensor.loop_stop()
        sensor.disconnect()


async def publish_all(sensor: mqtt.Client, topic: str, n: int) -> None:
    """Publish the numbers 0..n-1 at QoS 1 and wait until the broker has taken each."""
    infos = [sensor.publish(topic, str(i).encode(), qos=1) for i in range(n)]
    for info in infos:
        await asyncio.to_thread(info.wait_for_publish, 10)


async def test_messages_in_order_and_acked_ones_are_not_delivered_again(
    mqtt_address: tuple[str, int],
) -> None:
    async with subscribed(mqtt_address) as (root, first, sensor):
        await publish_all(sensor, f"{root}/t", 3000)
        got: list[int] = []
        deadline = time.monotonic() + 20
        while len(got) < 3000 and time.monotonic() < deadline:
            await first.wait_messages(0.5)
            for message in first.take(500):
                got.append(int(message.payload))
                if len(got) <= 2000:
                    first.ack(message)  # the last 1,000 stay unacknowledged
        assert got == list(range(3000))
        first.stop()  # the acks queued so far go out ahead of its DISCONNECT
        again = link(mqtt_address, f"{root}-agent", [f"{root}/#"])  # same persistent session
        again.start()
        redelivered: list[int] = []
        deadline = time.monotonic() + 20
        while len(redelivered) < 1000 and time.monotonic() < deadline:
            await again.wait_messages(0.5)
            for message in again.take(500):
                redelivered.append(int(message.payload))
                again.ack(message)
        assert sorted(redelivered) == list(range(2000, 3000))  # exactly the unacknowledged ones
        again.stop()


async def test_a_link_dropped_again_and_again_backs_off(mqtt_address: tuple[str, int]) -> None:
    client_id = f"lk-{uuid.uuid4().hex[:8]}-twin"
    twins = [link(mqtt_address, client_id, []) for _ in range(2)]
    for twin in twins:
        twin.start()
    try:
        await asyncio.sleep(5.0)  # the broker drops one twin each time the other connects
    finally:
        for twin in twins:
            twin.stop()
    connects = sum(t.connects for t in twins)
    # At least RECONNECT_DELAYS[0] between attempts, doubling: a handful each in 5 s, not thousands.
    assert 2 <= connects <= 2 * (5.0 / RECONNECT_DELAYS[0] + 1), connects


async def test_a_backlog_larger_than_the_inbox_is_read_as_ingest_takes_it(
    mqtt_address: tuple[str, int],
) -> None:
    async with subscribed(mqtt_address) as (root, first, sensor):
        first.stop()
        n = 3 * INBOX_HIGH
        await publish_all(sensor, f"{root}/t", n)  # queued by the broker for the offline persistent session
        again = link(mqtt_address, f"{root}-agent", [f"{root}/#"])
        again.start()
        got: list[int] = []
        most = 0
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            await again.wait_messages(0.5)
            most = max(most, len(again._inbox))
            for message in again.take(100):  # a slow ingest: the broker must wait, not this process
                got.append(int(message.payload))
                again.ack(message)
            await asyncio.sleep(0)
        again.stop()
        assert got == list(range(n))
        # However ingest and the broker interleave, never past the mark. (Whether the mark is reached
        # depends on the broker: Mosquitto sends at most max_inflight_messages unacked; the pause itself is
        # tested in tests/unit/test_edge_mqtt_link.py.)
        assert most <= INBOX_HIGH + 2


async def test_the_broker_refuses_a_packet_over_a_mebibyte_and_the_link_reads_on(
    mqtt_address: tuple[str, int],
) -> None:
    """The shipped Mosquitto config caps packets at 1 MiB (`max_packet_size`): a gateway never takes a huge
    message into memory. A 70 KB one still reaches the agent, which dead-letters it with the reason."""
    async with subscribed(mqtt_address) as (root, first, sensor):
        lost = asyncio.Event()
        loop = asyncio.get_running_loop()

        def dropped(
            client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
        ) -> None:
            loop.call_soon_threadsafe(lost.set)

        sensor.on_disconnect = dropped
        sensor.publish(f"{root}/huge", b"x" * (2 << 20), qos=1)
        await asyncio.wait_for(lost.wait(), 10)  # the broker drops the client that sent it
        other = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{root}-other")
        other.connect(*mqtt_address)
        other.loop_start()
        try:
            other.publish(f"{root}/big", b"y" * 70_000, qos=1).wait_for_publish(10)
            other.publish(f"{root}/after", b"1", qos=1).wait_for_publish(10)
            got: list[tuple[str, int]] = []
            deadline = time.monotonic() + 10
            while not any(topic.endswith("/after") for topic, _ in got):
                assert time.monotonic() < deadline, "the link stopped reading"
                await first.wait_messages(0.2)
                got += [(m.topic, len(m.payload)) for m in first.take(100)]
        finally:
            other.loop_stop()
            other.disconnect()
        assert (f"{root}/big", 70_000) in got
        assert not any(topic.endswith("/huge") for topic, _ in got)


async def test_a_publish_reports_its_delivery_once_the_broker_has_taken_it(
    mqtt_address: tuple[str, int],
) -> None:
    """`on_delivered` fires on the broker's PUBACK: not for a publish queued while the link is not connected,
    until it is; then for every publish, each once."""
    root = f"lk-{uuid.uuid4().hex[:8]}"
    out = link(mqtt_address, f"{root}-actuator", [])
    delivered: list[int] = []

    def report(i: int) -> Callable[[], None]:
        return lambda: delivered.append(i)

    out.publish(f"{root}/cmd", b"0", on_delivered=report(0))  # not connected yet: queued
    assert delivered == []
    out.start()
    try:
        await asyncio.wait_for(out.connected.wait(), 10)
        for i in range(1, 201):
            out.publish(f"{root}/cmd", str(i).encode(), on_delivered=report(i))
        out.flush()
        deadline = time.monotonic() + 10
        while len(delivered) < 201:
            assert time.monotonic() < deadline, f"{len(delivered)} of 201 publishes reported delivered"
            await asyncio.sleep(0.02)  # polling the callbacks' list, bounded by the deadline
        assert sorted(delivered) == list(range(201))
    finally:
        out.stop()


async def test_a_publish_made_while_the_broker_is_down_reports_delivery_after_it_returns(
    mqtt_address: tuple[str, int],
) -> None:
    """A command published while Mosquitto is stopped stays in the link (no delivery reported), goes out once
    the link has reconnected, and only then is reported delivered: the agent stores a command's id then."""
    root = f"lk-{uuid.uuid4().hex[:8]}"
    out = link(mqtt_address, f"{root}-actuator", [])
    delivered: list[str] = []
    out.start()
    try:
        await asyncio.wait_for(out.connected.wait(), 10)
        await asyncio.to_thread(launcher, "stop", "mqtt")
        deadline = time.monotonic() + 30
        while out.connected.is_set():
            assert time.monotonic() < deadline, "the link did not notice the broker stopping"
            await asyncio.sleep(0.05)  # polling the link's state, bounded by the deadline
        out.publish(f"{root}/cmd", b"close", on_delivered=lambda: delivered.append("close"))
        out.flush()
        await asyncio.sleep(0.5)  # the broker is away: nothing can confirm it
        assert delivered == []
        await asyncio.to_thread(launcher, "start", "mqtt")
        deadline = time.monotonic() + 60
        while not delivered:
            assert time.monotonic() < deadline, "the publish was not reported delivered after the reconnect"
            await asyncio.sleep(0.05)  # polling the callback's list, bounded by the deadline
        assert delivered == ["close"]
    finally:
        out.stop()
