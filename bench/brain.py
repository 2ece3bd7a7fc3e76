"""Benchmark of a real brain worker (`nerve brain run`, Faust) on the real Kafka.

    python -m bench.brain [--quick | --short] [--out DIR] [--profile | --no-profile]

Every worker is a subprocess with its own Faust app id (consumer group), topic prefix and datadir, all
named after a random id of this run, so nothing another test or engineer runs is read or written; the
run's topics are deleted at the end. Rules: the example city (`examples/city`, its brain tier) plus one
tiny latency probe (`bench-trigger`: any `bench_trigger` reading alerts at once, per sensor, cooldown
1 ms). Background traffic comes from the 10,000 sensors of `bench.city` (200 buildings in 20 communities
of 4 districts), keyed by building path as SPEC §5 says. Phases, in one run:

1. raw transport baseline: aiokafka producer (acks=all, linger 0 ms) → a fresh 4-partition topic →
   aiokafka consumer in this process, paced at each rate, the same payloads and keys as phase 2;
   latency = the send call → the consumer receiving it (`time.perf_counter`, one clock);
2. end-to-end brain latency at the same rates: paced events with `ts` = now, 1 in TRIGGER_EVERY a
   `bench_trigger` from one of 200 trigger sensors (one per building, rotating); latency = producing the
   trigger → receiving its alert on `<prefix>alerts.bench` (matched by the alert's evidence id), and the
   same path cut into hops by wall-clock stamps (trigger sent → its re-keyed copy's CreateTime → the
   alert's `emitted_at` → received);
3. throughput per worker core: N events pre-produced into a fresh `<prefix>events`, then a fresh worker
   (new app id) is started; time from its Ready line until its consumer group's committed offsets reach
   the end offsets of every topic it reads (events, then its re-keyed copy), and the worker's CPU time
   over the same interval (/proc/<pid>/stat utime + stime);
   then the Faust floor: a no-op Faust agent (`bench.faust_floor`) drains the same backlog, records per
   CPU-second — what any worker pays when every event is a Faust record, whatever it does with it;
4. when the throughput target is missed (or with --profile): the same drain once more by another fresh
   worker under cProfile, stopped with SIGTERM, top functions by tottime in the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bench.city import T0, build_city, make_events
from bench.mqtt_baseline import pacing, percentiles
from bench.report import Row, git_state, machine_info, wait_quiet, write_report

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "city"
VAR = Path(os.environ.get("NERVE_VAR", REPO / "var"))
KAFKA_PIDFILE = VAR / "brokers" / "kafka" / "kafka.pid"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

READY_LINE = "[^Worker]: Ready"
PARTITIONS = 4
LATENESS_MARGIN_S = 0.3
TARGET_P99_MS, TARGET_RATE, TARGET_PER_CORE = 50.0, 5000.0, 15_000.0
TRIGGER_EVERY = 40  # 2.5 % of the paced events are triggers
TRIGGER_SENSORS = 200  # one per building of bench.city
DEPARTMENT = "bench"
SIM_RATE = 20_000.0  # pre-produced events: event time advances by 1 s per this many events
FUTURE_S = 3600.0  # ... starting this far ahead of the wall clock (see `throughput`)
LINGER_MS = 0  # the bench producer's linger, as Faust's producer default (producer_linger 0)
GRACE_S = 10.0  # how long to wait for the last messages of a paced run
READY_TIMEOUT_S = 120.0
PROFILE_EVENTS = 50_000  # the profiled drain's backlog (at most the throughput phase's)
STOP_TIMEOUT_S = 60.0

#: `python -c` boot of a worker under cProfile timed by the main thread's CPU clock (time.thread_time), not
#: the wall clock: on a shared 2-core machine a wall-clock profile charges descheduled and idle time to
#: whichever coroutine happened to be running. Args: the .prof path, then `nerve` arguments.
PROFILE_BOOT = """\
import cProfile, runpy, sys, time
out = sys.argv[1]
sys.argv = ["nerve_cli", *sys.argv[2:]]
profiler = cProfile.Profile(time.thread_time)
profiler.enable()
try:
    runpy.run_module("nerve_cli", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""

TRIGGER_RULES = """\
version: 1
reflexes:
  - id: bench-trigger
    tier: brain
    description: The benchmark's latency probe - every bench_trigger reading alerts at once (per sensor)
    when: {kind: bench_trigger}
    cooldown: 1ms
    then:
      - alert: {to: [bench], severity: info, message: "bench trigger {sensor} at {site}"}
"""


@dataclass(frozen=True)
class Sizes:
    rates: tuple[float, ...]
    baseline_s: float  # seconds of raw aiokafka traffic per rate
    latency_s: float  # seconds of paced events through the brain per rate
    throughput: int  # events pre-produced for the throughput phase


FULL = Sizes((1000.0, 5000.0), 10.0, 30.0, 200_000)
QUICK = Sizes((1000.0,), 3.0, 5.0, 5_000)
SHORT = Sizes((1000.0,), 3.0, 15.0, 50_000)  # ~90 s: enough to compare two commits back to back


# ---------------------------------------------------------------- /proc, load
def cpu_s(pid: int | None) -> float | None:
    """utime + stime of process `pid` (all its threads) in seconds, from /proc/<pid>/stat."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu(pid: int | None) -> dict[int, float]:
    """CPU seconds of each thread of `pid`, by thread id (the main thread's id is the pid)."""
    out: dict[int, float] = {}
    if pid is None:
        return out
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def thread_split(pid: int | None, before: dict[int, float], after: dict[int, float]) -> dict[str, Any]:
    """CPU seconds of the main thread (asyncio: agents, engine, producer) and of the busiest others."""
    spent = sorted(((after[t] - before.get(t, 0.0), t) for t in after), reverse=True)
    return {
        "main_thread_s": round(next((s for s, t in spent if t == pid), 0.0), 2),
        "other_threads_s": [round(s, 2) for s, t in spent if t != pid and s > 0][:4],
    }


def kafka_pid() -> int | None:
    try:
        return int(KAFKA_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None


class CpuWatch:
    """CPU seconds of the worker, this process and Kafka between `start()` and `cores()`."""

    def __init__(self, worker_pid: int | None) -> None:
        self.pids = {"worker": worker_pid, "bench": os.getpid(), "kafka": kafka_pid()}
        self.t0 = time.monotonic()
        self.c0 = {name: cpu_s(pid) for name, pid in self.pids.items()}

    def cores(self) -> dict[str, float | None]:
        wall = time.monotonic() - self.t0
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            before, now = self.c0[name], cpu_s(pid)
            out[name] = round((now - before) / wall, 2) if before is not None and now is not None else None
        return out


# ---------------------------------------------------------------- payloads
@dataclass(frozen=True, slots=True)
class Template:
    """One background event without id and ts: its key, the rest of its JSON, its synthetic time."""

    key: bytes  # the site path down to the building (SPEC §5)
    tail: bytes  # the JSON object's members after id and ts, with the closing brace
    offset: float  # seconds from the start of the synthetic stream


def payload(event_id: str, ts: float, tail: bytes) -> bytes:
    """A SensorEvent's JSON: id and ts first, then the template's members (repr of a float is JSON)."""
    return b'{"id":"' + event_id.encode() + b'","ts":' + repr(ts).encode() + b"," + tail


def building_of(site: str) -> str:
    return "/".join(site.split("/")[:3])


def build_templates(n: int) -> tuple[list[Template], list[str]]:
    """`n` background events from bench.city at SIM_RATE events per simulated second, and the buildings."""
    city = build_city(n / SIM_RATE)
    out: list[Template] = []
    for ev in make_events(city, n, rate=SIM_RATE):
        rest = {k: v for k, v in ev.__dict__.items() if k not in ("id", "ts") and v is not None and v != {}}
        out.append(Template(building_of(ev.site).encode(), orjson.dumps(rest)[1:], ev.ts - T0))
    return out, city.buildings


@dataclass(frozen=True, slots=True)
class Trigger:
    sensor: str
    site: str
    key: bytes

    def payload(self, event_id: str, ts: float) -> bytes:
        return orjson.dumps(
            {
                "id": event_id,
                "ts": ts,
                "site": self.site,
                "sensor": self.sensor,
                "kind": "bench_trigger",
                "value": 1,
            }
        )


def triggers(buildings: Sequence[str]) -> list[Trigger]:
    """TRIGGER_SENSORS trigger sensors, one in a room of each building (spread over all partitions)."""
    out = []
    for k in range(TRIGGER_SENSORS):
        building = buildings[k % len(buildings)]
        out.append(Trigger(f"bt-{k:03d}", f"{building}/f1/r10{k % 3 + 1}", building.encode()))
    return out


# ---------------------------------------------------------------- Kafka
async def create_topics(kafka: str, names: Sequence[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def delete_topics(kafka: str, starts: tuple[str, ...], retry_s: float = 90.0) -> list[str]:
    """Delete every topic whose name starts with one of `starts` (best effort, retried for `retry_s` while
    Kafka is unreachable: the shared broker may be restarting); returns them."""
    deadline = time.monotonic() + retry_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        try:
            await admin.start()
            mine = [t for t in await admin.list_topics() if t.startswith(starts)]
            if mine:
                await admin.delete_topics(mine, timeout_ms=30_000)
            return mine
        except KafkaError as e:
            if time.monotonic() > deadline:
                print(f"topics of this run not deleted ({e!r}): {starts}", file=sys.stderr)
                return []
            await asyncio.sleep(3.0)
        finally:
            await admin.close()


async def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True


class Receiver:
    """A consumer of every partition of `topic` from its current end, in this process's loop; it hands
    each record to `on_record` with the perf_counter time its batch arrived."""

    def __init__(self, kafka: str, topic: str, on_record: Callable[[float, Any], None]) -> None:
        self.kafka, self.topic, self.on_record = kafka, topic, on_record
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        c = AIOKafkaConsumer(bootstrap_servers=self.kafka, group_id=None, enable_auto_commit=False)
        await c.start()
        self._consumer = c
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]  # every bench topic has these
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:  # resolve the lazy seek now, before anything is produced
            await c.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        clock, c, on_record = time.perf_counter, self._consumer, self.on_record
        while True:
            batches = await c.getmany(timeout_ms=200)
            t = clock()
            for batch in batches.values():
                for m in batch:
                    on_record(t, m)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def paced(count: int, rate: float, send: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    """Await `send(i)` for i in 0..count-1, each at (or just after) its due time start + i/rate; the loop
    sleeps between due times (uvloop timers have 1 ms resolution: at 5k/s a wake-up sends ~5).
    Returns how far the sends lagged their due times and the rate achieved."""
    lags: list[float] = []
    clock = time.perf_counter
    start = clock() + 0.01
    i = 0
    while i < count:
        now = clock()
        due = start + i / rate
        if now < due:
            await asyncio.sleep(due - now)
        while i < count:
            due = start + i / rate
            now = clock()
            if now < due:
                break
            lags.append(now - due)
            await send(i)
            i += 1
    return pacing(lags, count, clock() - start)


async def delivery_errors(futures: Sequence[Any]) -> int:
    results = await asyncio.gather(*futures, return_exceptions=True)
    return sum(isinstance(r, BaseException) for r in results)


# ---------------------------------------------------------------- the worker process
class Worker:
    """One `nerve brain run` subprocess (optionally under cProfile) with its own config, datadir and log."""

    def __init__(
        self,
        tmp: Path,
        name: str,
        app_id: str,
        prefix: str,
        kafka: str,
        rules: Sequence[Path],
        *,
        profile: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.app_id, self.prefix, self.profile = name, app_id, prefix, profile
        self.log_path = tmp / f"{name}.log"
        self.config = tmp / f"{name}.yaml"
        settings = {
            "app_id": app_id,
            "worker": name,
            "rules": [str(r) for r in rules],
            "kafka": {"bootstrap": kafka, "prefix": prefix},
            "partitions": PARTITIONS,
            "datadir": str(tmp / "data" / name),
            "lateness_margin_s": LATENESS_MARGIN_S,
        }
        self.config.write_bytes(orjson.dumps(settings))  # JSON is YAML
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        args = ["brain", "run", "--config", str(self.config)]
        if self.profile is None:
            cmd = [sys.executable, "-m", "nerve_cli", *args]
        else:
            cmd = [sys.executable, "-c", PROFILE_BOOT, str(self.profile), *args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.started_at = time.monotonic()

    async def ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """time.monotonic() when the Ready line was first seen (polled every 20 ms)."""
        deadline = time.monotonic() + timeout_s
        while READY_LINE not in self.log():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"brain worker {self.name} exited:\n{self.log()[-6000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"brain worker {self.name} not Ready in {timeout_s:.0f} s:\n{self.log()[-6000:]}"
                )
            await asyncio.sleep(0.02)
        return time.monotonic()

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (Faust shuts down cleanly), then wait; SIGKILL if it hangs. Returns the exit code."""
        p = self.process
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        if not await wait_until(lambda: p.poll() is not None, timeout_s, 0.1):
            p.kill()
            p.wait()
        return p.returncode


# ---------------------------------------------------------------- phases
@dataclass
class Bench:
    kafka: str
    tmp: Path
    uid: str
    sizes: Sizes
    templates: list[Template]
    triggers: list[Trigger]
    rules: list[Path]
    producer: Any = None

    def prefix(self, phase: str) -> str:
        return f"bb{self.uid}{phase}."

    def app_id(self, phase: str) -> str:
        return f"nerve-bench-brain-{self.uid}-{phase}"

    async def raw(self, topic: str, rate: float, count: int) -> dict[str, Any]:
        """Paced aiokafka produce → consume on `topic`, the same payloads and keys as the brain gets."""
        sent: dict[str, float] = {}
        latencies: list[float] = []
        warm: list[str] = []

        def on_record(t: float, m: Any) -> None:
            event_id = orjson.loads(m.value)["id"]
            s = sent.pop(event_id, None)
            if s is not None:
                latencies.append(t - s)
            else:
                warm.append(event_id)

        recv = Receiver(self.kafka, topic, on_record)
        await recv.start()
        tpls, producer, futures = self.templates, self.producer, []
        tag = f"raw{int(rate)}"
        try:
            for i in range(100):  # warm-up: metadata, connections, one batch per partition
                tpl = tpls[i]
                await producer.send(topic, payload(f"{tag}w-{i}", time.time(), tpl.tail), key=tpl.key)
            await wait_until(lambda: len(warm) >= 100, 30)

            async def send(i: int) -> None:
                tpl = tpls[i % len(tpls)]
                event_id = f"{tag}-{i}"
                body = payload(event_id, time.time(), tpl.tail)
                sent[event_id] = time.perf_counter()
                futures.append(await producer.send(topic, body, key=tpl.key))

            cpu = CpuWatch(None)
            pace = await paced(count, rate, send)
            await wait_until(lambda: len(latencies) >= count, GRACE_S)
            cores = cpu.cores()
        finally:
            await recv.stop()
        return {
            "rate": rate,
            "count": count,
            "received": len(latencies),
            "send_errors": await delivery_errors(futures),
            "latency": percentiles(latencies),
            "pace": pace,
            "cpu_cores": {k: v for k, v in cores.items() if k != "worker"},
        }

    async def warm_up(self, events_topic: str, alerts_topic: str) -> dict[str, Any]:
        """One trigger per trigger sensor and 2,000 background events; wait until every trigger alerted."""
        got: set[str] = set()

        def on_record(t: float, m: Any) -> None:
            got.update(orjson.loads(m.value).get("evidence", ()))

        recv = Receiver(self.kafka, alerts_topic, on_record)
        await recv.start()
        t0 = time.monotonic()
        try:
            ids = []
            for k, trig in enumerate(self.triggers):
                ids.append(f"warm-t{k}")
                await self.producer.send(events_topic, trig.payload(ids[-1], time.time()), key=trig.key)
            for i, tpl in enumerate(self.templates[:2000]):
                await self.producer.send(
                    events_topic, payload(f"warm-{i}", time.time(), tpl.tail), key=tpl.key
                )
            await self.producer.flush()
            ok = await wait_until(lambda: got.issuperset(ids), 60, 0.05)
        finally:
            await recv.stop()
        if not ok:
            raise RuntimeError(
                f"warm-up: only {len(got & set(ids))} of {len(ids)} trigger alerts arrived in 60 s"
            )
        return {"triggers": len(ids), "seconds": round(time.monotonic() - t0, 2)}

    async def brain(
        self,
        worker: Worker,
        events_topic: str,
        alerts_topic: str,
        rate: float,
        count: int,
        rekeyed_topic: str | None = None,
    ) -> dict[str, Any]:
        """Paced events through the worker; latency of each trigger to its alert on `alerts_topic`.

        The path is also cut into hops by wall-clock stamps: the trigger's send (this process), the
        CreateTime of its re-keyed copy on `rekeyed_topic` (the worker's re-key agent sent it), the alert's
        `emitted_at` (the engine agent built it) and the alert's arrival here."""
        tag = f"L{int(rate)}"
        sent: dict[str, float] = {}
        sent_wall: dict[str, float] = {}
        rekeyed_at: dict[str, float] = {}
        latencies: list[float] = []
        hops: dict[str, list[float]] = {
            "send_to_rekeyed": [],
            "rekeyed_to_emitted": [],
            "emitted_to_received": [],
        }
        alerts = [0]

        def on_alert(t: float, m: Any) -> None:
            alerts[0] += 1
            wall = time.time()
            alert = orjson.loads(m.value)
            for event_id in alert.get("evidence", ()):
                s = sent.pop(event_id, None)
                if s is None:
                    continue
                latencies.append(t - s)
                emitted, t0, t1 = (
                    alert.get("emitted_at"),
                    sent_wall.pop(event_id, None),
                    rekeyed_at.pop(event_id, None),
                )
                if emitted is not None:
                    hops["emitted_to_received"].append(wall - emitted)
                    if t1 is not None:
                        hops["rekeyed_to_emitted"].append(emitted - t1)
                if t0 is not None and t1 is not None:
                    hops["send_to_rekeyed"].append(t1 - t0)

        def on_rekeyed(t: float, m: Any) -> None:
            if b'"bench_trigger"' not in m.value:
                return
            for line in m.value.split(b"\n"):  # a bundle of re-keyed events, one per line
                if b'"bench_trigger"' in line:
                    event_id = orjson.loads(line)["id"]
                    if event_id in sent_wall:
                        rekeyed_at[event_id] = m.timestamp / 1e3

        receivers = [Receiver(self.kafka, alerts_topic, on_alert)]
        if rekeyed_topic is not None:
            receivers.append(Receiver(self.kafka, rekeyed_topic, on_rekeyed))
        for recv in receivers:
            await recv.start()
        tpls, trigs, producer, futures = self.templates, self.triggers, self.producer, []
        n_triggers = len(range(0, count, TRIGGER_EVERY))

        async def send(i: int) -> None:
            if i % TRIGGER_EVERY == 0:
                trig = trigs[i // TRIGGER_EVERY % len(trigs)]
                event_id = f"{tag}-t{i}"
                now = time.time()
                body = trig.payload(event_id, now)
                sent_wall[event_id] = now
                sent[event_id] = time.perf_counter()
                futures.append(await producer.send(events_topic, body, key=trig.key))
            else:
                tpl = tpls[i % len(tpls)]
                futures.append(
                    await producer.send(
                        events_topic, payload(f"{tag}-{i}", time.time(), tpl.tail), key=tpl.key
                    )
                )

        try:
            cpu = CpuWatch(worker.pid)
            pace = await paced(count, rate, send)
            await wait_until(lambda: len(latencies) >= n_triggers, GRACE_S)
            cores = cpu.cores()
        finally:
            for recv in receivers:
                await recv.stop()
        return {
            "rate": rate,
            "events": count,
            "triggers": n_triggers,
            "alerts_matched": len(latencies),
            "missing": n_triggers - len(latencies),
            "alert_records": alerts[0],
            "send_errors": await delivery_errors(futures),
            "latency": percentiles(latencies),
            "hops": {k: percentiles(v) for k, v in hops.items() if v},
            "pace": pace,
            "cpu_cores": cores,
        }

    async def produce_backlog(self, topic: str, n: int) -> dict[str, Any]:
        """`n` events into `topic` as fast as a batching producer goes; event times FUTURE_S ahead."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka, acks="all", linger_ms=20, max_batch_size=256 * 1024
        )
        await producer.start()
        t0 = time.monotonic()
        base = time.time() + FUTURE_S
        tpls, futures = self.templates, []
        try:
            for i in range(n):
                tpl = tpls[i % len(tpls)]
                ts = base + tpl.offset + (i // len(tpls)) * len(tpls) / SIM_RATE
                futures.append(await producer.send(topic, payload(f"T-{i}", ts, tpl.tail), key=tpl.key))
            await producer.flush()
            errors = await delivery_errors(futures)
        finally:
            await producer.stop()
        return {"events": n, "seconds": round(time.monotonic() - t0, 2), "send_errors": errors}

    async def drain(self, worker: Worker, topics: Sequence[str], timeout_s: float) -> dict[str, Any]:
        """Start `worker` (not yet started) on a backlog; time Ready → every one of `topics` committed.

        The committed offsets of all `topics` are polled together every 0.1 s (a progress trace). A topic
        counts as drained only once the topics before it were drained at an earlier poll: Faust flushes its
        producer before it commits, so by then everything re-keyed from them is in the later topic's end
        offsets."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka, group_id=None, enable_auto_commit=False)
        await admin.start()
        await consumer.start()
        by_topic = {t: [TopicPartition(t, p) for p in range(PARTITIONS)] for t in topics}
        every = [tp for tps in by_topic.values() for tp in tps]
        trace: list[tuple[float, ...]] = []  # (seconds after Ready, committed records per topic …)
        finished: dict[str, tuple[float, int]] = {}  # topic → (seconds after Ready, records)
        transient: list[str] = []  # Kafka errors while polling (retried)
        try:
            worker.start()
            ready = await worker.ready()
            cpu_ready, threads_ready = cpu_s(worker.pid), thread_cpu(worker.pid)
            deadline = ready + timeout_s
            while len(finished) < len(topics):
                before = set(finished)
                try:
                    ends = {tp: int(o) for tp, o in (await consumer.end_offsets(every)).items()}
                    got = await admin.list_consumer_group_offsets(worker.app_id, partitions=every)
                except KafkaError as e:  # e.g. the coordinator moving, or a broker restart: ask again
                    transient.append(repr(e))
                    await asyncio.sleep(0.1)
                    continue
                now = time.monotonic()
                committed = {tp: max(0, int(got[tp].offset)) if tp in got else 0 for tp in every}
                trace.append((now - ready, *(sum(committed[tp] for tp in by_topic[t]) for t in topics)))
                for i, topic in enumerate(topics):
                    tps = by_topic[topic]
                    if (
                        topic not in finished
                        and all(t in before for t in topics[:i])
                        and all(committed[tp] >= ends[tp] for tp in tps)
                        and sum(ends[tp] for tp in tps) > 0
                    ):
                        finished[topic] = (now - ready, sum(ends[tp] for tp in tps))
                if now > deadline:
                    raise RuntimeError(
                        f"{worker.name}: not drained within {timeout_s:.0f} s after Ready (committed per topic "
                        f"{trace[-1][1:] if trace else '?'}; ends {sum(ends.values())})\n{worker.log()[-3000:]}"
                    )
                if len(finished) < len(topics):
                    await asyncio.sleep(0.1)
            done = time.monotonic()
            cpu_done, threads_done = cpu_s(worker.pid), thread_cpu(worker.pid)
        finally:
            await consumer.stop()
            await admin.close()
        wall = done - ready
        cpu = (cpu_done - cpu_ready) if cpu_done is not None and cpu_ready is not None else None
        out: dict[str, Any] = {"startup_s": round(ready - worker.started_at, 2)}
        out["topics"] = {
            t: {
                "records": n,
                "done_s": round(at, 3),
                "sustained": sustained([(x[0], x[1 + i]) for x in trace]),
            }
            for i, (t, (at, n)) in enumerate((t, finished[t]) for t in topics)
        }
        out |= {"drain_s": round(wall, 3), "cpu_s": round(cpu, 2) if cpu is not None else None}
        out["cpu_share"] = round(cpu / wall, 3) if cpu is not None else None
        out["threads"] = thread_split(worker.pid, threads_ready, threads_done)
        out["poll_errors"] = transient[:5] + (
            [f"... {len(transient) - 5} more"] if len(transient) > 5 else []
        )
        step, last = [], -1.0
        for x in trace:  # the progress trace, about one point a second
            if x[0] - last >= 1.0 or x is trace[-1]:
                step.append([round(x[0], 2), *x[1:]])
                last = x[0]
        out["progress"] = {"columns": ["s_after_ready", *topics], "points": step}
        return out


def sustained(samples: Sequence[tuple[float, float]]) -> dict[str, Any] | None:
    """Records/s of a topic's committed offsets between 10 % and 90 % of its final count."""
    if not samples or samples[-1][1] <= 0:
        return None
    total = samples[-1][1]
    lo = next((s for s in samples if s[1] >= 0.1 * total), None)
    hi = next((s for s in samples if s[1] >= 0.9 * total), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return {
        "from_s": round(lo[0], 2),
        "to_s": round(hi[0], 2),
        "per_s": round((hi[1] - lo[1]) / (hi[0] - lo[0]), 1),
    }


def _package(file: str) -> str:
    """Who owns a profiled function: a site-packages distribution, a Nerve package, the stdlib or C."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    here = str(REPO) + "/"
    if file.startswith(here):
        return file[len(here) :].split("/", 1)[0]
    if file == "~":
        return "builtins (C)"
    return "stdlib " + file.rsplit("/", 1)[-1]


def profile_text(path: Path, top: int) -> dict[str, Any]:
    """The top `top` functions by tottime and by cumulative time, and tottime summed per package."""
    out: dict[str, Any] = {}
    for order in ("tottime", "cumulative"):
        stream = io.StringIO()
        pstats.Stats(str(path), stream=stream).strip_dirs().sort_stats(order).print_stats(top)
        text = stream.getvalue()
        out[order] = text[text.find("   ncalls") :].rstrip() if "   ncalls" in text else text.strip()
    per: dict[str, float] = {}
    raw: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]  # documented, untyped
    for (file, _line, _fn), (_cc, _nc, tt, _ct, _callers) in raw.items():
        per[_package(file)] = per.get(_package(file), 0.0) + tt
    total = sum(per.values()) or 1.0
    ranked = sorted(per.items(), key=lambda kv: -kv[1])[:15]
    out["total_s"] = round(total, 2)
    out["by_package"] = {k: {"s": round(v, 2), "share": round(v / total, 3)} for k, v in ranked}
    return out


def department_topics(rules: Sequence[Path], prefix: str) -> list[str]:
    """`<prefix>alerts.<department>` for every department the brain rules page (alert and escalate)."""
    from reflexes import load_rules
    from reflexes.model import AlertAction, EscalateAction

    names = {DEPARTMENT}
    for r in load_rules(rules).tier("brain").reflexes:
        for a in r.actions:
            if isinstance(a, AlertAction | EscalateAction):
                names.update(a.departments)
    return [f"{prefix}alerts.{d}" for d in sorted(names)]


def source_topics(b: Bench, prefix: str, app_id: str) -> list[str]:
    """What a worker of `app_id` consumes from the events: `<prefix>events`, then its re-keyed copy when
    the brain rules group by a level coarser than the building (the example city: community)."""
    from brain_bridge.worker import BUILDING, partition_level  # imports Faust: only when needed
    from reflexes import load_rules

    level = partition_level(load_rules(b.rules))
    return [prefix + "events"] + ([f"{app_id}-events-by-level{level}"] if level < BUILDING else [])


async def run(b: Bench, want_profile: bool | None) -> dict[str, Any]:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM cancels the run: its finally blocks stop the workers and delete topics
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    sizes = b.sizes
    prefix = b.prefix("l")
    events_topic, alerts_topic = prefix + "events", f"{prefix}alerts.{DEPARTMENT}"
    raw_topics = {rate: f"{prefix}raw{int(rate)}" for rate in sizes.rates}
    await create_topics(b.kafka, [events_topic, *department_topics(b.rules, prefix), *raw_topics.values()])
    b.producer = AIOKafkaProducer(bootstrap_servers=b.kafka, acks="all", linger_ms=LINGER_MS)
    await b.producer.start()
    data: dict[str, Any] = {"baseline": {}, "brain": {}}
    worker = Worker(b.tmp, "latency", b.app_id("l"), prefix, b.kafka, b.rules)
    sources = source_topics(b, prefix, worker.app_id)
    rekeyed = sources[1] if len(sources) > 1 else None
    try:
        worker.start()
        ready = await worker.ready()
        data["latency_worker"] = {"startup_s": round(ready - worker.started_at, 2)}
        data["latency_worker"]["warm_up"] = await b.warm_up(events_topic, alerts_topic)
        await asyncio.sleep(1.0)
        for rate in sizes.rates:
            key = str(int(rate))
            raw = await b.raw(raw_topics[rate], rate, int(rate * sizes.baseline_s))
            data["baseline"][key] = raw
            print(f"rate {key}/s: raw aiokafka {raw['latency']}", flush=True)
            await asyncio.sleep(1.0)
            brain = await b.brain(
                worker, events_topic, alerts_topic, rate, int(rate * sizes.latency_s), rekeyed
            )
            rl, bl = brain["latency"], raw["latency"]
            if rl.get("n") and bl.get("n"):
                brain["ratio_to_raw"] = {
                    q: round(rl[f"{q}_ms"] / bl[f"{q}_ms"], 1) if bl[f"{q}_ms"] else None
                    for q in ("p50", "p99")
                }
            data["brain"][key] = brain
            print(
                f"rate {key}/s: brain trigger → alert {brain['latency']} (missing {brain['missing']})",
                flush=True,
            )
            await asyncio.sleep(1.0)
    finally:
        data.setdefault("latency_worker", {})["exit_code"] = await worker.stop()
        await b.producer.stop()

    # ---- throughput: a backlog first, then a fresh worker
    tprefix = b.prefix("t")
    await create_topics(b.kafka, [tprefix + "events", *department_topics(b.rules, tprefix)])
    backlog = await b.produce_backlog(tprefix + "events", sizes.throughput)
    print(f"backlog {backlog}", flush=True)
    timeout = max(180.0, sizes.throughput / 500.0)  # a deadline only: 400 s for 200k events
    tworker = Worker(b.tmp, "throughput", b.app_id("t"), tprefix, b.kafka, b.rules)
    try:
        tp = await b.drain(tworker, source_topics(b, tprefix, tworker.app_id), timeout)
    finally:
        exit_code = await tworker.stop()
    n = sizes.throughput
    tp |= {"events": n, "backlog": backlog, "exit_code": exit_code}
    tp["events_per_s"] = round(n / tp["drain_s"], 1)
    tp["events_per_cpu_s"] = round(n / tp["cpu_s"], 1) if tp.get("cpu_s") else None
    data["throughput"] = tp
    print(f"throughput {tp}", flush=True)
    data["faust_floor"] = await faust_floor(b, tprefix + "events", n)
    print(f"faust floor {data['faust_floor']}", flush=True)

    missed = (tp["events_per_cpu_s"] or 0) < TARGET_PER_CORE
    data["profile"] = None
    if want_profile or (want_profile is None and missed):
        prof = b.tmp / "worker.prof"
        pprefix, pn = b.prefix("p"), min(n, PROFILE_EVENTS)  # its own, smaller backlog: cProfile is slow
        await create_topics(b.kafka, [pprefix + "events", *department_topics(b.rules, pprefix)])
        await b.produce_backlog(pprefix + "events", pn)
        pworker = Worker(b.tmp, "profiled", b.app_id("p"), pprefix, b.kafka, b.rules, profile=prof)
        why = "requested" if want_profile else "throughput target missed"
        try:
            try:
                ptp = await b.drain(
                    pworker, source_topics(b, pprefix, pworker.app_id), max(180.0, pn / 100.0)
                )
            finally:
                pcode = await pworker.stop()
        except (RuntimeError, KafkaError) as e:  # the measurements above stand without it
            first = str(e).splitlines()[0] if str(e) else repr(e)
            data["profile"] = {"why": why, "error": first}
            print(f"profile phase failed: {first}", file=sys.stderr)
            return data
        text = (
            profile_text(prof, 20) if prof.exists() else {"tottime": "(no profile written)", "cumulative": ""}
        )
        data["profile"] = {
            "why": why,
            "drain_s": ptp["drain_s"],
            "events": pn,
            "events_per_s_under_profiler": round(pn / ptp["drain_s"], 1),
            "exit_code": pcode,
            **text,
        }
    return data


# ---------------------------------------------------------------- report
async def faust_floor(b: Bench, topic: str, n: int) -> dict[str, Any]:
    """A no-op Faust agent (bench.faust_floor) draining the throughput phase's backlog: records per
    CPU-second, the most any Faust worker that takes every event as a record can do here."""
    out, datadir = b.tmp / "faust-floor.json", b.tmp / "faust-floor"
    cmd = [sys.executable, "-m", "bench.faust_floor", "--kafka", b.kafka, "--topic", topic]
    cmd += ["--count", str(n), "--out", str(out), "--datadir", str(datadir)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    timeout_s = max(120.0, n / 1000.0)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": f"no result within {timeout_s:.0f} s"}
    if not out.exists():
        return {"error": f"exit {proc.returncode}: {err.decode(errors='replace')[-500:]}"}
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


def _ms(lat: dict[str, Any]) -> str:
    if not lat.get("n"):
        return "no samples"
    return f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} ms (max {lat['max_ms']:.1f})"


def _cores(c: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in c.items() if v is not None)


def rows(data: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for key, raw in data["baseline"].items():
        br = data["brain"][key]
        rate = f"{int(key):,} events/s"
        out.append(
            (
                f"Raw aiokafka produce → consume p50 / p99 at {rate} (n={raw['received']:,})",
                _ms(raw["latency"]),
                "—",
                None,
            )
        )
        ratio = br.get("ratio_to_raw")
        judged = float(key) == TARGET_RATE
        out.append(
            (
                f"Brain trigger → alert p50 / p99 at {rate} ({br['alerts_matched']:,} of {br['triggers']:,} triggers)",
                _ms(br["latency"]) + (f" — {ratio['p50']}× / {ratio['p99']}× raw" if ratio else ""),
                f"p99 ≤ {TARGET_P99_MS:g} ms" if judged else "—",
                (br["latency"].get("p99_ms", 1e9) <= TARGET_P99_MS and br["missing"] == 0)
                if judged
                else None,
            )
        )
    tp = data["throughput"]
    per_core = tp["events_per_cpu_s"] or 0.0
    out.append(
        (
            f"Throughput per worker core: {tp['events']:,} pre-produced events, Ready → all committed",
            f"{per_core:,.0f} events per worker CPU-second ({tp['events_per_s']:,.0f} events/s wall in "
            f"{tp['drain_s']:.1f} s at a CPU share of {tp['cpu_share']})",
            f"≥ {TARGET_PER_CORE:,.0f} events/s per core",
            per_core >= TARGET_PER_CORE,
        )
    )
    for i, (topic, t) in enumerate(tp["topics"].items()):
        s = t.get("sustained")
        if s:
            if len(tp["topics"]) == 1:
                who, what = "engine agent", "records"
            elif i == 0:
                who, what = "re-key agent", "records"
            else:
                who, what = "engine agent", "bundles and ticks"
            out.append(
                (
                    f"Throughput, {who}: committed offsets of {topic}, 10 → 90 %",
                    f"{s['per_s']:,.0f} {what}/s wall ({s['from_s']} s → {s['to_s']} s after Ready; "
                    f"all {t['records']:,} committed {t['done_s']:.1f} s after Ready)",
                    "—",
                    None,
                )
            )
    floor = data.get("faust_floor") or {}
    if floor.get("records_per_cpu_s"):
        out.append(
            (
                f"Faust floor: a no-op agent drains the same {floor['records']:,} records",
                f"{floor['records_per_cpu_s']:,.0f} records per CPU-second ({floor['records'] / floor['wall_s']:,.0f}/s"
                f" wall in {floor['wall_s']:.1f} s); the brain reaches {per_core / floor['records_per_cpu_s']:.0%}"
                " of it",
                "—",
                None,
            )
        )
    elif floor.get("error"):
        out.append(
            ("Faust floor: a no-op agent drains the same records", f"failed: {floor['error']}", "—", None)
        )
    out.append(
        ("Worker start → Ready (throughput worker, fresh app id)", f"{tp['startup_s']:.1f} s", "—", None)
    )
    return out


def notes(data: dict[str, Any]) -> list[str]:
    cfg, tp = data["config"], data["throughput"]
    out = [
        f"Workload: {cfg['sensors']:,} synthetic sensors of bench.city in 200 buildings, 20 communities, 4 districts "
        f"(sites d1..d4/c1..c5/b1..b10/…: the example rules match on kinds and site levels, not on district names), "
        f"keyed by building. Rules: examples/city ({cfg['brain_reflexes']} brain reflexes; the brain groups events by "
        f"community, so every event crosses two Faust agents: re-key, then the engine) plus the `bench-trigger` probe. "
        f"1 in {TRIGGER_EVERY} paced events is a trigger from one of {TRIGGER_SENSORS} trigger sensors, in rotation.",
        f"Worker: `nerve brain run`, {PARTITIONS} partitions, lateness_margin_s {LATENESS_MARGIN_S}, RocksDB tables, "
        "Faust defaults otherwise (commit every 10,000 messages or 2.8 s, producer linger 0, acks=all). "
        f"Bench producer: aiokafka acks=all, linger_ms={LINGER_MS}; consumers in this process on one uvloop; "
        "latency = perf_counter from the send call to the consumer batch that holds the record (or its alert).",
        "The raw baseline runs right before the brain run at the same rate, on a fresh 4-partition topic with the "
        "same payloads and keys; it is one hop (produce → consume), the brain path is four (event → re-key agent → "
        "re-keyed topic → engine agent → alert topic → bench).",
        f"Throughput: {tp['events']:,} events pre-produced (in {tp['backlog']['seconds']} s) before a fresh worker "
        f"started; their event times run {FUTURE_S:,.0f} s ahead of the wall clock at {SIM_RATE:,.0f} events per "
        "simulated second, so the wall-clock ticks of the worker never make them late (late events are skipped, "
        "which would flatter the number). Events per core = events / the worker's CPU seconds (utime + stime, all "
        "threads) from Ready to the last commit; the wall time includes up to one commit interval (≤ 2.8 s) of "
        f"idle before the last commit, so the wall rate is a lower bound. Committed offsets polled every 0.1 s. "
        f"Start → Ready took {tp['startup_s']} s.",
        f"Load: 1-min load average before {cfg['loadavg_before']}, after {cfg['loadavg_after']}"
        + (
            f"; waited {cfg['quiet']['waited_s']} s for it to drop below {cfg['quiet']['max_load']} "
            f"(reached: {cfg['quiet']['quiet']})"
            if cfg.get("quiet")
            else ""
        )
        + f". {data['machine']['cores']} cores shared by the worker, Kafka and this load generator (nothing pinned).",
    ]
    names = {
        "send_to_rekeyed": "send → re-keyed copy written (Kafka CreateTime, ms)",
        "rekeyed_to_emitted": "re-keyed copy → alert emitted by the engine agent",
        "emitted_to_received": "alert emitted → received here",
    }
    for key, br in data["brain"].items():
        hops = br.get("hops") or {}
        if hops:
            out.append(
                f"Where the time goes at {int(key):,} events/s (wall-clock stamps, p50 / p99): "
                + "; ".join(
                    f"{names.get(k, k)} {v['p50_ms']:,.1f} / {v['p99_ms']:,.1f} ms"
                    for k, v in hops.items()
                    if v.get("n")
                )
                + "."
            )
    for key, br in data["brain"].items():
        raw = data["baseline"][key]
        out.append(
            f"At {int(key):,} events/s: CPU cores used — brain run: {_cores(br['cpu_cores'])}; raw run: "
            f"{_cores(raw['cpu_cores'])}. Sending lagged its schedule by p99 {br['pace']['lag_p99_ms']} ms "
            f"(achieved {br['pace']['achieved_per_s']:,.0f}/s); {br['alert_records']:,} alert records on the bench topic."
        )
    out.append(
        f"Throughput CPU: the worker used {tp['cpu_s']} CPU-s over {tp['drain_s']} s (share {tp['cpu_share']}); "
        + ", ".join(
            f"{t} ({v['records']:,} records) done {v['done_s']} s after Ready"
            for t, v in tp["topics"].items()
        )
        + "."
    )
    th = tp.get("threads") or {}
    if th:
        out.append(
            f"Of the worker's CPU over the drain, its main thread (asyncio: both agents, engine, producer, "
            f"RocksDB writes) took {th['main_thread_s']} s; its other threads (Faust's consumer thread, "
            f"RocksDB) {th['other_threads_s']} s."
        )
    rekeyed = [v["records"] for v in tp["topics"].values()][1:]
    if rekeyed:
        out.append(
            f"The re-keyed topic holds {rekeyed[0]:,} records for the {tp['events']:,} events: bundles (one record"
            f" per re-keyed partition for each batch of up to 1,000 events the re-key agent takes) and the"
            f" wall-clock ticks it passes in-band (each tick of each of the {PARTITIONS} source partitions goes to"
            f" every re-keyed partition)."
        )
    if (data.get("profile") or {}).get("error"):
        out.append(f"The profile phase failed ({data['profile']['error']}); no profile in this report.")
    elif data.get("profile"):
        p = data["profile"]
        out.append(
            f"Profile ({p['why']}): a third fresh worker drained a backlog of {p['events']:,} such events under "
            f"cProfile in {p['drain_s']} s ({p['events_per_s_under_profiler']:,.0f} events/s under the profiler, "
            "timed by the main thread's CPU clock); its top functions are below."
        )
    return out


def profile_markdown(p: dict[str, Any]) -> str:
    shares = "\n".join(
        f"| {k} | {v['s']:.1f} s | {v['share'] * 100:.1f} % |" for k, v in (p.get("by_package") or {}).items()
    )
    return str(
        "\n## Worker profile (cProfile on the main thread's CPU clock, throughput drain)\n\n"
        f"Main-thread CPU seen by the profiler: {p.get('total_s', '?')} s, by owner of the function "
        "(tottime):\n\n| package | CPU | share |\n|---|---|---|\n"
        + shares
        + "\n\n### Top 20 by tottime\n\n```\n"
        + p["tottime"]
        + "\n```\n\n### Top 20 by cumulative time\n\n```\n"
        + p["cumulative"]
        + "\n```\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.brain", description="Benchmark of a real brain worker."
    )
    size = ap.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="small counts and one rate (< 90 s), for the tests"
    )
    size.add_argument(
        "--short",
        action="store_true",
        help="1,000/s for 15 s and a 50,000-event drain, no profile (~90 s): to compare commits, e.g. run "
        "from a worktree of each, back to back; the report goes to var/bench-short unless --out says",
    )
    ap.add_argument("--out", type=Path, default=None, help="report directory (default: bench/)")
    prof = ap.add_mutually_exclusive_group()
    prof.add_argument("--profile", dest="profile", action="store_true", default=None, help="always profile")
    prof.add_argument("--no-profile", dest="profile", action="store_false", help="never profile")
    ap.add_argument("--kafka", default=os.environ.get("NERVE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument(
        "--max-load", type=float, default=0.8, help="wait for a lower 1-min load first (not --quick)"
    )
    ap.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for it at most")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else SHORT if args.short else FULL
    if args.out is None:
        here = Path(__file__).resolve().parent
        args.out = here.parent / "var" / "bench-short" if args.short else here
    want_profile: bool | None = args.profile
    if (args.quick or args.short) and want_profile is None:
        want_profile = False  # keeps them short; say --profile to have one anyway
    t0 = time.monotonic()
    n_templates = max(sizes.throughput, *(int(r * sizes.latency_s) for r in sizes.rates))
    templates, buildings = build_templates(n_templates)
    print(f"{len(templates):,} background events prebuilt in {time.monotonic() - t0:.1f} s", flush=True)
    quiet = None if args.quick else wait_quiet(args.max_load, args.max_wait)
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    uid = uuid.uuid4().hex[:8]
    from reflexes import load_rules

    with tempfile.TemporaryDirectory(prefix="nerve-bench-brain-") as tmp_name:
        tmp = Path(tmp_name)
        trigger_file = tmp / "bench-trigger.yaml"
        trigger_file.write_text(TRIGGER_RULES)
        rules = [EXAMPLES, trigger_file]
        brain_reflexes = len(load_rules(rules).tier("brain").reflexes) - 1
        b = Bench(args.kafka, tmp, uid, sizes, templates, triggers(buildings), rules)
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                try:
                    data = runner.run(run(b, want_profile))
                finally:
                    runner.run(delete_topics(b.kafka, (f"bb{uid}", f"nerve-bench-brain-{uid}")))
        except BaseException:
            for log in sorted(tmp.glob("*.log")):
                lines = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("[20")]
                print(f"---- {log.name} (last 40 log lines)", *lines[-40:], sep="\n", file=sys.stderr)
            raise
    data["config"] = {
        "quick": args.quick,
        "short": args.short,
        "sizes": sizes.__dict__,
        "partitions": PARTITIONS,
        "lateness_margin_s": LATENESS_MARGIN_S,
        "trigger_every": TRIGGER_EVERY,
        "trigger_sensors": TRIGGER_SENSORS,
        "sensors": 10_000,
        "brain_reflexes": brain_reflexes,
        "linger_ms": LINGER_MS,
        "quiet": quiet,
        "loadavg_before": loadavg_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.monotonic() - t0, 1),
        "trigger_rules": TRIGGER_RULES,
    }
    data["machine"] = machine_info() | {
        "git": git_state("brain_bridge", "reflexes", "schemas", "bench/brain.py")
    }
    json_path, md_path = write_report(
        "brain", data, rows(data), args.out, title="Brain worker benchmark (real Kafka)", notes=notes(data)
    )
    if data.get("profile") and "tottime" in data["profile"]:
        with md_path.open("a", encoding="utf-8") as md:
            md.write(profile_markdown(data["profile"]))
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
