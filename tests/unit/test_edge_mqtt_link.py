"""The MQTT link's own parts, without a broker: the lean PUBLISH path gives what paho's own path gives, and
the buffered connection keeps the byte stream whole and in order both ways (over a real socket pair).
The link against the real Mosquitto (reconnects, TLS, broker restarts) is tested in tests/integration."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, _ConnectionState
from paho.mqtt.exception import MalformedPacket

from edge_agent.mqtt_link import (
    INBOX_HIGH,
    LARGE_PACKET,
    RECV_CHUNK,
    BufferedConnection,
    Inbound,
    MqttLink,
    _Client,
)


def publish_packet(topic: bytes, payload: bytes, qos: int, mid: int) -> tuple[int, bytes]:
    """(fixed header's first byte, everything after the remaining length) of an MQTT 3.1.1 PUBLISH."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    return 0x30 | (qos << 1), body


def load(client: _Client, packet: tuple[int, bytes]) -> None:
    """Put a packet where paho's reader leaves it for `_handle_publish`."""
    client._in_packet["command"] = packet[0]
    client._in_packet["packet"] = bytearray(packet[1])


def received(packet: tuple[int, bytes], lean: bool) -> tuple[str, bytes, int, int]:
    client = _Client(CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)
    got: list[tuple[str, bytes, int, int]] = []
    if lean:
        client.receiver = lambda topic, payload, mid, qos: got.append((topic, payload, mid, qos))
    else:
        client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload), m.mid, m.qos))
    load(client, packet)
    client._handle_publish()
    assert len(got) == 1
    return got[0]


@pytest.mark.parametrize(
    ("topic", "payload", "qos", "mid"),
    [
        (b"site/b1/f1/r1/t1/temperature", b'{"value": 21.5}', 1, 1),
        (b"s/x", b"", 1, 65535),
        (b"s/\xc3\xa9t\xc3\xa9", b"21", 0, 0),  # a UTF-8 topic, QoS 0 (no packet id on the wire)
        (b"a", bytes(range(256)) * 300, 1, 4242),  # a payload larger than one receive chunk
    ],
)
def test_the_lean_publish_path_receives_what_paho_receives(
    topic: bytes, payload: bytes, qos: int, mid: int
) -> None:
    packet = publish_packet(topic, payload, qos, mid)
    assert received(packet, lean=True) == received(packet, lean=False) == (topic.decode(), payload, mid, qos)


def test_a_malformed_publish_is_refused_as_paho_refuses_it() -> None:
    client = _Client(CallbackAPIVersion.VERSION2, client_id="t")
    client.receiver = lambda *a: pytest.fail("an empty topic must not be delivered")
    load(client, publish_packet(b"", b"x", 1, 7))
    with pytest.raises(MalformedPacket):
        client._handle_publish()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_small_reads_come_from_one_buffered_receive_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    conn = BufferedConnection(ours)
    stream = bytes(range(200)) * 10
    theirs.sendall(stream)
    got = bytearray(conn.recv(1))  # paho's header reads: a byte at a time
    assert conn.pending() == len(stream) - 1  # the rest came with the same system call
    while len(got) < len(stream):
        got += conn.recv(3)
    assert bytes(got) == stream
    assert conn.pending() == 0
    with pytest.raises(BlockingIOError):
        conn.recv(1)  # nothing left in the buffer or the socket
    theirs.close()
    assert conn.recv(1) == b""  # end of stream, as a socket gives it


def test_sends_wait_for_flush_and_a_full_kernel_buffer_keeps_the_rest_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    conn = BufferedConnection(ours)
    chunks = [i.to_bytes(4, "big") * 256 for i in range(2000)]  # 2 MB: more than the kernel takes at once
    for chunk in chunks:
        assert conn.send(chunk) == len(chunk)
    assert conn.flush() is False
    assert 0 < conn.unsent < len(chunks) * 1024
    expected = b"".join(chunks)
    got = bytearray()
    theirs.settimeout(5)
    while len(got) < len(expected):
        got += theirs.recv(1 << 16)
        conn.flush()
    assert conn.unsent == 0
    assert bytes(got) == expected


