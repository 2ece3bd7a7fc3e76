"""Drive real `nerve brain run` workers against the real Kafka: config, start/stop/kill, events in, alerts out.

Each `City` works under its own topic prefix (`b<uuid>.`) and Faust app id (consumer group), so nothing
another test wrote is read. Events are recorded as they are produced, so that the same stream can be run
through `nerve replay --tier brain` to compute the alerts a broker-free engine raises from them.
"""

# aiokafka ships no py.typed marker; its objects are Any here.

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "city"
PARTITIONS = 4
#: seconds a worker may take to log Ready (join the group, recover its tables)
READY_TIMEOUT = 60.0
#: seconds a worker has to exit after SIGTERM
STOP_TIMEOUT = 30.0
#: The broker's minimum session (6 s) instead of the default 10 s: a worker killed with SIGKILL leaves
#: the group after 6 s, so failover fits in a test. The rebalance timeout is Faust's, from its environment.
FAST_FAILOVER_ENV = {
    "NERVE_BRAIN_SESSION_TIMEOUT_S": "6",
    "BROKER_REBALANCE_TIMEOUT": "20",
}
READY_LINE = "[^Worker]: Ready"
#: Faust 0.15.3 can exit while it starts, declaring its changelog topic before its Kafka client has
#: metadata ("node id -1" not ready): seen on a loaded machine. The worker is started once more then.
START_RACE = "NodeNotReadyError('Attempt to send a request to node which is not ready (node id -1).')"

Event = dict[str, Any]
AlertRecord = dict[str, Any]


async def wait_for(
    condition: Callable[[], bool],
    within_s: float,
    what: str,
    every: float = 0.05,
    detail: Callable[[], object] | None = None,
) -> None:
    """Poll `condition` until true; fail naming `what` (and showing `detail()`) after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            shown = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {within_s:.0f}s waiting for {what}{shown}")
        await asyncio.sleep(every)


def building_of(site: str) -> str:
    """The key of `<prefix>events`: the site path down to the building (SPEC §5)."""
    return "/".join(site.split("/")[:3])


class BrainWorker:
    """One `nerve brain run` subprocess, logging to a file; it can be started again on the same config."""

    def __init__(self, name: str, config: Path, log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.config = config
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start_races = 0
        self._log_from = 0  # where this start's lines begin in the log file

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        self._log_from = len(self.log())
        self.starts += 1
        command = [sys.executable, "-m", "nerve_cli", "brain", "run", "--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def ready(self, within_s: float = READY_TIMEOUT) -> None:
        """Returns once this start of the worker logged Ready; fails if it exits or takes too long."""
        deadline = time.monotonic() + within_s
        retried = False
        while READY_LINE not in self.log()[self._log_from :]:
            if not self.running:
                code = self.process.returncode if self.process else None
                if START_RACE in self.log()[self._log_from :] and not retried:
                    retried = True
                    self.start_races += 1
                    self.start()
                    continue
                raise AssertionError(f"brain worker {self.name} exited with {code}:\n{self.log()[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"brain worker {self.name} not Ready within {within_s:.0f}s:\n{self.log()[-6000:]}"
                )
            await asyncio.sleep(0.1)

    def assigned(self, topic: str) -> set[int]:
        """The partitions of `topic` in this worker's latest assignment (from Faust's log table)."""
        log = self.log()
        table = log[log.rfind("Setting newly assigned partitions") :]
        found = re.search(re.escape(topic) + r" *\| *\{([0-9, -]*)\}", table)
        partitions: set[int] = set()
        for part in found.group(1).split(",") if found else ():
            first, _, last = part.strip().partition("-")
            if first:
                partitions.update(range(int(first), int(last or first) + 1))
        return partitions

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    async def stop(self) -> int:
        """SIGTERM, then wait up to STOP_TIMEOUT seconds; returns the exit code (kills it if it hangs)."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise AssertionError(f"brain worker {self.name} ignored SIGTERM for {STOP_TIMEOUT}s")
            await asyncio.sleep(0.1)
        return process.returncode


