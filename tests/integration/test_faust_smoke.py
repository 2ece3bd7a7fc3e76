"""Faust smoke test: faust-streaming + aiokafka + Kafka + rocksdict work together in a real worker.

A worker of tests/integration/faust_counter_app.py runs as a subprocess; the test drives it with aiokafka,
reads its running counts back, then restarts it to show that the RocksDB table kept its state.
"""

# aiokafka ships no py.typed marker; its objects are Any here.

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

pytestmark = pytest.mark.integration

PARTITIONS = 4
#: key → how many messages it gets in the first round: different counts catch mixed-up keys
FIRST_ROUND = {f"sensor-{i}".encode(): 3 + i for i in range(6)}
#: seconds for a worker to log Ready (it starts a web server, joins the group, recovers tables)
READY_TIMEOUT = 90.0
#: seconds for all expected counts to come out
COUNTS_TIMEOUT = 60.0
#: seconds a worker has to shut down after SIGTERM
STOP_TIMEOUT = 30.0
APP_DIR = Path(__file__).parent

NewTopicFactory = Callable[[str, int], Awaitable[str]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (for the worker's web server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def table_databases(datadir: Path) -> list[str]:
    """Names of the `counts` table's RocksDB databases that a worker left in its datadir."""
    return sorted(path.name for path in datadir.glob("v1/tables/counts-*.db") if (path / "CURRENT").is_file())


class Worker:
    """One `faust worker` subprocess of faust_counter_app, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        command = [sys.executable, "-m", "faust", "-A", "faust_counter_app", "-L", "uvloop"]
        command += ["worker", "-l", "info", "--web-host", "127.0.0.1", "--web-port", str(free_port())]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=APP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self) -> None:
        """Returns once the worker logged `Ready`; fails if it exits or takes longer than READY_TIMEOUT."""
        deadline = time.monotonic() + READY_TIMEOUT
        while "[^Worker]: Ready" not in self.log():
            if self.process.poll() is not None:
                pytest.fail(f"the faust worker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the faust worker was not Ready within {READY_TIMEOUT}s:\n{self.log()}")
            await asyncio.sleep(0.2)

    async def stop(self) -> int:
        """SIGTERM, then wait up to STOP_TIMEOUT seconds; returns the exit code (kills it if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"the faust worker ignored SIGTERM for {STOP_TIMEOUT}s:\n{self.log()}")
            await asyncio.sleep(0.1)
        return self.process.returncode


@pytest.fixture
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    env = dict(os.environ)
    env.update(
        NERVE_KAFKA_BOOTSTRAP=kafka_bootstrap,
        NERVE_FAUST_SMOKE_APP_ID=f"nerve-test-counter-{tag}",
        NERVE_FAUST_SMOKE_DATADIR=str(tmp_path / "faust-data"),
        NERVE_FAUST_SMOKE_PARTITIONS=str(PARTITIONS),
        PYTHONPATH=os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH")])),
    )
    return env


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Worker]]:
    """Starts workers on demand; kills any that a failing test left running."""
    started: list[Worker] = []

    def start(env: dict[str, str]) -> Worker:
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[Any]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


async def send_round(producer: Any, topic: str, per_key: dict[bytes, int]) -> None:
    """Sends per_key[key] messages for each key, interleaved across keys, and waits for the acks."""
    deliveries = []
    for seq in range(max(per_key.values())):
        for key, count in per_key.items():
            if seq < count:
                deliveries.append(await producer.send(topic, key=key, value=f"reading-{seq}".encode()))
    await asyncio.gather(*deliveries)


async def read_counts(consumer: Any, counts: dict[bytes, list[int]], until: dict[bytes, int]) -> None:
    """Appends each output record's count to counts[key] until every key reached its `until` count."""
    async with asyncio.timeout(COUNTS_TIMEOUT):
        while any(len(counts[key]) < total for key, total in until.items()):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    counts[record.key].append(json.loads(record.value))


async def test_worker_counts_per_key_in_a_rocksdb_table_and_keeps_them_across_restart(
    kafka_bootstrap: str,
    new_topic: NewTopicFactory,
    worker_env: dict[str, str],
    workers: Callable[[dict[str, str]], Worker],
    producer: Any,
) -> None:
    input_topic = await new_topic("faust-in", PARTITIONS)
    output_topic = await new_topic("faust-out", PARTITIONS)
    env = {**worker_env, "NERVE_FAUST_SMOKE_INPUT": input_topic, "NERVE_FAUST_SMOKE_OUTPUT": output_topic}
    consumer = AIOKafkaConsumer(
        output_topic, bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        counts: dict[bytes, list[int]] = defaultdict(list)

        first = workers(env)
        await first.ready()
        await send_round(producer, input_topic, FIRST_ROUND)
        await read_counts(consumer, counts, FIRST_ROUND)
        assert await first.stop() == 0, first.log()

        # The table lives in RocksDB (through rocksdict) under the datadir, one database per partition.
        assert table_databases(Path(env["NERVE_FAUST_SMOKE_DATADIR"])) == [
            f"counts-{partition}.db" for partition in range(PARTITIONS)
        ]

        # A restarted worker continues from the stored counts instead of starting again at 1.
        second = workers(env)
        await second.ready()
        await send_round(producer, input_topic, dict.fromkeys(FIRST_ROUND, 1))
        await read_counts(consumer, counts, {key: n + 1 for key, n in FIRST_ROUND.items()})
        assert await second.stop() == 0, second.log()
    finally:
        await consumer.stop()

    assert dict(counts) == {key: list(range(1, n + 2)) for key, n in FIRST_ROUND.items()}
    for worker_log in (first.log(), second.log()):
        assert "Traceback" not in worker_log, worker_log
