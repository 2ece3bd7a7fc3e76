"""The agent's one Kafka producer: drains the spool to Kafka, urgent records (alerts, commands)
before the telemetry backlog, and removes records only once Kafka has acknowledged them (acks=all)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.metadata import MetadataRequest

from edge_agent.spool import Priority, Spool, SpoolId, SpoolRecord, SpoolWriteError

log = logging.getLogger("nerve.edge.uplink")

_PARTITIONER = DefaultPartitioner()
REMOVE_RETRY_S = (0.5, 10.0)
"""First and longest pause after the spool failed to remove what Kafka took (a full or failing disk)."""
_PARTITION_CACHE = 10_000  # (topic, key) pairs remembered; dead letters are keyed by MQTT topic, so unbounded
MISSING_RECHECK_S = 60.0
"""After Kafka said a copy's topic does not exist, how long its records are dropped before it is asked again."""
_UNKNOWN_TOPIC = UnknownTopicOrPartitionError.errno  # the answer for a topic the cluster does not have


class UplinkError(Exception):
    """Kafka did not take a batch; the records stay in the spool and are sent again."""

    retriable = True


class Uplink:
    """Spool → Kafka with an idempotent producer; reconnects with backoff while Kafka is unreachable."""

    def __init__(
        self,
        spool: Spool,
        *,
        bootstrap: str,
        client_id: str,
        linger_ms: int = 5,
        compression: str | None = "zstd",
        request_timeout_ms: int = 10_000,
        security: dict[str, Any] | None = None,
        batch: int = 1000,
        on_connected: Callable[[bool], None] = lambda up: None,
        on_delivered: Callable[[Priority, int], None] = lambda p, n: None,
        copies: Callable[[str], bool] = lambda topic: False,
        on_dropped: Callable[[str, int], None] = lambda reason, n: None,
    ) -> None:
        """`copies(topic)` tells the topics whose records are copies of what another topic carries too (a
        department's alerts, also on the alerts topic): when Kafka has no such topic, they are dropped and
        counted instead of holding every record behind them in the spool. Records of any other topic stay
        spooled and are sent again until it exists. `on_dropped(reason, n)` counts records Kafka will not
        take: "refused" (a topic this gateway may not write) or "no_topic" (a copy's missing topic)."""
        self.spool = spool
        self._settings = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "compression_type": None if compression == "none" else compression,  # the config says "none"
            "request_timeout_ms": request_timeout_ms,
            "max_batch_size": 256 * 1024,
            **(security or {}),  # TLS and SASL options (schemas.credentials.aiokafka_options)
        }
        self.batch = batch
        self._request_timeout_s = request_timeout_ms / 1000
        self._linger_s = linger_ms / 1000
        self._on_connected = on_connected
        self._on_delivered = on_delivered
        self._copies = copies
        self._on_dropped = on_dropped
        self._missing: dict[str, float] = {}  # a copy's topic Kafka does not have → when to ask again
        self._exists: set[str] = set()  # copies' topics this producer has found in Kafka's metadata
        self._lookups: dict[str, asyncio.Task[None]] = {}  # copies' topics being looked up
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[tuple[str, bytes | None], int] = {}
        self._wake = asyncio.Event()
        self.backlog_drained = 0
        self.refused = 0
        """Records dropped because Kafka refused their topic to this principal."""

    def wake(self) -> None:
        """New records are on the spool."""
        self._wake.set()

    async def _connect(self, stop: asyncio.Event) -> AIOKafkaProducer | None:
        delay = 0.2
        while not stop.is_set():
            producer = AIOKafkaProducer(**self._settings)
            try:
                await producer.start()
            except (KafkaError, OSError) as e:
                await producer.stop()
                log.warning("kafka unreachable; spooling", extra={"error": repr(e), "retry_in_s": delay})
                self._on_connected(False)
                with contextlib.suppress(TimeoutError):  # back off, but leave at once on shutdown
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
                continue
            self._on_connected(True)
            log.info("kafka connected", extra={"bootstrap": self._settings["bootstrap_servers"]})
            return producer
        return None

    async def _partition(self, producer: AIOKafkaProducer, topic: str, key: bytes | None) -> int:
        """The partition Kafka's default partitioner gives `key` (murmur2), cached per topic and key: a
        gateway sends to a handful of keys (its buildings), and aiokafka's pure-Python murmur2 per record
        was a tenth of the uplink's CPU (the caller looks in the cache first). Raises
        TopicAuthorizationFailedError for a refused topic."""
        parts = sorted(await producer.partitions_for(topic))
        partition: int = _PARTITIONER(key, parts, parts)
        if key is not None:
            if len(self._partitions) >= _PARTITION_CACHE:
                self._partitions.clear()
            self._partitions[(topic, key)] = partition
        return partition

    async def _send(
        self, producer: AIOKafkaProducer, batch: list[tuple[SpoolId, SpoolRecord]]
    ) -> tuple[list[SpoolId], list[tuple[SpoolId, str]], int]:
        """Send a batch; returns the ids Kafka acknowledged, those to drop with why ("refused": a topic
        this gateway may not write; "no_topic": a copy's topic Kafka does not have) and how many records
        wait for their copy topic's lookup (they stay spooled). Raises UplinkError if none got through.

        The records go out as one record batch per topic partition (aiokafka's send_batch), in spool order
        within each, rather than one send and one future per record. A batch that Kafka has not
        acknowledged within the request timeout (plus a little) counts as failed: the broker is gone, and
        the records stay spooled to be sent again (ids make the repeats harmless).
        """
        limit_s = self._request_timeout_s + 2.0
        refused: list[tuple[SpoolId, str]] = []
        missing: list[tuple[SpoolId, str]] = []
        waiting = 0
        loop = asyncio.get_running_loop()

        async def deliver() -> list[tuple[str, list[SpoolId], object]]:
            nonlocal waiting
            groups: dict[tuple[str, int], list[tuple[SpoolId, SpoolRecord]]] = {}
            refusals: set[str] = set()  # topics refused in this batch
            for sid, rec in batch:
                if rec.topic in refusals:
                    refused.append((sid, rec.topic))
                    continue
                partition = self._partitions.get((rec.topic, rec.key))
                if partition is None:
                    if self._copies(rec.topic):
                        # A copy's topic is looked up apart from the batch (aiokafka waits up to the request
                        # timeout for a topic it does not know), so that a missing one holds nothing back.
                        if self._missing.get(rec.topic, 0.0) > loop.time():
                            missing.append((sid, rec.topic))
                            continue
                        if rec.topic not in self._exists:
                            self._look_up(producer, rec.topic)
                            waiting += 1
                            continue
                    try:
                        partition = await self._partition(producer, rec.topic, rec.key)
                    except TopicAuthorizationFailedError:  # refused when the topic's metadata was fetched
                        refusals.add(rec.topic)
                        refused.append((sid, rec.topic))
                        continue
                    except UnknownTopicOrPartitionError:  # not in Kafka's metadata within the request timeout
                        raise UplinkError(
                            f"Kafka has no topic {rec.topic!r}: create it; its records stay spooled"
                        ) from None
                groups.setdefault((rec.topic, partition), []).append((sid, rec))
            sent: list[tuple[str, list[SpoolId], asyncio.Future[Any]]] = []
            for (topic, partition), records in groups.items():
                builder = producer.create_batch()
                ids: list[SpoolId] = []
                for sid, rec in records:
                    if builder.append(key=rec.key, value=rec.value, timestamp=None) is None:  # full
                        sent.append(
                            (topic, ids, await producer.send_batch(builder, topic, partition=partition))
                        )
                        builder, ids = producer.create_batch(), []
                        if builder.append(key=rec.key, value=rec.value, timestamp=None) is None:
                            raise UplinkError(f"a record of {len(rec.value)} B does not fit a Kafka batch")
                    ids.append(sid)
                if ids:
                    sent.append((topic, ids, await producer.send_batch(builder, topic, partition=partition)))
            results = await asyncio.gather(*(f for _, _, f in sent), return_exceptions=True)
            return [(topic, ids, r) for (topic, ids, _), r in zip(sent, results, strict=True)]

        try:
            results = await asyncio.wait_for(deliver(), limit_s)
        except TimeoutError:
            raise UplinkError(f"no acknowledgement from Kafka within {limit_s:.0f} s") from None
        done = [sid for _, ids, r in results if not isinstance(r, BaseException) for sid in ids]
        refused += [
            (sid, topic)
            for topic, ids, r in results
            if isinstance(r, TopicAuthorizationFailedError)
            for sid in ids
        ]
        # A topic this gateway's principal may not write never will: sending those records again would
        # block the spool behind them for ever. They are dropped, loudly.
        if refused:
            log.error(
                "kafka refused records: this gateway may not write their topics (check its ACLs); dropped",
                extra={"records": len(refused), "topics": sorted({t for _, t in refused})},
            )
        # A department's topic nobody created: its copies would hold the spool back as long as it is
        # missing; the alerts topic has them too. Dropped, loudly; the topic is asked for again later.
        if missing:
            log.error(
                "kafka has no topic for these copies (create it); dropped",
                extra={"records": len(missing), "topics": sorted({t for _, t in missing})},
            )
        failed = [
            r
            for _, _, r in results
            if isinstance(r, BaseException) and not isinstance(r, TopicAuthorizationFailedError)
        ]
        dropped = [(sid, "refused") for sid, _ in refused] + [(sid, "no_topic") for sid, _ in missing]
        if failed and not done and not dropped:
            raise UplinkError(repr(failed[0]))
        if failed:
            log.warning("part of a batch failed; it will be sent again", extra={"failed": len(failed)})
        return done, dropped, waiting

    def _look_up(self, producer: AIOKafkaProducer, topic: str) -> None:
        """Start finding out, in the background, whether Kafka has a copy's `topic`."""
        task = self._lookups.get(topic)
        if task is None or task.done():
            self._lookups[topic] = asyncio.create_task(self._find(producer, topic), name=f"lookup {topic}")

    async def _find(self, producer: AIOKafkaProducer, topic: str) -> None:
        """Record `topic` as existing (any answer but "unknown": a refused topic is refused when its
        records are sent) or, when a metadata answer from a broker says the cluster has no such topic, as
        missing for MISSING_RECHECK_S; if Kafka does not answer, the next batch asks again."""
        try:
            await producer.partitions_for(topic)
        except UnknownTopicOrPartitionError:
            if await self._absent(producer, topic):
                self._missing[topic] = asyncio.get_running_loop().time() + MISSING_RECHECK_S
        except TopicAuthorizationFailedError:
            self._exists.add(topic)
        except (KafkaError, OSError) as e:
            log.warning("kafka metadata lookup failed", extra={"topic": topic, "error": repr(e)})
        else:
            self._exists.add(topic)
        finally:
            self._wake.set()  # the records that waited for it go (or are dropped) now

    async def _absent(self, producer: AIOKafkaProducer, topic: str) -> bool:
        """Whether a broker says the cluster has no `topic` (aiokafka also gives up on a topic whose
        metadata did not come, or came without a leader, within the request timeout)."""
        client = producer.client  # aiokafka's own connection pool; a plain MetadataRequest, as it sends
        node = client.get_random_node()
        if node is None:
            return False
        try:
            answer = await client.send(node, MetadataRequest([topic]))
        except (KafkaError, OSError, TimeoutError):
            return False
        return any(entry[0] == _UNKNOWN_TOPIC and entry[1] == topic for entry in answer.topics)

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until `stop` is set, then flush what is in flight."""
        backlog = False
        loop = asyncio.get_running_loop()
        sent_at = 0.0
        pause = REMOVE_RETRY_S[0]
        while not stop.is_set():
            if self._producer is None:
                self._producer = await self._connect(stop)
                if self._producer is None:
                    break
            # One produce request per linger at most, not one per spool write: at a few thousand events/s
            # the spool is written in batches of one or two, and a request each cost the agent (and Kafka)
            # more CPU than the events themselves.
            gather = sent_at + self._linger_s - loop.time()
            if gather > 0:
                await asyncio.sleep(gather)
            sent_at = loop.time()
            batch = self.spool.peek(self.batch)
            if not batch:
                if backlog:
                    backlog = False
                    await asyncio.to_thread(self.spool.reclaim)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._wake.wait()
                continue
            backlog = backlog or len(batch) == self.batch
            try:
                done, dropped, waiting = await self._send(self._producer, batch)
            except (UplinkError, KafkaError, OSError) as e:
                log.warning("kafka send failed; records stay spooled", extra={"error": repr(e)})
                self._on_connected(False)
                await self._reset()
                continue
            self._on_connected(True)
            try:
                self.spool.remove(done + [sid for sid, _ in dropped] if dropped else done)
            except SpoolWriteError as e:
                # Kafka has them; the disk would not forget them. They stay spooled and go again after a
                # pause (their ids make the repeats harmless) rather than stopping the agent.
                log.error("spool remove failed; records will be sent again", extra={"error": str(e)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, REMOVE_RETRY_S[1])
                continue
            pause = REMOVE_RETRY_S[0]
            if dropped:
                reasons = Counter(reason for _, reason in dropped)
                self.refused += reasons["refused"]
                for reason, n in reasons.items():
                    self._on_dropped(reason, n)
            if waiting and not done and not dropped and any(not t.done() for t in self._lookups.values()):
                # Only records whose copy topic is being looked up: wait for the lookup, not the linger.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._wake.wait()
            by_priority: dict[Priority, int] = {}
            delivered = set(done)
            for sid, rec in batch:
                if sid in delivered:
                    by_priority[rec.priority] = by_priority.get(rec.priority, 0) + 1
            for priority, n in by_priority.items():
                self._on_delivered(priority, n)
        await self.close()

    async def _reset(self) -> None:
        producer, self._producer = self._producer, None
        self._partitions.clear()  # the next producer reads the partition counts afresh
        self._forget_lookups()
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), 5)

    def _forget_lookups(self) -> None:
        """What the copies' topic lookups found holds for the producer that asked; a new one asks again."""
        for task in self._lookups.values():
            task.cancel()
        self._lookups.clear()
        self._exists.clear()

    async def close(self) -> None:
        """Flush and stop the producer."""
        self._forget_lookups()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.flush(), 10)
            except (KafkaError, OSError, TimeoutError):
                log.warning("kafka flush at shutdown failed; records stay spooled")
            await producer.stop()