@dataclass
class City:
    """One isolated brain deployment under test: its prefix, app id, workers, event log and alert watch."""

    tmp: Path
    kafka: str
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    workers: list[BrainWorker] = field(default_factory=list)
    sent: list[Event] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _producer: Any = None
    _rekeyed: TopicWatch | None = None

    @property
    def prefix(self) -> str:
        return f"b{self.uid}."

    @property
    def app_id(self) -> str:
        return f"nerve-test-brain-{self.uid}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    # ------------------------------------------------------------ files
    def write_rules(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def write_config(self, worker: str, rules: Sequence[Path], **extra: Any) -> Path:
        """A worker config: 4 partitions, lateness margin 0.3 s, datadir under tmp named after `worker`."""
        settings: dict[str, Any] = {
            "app_id": self.app_id,
            "worker": worker,
            "rules": [str(r) for r in rules],
            "kafka": {"bootstrap": self.kafka, "prefix": self.prefix},
            "partitions": PARTITIONS,
            "datadir": str(self.tmp / "data" / worker),
            "lateness_margin_s": 0.3,
            **extra,
        }
        path = self.tmp / f"{worker}.yaml"
        path.write_bytes(orjson.dumps(settings))  # JSON is YAML
        return path

    def worker(self, name: str, rules: Sequence[Path], **extra: Any) -> BrainWorker:
        """A worker named `name` (not started); its config, datadir and log are under tmp."""
        env = {**os.environ, **FAST_FAILOVER_ENV}
        w = BrainWorker(name, self.write_config(name, rules, **extra), self.tmp / f"{name}.log", env)
        self.workers.append(w)
        return w

    async def start(self, name: str, rules: Sequence[Path], **extra: Any) -> BrainWorker:
        w = self.worker(name, rules, **extra)
        w.start()
        await w.ready()
        return w

    # ------------------------------------------------------------ events in
    def event(
        self, site: str, sensor: str, kind: str, value: Any, ts: float | None = None, **fields: Any
    ) -> Event:
        """A SensorEvent dict with a unique id and ts = now unless given."""
        return {
            "id": f"{self.uid}-{next(self._ids)}",
            "site": site,
            "sensor": sensor,
            "kind": kind,
            "value": value,
            "ts": time.time() if ts is None else ts,
            **fields,
        }

    async def send(self, *events: Event, record: bool = True) -> None:
        """Produce `events` to `<prefix>events`, keyed by building, and wait for the acks (acks=all)."""
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka, acks="all", enable_idempotence=True
            )
            await self._producer.start()
        futures = [
            await self._producer.send(
                self.topic("events"), orjson.dumps(e), key=building_of(e["site"]).encode()
            )
            for e in events
        ]
        await asyncio.gather(*futures)
        if record:
            self.sent.extend(events)

    async def send_in_order(self, *events: Event, level: int = 1) -> None:
        """Produce `events` one by one, each once the previous one is on the brain's re-keyed topic.

        Events of different buildings travel in different partitions of `<prefix>events` and the brain
        re-keys them by community (`level` 1) into one partition in the order it reads them, which need
        not be the order they were produced in; this keeps that order, so that a replay sees the same.
        """
        if self._rekeyed is None:
            self._rekeyed = TopicWatch(self.kafka, re.escape(f"{self.app_id}-events-by-level{level}") + "$")
            await self._rekeyed.start()
        watch = self._rekeyed
        for e in events:
            await self.send(e)
            await wait_for(
                lambda e=e: any(v.get("id") == e["id"] for _, _, v in watch.records),  # type: ignore[misc]
                15,
                f"event {e['id']} on the re-keyed topic",
            )

    async def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka, acks="all", enable_idempotence=True
            )
            await self._producer.start()
        await self._producer.send_and_wait(topic, value, key=key)

    # ------------------------------------------------------------ the CLI
    def nerve(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nerve_cli", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def replay(self, rules: Sequence[Path], events: Sequence[Event], until: float) -> list[AlertRecord]:
        """The alerts `nerve replay --tier brain` raises from `events` (in this order), watermark to `until`."""
        path = self.tmp / f"replay-{uuid.uuid4().hex[:6]}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        done = self.nerve(
            "replay",
            "--tier",
            "brain",
            "--rules",
            *map(str, rules),
            "--events",
            str(path),
            "--until",
            repr(until),
        )
        assert done.returncode == 0, done.stderr
        assert " 0 rejected, 0 late" in done.stderr, done.stderr
        return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def deploy(self, *paths: Path, name: str = "city") -> subprocess.CompletedProcess[str]:
        return self.nerve(
            "rules",
            "deploy",
            *map(str, paths),
            "--name",
            name,
            "--prefix",
            self.prefix,
            "--bootstrap",
            self.kafka,
        )

    # ------------------------------------------------------------ teardown
    async def close(self) -> None:
        """Stop every worker (kill the ones that hang), then delete this city's topics (unless the
        environment sets NERVE_TEST_KEEP_TOPICS)."""
        for w in self.workers:
            if w.running:
                with contextlib.suppress(AssertionError):  # it was killed: the test has failed already
                    await w.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._rekeyed is not None:
            await self._rekeyed.stop()
        if os.environ.get("NERVE_TEST_KEEP_TOPICS"):
            return  # for a post-mortem of a failed run
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith((self.prefix, self.app_id))]
            if mine:
                with contextlib.suppress(Exception):  # cleanup is best effort; the names are unique anyway
                    await admin.delete_topics(mine, timeout_ms=15_000)
        finally:
            await admin.close()


