"""The city brain: a Faust application that runs the brain-tier reflexes over `nerve.events`.

Topology (all topics with `partitions` partitions):

    nerve.events ──(re-keyed, in bundles, by the coarsest `per` level if coarser than building)──▶ engine agent
    <app>-clock  ── ticks (wall-clock watermark) and acks, one per partition ──▶ engine agent
    engine agent ──▶ nerve.alerts, nerve.alerts.<department>, nerve.commands, nerve.deadletter

A watermark must never pass an event that is still on its way, or that event is dropped as late:
- a tick moves the watermark of a partition to the wall clock only when its events are all applied (its
  offset has reached the partition's high-water mark); while a backlog (after a failover or a restart)
  is worked off, only to the Kafka timestamp of the last event applied;
- when events are re-keyed, a partition of the re-keyed topic merges all source partitions, one of which
  may lag (its worker died) while the others run on. The re-key agent therefore reads the clock beside
  `nerve.events` and passes each tick on in-band, as a keyless record in every partition of the re-keyed
  topic, behind the events it re-keyed before it (acks go there directly), and the watermark of a
  re-keyed partition is the slowest source's tick, or event time when that is older, minus the lateness.

One `Engine` per source partition keeps its state in the `engine-state` table (RocksDB, changelogged);
everything that changes state — events, timers, acks, reloads — arrives as a message of that partition,
because Faust writes table changes to the changelog partition of the message being processed. A worker
that dies is replaced by another that restores the partition's table from the changelog; events it
re-reads are harmless because the engine ignores an event it has already applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from brain_bridge import faust_fixes
from brain_bridge.config import BrainConfig
from brain_bridge.recovery_watch import RecoveryWatch
from brain_bridge.store import TableStore
from reflexes import Engine, RuleSet, RuleSetError
from reflexes.deployment import decode_deployment
from reflexes.engine import Output
from reflexes.loader import load_rules_sources
from reflexes.recent import RecentIds
from schemas import Alert, Command, DeadLetter, SchemaError, SensorEvent
from schemas.credentials import aiokafka_options, faust_credentials
from schemas.routing import Routing

log = logging.getLogger("nerve.brain")
BUILDING = 2  # index of `building` in the default site levels: nerve.events is keyed down to it
REKEY_BATCH = 1000  # events re-keyed at most in one go (a bundle is at most this many events)
BUNDLE_MAX_BYTES = 512 * 1024  # a bundle is sent once this big: Faust's producer refuses records over 1 MB
REKEY_WITHIN_S = 0.005  # how long a batch waits for more events: the latency bundling may add
BUNDLE = b"bundle"  # the key of a bundle of re-keyed events (ticks and acks are keyless)
PARTITION_CACHE = 100_000  # group keys whose re-keyed partition is remembered
MISSED_TIMEOUT_S = 10.0  # how long reading records Faust skipped may take
COMMITTED_TIMEOUT_S = 5.0  # how long looking up the group's committed offsets may take
HOLD_S = 100 * 365 * 86_400.0  # lateness that keeps an engine from moving its own watermark (see `_held`)


class OffsetWatch:
    """Notices records an agent never got: the input topics are neither compacted nor transactional, so
    within one partition every offset reaches the agent in turn, and a jump forward means Faust dropped
    records it had fetched (as faust-streaming#596 does around rebalances). Jumps back are normal: a
    rebalance seeks to the committed offset. A partition newly assigned starts at the group's committed
    offset (`start`), so records dropped before the first one handed over are noticed too. The clock
    topic is not watched: a lost tick does no harm, the next one carries the clock on."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], int] = {}
        self.skipped = 0

    def start(self, topic: str, partition: int, committed: int) -> None:
        """A new assignment of `topic`[`partition`] reads from `committed` on, unless records of it were
        seen already (the partition stayed with this worker: what it saw before was handled)."""
        self.last.setdefault((topic, partition), committed - 1)

    def saw(self, topic: str, partition: int, offset: int) -> tuple[int, int] | None:
        """Note `offset`; returns the offsets [start, end) skipped just before it, if any."""
        last = self.last.get((topic, partition))
        self.last[(topic, partition)] = offset
        if last is None or offset <= last + 1:
            return None
        self.skipped += offset - last - 1
        log.warning(
            "records %s..%s of %s[%s] never reached the brain from Faust; reading them directly",
            last + 1,
            offset - 1,
            topic,
            partition,
        )
        return last + 1, offset

    def keep(self, assigned: set[tuple[str, int]]) -> None:
        """Forget partitions no longer assigned: others handle them, so their offsets will jump."""
        for tp in [tp for tp in self.last if tp not in assigned]:
            del self.last[tp]


def partition_level(rules: RuleSet) -> int:
    """The site level events must be grouped by so that every brain group lives in one partition."""
    levels = [r.per_level for r in rules.tier("brain").reflexes if r.per_level is not None]
    return min([BUILDING, *levels])


class Brain:
    """Builds the Faust app for `config` and holds the per-partition engines."""

    def __init__(self, config: BrainConfig, rules: RuleSet, routing: Routing, version: int = 0) -> None:
        self.config = config
        self.rules = rules.tier("brain")
        self.version = version
        self.routing = routing
        self.level = partition_level(rules)
        self.engines: dict[int, tuple[int, Engine]] = {}
        self.recent = RecentIds(config.dedup_window)
        self.processed = 0
        # events partition → next offset to apply, this assignment (starts at the group's committed offset)
        self.next_offset: dict[int, int] = {}
        self.appended: dict[int, float] = {}  # events partition → Kafka timestamp of the last event applied
        self.assignments = 0  # bumped on every revocation: an offset looked up before it is stale
        self.offsets = OffsetWatch()
        self.partition_of: dict[str, int] = {}  # group key → re-keyed partition
        self.sources: dict[int, dict[int, float]] = {}  # re-keyed partition → source partition → tick
        # Started at the first assignment: Faust starts app tasks only once the first recovery is complete,
        # and a worker restarted by its supervisor must be watched from its first recovery on.
        self.recovery_watch: asyncio.Future[None] | None = None
        n = config.partitions
        faust_fixes.apply()
        app = faust.App(
            config.app_id,
            # faust separates several brokers with ';' (a comma-separated bootstrap list in the config)
            broker=";".join(f"kafka://{b.strip()}" for b in config.kafka.bootstrap.split(",")),
            broker_credentials=faust_credentials(config.kafka),
            store="rocksdb://",
            datadir=str(config.datadir),
            topic_partitions=n,
            topic_replication_factor=config.replication,
            table_standby_replicas=0,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            web_enabled=config.web_port > 0,
            web_port=config.web_port or 6066,
            producer_acks=-1,
            # A leader whose metadata is stale at a rebalance assigns nobody the topics it does not see, and
            # nothing rebalances again until the metadata is refreshed: keep that short, not faust's 5 min.
            consumer_metadata_max_age_ms=5_000,
            broker_session_timeout=config.session_timeout_s,
            broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
        )
        self.app = app
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
            "partitions": n,
        }
        self.clock_name = f"{config.app_id}-clock"
        source = config.topic("events")
        self.level_topic: str | None = None
        self.clock = app.topic(self.clock_name, **raw)
        self.acks_topic = app.topic(config.topic("acks"), **raw)
        self.out: dict[str, faust.TopicT] = {}
        self.state = app.Table("engine-state", partitions=n, key_type=str, value_type=None)
        if self.level < BUILDING:
            source = self.level_topic = f"{config.app_id}-events-by-level{self.level}"
            self.rekeyed = app.topic(source, **raw)
            app.agent(app.topic(config.topic("events"), self.clock_name, **raw), name="rekey-events")(
                self._rekey
            )
            app.agent(self.rekeyed, name="brain-reflexes")(self._reflexes)
        else:
            app.agent(app.topic(source, self.clock_name, **raw), name="brain-reflexes")(self._reflexes)
        app.agent(self.acks_topic, name="relay-acks")(self._relay_acks)
        app.timer(config.tick_s, on_leader=True, name="clock")(self._tick)
        app.task(self._follow_rules)
        app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]  # mode types the receiver narrowly
        app.on_partitions_assigned.connect(self._assigned)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._watch_recovery)  # type: ignore[arg-type]

    # ------------------------------------------------------------ engines
    async def _revoked(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        self.engines.clear()  # rebuilt from the restored table at each partition's next message
        self.sources.clear()
        self.next_offset.clear()
        self.appended.clear()
        self.assignments += 1

    async def _watch_recovery(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        if self.recovery_watch is None:
            self.recovery_watch = self.app.add_future(RecoveryWatch(self.app).run())

    async def _assigned(self, sender: Any, assigned: Any = (), *args: Any, **kwargs: Any) -> None:
        self.offsets.keep({(tp.topic, tp.partition) for tp in assigned})
        watched = {self.config.topic("events"), self.level_topic}
        tps = [TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in watched]
        new = [tp for tp in tps if (tp.topic, tp.partition) not in self.offsets.last]
        try:
            committed = await self._committed_offsets(new)
        except (KafkaError, TimeoutError) as e:
            log.warning(
                "committed offsets of %s unknown; records Faust drops before their first one go unnoticed",
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in new),
                extra={"error": repr(e)},
            )
            return
        for tp, offset in committed.items():
            self.offsets.start(tp.topic, tp.partition, offset)

    def _held(self, rules: RuleSet) -> RuleSet:
        """The rules as the engines see them: in re-keyed partitions the brain moves the watermark itself
        (see `_on_passed`), so the engine's own (latest event − lateness) must never move it."""
        return dataclasses.replace(rules, lateness=HOLD_S) if self.level_topic is not None else rules

    def _engine(self, partition: int) -> Engine:
        current = self.engines.get(partition)
        if current is None:
            engine = Engine(self._held(self.rules), TableStore(self.state, partition), tier="brain")
            self.engines[partition] = (self.version, engine)
            return engine
        version, engine = current
        if version != self.version:
            dropped = engine.reload(self._held(self.rules))
            self.engines[partition] = (self.version, engine)
            log.info(
                "rules version %s active on partition %s (state dropped for %s)",
                self.version,
                partition,
                dropped or "none",
            )
        return engine

    # ------------------------------------------------------------ agents
    async def _rekey(self, stream: faust.StreamT[bytes]) -> None:
        """Re-key events by the coarsest `per` level, in bundles: one record per re-keyed partition for a
        batch of events (Faust's cost is per record, so the engine agent pays it once per bundle). A tick
        is passed on behind the bundles of the events before it. Faust acks a batch only once this loop
        has handled it, and commits only after flushing the producer, so nothing is lost in between."""
        batches = cast(faust.Stream[bytes], stream).take_events(REKEY_BATCH, within=REKEY_WITHIN_S)
        async for batch in batches:
            try:
                await self._rekey_batch(batch)
            except BaseException:
                # take_events acks the whole batch when the generator is closed, even the events not yet
                # forwarded: an extra reference keeps them from being committed, so they are read again.
                for event in batch:
                    event.message.incref()
                raise

    async def _rekey_batch(self, batch: Sequence[faust.EventT[bytes]]) -> None:
        bundles: dict[int, list[bytes]] = {}
        sizes: dict[int, int] = {}
        gaps: list[tuple[TP, list[Any]]] = []  # records read past Faust, closed once forwarded
        for event in batch:
            message, value = event.message, event.value
            if message.topic == self.clock_name:
                await self._send_bundles(bundles, sizes)
                await self._pass_tick(message.partition, value)
                continue
            gap = self.offsets.saw(message.topic, message.partition, message.offset)
            if gap:
                missed = await self._missed(message.topic, message.partition, *gap)
                for record in missed:
                    await self._rekey_one(record, record.value, bundles, sizes)
                if missed:
                    gaps.append((TP(message.topic, message.partition), missed))
            await self._rekey_one(message, value, bundles, sizes)
        await self._send_bundles(bundles, sizes)
        for tp, records in gaps:
            await self._close_gap(tp, records)

    async def _close_gap(self, tp: TP, records: list[Any]) -> None:
        """Let Faust commit past `records`, read by `_missed` and now handled. Faust never acks what it
        dropped, so without a gap over them its commits of that partition would stop there for good."""
        consumer: Any = self.app.consumer  # _add_gap is the transport Consumer's, not ConsumerT's
        await consumer._add_gap(tp, records[0].offset, records[-1].offset)

    async def _rekey_one(
        self, message: Any, value: bytes, bundles: dict[int, list[bytes]], sizes: dict[int, int]
    ) -> None:
        self._applied(message)
        try:
            ev = SensorEvent.from_json(value)
        except SchemaError as e:
            await self._dead_letter(value, e)
            return
        key = "/".join(ev.site.split("/")[: self.level + 1])
        partition = self._rekeyed_partition(key)
        line = ev.to_json()
        bundles.setdefault(partition, []).append(line)
        sizes[partition] = sizes.get(partition, 0) + len(line) + 1
        if sizes[partition] >= BUNDLE_MAX_BYTES:  # sent early, so a record never outgrows Kafka's limit
            await self.rekeyed.send(key=BUNDLE, value=b"\n".join(bundles.pop(partition)), partition=partition)
            del sizes[partition]

    async def _missed(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """Records [start, end) of `topic`[`partition`], which Faust skipped, read with a plain consumer.
        They are handled before the record at `end`, in the context of its message, so their table writes
        go to the same changelog partition."""
        tp = TopicPartition(topic, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **aiokafka_options(self.config.kafka),
        )
        records: list[Any] = []
        try:
            await consumer.start()
            consumer.assign([tp])
            # records deleted by retention meanwhile are gone for everyone: read what is left of the span
            start = max(start, (await consumer.beginning_offsets([tp]))[tp])
            if start >= end:
                return records
            consumer.seek(tp, start)
            async with asyncio.timeout(MISSED_TIMEOUT_S):
                while not records or records[-1].offset < end - 1:
                    fetched = await consumer.getmany(tp, timeout_ms=1000)
                    records += [r for r in fetched.get(tp, []) if start <= r.offset < end]
        except (KafkaError, TimeoutError) as e:
            log.error(
                "records %s..%s of %s[%s] could not be read (%s); a failover or a restart replays them",
                start + len(records),
                end - 1,
                topic,
                partition,
                e,
            )
        finally:
            await consumer.stop()
        return records

    def _rekeyed_partition(self, key: str) -> int:
        """The re-keyed partition of a group key: Kafka's default partitioner (murmur2), cached."""
        partition = self.partition_of.get(key)
        if partition is None:
            partitions = list(range(self.config.partitions))
            partition = int(DefaultPartitioner()(key.encode(), partitions, partitions))
            if len(self.partition_of) < PARTITION_CACHE:
                self.partition_of[key] = partition
        return partition

    async def _send_bundles(self, bundles: dict[int, list[bytes]], sizes: dict[int, int]) -> None:
        """One record per re-keyed partition: its events as compact JSON lines, in order."""
        for partition, events in bundles.items():
            await self.rekeyed.send(key=BUNDLE, value=b"\n".join(events), partition=partition)
        bundles.clear()
        sizes.clear()

    async def _pass_tick(self, partition: int, raw: bytes) -> None:
        """Hand a tick of events partition `partition` to every re-keyed partition, once its events are."""
        tick = orjson.loads(raw)
        now = await self._progress(partition, float(tick["now"])) if "now" in tick else None
        if now is None:
            return
        payload = orjson.dumps({"src": partition, "now": now})
        for p in range(self.config.partitions):
            await self.rekeyed.send(key=None, value=payload, partition=p)

    def _applied(self, message: Any) -> None:  # a Faust message or an aiokafka record
        """Note an event of events partition `message.partition` as applied (or re-keyed)."""
        self.next_offset[message.partition] = message.offset + 1
        self.appended[message.partition] = float(message.timestamp)

    async def _progress(self, partition: int, now: float) -> float | None:
        """How far a tick at `now` may move the clock of events partition `partition`: to `now` when every
        event Kafka holds there is applied (or re-keyed); while a backlog is worked off, to the Kafka
        timestamp of the last event applied (the events after it reached Kafka later, so are not older);
        None when not known yet."""
        if partition not in self.next_offset:
            assignments = self.assignments
            start = await self._committed(partition)
            if start is None or assignments != self.assignments:
                return None
            self.next_offset.setdefault(partition, start)
        tp = TopicPartition(self.config.topic("events"), partition)
        if tp not in self.app.consumer.assignment():
            return None  # revoked meanwhile (aiokafka asserts on the high-water mark of such a partition)
        highwater = self.app.consumer.highwater(tp)
        if highwater is not None and self.next_offset[partition] >= highwater:
            return now
        appended = self.appended.get(partition)
        return None if appended is None else min(now, appended)

    async def _committed(self, partition: int) -> int | None:
        """Where this assignment of events partition `partition` starts: the group's committed offset."""
        tp = TopicPartition(self.config.topic("events"), partition)
        try:
            offset = (await self._committed_offsets([tp])).get(tp)
            if offset is None:  # nothing committed yet: the consumer is where it was, or at the earliest
                offset = await self.app.consumer.position(tp)
            return None if offset is None else int(offset)
        except (KafkaError, TimeoutError) as e:
            log.warning("committed offset of %s unknown; the clock waits", tp, extra={"error": repr(e)})
            return None

    async def _committed_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets of `tps`, those it has one for; raises KafkaError or TimeoutError."""
        if not tps:
            return {}
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.config.kafka.bootstrap, **aiokafka_options(self.config.kafka)
        )
        try:
            async with asyncio.timeout(COMMITTED_TIMEOUT_S):
                await admin.start()
                offsets = await admin.list_consumer_group_offsets(self.config.app_id, partitions=tps)
            return {tp: meta.offset for tp, meta in offsets.items() if tp in tps and meta.offset >= 0}
        finally:
            await admin.close()

    async def _reflexes(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            missed: list[Any] = []
            if message.topic == self.clock_name:
                engine = self._engine(message.partition)
                outputs = await self._on_clock(engine, message.partition, event.value)
            else:
                outputs = []
                gap = self.offsets.saw(message.topic, message.partition, message.offset)
                missed = await self._missed(message.topic, message.partition, *gap) if gap else []
                for record in missed:
                    outputs += await self._reflex_one(record, record.key, record.value)
                outputs += await self._reflex_one(message, message.key, event.value)
            for output in outputs:
                await self._route(output)
            if missed:  # as in _rekey_batch: now their offsets may be committed
                await self._close_gap(TP(message.topic, message.partition), missed)

    async def _reflex_one(self, message: Any, key: bytes | None, value: bytes) -> list[Output]:
        """One record of the engine agent's input: an event, or (re-keyed) a bundle, a tick or an ack."""
        partition = message.partition
        engine = self._engine(partition)
        if self.level_topic is None:
            self._applied(message)
            return await self._on_event(engine, partition, value)
        if key is None:
            return self._on_passed(engine, partition, value)
        outputs: list[Output] = []
        for line in value.split(b"\n"):
            outputs += await self._on_event(engine, partition, line)
        return outputs

    async def _on_event(self, engine: Engine, partition: int, raw: bytes) -> list[Output]:
        try:
            ev = SensorEvent.from_json(raw)
        except SchemaError as e:
            await self._dead_letter(raw, e)
            return []
        if self.recent.seen(ev.id):
            return []
        self.processed += 1
        outputs: list[Output] = []
        sources = self.sources.get(partition, {})
        if self.level_topic is not None and len(sources) == self.config.partitions:
            # what the engine does itself elsewhere (latest event − lateness), held back to the slowest source
            outputs = engine.advance(min(ev.ts, *sources.values()) - self.rules.lateness)
        try:
            return outputs + engine.process(ev)
        except Exception as e:
            # a fault of the engine on one event must not stop the worker (its replacement would read the
            # same record again): the event is dead-lettered with the fault, and the stream goes on
            log.exception("reflex engine failed on an event", extra={"event": ev.id})
            await self._dead_letter(raw, f"reflex engine failed: {e!r}", "reflexes")
            return outputs

    async def _dead_letter(self, raw: bytes, error: SchemaError | str, source: str | None = None) -> None:
        letter = DeadLetter.of(source or self.config.topic("events"), str(error), raw, time.time())
        await self._topic(self.config.topic("deadletter")).send(key=b"brain", value=letter.to_json())

    async def _on_clock(self, engine: Engine, partition: int, raw: bytes) -> list[Output]:
        message = orjson.loads(raw)
        if "ack" in message:
            engine.acknowledge(message["ack"])
            return []
        now = await self._progress(partition, float(message["now"]))
        if now is None:
            return []
        return self._advance(engine, now - engine.lateness - self.config.lateness_margin_s)

    @staticmethod
    def _advance(engine: Engine, watermark: float) -> list[Output]:
        """Move the watermark and keep the engine's clock in its table, so a worker taking the partition
        over goes on from it (late events stay late) rather than from the first event it sees."""
        outputs = engine.advance(watermark)
        engine.checkpoint()
        return outputs

    def _on_passed(self, engine: Engine, partition: int, raw: bytes) -> list[Output]:
        """A tick or an ack in-band on the re-keyed topic; the watermark follows the slowest source."""
        message = orjson.loads(raw)
        if "ack" in message:
            engine.acknowledge(message["ack"])
            return []
        sources = self.sources.setdefault(partition, {})
        sources[int(message["src"])] = float(message["now"])
        if len(sources) < self.config.partitions:
            return []
        return self._advance(
            engine, min(sources.values()) - self.rules.lateness - self.config.lateness_margin_s
        )

    async def _relay_acks(self, stream: faust.StreamT[bytes]) -> None:
        """An ack may concern any partition's alert: hand it to every partition, in-stream."""
        async for value in stream:
            try:
                alert_id = orjson.loads(value)["alert_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("malformed ack ignored")
                continue
            payload = orjson.dumps({"ack": alert_id})
            target = self.rekeyed if self.level_topic is not None else self.clock
            for p in range(self.config.partitions):
                await target.send(key=None, value=payload, partition=p)

    async def _tick(self) -> None:
        payload = orjson.dumps({"now": time.time()})
        for p in range(self.config.partitions):
            await self.clock.send(value=payload, partition=p)

    # ------------------------------------------------------------ outputs
    def _topic(self, name: str) -> faust.TopicT:
        topic = self.out.get(name)
        if topic is None:
            topic = self.out[name] = self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
        return topic

    async def _route(self, output: Output) -> None:
        cfg = self.config
        if isinstance(output, Command):
            await self._topic(cfg.topic("commands")).send(key=output.site.encode(), value=output.to_json())
            return
        alert: Alert = output.model_copy(update={"emitted_at": time.time()})
        payload, key = alert.to_json(), alert.group.encode()
        await self._topic(cfg.topic("alerts")).send(key=key, value=payload)
        for department in self.routing.departments_for(alert):
            await self._topic(self.routing.topic_for(department, cfg.kafka.prefix)).send(
                key=key, value=payload
            )

    # ------------------------------------------------------------ hot reload
    async def _follow_rules(self) -> None:
        """Every worker reads the compacted rules topic (no consumer group) and switches versions."""
        topic = self.config.topic("rules")
        while True:
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=self.config.kafka.bootstrap,
                auto_offset_reset="earliest",
                group_id=None,
                metadata_max_age_ms=2000,
                **aiokafka_options(self.config.kafka),
            )
            try:
                await consumer.start()
                async for msg in consumer:
                    self._consider(msg.key, msg.value)
            except KafkaError as e:
                log.warning("rules topic unreachable; retrying", extra={"error": repr(e)})
            finally:
                await consumer.stop()
            await asyncio.sleep(1.0)  # back off before reconnecting to the rules topic

    def _consider(self, key: bytes | None, value: bytes | None) -> None:
        if value is None or key is None or key.decode(errors="replace") != self.config.rule_set:
            return
        try:
            deployed = decode_deployment(value)
        except ValueError as e:
            log.error("rules topic: %s", e)
            return
        if deployed.version <= self.version:
            return
        try:
            rules = load_rules_sources(list(deployed.files)).tier("brain")
        except RuleSetError as e:
            log.error("rule set version %s refused: %s", deployed.version, e)
            return
        if problems := self.routing.check(rules.departments()):  # as at start: a department needs a topic
            log.error("rule set version %s refused: %s", deployed.version, "; ".join(problems))
            return
        if partition_level(rules) < self.level:
            log.error(
                "rule set version %s needs events grouped by a coarser level; restart the workers",
                deployed.version,
            )
            return
        self.rules, self.version = rules, deployed.version
        log.info(
            "rules version %s received (%s brain reflexes, sha256 %s)",
            deployed.version,
            len(rules.reflexes),
            deployed.sha256[:12],
        )
