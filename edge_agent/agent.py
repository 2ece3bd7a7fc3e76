"""The edge agent: MQTT in → decode → dedup → edge reflexes → local actuation → spool → Kafka, plus the
command downlink, heartbeats, the idle watermark and graceful shutdown.

The order inside one ingest batch is what makes the promises hold: actuation and local alerts are
published first (milliseconds matter), then every accepted record is written to the spool with one
fsync, and only then are the MQTT messages acknowledged — so a crash never loses an acknowledged event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from functools import partial
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from edge_agent.config import EdgeConfig
from edge_agent.downlink import CommandLedger, Downlink
from edge_agent.ingest import Decoder, Rejected, TopicTemplate
from edge_agent.mqtt_link import Inbound, MqttLink, MqttNotQueuedError
from edge_agent.spool import Priority, Spool, SpoolError, SpoolRecord, SpoolWriteError
from edge_agent.telemetry import EdgeMetrics
from edge_agent.uplink import Uplink
from reflexes import Engine, MemoryStore, RuleSet, RuleSetError
from reflexes.collector import settle
from reflexes.deployment import decode_deployment
from reflexes.engine import Output
from reflexes.loader import load_rules_sources
from reflexes.recent import RecentIds
from reflexes.store import State
from reflexes.windows import compact, jsonable
from schemas import Command, SensorEvent
from schemas.credentials import aiokafka_options
from schemas.routing import Routing

log = logging.getLogger("nerve.edge")
INGEST_BATCH = 256  # messages per reflex pass: a trigger waits for at most this many before it
SPOOL_PIPELINE = 256  # messages that may wait for the spool's fsync while reflexes run on the next
SPOOL_RETRY_S = 0.5  # first pause before a failed spool write is tried again; it doubles, up to 20×
SPOOL_GATHER_S = 0.02  # the spool is written (and the messages acknowledged) at most this often
TICK_S = 0.2
BUILDING_KEYS_MAX = 10_000  # sites whose Kafka key is remembered
SNAPSHOT_EVERY_S = 30.0
DELIVERIES_AT_STOP_S = 1.0  # at SIGTERM, how long commands just published may take to reach the broker
RECEIPT_STEP_BACK_S = 1.0
"""A wall clock that went back by less than this keeps receipt times after the last one given."""
SHUTDOWN_TASKS_S = 15.0  # at SIGTERM, how long the agent's tasks may take to finish before they are cancelled
SNAPSHOT_SLICE_S = 0.002  # the event loop writes the snapshot in slices of this much time, reflexes between
ENGINE_GAUGES_EVERY_S = 1.0  # the engine's size (a walk over its groups)


class EdgeAgent:
    """One gateway's agent. `run(stop)` serves until `stop` is set, then flushes and returns."""

    def __init__(self, config: EdgeConfig, rules: RuleSet, routing: Routing | None = None) -> None:
        self.config = config
        self.routing = routing or Routing.default()
        self.metrics = EdgeMetrics(config.gateway)
        self.snapshot_path = Path(config.spool.path) / "engine.snapshot.json"
        self.engine = self._restore_engine(rules)
        self.decoder = Decoder(config)
        self.recent = RecentIds(config.dedup_window)
        self._last_receipt = 0.0
        self.spool = Spool(
            Path(config.spool.path) / "queue",
            max_bytes=config.spool.max_bytes,
            sync=config.spool.sync,
            when_full=config.spool.when_full,
        )
        self.ledger = CommandLedger(restored=self.spool.ledger())
        self._undelivered: set[str] = set()  # ids of commands published that the broker has not taken yet
        self._progress = asyncio.Event()  # set at each command the broker takes and each spool write done
        essential = {config.topic("events"), config.topic("alerts"), config.topic("deadletter")}
        self.uplink = Uplink(
            self.spool,
            bootstrap=config.kafka.bootstrap,
            client_id=config.kafka.client_id or config.gateway,
            linger_ms=config.kafka.linger_ms,
            compression=config.kafka.compression,
            request_timeout_ms=config.kafka.request_timeout_ms,
            security=aiokafka_options(config.kafka),
            on_connected=lambda up: self.metrics.kafka_connected.set(1 if up else 0),
            on_delivered=lambda p, n: self.metrics.events_out.labels(priority=p.name.lower()).inc(n),
            # Every record but events, alerts and dead letters is a copy: a department's alerts (also on
            # the alerts topic), the log of local actuations (whose alerts are there too).
            copies=lambda topic: topic not in essential,
            on_dropped=lambda reason, n: self.metrics.uplink_dropped.labels(reason=reason).inc(n),
        )
        self.mqtt: MqttLink | None = None
        self.metrics_port: int | None = None
        self._events_topic = config.topic("events")
        self._building_keys: dict[str, bytes] = {}
        self._accepted = 0  # events applied since the counter was last brought up to date
        self._stopping = False  # ingest has ended: the spool writer gives up on a failing disk
        self._stop: asyncio.Event | None = None  # run()'s
        self._pipe: _SpoolPipe | None = None  # ingest → spool writer, while ingest runs
        self._snapshotting: asyncio.Task[None] | None = None  # the periodic snapshot being written
        self.failed: str | None = None  # the name of the task whose failure stopped the agent

    # ------------------------------------------------------------ engine state across restarts
    def _restore_engine(self, rules: RuleSet) -> Engine:
        if self.snapshot_path.exists():
            try:
                engine = Engine(rules, MemoryStore(read_snapshot(self.snapshot_path)), tier="edge")
                log.info("engine state restored", extra={"groups": engine.stats()["groups"]})
                return engine
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("engine snapshot unreadable; starting empty", extra={"error": repr(e)})
        return Engine(rules, tier="edge")

    def _save_engine(self) -> None:
        write_snapshot(self.engine, self.snapshot_path)

    # ------------------------------------------------------------ outputs of the engine
    def _publish_outputs(
        self, outputs: list[Output], records: list[SpoolRecord], origin: str = "edge"
    ) -> None:
        cfg, mqtt = self.config, self.mqtt
        assert mqtt is not None
        for out in outputs:
            if isinstance(out, Command):
                self._actuate(out, origin)
                if cfg.kafka.actuation_log is not None:
                    records.append(
                        SpoolRecord(
                            Priority.URGENT,
                            cfg.topic(cfg.kafka.actuation_log),
                            out.site.encode(),
                            out.to_json(),
                        )
                    )
            else:
                stamped = out.model_copy(update={"emitted_at": time.time()})
                payload = stamped.to_json()
                departments = self.routing.departments_for(stamped)  # the reflex's, then the routes'
                for department in departments:
                    mqtt.publish(cfg.mqtt.alert_topic.format(department=department), payload)
                key = stamped.group.encode()
                records.append(SpoolRecord(Priority.URGENT, cfg.topic("alerts"), key, payload))
                records.extend(  # each department hears it on its own topic too
                    SpoolRecord(Priority.URGENT, self.routing.topic_for(d, cfg.kafka.prefix), key, payload)
                    for d in departments
                )
                self.metrics.alerts.labels(status=stamped.status).inc()

    def _actuate(self, command: Command, origin: str) -> None:
        if not self.ledger.first_time(command.id):
            self.metrics.commands_ignored.labels(reason="repeat").inc()
            return
        assert self.mqtt is not None
        topic = self.config.mqtt.command_topic.format(site=command.site, target=command.target)
        try:
            self.mqtt.publish(topic, command.to_json(), on_delivered=partial(self._delivered, command.id))
        except (ValueError, MqttNotQueuedError) as e:
            # A topic MQTT refuses (a target with a wildcard) or a full client queue: logged and counted,
            # never a fault of the agent (a brain's command would come back after the restart, for ever).
            self.ledger.forget(command.id)
            self.metrics.commands_ignored.labels(reason="unpublishable").inc()
            log.error("command not published", extra={"command": command.id, "topic": topic, "error": str(e)})
            return
        self._undelivered.add(command.id)  # its PUBACK is read on the loop, after this returns
        self.metrics.commands.labels(origin=origin).inc()

    def _delivered(self, command_id: str) -> None:
        """The broker has taken a command: its id goes into the ledger's next spool write."""
        self._undelivered.discard(command_id)
        self.ledger.delivered(command_id)
        self._progress.set()

    def _actuate_from_brain(self, command: Command) -> None:
        self._actuate(command, "brain")

    def _outside(self, command: Command) -> None:
        self.metrics.commands_ignored.labels(reason="outside").inc()

    async def _settle_commands(self) -> bool:
        """After a batch of the brain's commands, before their offsets are committed: wait until the broker
        has taken every command carried out so far (while it is away, until it is back) and their ids are
        stored (by this write or by one under way). False (the offsets stay uncommitted, Kafka delivers the
        batch again after a restart) when the agent stops first or the spool cannot be written."""
        waiting = set(self._undelivered)
        mark: int | None = None  # once all of `waiting` is delivered: the ledger entries to see stored
        while True:
            if self._stop is None or self._stop.is_set():
                return False
            self._progress.clear()
            if mark is None:
                waiting &= self._undelivered
                if not waiting:
                    mark = self.ledger.numbered
            if mark is not None:
                if not await self._store_ledger():
                    return False
                if self.ledger.stored_below(mark):
                    return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), TICK_S)

    async def _store_ledger(self) -> bool:
        """Store (synced) the ids of the delivered commands that no spool write has taken yet, so a command
        delivered again after a restart is still known. A failing disk only logs and returns False: the
        entries go with the next write."""
        if not self.ledger.unstored:
            return True
        try:
            await self._append([])
        except SpoolError as e:
            log.error("command ledger not stored; retried with the next write", extra={"error": str(e)})
            return False
        return True

    async def _append(self, records: list[SpoolRecord]) -> int:
        """Append `records` to the spool in a worker thread, with the ledger entries waiting to be stored,
        in one write (synced); returns how many records were stored. The entries go back to the ledger if
        the write fails or is cancelled."""
        ledger = self.ledger.take()
        try:
            stored = await asyncio.to_thread(self.spool.append, records, ledger)
        except BaseException:
            self.ledger.give_back(ledger)
            raise
        finally:
            self._progress.set()
        self.ledger.stored(ledger)
        return stored

    # ------------------------------------------------------------ ingest
    def _apply(self, event: SensorEvent, records: list[SpoolRecord], received: float) -> None:
        if self.recent.seen(event.id):
            self.metrics.duplicates.inc()
            return
        try:
            outputs = self.engine.process(event)
        except Exception as e:
            # A fault of the engine on one event must not stop the gateway (a restart would take the same
            # unacknowledged message again): the event is still forwarded, and dead-lettered with the fault.
            log.exception("reflex engine failed on an event", extra={"event": event.id})
            self._dead_letter(f"reflex engine failed: {e!r}", event.to_json(), records, "reflexes")
            outputs = []
        self.metrics.reflex_seconds.observe(time.perf_counter() - received)
        if outputs:
            self._publish_outputs(outputs, records)
        key = self._building_keys.get(event.site)
        if key is None:
            if len(self._building_keys) >= BUILDING_KEYS_MAX:
                self._building_keys.clear()
            key = self._building_keys[event.site] = _building_key(event.site)
        records.append(SpoolRecord(Priority.TELEMETRY, self._events_topic, key, event.to_json()))
        self._accepted += 1

    def _count_accepted(self) -> None:
        if self._accepted:
            self.metrics.events_in.inc(self._accepted)
            self._accepted = 0

    def _dead_letter(
        self, reason: str, raw: bytes, records: list[SpoolRecord], source: str, now: float | None = None
    ) -> None:
        """Publish a dead letter of `raw` input from `source` (its MQTT topic, or "reflexes" for an event the
        engine failed on) on the local dead-letter topic, and spool it for nerve.deadletter."""
        letter = self.decoder.dead_letter(source, raw, reason, time.time() if now is None else now)
        payload = letter.to_json()
        assert self.mqtt is not None
        self.mqtt.publish(self.config.mqtt.deadletter_topic, payload)
        # Telemetry, not urgent: bounded by spool.max_bytes like readings, so that a device sending
        # garbage through a long outage cannot fill the disk (or push out the readings); the local
        # dead-letter topic has it at once, and the counter counts every one.
        records.append(
            SpoolRecord(Priority.TELEMETRY, self.config.topic("deadletter"), source.encode(), payload)
        )
        self.metrics.dead_lettered.inc()

    def _ingest_batch(self, batch: list[Inbound]) -> list[SpoolRecord]:
        records: list[SpoolRecord] = []
        for msg in batch:
            received = msg.received or time.perf_counter()
            now = self._receipt_time()
            try:
                events = self.decoder.decode(msg.topic, msg.payload, now)
            except Rejected as r:
                self._dead_letter(r.reason, msg.payload, records, msg.topic, now)
                continue
            for event in events:
                self._apply(event, records, received)
        self._count_accepted()
        self.metrics.late.set(self.engine.late)
        return records

    def _receipt_time(self) -> float:
        """The wall-clock receipt time of one message, later than any before it. A reading that carries no
        time of its own (a bare number, a JSON event or SenML record without one) takes it as its event time,
        and its id hashes it: two equal readings of one sensor taken in the same batch (a door that opened,
        closed and opened again, queued while the agent restarted) must not get one id and be dropped as
        repeats."""
        now = time.time()
        if self._last_receipt - RECEIPT_STEP_BACK_S < now <= self._last_receipt:
            now = math.nextafter(self._last_receipt, math.inf)
        self._last_receipt = now  # a clock set back by more (NTP) is followed, not waited for
        return now

    async def _ingest(self, stop: asyncio.Event) -> None:
        """Reflexes run on each batch as soon as it is taken; the spool writer makes the batches durable
        behind them, so a reading that triggers a reflex never waits for the disk (fsync) of the ones
        before it. At most SPOOL_PIPELINE messages wait for the disk: beyond that ingest waits too. (A bound
        in messages, not batches: at a few thousand events/s batches are of one or two messages, and a
        bound of a few batches made every reading wait for the fsync of the ones before it.)"""
        mqtt = self.mqtt
        assert mqtt is not None
        pipe = _SpoolPipe()
        writer = asyncio.create_task(self._spool_writer(pipe), name="spool-writer")
        writer.add_done_callback(self._watch)
        self._pipe = pipe
        mqtt.on_messages = self._ingest_now
        try:
            while not stop.is_set() and not writer.done():
                await mqtt.wait_messages(TICK_S)
                if self.failed is not None:
                    break  # a fault (on the read callback too): nothing after it is taken, spooled or acked
                batch = mqtt.take(INGEST_BATCH)
                if batch:
                    records = self._ingest_batch(batch)
                    mqtt.flush()  # this batch's commands and alerts go out before the next batch is read
                    await pipe.put(records, batch, writer)
        finally:
            mqtt.on_messages = None
            self._stopping = True
            pipe.close()
            await writer

    def _ingest_now(self) -> None:
        """Ingest on the MQTT link's read callback, as long as the spool pipe has room: at a few thousand
        events/s a read brings one or two messages, and waking the ingest task for each cost more than the
        reflexes. When the pipe is full, the messages stay in the link's inbox for the ingest task, which
        waits for room; batches enter the pipe in the order they were taken either way."""
        pipe, mqtt = self._pipe, self.mqtt
        if pipe is None or mqtt is None or self._stopping or self.failed is not None:
            return
        try:
            while pipe.has_room():
                batch = mqtt.take(INGEST_BATCH)
                if not batch:
                    return
                records = self._ingest_batch(batch)
                mqtt.flush()
                pipe.put_nowait(records, batch)
        except Exception as e:  # as a failure of the ingest task
            self._fail("ingest", e)

    async def _spool_writer(self, pipe: _SpoolPipe) -> None:
        """Append what ingest produced to the spool — every batch waiting by then in one write and one fsync
        — and only then acknowledge the batches' messages to the broker."""
        mqtt = self.mqtt
        assert mqtt is not None
        loop = asyncio.get_running_loop()
        written_at = 0.0
        while True:
            # One write and fsync per SPOOL_GATHER_S at most: at a few thousand events/s batches are of one
            # or two messages, and an fsync each cost more CPU than the events themselves. A pipe that
            # fills meanwhile is written at once: ingest waits for room, so a small pipe caps no rate.
            gather = written_at + SPOOL_GATHER_S - loop.time()
            if gather > 0:
                await pipe.filled(gather)
            items = await pipe.take()
            if items is None:
                return
            written_at = loop.time()
            records = [r for batch_records, _ in items for r in batch_records]
            if records and not await self._append_durably(records):
                return  # stopping with the disk still failing: unacknowledged, the broker delivers them again
            for _, batch in items:
                mqtt.ack_all(batch)
            pipe.written()
            mqtt.flush()

    async def _append_durably(self, records: list[SpoolRecord]) -> bool:
        """Append to the spool (fsync) before any ack; a failing disk (full, I/O error) is retried with a
        growing pause, while ingest fills the pipe and then waits, and the broker keeps the rest. False
        when the agent is stopping and the disk still fails."""
        pause = SPOOL_RETRY_S
        while True:
            try:
                stored = await self._append(records)
            except SpoolWriteError as e:
                if self._stopping:
                    log.error("spool write failed at shutdown; unacknowledged input stays with the broker")
                    return False
                log.error("spool write failed; retrying", extra={"error": str(e), "retry_in_s": pause})
                await asyncio.sleep(pause)
                pause = min(pause * 2, 20 * SPOOL_RETRY_S)
                continue
            self.metrics.spooled.inc(stored)  # not what the spool refused (spool.when_full)
            self.uplink.wake()
            return True

    # ------------------------------------------------------------ clock, heartbeat, gauges
    async def _tick(self, stop: asyncio.Event) -> None:
        """Advance the watermark with the wall clock while input is idle; heartbeats; gauges; snapshots."""
        cfg = self.config
        next_beat = 0.0
        next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
        next_gauges = 0.0
        while not stop.is_set():
            now = time.time()
            records: list[SpoolRecord] = []
            if now >= next_beat:
                beat = SensorEvent(site=cfg.site, sensor=cfg.gateway, kind="heartbeat", value=1, ts=now)
                self._apply(beat, records, time.perf_counter())
                self._count_accepted()
                next_beat = now + cfg.heartbeat_s
            outputs = self.engine.advance(now - self.engine.lateness - cfg.lateness_margin_s)
            if outputs:
                self._publish_outputs(outputs, records)
            # A heartbeat, or a timer's alert already published on MQTT and marked fired in the engine:
            # a failing disk is retried like ingest's writes, not a reason to stop (and lose the alert).
            if records and not await self._append_durably(records):
                return
            stats = self.spool.stats()
            self.metrics.spool_bytes.set(stats.bytes)
            self.metrics.spool_records.labels(priority="urgent").set(stats.urgent)
            self.metrics.spool_records.labels(priority="telemetry").set(stats.telemetry)
            self.metrics.spool_dropped.set(stats.dropped_telemetry)
            if time.monotonic() >= next_gauges:
                engine = self.engine.stats()
                self.metrics.engine_groups.set(engine["groups"])
                self.metrics.engine_readings.set(engine["readings"])
                next_gauges = time.monotonic() + ENGINE_GAUGES_EVERY_S
            if time.monotonic() >= next_snapshot and (
                self._snapshotting is None or self._snapshotting.done()
            ):
                # Its own task: under load a snapshot takes many slices, and the heartbeat and the wall-clock
                # watermark (a silent sensor's alert) must not wait for it.
                self._snapshotting = asyncio.create_task(self._snapshot(), name="snapshot")
                self._snapshotting.add_done_callback(self._watch)
                next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)

    async def _snapshot(self) -> None:
        try:
            await save_snapshot(self.engine, self.snapshot_path)
        except OSError as e:  # a full or failing disk: the agent goes on, the last snapshot stays
            log.error("engine snapshot failed", extra={"error": repr(e)})

    # ------------------------------------------------------------ hot reload
    async def _follow_rules(self, stop: asyncio.Event) -> None:
        """Read the compacted rules topic (no consumer group) and switch to each newer version."""
        version = 0
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                self.config.topic("rules"),
                bootstrap_servers=self.config.kafka.bootstrap,
                auto_offset_reset="earliest",
                group_id=None,
                metadata_max_age_ms=5000,
                **aiokafka_options(self.config.kafka),
            )
            try:
                await consumer.start()
                while not stop.is_set():
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        for msg in records:
                            version = self._consider_rules(msg.key, msg.value, version)
            except KafkaError as e:
                log.warning("rules topic unreachable; retrying", extra={"error": repr(e)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5.0)
            finally:
                await consumer.stop()

    def _consider_rules(self, key: bytes | None, value: bytes | None, version: int) -> int:
        if key is None or value is None or key.decode(errors="replace") != self.config.rule_set:
            return version
        try:
            deployed = decode_deployment(value)
            if deployed.version <= version:
                return version
            rules = load_rules_sources(list(deployed.files))
        except (ValueError, RuleSetError) as e:
            log.error("rule set on the rules topic refused; keeping the running one", extra={"error": str(e)})
            return version
        # As at start: a department the departments file does not know has no topic to page.
        if problems := self.routing.check(rules.tier("edge").departments()):
            log.error(
                "rule set on the rules topic refused; keeping the running one",
                extra={"version": deployed.version, "error": "; ".join(problems)},
            )
            return version
        dropped = self.engine.reload(rules)
        log.info(
            "rules version received",
            extra={
                "version": deployed.version,
                "sha256": deployed.sha256[:12],
                "reflexes": len(self.engine.rules.reflexes),
                "state_dropped": dropped,
            },
        )
        return deployed.version

    # ------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run until `stop` is set, or until one of the agent's tasks fails: then `failed` names it, and
        the agent shuts down as on SIGTERM (the spool and the MQTT session keep what is not done)."""
        self._stop = stop
        cfg = self.config
        loop = asyncio.get_running_loop()
        filters = [TopicTemplate.parse(s.topic).filter for s in cfg.mqtt.subscriptions]
        self.mqtt = MqttLink(
            host=cfg.mqtt.host,
            port=cfg.mqtt.port,
            client_id=cfg.mqtt.client_id or cfg.gateway,
            filters=filters,
            loop=loop,
            keepalive=cfg.mqtt.keepalive,
            auth=cfg.mqtt,
        )
        if cfg.metrics_port:
            self.metrics_port = self.metrics.serve(cfg.metrics_port, cfg.metrics_host)
        # What is loaded by now (code, rules, restored state) lives as long as the agent: out of the
        # collector's sight, each collection is shorter, and so is the pause a reading may wait behind.
        settle()
        self.mqtt.start()
        downlink = Downlink(
            bootstrap=cfg.kafka.bootstrap,
            topic=cfg.topic("commands"),
            group=f"nerve-edge-{cfg.gateway}",
            scope=cfg.site,
            actuate=self._actuate_from_brain,
            settle=self._settle_commands,
            outside=self._outside,
            security=aiokafka_options(cfg.kafka),
        )
        tasks = [
            asyncio.create_task(self._ingest(stop), name="ingest"),
            asyncio.create_task(self.uplink.run(stop), name="uplink"),
            asyncio.create_task(downlink.run(stop), name="downlink"),
            asyncio.create_task(self._tick(stop), name="tick"),
            asyncio.create_task(self._follow_rules(stop), name="rules"),
        ]
        for task in tasks:
            task.add_done_callback(self._watch)
        try:
            # Until the broker answers: a SIGTERM or a failed task meanwhile (the broker unreachable for
            # good) still stops the agent, with its snapshot, ledger and spool closed as at any stop.
            if await _first(self.mqtt.connected, stop) is self.mqtt.connected:
                self.metrics.mqtt_connected.set(1)
                log.info(
                    "edge agent ready",
                    extra={
                        "gateway": cfg.gateway,
                        "site": cfg.site,
                        "reflexes": len(self.engine.rules.reflexes),
                    },
                )
                if ready is not None:
                    ready.set()
                await stop.wait()
        finally:
            await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """Stop taking input, let the uplink flush what Kafka will take, keep the rest spooled."""
        assert self.mqtt is not None
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_TASKS_S)
        if pending:
            log.warning(
                "tasks did not stop in time; cancelled",
                extra={"tasks": sorted(t.get_name() for t in pending), "timeout_s": SHUTDOWN_TASKS_S},
            )
        for task in pending:
            task.cancel()
        if pending:  # let their `finally` blocks run (ingest hands its last batch to the spool) before close
            await asyncio.wait(pending, timeout=5)
        with contextlib.suppress(TimeoutError):  # so that the final ledger write has their ids
            await asyncio.wait_for(self._await_deliveries(), DELIVERIES_AT_STOP_S)
        self.mqtt.stop()
        if self._snapshotting is not None and not self._snapshotting.done():
            self._snapshotting.cancel()  # it writes the same file as the final snapshot below
            await asyncio.wait([self._snapshotting])
        self._save_engine()
        await self._store_ledger()
        left = self.spool.stats()
        self.spool.close()
        self.metrics.close()
        log.info(
            "edge agent stopped", extra={"spooled_urgent": left.urgent, "spooled_telemetry": left.telemetry}
        )

    async def _await_deliveries(self) -> None:
        """Wait until the broker has taken the commands published so far (bounded by the caller)."""
        assert self.mqtt is not None
        self.mqtt.flush()
        while self._undelivered:
            self._progress.clear()
            await self._progress.wait()

    def _watch(self, task: asyncio.Task[None]) -> None:
        """A task's done-callback: a task that fails stops the whole agent, at once and with the fault
        logged. Running on without its uplink, spool writer or clock, an agent would look alive to its
        supervisor while it forwards nothing; stopped, it exits with status 1 and is restarted
        (`Restart=on-failure`, `restart: unless-stopped`), and nothing is lost: what was not spooled is
        still unacked in the MQTT session, what was spooled is still in the spool."""
        if not task.cancelled() and (fault := task.exception()) is not None:
            self._fail(task.get_name(), fault)

    def _fail(self, name: str, fault: BaseException) -> None:
        """Part `name` of the agent failed: log it and stop the agent (`failed` keeps the first)."""
        log.error("%s failed; the agent stops", name, exc_info=fault, extra={"task": name})
        if self.failed is None:
            self.failed = name
        if self._stop is not None:
            self._stop.set()


class _SpoolPipe:
    """Batches handed from ingest to the spool writer: `put` waits while SPOOL_PIPELINE messages or more
    are not yet written; `take` returns everything waiting (None once closed and empty)."""

    def __init__(self) -> None:
        self._items: list[tuple[list[SpoolRecord], list[Inbound]]] = []
        self._messages = 0  # waiting or being written
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._full = asyncio.Event()
        self._closed = False

    def has_room(self) -> bool:
        return self._messages < SPOOL_PIPELINE and not self._closed

    def put_nowait(self, records: list[SpoolRecord], batch: list[Inbound]) -> None:
        """Hand a batch on (the pipe may go past full by this batch: `has_room` first)."""
        self._items.append((records, batch))
        self._messages += len(batch)
        self._ready.set()
        if self._messages >= SPOOL_PIPELINE:
            self._room.clear()
            self._full.set()

    async def put(self, records: list[SpoolRecord], batch: list[Inbound], writer: asyncio.Task[None]) -> None:
        """Hand a batch on; wait while the pipe is full, or until `writer` has ended (a fault in it)."""
        self.put_nowait(records, batch)
        if self._messages >= SPOOL_PIPELINE:
            room = asyncio.ensure_future(self._room.wait())
            await asyncio.wait([room, writer], return_when=asyncio.FIRST_COMPLETED)
            room.cancel()

    async def filled(self, within_s: float) -> None:
        """Wait `within_s` seconds at most, less when the pipe is full or closed (or already is)."""
        if self._messages >= SPOOL_PIPELINE or self._closed:
            return
        self._full.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), within_s)

    async def take(self) -> list[tuple[list[SpoolRecord], list[Inbound]]] | None:
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        items, self._items = self._items, []
        return items

    def written(self) -> None:
        """What the last `take` returned is on the spool."""
        self._messages = sum(len(batch) for _, batch in self._items)
        if self._messages < SPOOL_PIPELINE:
            self._room.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._full.set()


def write_snapshot(engine: Engine, path: Path) -> None:
    """Save the engine's state to `path`, one JSON line `[key, state]` per group: never all of it as one
    bytes object (Engine.snapshot()), which with a few hundred thousand readings in windows is ~10 MB
    more at every snapshot, on top of the state itself."""
    engine.checkpoint()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        for key, state in engine.store.items():
            f.write(_snapshot_line(key, state))
    os.replace(tmp, path)  # atomic: a crash leaves the old or the new snapshot whole


async def save_snapshot(engine: Engine, path: Path, slice_s: float = SNAPSHOT_SLICE_S) -> None:
    """`write_snapshot` while the agent runs: on the event loop, which alone changes the engine, so every
    group is written whole as it stands, in slices of `slice_s` between which the loop runs the reflexes.
    (From a worker thread a group could change while it was written, since the GIL passes to the loop in
    the middle of one, and a snapshot of a few hundred thousand readings held the GIL for ~0.2 s anyway.)"""
    engine.checkpoint()
    tmp = path.with_suffix(".tmp")
    clock = time.perf_counter
    store = engine.store
    with tmp.open("wb") as f:
        until = clock() + slice_s
        for key in [key for key, _ in store.items()]:
            # as it stands now, between slices; None: removed meanwhile (a rules reload)
            state = store.get(key)
            if state is not None:
                f.write(_snapshot_line(key, state))
            if clock() >= until:
                await asyncio.sleep(0)
                until = clock() + slice_s
    os.replace(tmp, path)


def _snapshot_line(key: str, state: State) -> bytes:
    return orjson.dumps([key, state], default=jsonable, option=orjson.OPT_APPEND_NEWLINE)


def read_snapshot(path: Path) -> dict[str, State]:
    """The engine state saved by `write_snapshot`, or by older agents (one JSON object, Engine.snapshot())."""
    with path.open("rb") as f:
        if f.read(1) == b"{":
            f.seek(0)
            data: dict[str, State] = orjson.loads(f.read())
            return data
        f.seek(0)
        state: dict[str, State] = {}
        for line in f:
            key, group = orjson.loads(line)
            if key[0] == "~":
                compact(group)  # window by window, not all of them as lists first (the engine would later)
            state[key] = group
        return state


def _building_key(site: str) -> bytes:
    """Kafka key of an event: its site path down to the building (SPEC §5)."""
    parts = site.split("/", 3)
    return "/".join(parts[:3]).encode()


async def _first(*events: asyncio.Event) -> asyncio.Event:
    """Wait until one of `events` is set and still set when looked at (one set and cleared again before
    this task ran, a connection lost right after it was made, is waited past); the first such one."""
    while True:
        waits = [asyncio.create_task(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        for event in events:
            if event.is_set():
                return event
