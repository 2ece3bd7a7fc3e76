"""The raw MQTT round trip, and the tools the edge benchmark shares with it: a lean publisher for the load,
a lean subscriber, paced publishing and latency percentiles.

    python -m bench.mqtt_baseline [--rate 5000] [--count 50000] [--host 127.0.0.1] [--port 1883]

One publisher (`SocketPublisher`) and one subscriber (`SocketSubscriber`, QoS 1) on one topic in this
process, so `time.perf_counter` is one clock: latency runs from the publish call to the `recv` that brought
the message. Both speak MQTT 3.1.1 over a plain socket, a few microseconds of Python per message: paho's
tens of microseconds per message on a network thread that trades the GIL with the publisher made the load
generator, not the broker, set the tails at 5,000 messages/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

PAYLOAD = b'{"id":"raw-0000000","value":1,"ts":1764060000.123456}'  # the size of a bench trigger event
GRACE_S = 5.0  # how long to wait for the last messages of a paced run


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean of latencies given in seconds, in milliseconds (nearest rank)."""
    if not samples_s:
        return {"n": 0}
    s = sorted(samples_s)
    n = len(s)

    def rank(q: float) -> float:
        return round(s[min(n - 1, int(q * n))] * 1e3, 3)

    return {
        "n": n,
        "p50_ms": rank(0.5),
        "p90_ms": rank(0.9),
        "p99_ms": rank(0.99),
        "p999_ms": rank(0.999),
        "max_ms": round(s[-1] * 1e3, 3),
        "mean_ms": round(sum(s) / n * 1e3, 3),
    }


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_exactly(sock: socket.socket, n: int, what: str) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError(f"MQTT: connection closed before {what}")
        data += chunk
    return data


def _connect(host: str, port: int, name: str) -> socket.socket:
    """A TCP connection to the broker with an MQTT 3.1.1 session: clean, keepalive off, CONNACK read."""
    client_id = f"bench-{name}-{uuid.uuid4().hex[:8]}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x00"  # MQTT 3.1.1, clean session, keepalive off
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    sock = socket.create_connection((host, port), timeout=10)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        connack = _read_exactly(sock, 4, "CONNACK")
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"MQTT {host}:{port}: CONNACK {connack.hex()} refused {name}")
    except BaseException:
        sock.close()
        raise
    return sock


class _SocketClient:
    """An MQTT connection over a plain socket whose reader thread (`_read`) takes what the broker sends."""

    _sock: socket.socket
    _reader: threading.Thread

    def _start_reader(self, sock: socket.socket, name: str) -> None:
        sock.settimeout(None)
        self._sock = sock
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        raise NotImplementedError

    def _chunks(self) -> Iterator[bytes]:
        """What each `recv` brings, until the connection closes."""
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            yield data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(5)


class SocketSubscriber(_SocketClient):
    """The receiving side (the device, the raw baseline's subscriber): an MQTT 3.1.1 QoS 1 subscriber whose
    reader thread takes what one `recv` brings, times it (`on_message(perf_counter, topic, payload)` for
    each PUBLISH in it) and acknowledges it with one `send`.

    A paho subscriber costs tens of microseconds of Python per message on its network thread and trades
    the GIL with the publishing thread: at 5,000 messages/s on this 2-core machine it fell behind, and the
    raw baseline measured its own queue (p50 of hundreds of ms) instead of the broker's round trip."""

    def __init__(
        self,
        host: str,
        port: int,
        name: str,
        topics: Sequence[str],
        on_message: Callable[[float, str, bytes], None],
    ) -> None:
        sock = _connect(host, port, name)
        try:
            body = b"\x00\x01" + b"".join(
                len(t.encode()).to_bytes(2, "big") + t.encode() + b"\x01" for t in topics
            )
            sock.sendall(b"\x82" + _remaining_length(len(body)) + body)
            head = _read_exactly(sock, 2, "SUBACK")
            suback = _read_exactly(sock, head[1], "SUBACK")
            if head[0] != 0x90 or any(code == 0x80 for code in suback[2:]):
                raise RuntimeError(
                    f"MQTT {host}:{port}: SUBACK {(head + suback).hex()} refused {list(topics)}"
                )
        except BaseException:
            sock.close()
            raise
        self._on_message = on_message
        self._start_reader(sock, f"{name}-reader")

    def _read(self) -> None:
        buf = bytearray()
        clock, on_message = time.perf_counter, self._on_message
        for data in self._chunks():
            t = clock()
            buf += data
            acks = bytearray()
            pos, n = 0, len(buf)
            while pos + 2 <= n:
                first, length, shift, i = buf[pos], 0, 0, pos + 1
                while i < n:  # remaining length: up to 4 bytes of 7 bits
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                else:
                    break  # the length itself is not all here yet
                end = i + length
                if end > n:
                    break
                if first >> 4 == 3:  # PUBLISH
                    topic_end = i + 2 + (buf[i] << 8 | buf[i + 1])
                    start = topic_end
                    if first & 0x06:  # QoS 1 (the most we subscribe at): a packet id follows the topic
                        acks += b"\x40\x02" + buf[topic_end : topic_end + 2]
                        start += 2
                    on_message(t, buf[i + 2 : topic_end].decode(), bytes(buf[start:end]))
                pos = end
            del buf[:pos]
            if acks:
                try:
                    self._sock.sendall(acks)
                except OSError:
                    return


