"""A department on the real Kafka: the alert feed sees each (id, status) once, acks land keyed by alert id,
open_alerts folds the topics, and `nerve alerts tail|ack|list` do the same from a terminal.

Every test works under its own topic prefix (`t<uuid>.`), so that nothing another test wrote is read.
"""

# aiokafka ships no py.typed marker; its objects are Any here.

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from brain_bridge.departments import AlertFeed, acknowledge, open_alerts
from schemas import Ack, Alert

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3
T0 = 1_795_593_600.0
KITCHEN, GARAGE, LOBBY = "yuelu/c12/b3/f2/r201", "yuelu/c12/b5/f0/r001", "yuelu/c9/b1/f1/r101"
#: one published record: (key, value)
Record = tuple[bytes, bytes]


def alert(alert_id: str, status: str, group: str, ts: float, **changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "id": alert_id,
        "reflex": "kitchen-fire",
        "tier": "brain",
        "status": status,
        "severity": "critical",
        "departments": ["fire"],
        "site": group,
        "group": group,
        "message": f"Fire suspected in {group}",
        "ts": ts,
        "evidence": [],
        "first_event_ts": ts,
        "emitted_at": ts + 0.01,
    }
    return Alert.from_dict(fields | changes)


def rec(a: Alert) -> Record:
    return a.group.encode(), a.to_json()


# The story on the topics: a kitchen fire raised (and retried), escalated and cleared; a garage fire raised
# and later replayed; a lobby fire raised; one record that is not an alert at all.
A_RAISED = alert("a-kitchen", "raised", KITCHEN, T0)
A_RETRY = alert("a-kitchen", "raised", KITCHEN, T0, emitted_at=T0 + 3)
B_RAISED = alert("b-garage", "raised", GARAGE, T0 + 5)
A_ESCALATED = alert(
    "a-kitchen", "escalated", KITCHEN, T0 + 60, departments=["fire", "police"], message="Escalated: fire"
)
C_RAISED = alert("c-lobby", "raised", LOBBY, T0 + 10, severity="warning")
A_CLEARED = alert("a-kitchen", "cleared", KITCHEN, T0 + 120, message="Cleared: fire")
B_REPLAY = alert("b-garage", "raised", GARAGE, T0 + 5, emitted_at=T0 + 500)
STORY: list[Record] = [
    rec(A_RAISED),
    rec(A_RETRY),
    rec(B_RAISED),
    rec(A_ESCALATED),
    rec(C_RAISED),
    rec(A_CLEARED),
    rec(B_REPLAY),
    (KITCHEN.encode(), b'{"id": "broken", "status": '),
]
#: each (id, status) of the story once, in the order published
STORY_PAIRS = [
    ("a-kitchen", "raised"),
    ("b-garage", "raised"),
    ("a-kitchen", "escalated"),
    ("c-lobby", "raised"),
    ("a-kitchen", "cleared"),
]


@pytest.fixture
async def prefix(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh prefix with its alerts, alerts.fire and acks topics (3 partitions each); deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}."
    topics = [f"{name}alerts", f"{name}alerts.fire", f"{name}acks"]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics], timeout_ms=15_000)
        assert not [e for e in response.topic_errors if e[1] != 0], response.topic_errors
        yield name
    finally:
        try:
            existing = set(await admin.list_topics())
            await admin.delete_topics([t for t in existing if t.startswith(name)], timeout_ms=15_000)
        finally:
            await admin.close()


