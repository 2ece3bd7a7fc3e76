"""The agent's one MQTT client: a persistent QoS 1 session whose messages are acknowledged only once they are
safe on the spool, plus the publishes of commands, local alerts and dead letters.

paho-mqtt is driven from the agent's asyncio loop, not from a network thread of its own: the loop calls
paho's `loop_read` when the socket is readable and `loop_write` once per burst of queued packets, and a
small supervisor task keeps the connection (connect in a worker thread, since the TCP connect and the TLS
handshake block, then keepalive, then reconnect with backoff after any loss). Received messages and the
acks that follow them never cross a thread, and one burst of acks is one write: measured on this
project's bench machine, a paho subscriber drains about 45 % more messages per CPU-second this way than
with `loop_start()`, whose every ack from another thread also wakes the network thread.

The broker connection is wrapped in `BufferedConnection`: one `recv` serves a whole burst, and paho's sends
of one burst are joined into one. The PUBLISH packets of a burst (QoS 0 and 1, the agent's input) are
parsed straight from that buffer into the inbox; paho's reader, which takes 14 µs a packet, reads only the
rest (CONNACK, SUBACK, PINGRESP, the acks of our own publishes, anything unusual).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from schemas.credentials import MqttAuth

log = logging.getLogger("nerve.edge.mqtt")

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

INBOX_HIGH = 512
"""Received messages waiting for ingest beyond which the link stops reading until half are taken, so that
the size of a backlog (a persistent session's queue after an outage) never sets the agent's memory.
Mosquitto itself sends at most `max_inflight_messages` unacknowledged (1000 in the shipped configs); this
bound holds with a broker configured for more, or for no limit (0)."""

RECV_CHUNK = 64 * 1024
"""Bytes asked of the socket per read: a burst of small messages comes in with one system call."""

LARGE_PACKET = 16 * RECV_CHUNK
"""A PUBLISH longer than this, while incomplete, is read by paho's reader rather than the link's."""

STOP_LINGER_S = 2.0
"""At stop, how long the link waits for the broker to take the last acks and the DISCONNECT."""

STABLE_S = 10.0
"""A connection that lasted this long resets the reconnect backoff."""

MISC_EVERY_S = 1.0
"""How often paho's keepalive and ping timeout are checked (`loop_misc`)."""

RECONNECT_DELAYS = (1.0, 5.0)
"""First and longest pause between connection attempts; it doubles while attempts keep failing."""


class MqttNotQueuedError(Exception):
    """The MQTT client refused to queue a publish (no message id left)."""


@dataclass(slots=True)
class Inbound:
    """One received message; `mid`/`qos`/`connection` are what `MqttLink.ack` needs."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int = 0
    """Which connection of the link it came on: a packet id means something only on its own connection."""
    received: float = 0.0
    """When its bytes came from the socket (perf_counter): the start of the agent's reflex latency."""


class BufferedConnection:
    """A connected (possibly TLS) socket with a user-space receive buffer and a send buffer that holds the
    packets of one burst until `flush`. paho sees a socket: `recv`, `send`, `pending`, `fileno`, `close`.

    `send` always takes the whole packet; what the kernel does not take at `flush` is kept, in order, for
    the next flush (when the socket is writable again). Bytes still buffered when the connection is lost are
    lost with it, as they would be in the kernel's buffer: QoS 1 is what brings such messages back.
    """

    __slots__ = ("_in", "_in_pos", "_out", "_quickack", "_sock", "filled_at", "linger_s")

    def __init__(self, sock: socket.socket) -> None:
        tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        if tcp:
            # The link joins a burst's packets itself; Nagle's algorithm would only hold a command back
            # until the broker's TCP acknowledgement of the acks sent just before it.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The other way round, a broker with Nagle on (Mosquitto's default) holds each message to us until
        # we acknowledge the last at TCP level, and the kernel delays that acknowledgement until we send
        # something (the spool is written, and acked, every few ms): so acknowledge at once (Linux).
        self._quickack = _TCP_QUICKACK if tcp else None
        self._sock = sock
        self._in = b""
        self._in_pos = 0
        self._out = bytearray()
        self.filled_at = 0.0
        """When the last bytes were received (perf_counter)."""
        self.linger_s = 0.0
        """Set before a DISCONNECT of our own: how long `close` waits for the broker to close its end."""

    # ---- what paho calls
    def recv(self, size: int) -> bytes:
        # BlockingIOError / SSLWantReadError from the socket go to paho as they are
        if self._in_pos >= len(self._in) and not self.fill():
            return b""  # end of stream: paho reports the connection lost
        start = self._in_pos
        end = min(start + size, len(self._in))
        self._in_pos = end
        return self._in[start:end]

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._out += data
        return len(data)

    def pending(self) -> int:
        """Bytes received and not yet read by paho (here or, for TLS, decrypted inside the SSL object)."""
        buffered = len(self._in) - self._in_pos
        if isinstance(self._sock, ssl.SSLSocket):
            buffered += self._sock.pending()
        return buffered

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.flush()  # paho closes right after queueing DISCONNECT: let it out first if it can go
            if self.linger_s > 0:
                self._linger()
        self._sock.close()

    def _linger(self) -> None:
        """Wait (at most `linger_s`) until the broker has read all we sent and closed its end: acks sent just
        before the DISCONNECT count only once the broker has read them, and a new connection with the same
        client id (the agent restarted) takes the session over from one whose bytes are still unread."""
        deadline = time.monotonic() + self.linger_s
        sock = self._sock
        while self._out and time.monotonic() < deadline:
            select.select([], [sock], [], max(0.0, deadline - time.monotonic()))
            self.flush()
        sock.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            if sock.fileno() < 0 or not select.select([sock], [], [], left)[0]:
                return
            try:
                if not sock.recv(RECV_CHUNK):
                    return  # the broker closed its end: it has read everything
            except (BlockingIOError, ssl.SSLWantReadError):
                continue

    # ---- what the link calls
    def fill(self) -> bool:
        """Receive what the socket has, after what is still unread; False at the end of the stream.
        Raises what the socket raises (BlockingIOError, ssl.SSLWantReadError when there is nothing)."""
        data = self._sock.recv(RECV_CHUNK)
        if not data:
            return False
        self.filled_at = time.perf_counter()
        if self._quickack is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, self._quickack, 1)
        pos = self._in_pos
        self._in = self._in[pos:] + data if pos < len(self._in) else data
        self._in_pos = 0
        return True

    def take_publishes(self, inbox: deque[Inbound], connection: int, limit: int) -> int:
        """Move up to `limit` whole MQTT 3.1.1 PUBLISH packets at QoS 0 or 1 from the front of the receive
        buffer into `inbox`, parsing them here: paho's reader costs about 14 µs a packet (a `recv` call
        per header byte, a dict per packet, two lock round trips), a quarter of an event's whole cost.

        Returns why it stopped: TOOK_LIMIT, NEEDS_BYTES (the buffer is empty or ends inside a packet), or
        FOR_PAHO (the next packet is another kind, QoS 2, or malformed: paho's own reader takes it)."""
        buf, pos = self._in, self._in_pos
        n = len(buf)
        taken = 0
        received = self.filled_at  # a packet is whole once the receive that completed it is in
        try:
            while taken < limit:
                if pos + 2 > n:
                    return NEEDS_BYTES
                header = buf[pos]
                masked = header & 0xF6  # the type and QoS bits, without DUP and RETAIN
                if masked != 0x30 and masked != 0x32:
                    return FOR_PAHO
                length = buf[pos + 1]
                i = pos + 2
                if length & 0x80:  # a remaining length of more than one byte
                    length &= 0x7F
                    shift = 7
                    while True:
                        if i >= n:
                            return NEEDS_BYTES
                        byte = buf[i]
                        i += 1
                        length |= (byte & 0x7F) << shift
                        if not byte & 0x80:
                            break
                        shift += 7
                        if shift > 21:
                            return FOR_PAHO  # more than 4 bytes: paho refuses it
                end = i + length
                if end > n:
                    # a packet of many receives is paho's to gather (in linear time: here each receive
                    # would copy all of it that came before)
                    return FOR_PAHO if length > LARGE_PACKET else NEEDS_BYTES
                topic_end = i + 2 + (buf[i] << 8 | buf[i + 1]) if i + 2 <= end else end + 1
                start = topic_end + 2 if masked == 0x32 else topic_end
                if topic_end == i + 2 or start > end:
                    return FOR_PAHO  # empty topic, or a packet too short: paho says what is wrong
                try:
                    topic = buf[i + 2 : topic_end].decode()
                except UnicodeDecodeError:
                    return FOR_PAHO
                if masked == 0x32:
                    inbox.append(
                        Inbound(
                            topic,
                            buf[start:end],
                            buf[topic_end] << 8 | buf[topic_end + 1],
                            1,
                            connection,
                            received,
                        )
                    )
                else:
                    inbox.append(Inbound(topic, buf[start:end], 0, 0, connection, received))
                taken += 1
                pos = end
            return TOOK_LIMIT
        finally:
            self._in_pos = pos

    def flush(self) -> bool:
        """Send what paho queued; True when all of it is out, False when the kernel's buffer is full."""
        out = self._out
        while out:
            try:
                sent = self._sock.send(out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return False
            del out[:sent]
        return True

    @property
    def unsent(self) -> int:
        return len(self._out)


TOOK_LIMIT, NEEDS_BYTES, FOR_PAHO = 0, 1, 2  # why BufferedConnection.take_publishes stopped

Receiver = Callable[[str, bytes, int, int], None]
"""Called with (topic, payload, mid, qos) for each PUBLISH received at QoS 0 or 1."""


class _Client(mqtt.Client):
    """paho's client, connecting through a `BufferedConnection`, with a lean path for received PUBLISH
    packets: with `receiver` set, an MQTT 3.1.1 PUBLISH at QoS 0 or 1 goes straight to it as
    (topic, payload, mid, qos), without paho's MQTTMessage (a threading.Condition each), debug log
    formatting and per-message topic matching of callbacks, which were half of the agent's CPU per event.
    Anything else (QoS 2, MQTT 5, an empty or non-UTF-8 topic, a packet too short) takes paho's own path.
    """

    receiver: Receiver | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        receiver = self.receiver
        header: int = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if receiver is None or qos > 1 or self._protocol == mqtt.MQTTv5:
            return super()._handle_publish()
        packet: bytes | bytearray = self._in_packet["packet"]
        end = 2 + int.from_bytes(packet[:2])
        pos = end + 2 if qos else end
        if end == 2 or pos > len(packet):
            return super()._handle_publish()  # paho raises its MalformedPacket
        try:
            topic = packet[2:end].decode()
        except UnicodeDecodeError:
            return super()._handle_publish()
        mid = int.from_bytes(packet[end:pos]) if qos else 0
        receiver(topic, bytes(packet[pos:]), mid, qos)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if not isinstance(sock, socket.socket):  # a websocket or proxy wrapper: paho's own, unbuffered
            return sock
        return BufferedConnection(sock)


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
        self._loop_thread = threading.get_ident()
        self._inbox: deque[Inbound] = deque()
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.connects = 0
        self._reader_fd: int | None = None
        self._connection = 0  # counts the sockets opened; Inbound.connection
        self._paused_fd: int | None = None  # reading paused (back-pressure) on this socket
        self._writer_fd: int | None = None
        self._flush_soon = False
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        # on_delivered callbacks, by the mid of a publish the broker has not taken yet
        self._on_delivered: dict[int, Callable[[], None]] = {}
        self.on_messages: Callable[[], None] | None = None
        """Called on the loop right after a read that added messages to the inbox (it may `take` them);
        what it leaves there wakes `wait_messages`."""
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)  # outgoing publishes queue while disconnected, not dropped
        if auth is not None:
            auth.apply(client)  # TLS and the gateway's user, when the broker is secured
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message  # what paho's own path delivers
        client.on_publish = self._on_publish
        client.receiver = self._receive
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = lambda client, userdata, sock: None  # see _flush
        self._client = client

    # ---- paho callbacks; all run on the loop except the socket's opening (in the connecting thread)
    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif not self._loop.is_closed():
            # A client garbage-collected after its loop closed (paho closes its socket in __del__, on
            # whatever thread collects it) has nothing left to tell the loop.
            with contextlib.suppress(RuntimeError):  # closed between the check and the call
                self._loop.call_soon_threadsafe(fn, *args)

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
        self._on_loop(self.connected.set)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not self._closing:
            log.warning("mqtt disconnected; reconnecting", extra={"reason": str(reason)})
        self._on_loop(self.connected.clear)
        self._on_loop(self._lost.set)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._receive(msg.topic, bytes(msg.payload), msg.mid, msg.qos)

    def _receive(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        self._inbox.append(Inbound(topic, payload, mid, qos, self._connection, time.perf_counter()))
        self._wake.set()

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch, sock.fileno())

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._schedule_flush)

    # ---- socket events, on the loop
    def _watch(self, fd: int) -> None:
        self._unwatch()
        if self._closing:  # a connect that finished after stop(): say goodbye on it at once
            self._client.disconnect()
            self._flush()
            return
        self._connection += 1  # what comes on this socket is acked on it only
        self._reader_fd = fd
        self._loop.add_reader(fd, self._readable)

    def _unwatch(self) -> None:
        self._paused_fd = None
        if self._reader_fd is not None:
            self._loop.remove_reader(self._reader_fd)
            self._reader_fd = None
        if self._writer_fd is not None:
            self._loop.remove_writer(self._writer_fd)
            self._writer_fd = None

    def _readable(self) -> None:
        client = self._client
        inbox = self._inbox
        sock = client.socket()
        if isinstance(sock, BufferedConnection):
            conn = sock
            while True:
                before = len(inbox)
                self._read_buffered(client, conn)
                at_mark = len(inbox) >= INBOX_HIGH  # reading stopped there: bytes may be left in our buffer
                if len(inbox) > before:
                    if self.on_messages is not None:
                        self.on_messages()  # ingest, right here: no task to wake for a burst of one or two
                    if inbox:
                        self._wake.set()
                # the callback made room: read what is left now (the poll would not report it)
                if not at_mark or len(inbox) >= INBOX_HIGH or client.socket() is not conn:
                    break
        else:
            client.loop_read()
        if len(inbox) >= INBOX_HIGH and self._reader_fd is not None:
            # Back-pressure: the broker keeps the rest (in its queue for our persistent session) until
            # ingest has caught up, instead of this process holding a whole backlog in memory.
            self._loop.remove_reader(self._reader_fd)
            self._paused_fd, self._reader_fd = self._reader_fd, None

    def _read_buffered(self, client: _Client, sock: BufferedConnection) -> None:
        """Read until the socket has nothing more (or the inbox is full): PUBLISH packets are parsed by the
        connection itself, straight into the inbox; any other packet (CONNACK, SUBACK, PINGRESP, the
        PUBACKs of our publishes, anything unusual) and a packet paho has begun go through paho's reader."""
        inbox = self._inbox
        received = False
        try:
            while len(inbox) < INBOX_HIGH:
                if client._in_packet["command"]:  # paho is inside a packet: it reads the rest itself
                    if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or client.socket() is not sock:
                        return
                    if client._in_packet["command"]:
                        return  # still incomplete: the rest has not arrived
                    continue
                status = sock.take_publishes(inbox, self._connection, INBOX_HIGH - len(inbox))
                if status == TOOK_LIMIT:
                    return
                if status == FOR_PAHO:
                    if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or client.socket() is not sock:
                        return
                    continue
                try:
                    more = sock.fill()
                except (BlockingIOError, ssl.SSLWantReadError):
                    return  # all read: the loop's poll says when there is more
                except OSError:
                    more = False
                if not more:
                    client.loop_read()  # paho's reader meets the end of the stream or the error, and reports it
                    return
                received = True
        finally:
            if received:
                client._last_bytes_received = mqtt.time_func()  # paho's keepalive sees the broker alive

    def _resume(self) -> None:
        fd, self._paused_fd = self._paused_fd, None
        if fd is None or self._client.socket() is None or self._closing:
            return
        self._reader_fd = fd
        self._loop.add_reader(fd, self._readable)
        self._readable()  # what is already in our buffer: the poll would not report it

    def _schedule_flush(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what paho queued since the last flush, in one system call when the kernel takes it all."""
        self._flush_soon = False
        client = self._client
        client.loop_write()  # paho "sends" each packet into the connection's buffer
        sock = client.socket()
        if not isinstance(sock, BufferedConnection):
            return
        try:
            done = sock.flush()
        except OSError as e:
            log.warning("mqtt write failed", extra={"error": repr(e)})
            done = True  # paho's next read sees the broken connection and reports it
        if not done and self._writer_fd is None:
            self._writer_fd = sock.fileno()
            self._loop.add_writer(self._writer_fd, self._flush)
        elif done and self._writer_fd is not None:
            self._loop.remove_writer(self._writer_fd)
            self._writer_fd = None

    # ---- connection upkeep
    async def _supervise(self) -> None:
        """Connect, keep the connection alive, reconnect after a loss: at least RECONNECT_DELAYS[0] apart
        (a broker that accepts and then drops the agent, say for a second client with its id, must not
        make it spin), doubling up to RECONNECT_DELAYS[1] until a connection is accepted and lasts."""
        delay = RECONNECT_DELAYS[0]
        while not self._closing:
            self._lost.clear()
            connects = self.connects
            try:
                # reconnect() blocks on the TCP connect and the TLS handshake: not on the loop.
                await self._loop.run_in_executor(None, self._client.reconnect)
            except Exception as e:  # OSError, ssl.SSLError, ValueError; anything else is logged the same way
                log.warning(
                    "mqtt broker unreachable; retrying", extra={"error": repr(e), "retry_in_s": delay}
                )
                await self._pause(delay)
                delay = min(delay * 2, RECONNECT_DELAYS[1])
                continue
            opened = time.monotonic()
            while not self._lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), MISC_EVERY_S)
                self._client.loop_misc()  # keepalive pings; a silent broker is dropped after 1.5 keepalives
            if self.connects > connects and time.monotonic() - opened >= STABLE_S:
                delay = RECONNECT_DELAYS[0]  # that connection was accepted and lasted: start afresh
            await self._pause(delay)
            delay = min(delay * 2, RECONNECT_DELAYS[1])

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # stop() cancels the supervisor, pause or not

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("mqtt link stopped reconnecting", extra={"error": repr(task.exception())})

    # ---- asyncio side
    def start(self) -> None:
        """Connect in the background; reconnects by itself after any loss."""
        self._client.connect_async(self.host, self.port, self.keepalive)
        self._supervisor = self._loop.create_task(self._supervise(), name="mqtt-link")
        self._supervisor.add_done_callback(self._supervisor_done)

    async def wait_messages(self, within_s: float) -> None:
        """Return when messages are waiting, or after `within_s` seconds."""
        if self._inbox:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):  # no task per wait, as wait_for makes in Python 3.11
                await self._wake.wait()

    def take(self, limit: int) -> list[Inbound]:
        """Up to `limit` received messages, oldest first."""
        inbox = self._inbox
        n = min(limit, len(inbox))
        taken = [inbox.popleft() for _ in range(n)]
        if self._paused_fd is not None and len(inbox) <= INBOX_HIGH // 2:
            self._loop.call_soon(self._resume)
        return taken

    def ack(self, message: Inbound) -> None:
        """Acknowledge a message to the broker (it is safe on the spool), on the connection it came on only.
        Not while disconnected (paho would queue the ack ahead of the next CONNECT, a protocol error to the
        broker), and not on a later connection: there its packet id may name another message, one not yet
        spooled (a broker that lost the session numbers afresh). A persistent session delivers the message
        again anyway, and its event id makes the repeat harmless."""
        if message.qos > 0 and message.connection == self._connection and self.connected.is_set():
            self._client.ack(message.mid, message.qos)

    def ack_all(self, messages: list[Inbound]) -> None:
        """`ack` each of `messages`, in order, written as one run of PUBACK packets into the connection's
        send buffer: paho's path (a packet built, a lock, a queue and a callback per ack) cost 4 % of the
        agent's time. What paho has queued before goes out first (PUBACKs must keep the order of the
        messages they acknowledge)."""
        client = self._client
        sock = client.socket()
        if not isinstance(sock, BufferedConnection) or not self.connected.is_set():
            for message in messages:
                self.ack(message)
            return
        connection = self._connection
        # a PUBACK is 0x40, 0x02 and the packet id: one big-endian 32-bit word
        acks = [0x40020000 | m.mid for m in messages if m.qos == 1 and m.connection == connection]
        for message in messages:
            if message.qos > 1 and message.connection == connection:  # not from our QoS 1 subscriptions
                client.ack(message.mid, message.qos)
        if not acks:
            return
        if client._out_packet:
            client.loop_write()  # paho's queued packets into the buffer first, in their order
        sock.send(struct.pack(f">{len(acks)}I", *acks))
        client._last_msg_out = mqtt.time_func()  # paho's keepalive: the link is not silent
        self._schedule_flush()

    def flush(self) -> None:
        """Send what is queued now rather than when the loop next gets to it (commands of a batch)."""
        if self._flush_soon:
            self._flush()

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, on_delivered: Callable[[], None] | None = None
    ) -> None:
        """Queue a publish; QoS 1 publishes made while disconnected go out after the reconnect. Raises
        ValueError for a topic MQTT does not allow (a wildcard), MqttNotQueuedError when paho has no message id left.
        `on_delivered` is called on the loop once the broker has taken the message (its PUBACK at QoS 1):
        until then it lives only in this process."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:  # every message id in use: not queued at all
            raise MqttNotQueuedError(f"publish to {topic} not queued: {mqtt.error_string(info.rc)}")
        if on_delivered is not None:
            if qos == 0:  # nothing to wait for
                on_delivered()
            else:  # its PUBACK is read on the loop, after this returns
                self._on_delivered[info.mid] = on_delivered

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        callback = self._on_delivered.pop(mid, None)
        if callback is not None:
            self._on_loop(callback)

    def stop(self) -> None:
        """Disconnect cleanly (what is queued goes out first) and stop reconnecting."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        sock = self._client.socket()
        if sock is not None:
            if isinstance(sock, BufferedConnection):
                sock.linger_s = STOP_LINGER_S
            self._client.disconnect()
            self._flush()
        self._unwatch()