async def test_a_message_is_acked_only_on_the_connection_it_came_on() -> None:
    """After a reconnect a packet id may name another message (a broker that lost the session numbers
    afresh): an ack for a message of the earlier connection must not go out on the new one."""
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", filters=[], loop=asyncio.get_running_loop())
    sent: list[int] = []
    link._client.ack = lambda mid, qos: sent.append(mid)  # type: ignore[method-assign,assignment,return-value]
    link._connection = 1  # the first socket
    link._receive("a/b", b"1", 7, 1)
    (old,) = link.take(10)
    link.connected.set()
    link.ack(old)
    assert sent == [7]
    link._connection = 2  # reconnected: the broker numbers from 1 again
    link._receive("a/b", b"2", 7, 1)
    (new,) = link.take(10)
    link.ack(old)  # the earlier message's ack: dropped, the broker delivers that one again
    assert sent == [7]
    link.ack(new)
    assert sent == [7, 7]
    link.connected.clear()
    link.ack(new)  # and never while disconnected
    assert sent == [7, 7]


def wire(packet: tuple[int, bytes], flags: int = 0) -> bytes:
    """A whole packet on the wire: fixed header (with DUP/RETAIN `flags`), remaining length, the rest."""
    header, body = packet
    n, length = len(body), bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([header | flags]) + bytes(length) + body


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
async def test_published_messages_are_read_whole_and_in_order_however_the_bytes_arrive(
    pair: tuple[socket.socket, socket.socket], chunk: int
) -> None:
    """The link parses PUBLISH packets itself and leaves every other packet, or one paho has begun, to
    paho's reader: whatever the split of the byte stream, each message comes out once, in order."""
    ours, theirs = pair
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", filters=[], loop=asyncio.get_running_loop())
    client = link._client
    conn = BufferedConnection(ours)
    client._sock = conn
    link._connection = 3

    def not_here() -> MQTTErrorCode:
        raise AssertionError("a QoS 0/1 PUBLISH went through paho's reader")

    client._handle_publish = not_here  # type: ignore[method-assign]
    expected: list[tuple[str, bytes, int, int]] = []
    stream = bytearray()
    before = time.perf_counter()
    for i in range(40):
        topic, payload = f"s/f{i}/r/t-{i}/temperature".encode(), b'{"value": %d}' % i
        qos, flags = i % 2, (0x08 if i % 5 == 0 else 0) | (0x01 if i % 7 == 0 else 0)  # DUP, RETAIN
        if i == 13:
            payload = bytes(range(256)) * 300  # a 3-byte remaining length, more than one receive chunk
        stream += wire(publish_packet(topic, payload, qos, 1000 + i), flags)
        expected.append((topic.decode(), payload, 1000 + i if qos else 0, qos))
        if i % 9 == 4:
            stream += bytes([0xD0, 0x00])  # PINGRESP: paho's
        if i % 11 == 6:
            stream += bytes([0x90, 0x03, 0x00, 0x01, 0x01])  # SUBACK: paho's, and long enough to split
    theirs.setblocking(False)
    for at in range(0, len(stream), chunk):
        part = memoryview(stream)[at : at + chunk]
        while part:
            try:
                sent = theirs.send(part)
            except BlockingIOError:
                link._read_buffered(client, conn)
                continue
            part = part[sent:]
        link._read_buffered(client, conn)
    link._read_buffered(client, conn)
    got = [(m.topic, m.payload, m.mid, m.qos) for m in link._inbox]
    assert got == expected
    assert {m.connection for m in link._inbox} == {3}
    assert conn.pending() == 0 and client._in_packet["command"] == 0
    stamps = [m.received for m in link._inbox]  # when each came from the socket: reflex latency's start
    assert before < stamps[0] and stamps == sorted(stamps) and stamps[-1] <= time.perf_counter()