async def publish(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    """Send the records in order with acks=all and wait until Kafka has them all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        async with asyncio.timeout(30):
            deliveries = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def publish_story(bootstrap: str, prefix: str) -> None:
    await publish(bootstrap, f"{prefix}alerts", STORY)
    await publish(bootstrap, f"{prefix}alerts.fire", STORY)


async def take(feed: AlertFeed, n: int, within_s: float = 30) -> list[Alert]:
    """The next `n` alerts of `feed`; fails if they do not come within `within_s` seconds."""
    got: list[Alert] = []
    try:
        async with asyncio.timeout(within_s):
            while len(got) < n:
                got.append(await anext(feed))
    except TimeoutError:
        raise AssertionError(f"{feed.topic}: {len(got)} of {n} alerts within {within_s:g} s: {got}") from None
    return got


def pairs(alerts: Sequence[Alert]) -> list[tuple[str, str]]:
    return [(a.id, a.status) for a in alerts]


def per_id(items: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The statuses of each alert id in the order seen (partitions interleave different ids freely)."""
    out: dict[str, list[str]] = {}
    for alert_id, status in items:
        out.setdefault(alert_id, []).append(status)
    return out


async def read_all(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """The first `expected` records of `topic` from the beginning (30 s deadline)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(batch)
    finally:
        await consumer.stop()
    return got


# ---------------------------------------------------------------- AlertFeed


async def test_feed_yields_each_id_and_status_once_in_order(
    kafka_bootstrap: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nerve.departments")
    await publish_story(kafka_bootstrap, prefix)
    async with AlertFeed(kafka_bootstrap, "fire", prefix=prefix, from_beginning=True) as feed:
        assert feed.topic == f"{prefix}alerts.fire"
        got = await take(feed, len(STORY_PAIRS))
        assert sorted(pairs(got)) == sorted(STORY_PAIRS)
        assert per_id(pairs(got)) == per_id(STORY_PAIRS)  # raised → escalated → cleared for the kitchen
        # A repeat of a pair already yielded, then a sentinel behind it on the same partition (same key):
        # once the sentinel arrives, the repeat has been read and dropped.
        sentinel = alert("d-kitchen-2", "raised", KITCHEN, T0 + 900)
        await publish(kafka_bootstrap, feed.topic, [rec(A_ESCALATED), rec(sentinel)])
        assert pairs(await take(feed, 1)) == [("d-kitchen-2", "raised")]
        assert (feed.duplicates, feed.malformed) == (3, 1)
    assert got[pairs(got).index(("a-kitchen", "escalated"))] == A_ESCALATED
    warnings = [r.getMessage() for r in caplog.records if r.name == "nerve.departments"]
    assert len(warnings) == 1 and "malformed Alert" in warnings[0] and feed.topic in warnings[0]


async def test_feed_without_from_beginning_starts_at_the_end(kafka_bootstrap: str, prefix: str) -> None:
    await publish_story(kafka_bootstrap, prefix)
    async with AlertFeed(kafka_bootstrap, "fire", prefix=prefix) as feed:
        fresh = alert("e-new", "raised", KITCHEN, T0 + 1000)
        await publish(kafka_bootstrap, feed.topic, [rec(fresh)])
        assert await take(feed, 1) == [fresh]


async def test_feed_with_a_group_resumes_where_it_left_off(kafka_bootstrap: str, prefix: str) -> None:
    # One key, one partition: a strict order to resume in.
    story = [alert(f"s{i}", "raised", KITCHEN, T0 + i) for i in range(4)]
    await publish(kafka_bootstrap, f"{prefix}alerts", [rec(a) for a in story])
    group = f"dispatch-{uuid.uuid4().hex[:8]}"
    async with AlertFeed(kafka_bootstrap, None, prefix=prefix, group=group, from_beginning=True) as feed:
        assert feed.topic == f"{prefix}alerts"
        assert await take(feed, 2) == story[:2]
    async with AlertFeed(kafka_bootstrap, None, prefix=prefix, group=group, from_beginning=True) as feed:
        assert await take(feed, 2) == story[2:]
    # A failure while handling s4 leaves the `async with` with an exception: s4 is not committed.
    later = alert("s4", "raised", KITCHEN, T0 + 4)
    await publish(kafka_bootstrap, f"{prefix}alerts", [rec(later)])

    async def fail_while_handling() -> None:
        async with AlertFeed(kafka_bootstrap, None, prefix=prefix, group=group) as feed:
            assert await take(feed, 1) == [later]
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await fail_while_handling()
    async with AlertFeed(kafka_bootstrap, None, prefix=prefix, group=group) as feed:
        assert await take(feed, 1) == [later]


# ---------------------------------------------------------------- acknowledge, open_alerts


async def test_acknowledge_lands_on_acks_keyed_by_the_alert_id(kafka_bootstrap: str, prefix: str) -> None:
    ack = await acknowledge(kafka_bootstrap, "b-garage", "li.wei", note="crew dispatched", prefix=prefix)
    assert (ack.alert_id, ack.by, ack.note) == ("b-garage", "li.wei", "crew dispatched")
    [record] = await read_all(kafka_bootstrap, f"{prefix}acks", 1)
    assert record.key == b"b-garage"
    assert Ack.from_json(record.value) == ack


async def test_open_alerts_leave_out_cleared_ones_and_flag_acked(kafka_bootstrap: str, prefix: str) -> None:
    await publish_story(kafka_bootstrap, prefix)
    await acknowledge(kafka_bootstrap, "b-garage", "li.wei", prefix=prefix)
    await acknowledge(kafka_bootstrap, "zz-unknown", "li.wei", prefix=prefix)
    for department in (None, "fire"):
        states = await open_alerts(kafka_bootstrap, department=department, prefix=prefix)
        assert [(s.id, s.status, s.acked_by) for s in states] == [
            ("c-lobby", "raised", None),  # raised at T0+10: the newest
            ("b-garage", "raised", "li.wei"),
        ]
        assert states[0].severity == "warning" and states[1].raised_ts == T0 + 5


async def test_open_alerts_of_a_department_without_a_topic_is_empty(
    kafka_bootstrap: str, prefix: str
) -> None:
    assert await open_alerts(kafka_bootstrap, department="police", prefix=prefix) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert f"{prefix}alerts.police" not in await admin.list_topics()  # reading created nothing
    finally:
        await admin.close()


# ---------------------------------------------------------------- the CLI


async def nerve(*argv: str, within_s: float = 60) -> tuple[int, str, str]:
    """`python -m nerve_cli ARGV…` to completion; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nerve_cli",
        *argv,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(within_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise AssertionError(f"nerve {' '.join(argv)} did not finish within {within_s:g} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Tail:
    """A running `nerve alerts tail`, read line by line with deadlines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *argv: str) -> Tail:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nerve_cli",
            "alerts",
            "tail",
            *argv,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def lines(self, n: int, within_s: float = 60) -> list[str]:
        assert self.proc.stdout is not None
        got: list[str] = []
        try:
            async with asyncio.timeout(within_s):
                while len(got) < n:
                    line = await self.proc.stdout.readline()
                    if not line:
                        _, err = await self.proc.communicate()
                        raise AssertionError(f"tail exited ({self.proc.returncode}): {err.decode()}")
                    got.append(line.decode().rstrip("\n"))
        except TimeoutError:
            raise AssertionError(f"{len(got)} of {n} lines within {within_s:g} s: {got}") from None
        return got

    async def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C; the exit code and whatever it still printed."""
        self.proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            out, err = await self.proc.communicate()
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), err.decode()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.communicate()


async def test_cli_tail_prints_each_alert_once_as_json(kafka_bootstrap: str, prefix: str) -> None:
    await publish_story(kafka_bootstrap, prefix)
    tail = await Tail.start(
        "--department",
        "fire",
        "--json",
        "--from-beginning",
        "--prefix",
        prefix,
        "--bootstrap",
        kafka_bootstrap,
    )
    try:
        alerts = [Alert.from_json(line) for line in await tail.lines(len(STORY_PAIRS))]
        assert sorted(pairs(alerts)) == sorted(STORY_PAIRS)
        assert per_id(pairs(alerts)) == per_id(STORY_PAIRS)
        sentinel = alert("d-kitchen-2", "raised", KITCHEN, T0 + 900)
        await publish(kafka_bootstrap, f"{prefix}alerts.fire", [rec(A_CLEARED), rec(sentinel)])
        assert [Alert.from_json(line) for line in await tail.lines(1)] == [sentinel]
        code, rest, err = await tail.interrupt()
    finally:
        await tail.kill()
    assert (code, rest) == (0, "")
    assert "Traceback" not in err


async def test_cli_tail_prints_readable_lines(kafka_bootstrap: str, prefix: str) -> None:
    await publish_story(kafka_bootstrap, prefix)
    tail = await Tail.start(
        "--department", "fire", "--from-beginning", "--prefix", prefix, "--bootstrap", kafka_bootstrap
    )
    try:
        lines = await tail.lines(len(STORY_PAIRS))
        code, _, _ = await tail.interrupt()
    finally:
        await tail.kill()
    assert code == 0
    kitchen = [line for line in lines if line.endswith("[a-kitchen]")]
    assert [line.split()[2] for line in kitchen] == ["raised", "escalated", "cleared"]
    [lobby] = [line for line in lines if line.endswith("[c-lobby]")]
    assert lobby.split()[2:5] == ["raised", "warning", "kitchen-fire"] and f"{LOBBY}  Fire suspected" in lobby


async def test_cli_ack_and_list_open(kafka_bootstrap: str, prefix: str) -> None:
    await publish_story(kafka_bootstrap, prefix)
    common = ("--prefix", prefix, "--bootstrap", kafka_bootstrap)
    code, out, err = await nerve("alerts", "ack", "b-garage", "--by", "li.wei", "--note", "on it", *common)
    assert code == 0, err
    ack = Ack.from_json(out.strip())
    assert (ack.alert_id, ack.by, ack.note) == ("b-garage", "li.wei", "on it")
    [record] = await read_all(kafka_bootstrap, f"{prefix}acks", 1)
    assert record.key == b"b-garage"

    code, out, err = await nerve("alerts", "list", "--open", "--json", "--department", "fire", *common)
    assert code == 0, err
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert [(s["id"], s["status"], s["acked_by"]) for s in listed] == [
        ("c-lobby", "raised", None),
        ("b-garage", "raised", "li.wei"),
    ]
    assert listed[1]["ack_note"] == "on it"

    code, out, err = await nerve("alerts", "list", "--open", *common)
    assert code == 0, err
    assert "2 open alerts" in out and "c-lobby" in out and "b-garage" in out and "a-kitchen" not in out
