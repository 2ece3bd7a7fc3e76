"""bench.mqtt_baseline.SocketSubscriber against a scripted broker: PUBLISH packets split anywhere across
reads are all delivered, in order, and each QoS 1 one is acknowledged with its packet id."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.mqtt_baseline import SocketSubscriber, _remaining_length


def publish(topic: str, payload: bytes, packet_id: int | None) -> bytes:
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if packet_id is not None:
        body += packet_id.to_bytes(2, "big")
    body += payload
    return bytes([0x32 if packet_id is not None else 0x30]) + _remaining_length(len(body)) + body


def read_packet(conn: socket.socket) -> bytes:
    head = conn.recv(1)
    length, shift = 0, 0
    while True:
        byte = conn.recv(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return head + body


@pytest.fixture
def broker() -> Iterator[tuple[socket.socket, int, list[socket.socket]]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    yield server, server.getsockname()[1], accepted
    for conn in accepted:
        conn.close()
    server.close()


def test_split_publishes_are_delivered_in_order_and_acknowledged(
    broker: tuple[socket.socket, int, list[socket.socket]],
) -> None:
    server, port, accepted = broker
    subscribe: list[bytes] = []

    def handshake() -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        assert read_packet(conn)[0] == 0x10  # CONNECT
        conn.sendall(b"\x20\x02\x00\x00")
        subscribe.append(read_packet(conn))
        conn.sendall(b"\x90\x03\x00\x01\x01")

    t = threading.Thread(target=handshake)
    t.start()
    got: list[tuple[str, bytes]] = []
    sub = SocketSubscriber(
        "127.0.0.1", port, "t", ["a/#"], lambda _t, topic, payload: got.append((topic, payload))
    )
    t.join(5)
    conn = accepted[0]
    try:
        assert subscribe[0][0] == 0x82 and b"a/#\x01" in subscribe[0]
        big = b"x" * 300  # a remaining length of two bytes
        stream = (
            publish("a/1", b"one", 7)
            + publish("a/2", big, 8)
            + publish("a/3", b"three", None)
            + publish("a/4", b"", 9)
        )
        for cut in (1, 5, 6, 40, 300, len(stream)):  # pieces that split headers, lengths and payloads
            piece, stream = stream[:cut], stream[cut:]
            conn.sendall(piece)
            time.sleep(0.01)  # separate reads on the other side
        conn.sendall(stream)
        deadline = time.monotonic() + 5
        acks = b""
        while len(acks) < 12 and time.monotonic() < deadline:
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            acks += conn.recv(64)
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sub.close()
    assert got == [("a/1", b"one"), ("a/2", big), ("a/3", b"three"), ("a/4", b"")]
    assert acks == b"\x40\x02\x00\x07" + b"\x40\x02\x00\x08" + b"\x40\x02\x00\x09"


def test_a_refused_subscription_is_an_error(broker: tuple[socket.socket, int, list[socket.socket]]) -> None:
    server, port, accepted = broker

    def handshake() -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        read_packet(conn)
        conn.sendall(b"\x20\x02\x00\x00")
        read_packet(conn)
        conn.sendall(b"\x90\x03\x00\x01\x80")  # failure

    t = threading.Thread(target=handshake)
    t.start()
    with pytest.raises(RuntimeError, match="refused"):
        SocketSubscriber("127.0.0.1", port, "t", ["denied/#"], lambda *_: None)
    t.join(5)