async def test_reading_stops_at_the_inbox_mark_and_resumes_when_ingest_has_taken_half(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Back-pressure: with more messages on the socket than INBOX_HIGH, the link stops reading at the mark
    (the rest stays in the kernel and the broker) and goes on once ingest has taken half."""
    ours, theirs = pair
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", filters=[], loop=asyncio.get_running_loop())
    link._client._sock = BufferedConnection(ours)
    link._watch(ours.fileno())
    n = INBOX_HIGH + INBOX_HIGH // 2 + 100
    stream = b"".join(wire(publish_packet(b"s/t", str(i).encode(), 1, i % 65535 + 1)) for i in range(n))
    theirs.setblocking(False)
    sent = 0

    async def until(condition: Callable[[], bool], what: str) -> None:
        nonlocal sent
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, what
            if sent < len(stream):
                with contextlib.suppress(BlockingIOError):
                    sent += theirs.send(stream[sent:])
            await asyncio.sleep(0.001)

    try:
        await until(lambda: link._paused_fd is not None, "the link never stopped reading")
        assert len(link._inbox) == INBOX_HIGH
        got = [int(m.payload) for m in link.take(INBOX_HIGH // 2 - 1)]
        await asyncio.sleep(0.01)
        assert link._paused_fd is not None and len(link._inbox) == INBOX_HIGH // 2 + 1  # not yet half
        got += [int(m.payload) for m in link.take(1)]
        most = 0

        def drained() -> bool:
            nonlocal most
            most = max(most, len(link._inbox))
            got.extend(int(m.payload) for m in link.take(INBOX_HIGH // 2))
            return len(got) == n

        await until(drained, "the rest never came")
        assert got == list(range(n))
        assert most <= INBOX_HIGH
    finally:
        link._unwatch()


async def test_a_packet_of_many_receives_is_left_to_paho_to_gather(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Gathering a packet in the link's buffer copies what came before at every receive: a packet longer
    than LARGE_PACKET is handed to paho's reader once begun, which appends in linear time."""
    ours, theirs = pair
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", filters=[], loop=asyncio.get_running_loop())
    client = link._client
    conn = BufferedConnection(ours)
    client._sock = conn
    big = bytes(range(256)) * (LARGE_PACKET // 256 + 1)
    stream = wire(publish_packet(b"s/big", big, 1, 9)) + wire(publish_packet(b"s/small", b"1", 1, 10))
    theirs.setblocking(False)
    sent = theirs.send(stream[: RECV_CHUNK // 2])
    link._read_buffered(client, conn)
    assert client._in_packet["command"] != 0 and not link._inbox  # paho has begun the large packet
    deadline = time.monotonic() + 10
    while sent < len(stream):
        assert time.monotonic() < deadline
        link._read_buffered(client, conn)
        with contextlib.suppress(BlockingIOError):
            sent += theirs.send(stream[sent:])
    link._read_buffered(client, conn)
    assert [(m.topic, m.payload, m.mid) for m in link._inbox] == [("s/big", big, 9), ("s/small", b"1", 10)]


async def test_acks_of_a_batch_go_out_in_order_after_what_paho_queued_before(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """`ack_all` writes one run of PUBACKs: for the QoS 1 messages of this connection only, in their order,
    behind the packets paho had queued (here a command's PUBLISH), and nothing while disconnected."""
    ours, theirs = pair
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", filters=[], loop=asyncio.get_running_loop())
    client = link._client
    client._sock = BufferedConnection(ours)
    client._state = _ConnectionState.MQTT_CS_CONNECTED
    link._connection = 2
    batch = [
        Inbound("s/a", b"1", 5, 1, 2),
        Inbound("s/b", b"2", 0, 0, 2),  # QoS 0: nothing to ack
        Inbound("s/c", b"3", 7, 1, 1),  # of the connection before: its id means nothing now
        Inbound("s/d", b"4", 65535, 1, 2),
        Inbound("s/e", b"5", 300, 1, 2),
    ]
    link.ack_all(batch)  # not connected yet
    link.flush()
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(100)
    link.connected.set()
    link.publish("cmd/valve", b"close")  # queued by paho, not yet written
    link.ack_all(batch)
    link.flush()
    theirs.settimeout(5)
    data = theirs.recv(1000)
    command = wire(publish_packet(b"cmd/valve", b"close", 1, 1))
    assert data == command + bytes([0x40, 2, 0, 5, 0x40, 2, 0xFF, 0xFF, 0x40, 2, 1, 44])


async def test_a_burst_past_the_mark_is_read_whole_when_the_reader_callback_takes_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A read stops at INBOX_HIGH with the rest in the link's own buffer, where the loop's poll cannot see
    it; when the read callback (the agent's ingest) takes the inbox below the mark, the rest is read too."""
    ours, theirs = pair
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", filters=[], loop=asyncio.get_running_loop())
    link._client._sock = BufferedConnection(ours)
    taken: list[int] = []
    link.on_messages = lambda: taken.extend(int(m.payload) for m in link.take(100_000))
    n = INBOX_HIGH + 50
    theirs.sendall(b"".join(wire(publish_packet(b"s/t", str(i).encode(), 0, 0)) for i in range(n)))
    link._readable()  # one poll event
    assert taken == list(range(n))


def test_a_client_collected_after_its_loop_closed_tells_it_nothing() -> None:
    """paho closes its socket in `__del__`, on whichever thread collects the client: after the loop has
    closed that must not raise (it failed an unrelated test as an unraisable exception)."""
    loop = asyncio.new_event_loop()
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", filters=[], loop=loop)
    loop.close()
    errors: list[BaseException] = []

    def from_another_thread() -> None:
        try:
            link._on_socket_close(link._client, None, None)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    thread.join(5)
    assert not thread.is_alive() and errors == []
