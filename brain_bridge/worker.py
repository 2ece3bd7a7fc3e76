"""The city brain: a Faust application that runs the brain-tier reflexes over `nerve.events`.

Topology (all topics with `partitions` partitions):

    nerve.events ──(re-keyed by the coarsest `per` level, when coarser than building)──▶ engine agent
    <app>-clock  ── ticks (wall-clock watermark), acks and rule reloads, one per partition ──▶ engine agent
    engine agent ──▶ nerve.alerts, nerve.alerts.<department>, nerve.commands, nerve.deadletter

One `Engine` per source partition keeps its state in the `engine-state` table (RocksDB, changelogged);
everything that changes state — events, timers, acks, reloads — arrives as a message of that partition,
because Faust writes table changes to the changelog partition of the message being processed. A worker
that dies is replaced by another that restores the partition's table from the changelog; events it
re-reads are harmless because the engine ignores an event it has already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from brain_bridge.config import BrainConfig
from brain_bridge.routing import Routing
from brain_bridge.store import TableStore
from lockdown.client import aiokafka_options, faust_credentials
from reflexes import Engine, RuleSet, RuleSetError
from reflexes.deployment import decode_deployment
from reflexes.engine import Output
from reflexes.loader import load_rules_sources
from schemas import Alert, Command, DeadLetter, SchemaError, SensorEvent

log = logging.getLogger("nerve.brain")
BUILDING = 2  # index of `building` in the default site levels: nerve.events is keyed down to it


class RecentIds:
    """The last `size` event ids seen by this worker: a cheap first filter before the engine's own."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, event_id: str) -> bool:
        if event_id in self._ids:
            return True
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False


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
        n = config.partitions
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
        )
        self.app = app
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
            "partitions": n,
        }
        self.events_topic = app.topic(config.topic("events"), **raw)
        self.clock_name = f"{config.app_id}-clock"
        source = config.topic("events")
        self.level_topic: str | None = None
        if self.level < BUILDING:
            source = self.level_topic = f"{config.app_id}-events-by-level{self.level}"
            self.rekeyed = app.topic(source, **raw)
            app.agent(self.events_topic, name="rekey-events")(self._rekey)
        self.clock = app.topic(self.clock_name, **raw)
        self.acks_topic = app.topic(config.topic("acks"), **raw)
        self.out: dict[str, faust.TopicT] = {}
        self.state = app.Table("engine-state", partitions=n, key_type=str, value_type=None)
        app.agent(app.topic(source, self.clock_name, **raw), name="brain-reflexes")(self._reflexes)
        app.agent(self.acks_topic, name="relay-acks")(self._relay_acks)
        app.timer(config.tick_s, on_leader=True, name="clock")(self._tick)
        app.task(self._follow_rules)
        app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]  # mode types the receiver narrowly

    # ------------------------------------------------------------ engines
    async def _revoked(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        self.engines.clear()  # rebuilt from the restored table at each partition's next message

    def _engine(self, partition: int) -> Engine:
        current = self.engines.get(partition)
        if current is None:
            engine = Engine(self.rules, TableStore(self.state, partition), tier="brain")
            self.engines[partition] = (self.version, engine)
            return engine
        version, engine = current
        if version != self.version:
            dropped = engine.reload(self.rules)
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
        async for key, value in stream.items():
            site = key.decode() if key else ""
            with contextlib.suppress(
                SchemaError
            ):  # a bad one is forwarded as is; the engine agent dead-letters it
                site = SensorEvent.from_json(value).site
            parts = site.split("/")
            await self.rekeyed.send(key="/".join(parts[: self.level + 1]).encode(), value=value)

    async def _reflexes(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            partition = event.message.partition
            engine = self._engine(partition)
            if event.message.topic == self.clock_name:
                outputs = self._on_clock(engine, event.value)
            else:
                outputs = await self._on_event(engine, event.value)
            for output in outputs:
                await self._route(output)

    async def _on_event(self, engine: Engine, raw: bytes) -> list[Output]:
        try:
            ev = SensorEvent.from_json(raw)
        except SchemaError as e:
            letter = DeadLetter.of(self.config.topic("events"), str(e), raw, time.time())
            await self._topic(self.config.topic("deadletter")).send(key=b"brain", value=letter.to_json())
            return []
        if self.recent.seen(ev.id):
            return []
        self.processed += 1
        return engine.process(ev)

    def _on_clock(self, engine: Engine, raw: bytes) -> list[Output]:
        message = orjson.loads(raw)
        if "ack" in message:
            engine.acknowledge(message["ack"])
            return []
        return engine.advance(float(message["now"]) - engine.lateness - self.config.lateness_margin_s)

    async def _relay_acks(self, stream: faust.StreamT[bytes]) -> None:
        """An ack may concern any partition's alert: hand it to every partition, in-stream."""
        async for value in stream:
            try:
                alert_id = orjson.loads(value)["alert_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("malformed ack ignored")
                continue
            payload = orjson.dumps({"ack": alert_id})
            for p in range(self.config.partitions):
                await self.clock.send(value=payload, partition=p)

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