class SocketPublisher(_SocketClient):
    """The sensors' side of the load: an MQTT 3.1.1 QoS 1 publisher that writes each PUBLISH with one
    `send` from the calling thread, while a reader thread counts the broker's PUBACKs (`acked`).

    paho's publish from another thread than its network loop wakes that thread for every message and
    trades the GIL with it: at 5,000 messages/s the load generator needed most of a core and lagged, and
    the latencies measured were its own. This one costs a few microseconds per message, so the measured
    tails belong to the broker and the agent. It subscribes to nothing and keeps no keepalive (0), so the
    broker sends it PUBACKs only (4 bytes each)."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.acked = 0
        self._mid = 0
        self._start_reader(_connect(host, port, name), f"{name}-pubacks")

    def _read(self) -> None:
        left = 0
        for data in self._chunks():
            left += len(data)
            self.acked += left // 4  # only this thread writes it
            left %= 4

    def publish(self, topic: str, payload: bytes) -> None:
        self._mid = self._mid % 0xFFFF + 1
        name = topic.encode()
        body = len(name).to_bytes(2, "big") + name + self._mid.to_bytes(2, "big") + payload
        self._sock.sendall(b"\x32" + _remaining_length(len(body)) + body)

    def flood(
        self, messages: Sequence[tuple[str, bytes]], window: int = 4000, timeout_s: float = 300
    ) -> float:
        """Publish `messages` as fast as the broker acknowledges them, at most `window` unacknowledged
        (far below the 65,535 packet ids); returns the seconds until the last PUBACK."""
        base = self.acked
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        publish, sleep = self.publish, time.sleep
        for sent, (topic, payload) in enumerate(messages):
            while sent - (self.acked - base) >= window:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.acked - base} of {sent} publishes acknowledged in {timeout_s:.0f} s"
                    )
                sleep(0.0002)
            publish(topic, payload)
        if not wait_for(
            lambda: self.acked - base >= len(messages), max(0.0, deadline - time.monotonic()), 0.002
        ):
            raise TimeoutError(
                f"{self.acked - base} of {len(messages)} publishes acknowledged in {timeout_s:.0f} s"
            )
        return time.perf_counter() - t0


def pacing(lags: Sequence[float], count: int, wall_s: float) -> dict[str, float]:
    """How far `count` sends over `wall_s` seconds lagged their due times (`lags`, s), in ms, and the rate."""
    p = percentiles(lags)
    return {
        "lag_p50_ms": p.get("p50_ms", 0.0),
        "lag_p99_ms": p.get("p99_ms", 0.0),
        "lag_max_ms": p.get("max_ms", 0.0),
        "achieved_per_s": round(count / wall_s, 1) if wall_s > 0 else 0.0,
    }


def paced(count: int, rate: float, send: Callable[[int], None]) -> dict[str, float]:
    """Call `send(i)` for i in 0..count-1, each at its due time start + i/rate (sleeping, never spinning:
    a spin would hold the GIL from the network threads whose callbacks take the receipt times).
    Returns how far the calls lagged their due times, in ms, and the rate achieved."""
    lags: list[float] = []
    start = time.perf_counter() + 0.01
    clock, sleep = time.perf_counter, time.sleep
    for i in range(count):
        due = start + i / rate
        now = clock()
        if now < due:
            sleep(due - now)
            now = clock()
        lags.append(now - due)
        send(i)
    return pacing(lags, count, clock() - start)


def wait_for(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.02) -> bool:
    """Poll `condition` for up to `timeout_s` seconds; True if it became true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


def raw_round_trip(host: str, port: int, topic: str, rate: float, count: int) -> dict[str, Any]:
    """Publish `count` messages at `rate`/s on `topic` (QoS 1) and time each to the subscriber."""
    sent = [0.0] * count
    got: list[tuple[float, int]] = []

    def on_message(t: float, topic: str, payload: bytes) -> None:
        got.append((t, int.from_bytes(payload[:4], "big")))

    sub = SocketSubscriber(host, port, "raw-sub", [topic], on_message)
    pub = SocketPublisher(host, port, "raw-pub")
    try:
        body = PAYLOAD[4:]

        def send(i: int) -> None:
            payload = i.to_bytes(4, "big") + body
            sent[i] = time.perf_counter()
            pub.publish(topic, payload)

        pace = paced(count, rate, send)
        wait_for(lambda: len(got) >= count, GRACE_S)
    finally:
        sub.close()
        pub.close()
    latencies = [t - sent[i] for t, i in got if 0 <= i < count]
    return {
        "rate": rate,
        "count": count,
        "received": len(got),
        "latency": percentiles(latencies),
        "pace": pace,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mqtt_baseline", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--rate", type=float, default=5000.0, help="messages per second")
    ap.add_argument("--count", type=int, default=50_000)
    args = ap.parse_args(argv)
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}/rt"
    print(json.dumps(raw_round_trip(args.host, args.port, topic, args.rate, args.count), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