class TopicWatch:
    """Follows the topics matching `pattern` from their start (new ones as they appear), in the background."""

    def __init__(self, kafka: str, pattern: str) -> None:
        self.kafka = kafka
        self.pattern = pattern
        self.records: list[tuple[str, float, Any]] = []  # (topic, wall time received, decoded JSON value)
        self._read: set[tuple[str, int, int]] = set()
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka,
            group_id=None,
            auto_offset_reset="earliest",
            metadata_max_age_ms=500,
            enable_auto_commit=False,
        )
        self._consumer.subscribe(pattern=self.pattern)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for batch in batches.values():
                for m in batch:
                    # A pattern subscription without a group starts over when a new topic appears: keep
                    # each record (topic, partition, offset) once.
                    if (m.topic, m.partition, m.offset) not in self._read:
                        self._read.add((m.topic, m.partition, m.offset))
                        # compact JSON, one document a line (the brain bundles re-keyed events)
                        for line in m.value.split(b"\n"):
                            self.records.append((m.topic, now, orjson.loads(line)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await asyncio.sleep(0)
            await self._consumer.stop()


class AlertWatch(TopicWatch):
    """Follows `<prefix>alerts` and every `<prefix>alerts.<department>` (found as they appear) from the start."""

    def __init__(self, kafka: str, prefix: str) -> None:
        super().__init__(kafka, re.escape(prefix) + r"alerts(\..+)?$")
        self.prefix = prefix

    async def __aenter__(self) -> AlertWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def on(self, department: str | None = None) -> list[AlertRecord]:
        """The alerts on `<prefix>alerts` (None) or `<prefix>alerts.<department>`, in arrival order."""
        topic = self.prefix + ("alerts" if department is None else f"alerts.{department}")
        return [a for t, _, a in self.records if t == topic]

    def received_at(self, alert_id: str, status: str) -> float:
        """Wall time the first (id, status) record arrived on `<prefix>alerts`."""
        topic = self.prefix + "alerts"
        return min(
            at for t, at, a in self.records if t == topic and (a["id"], a["status"]) == (alert_id, status)
        )

    def pairs(self, department: str | None = None) -> Counter[tuple[str, str]]:
        """How often each (alert id, status) pair is on the topic."""
        return Counter((a["id"], a["status"]) for a in self.on(department))

    def find(self, department: str | None = None, **match: Any) -> list[AlertRecord]:
        return [a for a in self.on(department) if all(a.get(k) == v for k, v in match.items())]

    def has(self, department: str | None = None, **match: Any) -> Callable[[], bool]:
        return lambda: bool(self.find(department, **match))


async def partitions_of(kafka: str, topic: str) -> list[TopicPartition]:
    """The partitions of `topic` (none if it does not exist; asking does not create it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [
        TopicPartition(topic, p["partition"])
        for p in sorted(described["partitions"], key=lambda p: p["partition"])
    ]


async def table_state(kafka: str, app_id: str) -> dict[str, Any]:
    """The brain's `engine-state` table as its changelog holds it now: key → latest value (None: deleted).

    Keys are `<partition>:<reflex id>|<group>` (brain_bridge.store.TableStore).
    """
    tps = await partitions_of(kafka, f"{app_id}-engine-state-changelog")
    state: dict[str, Any] = {}
    if not tps:
        return state
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            for batch in (await consumer.getmany(*pending, timeout_ms=500)).values():
                for m in batch:
                    state[orjson.loads(m.key)] = None if m.value is None else orjson.loads(m.value)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return state
    finally:
        await asyncio.sleep(0)
        await consumer.stop()


def group_state(state: dict[str, Any], reflex: str, group: str) -> Any:
    """The state of one reflex and group in `table_state` output (whatever partition holds it)."""
    found = [v for k, v in state.items() if k.split(":", 1)[1] == f"{reflex}|{group}"]
    return found[0] if found else None


async def topic_size(kafka: str, topic: str) -> int:
    """How many records `topic` holds (sum of end − beginning offsets; 0 if it does not exist)."""
    tps = await partitions_of(kafka, topic)
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await asyncio.sleep(0)
        await consumer.stop()


async def lagging_commits(kafka: str, group: str, topics: Sequence[str]) -> dict[str, tuple[int, int]]:
    """`topic:partition` → (committed offset, end offset) of `group`, for the partitions it has not
    committed to the end. Run after the group's workers stopped cleanly: a record the group read but
    never acknowledged (lost inside the consumer) leaves its partition's commit stuck before it."""
    tps = [tp for topic in topics for tp in await partitions_of(kafka, topic)]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await asyncio.sleep(0)
        await consumer.stop()
        await admin.close()
    return {
        f"{tp.topic}:{tp.partition}": (committed[tp].offset if tp in committed else -1, ends[tp])
        for tp in tps
        if (committed[tp].offset if tp in committed else -1) < ends[tp]
    }
