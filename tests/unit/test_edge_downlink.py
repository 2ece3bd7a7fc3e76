"""The downlink's command consumer at shutdown: a consumer whose close hangs (its last offset commit
retrying while Kafka's group coordinator is unsettled) does not hold up the agent's shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from rocksdict import Options, Rdict

from edge_agent import downlink
from edge_agent.downlink import CommandLedger, Downlink
from edge_agent.spool import Priority, Spool, SpoolRecord
from schemas import Command


class HangingConsumer:
    """Stands in for AIOKafkaConsumer: starts, has nothing to read, and never finishes `stop`."""

    instances: ClassVar[list[HangingConsumer]] = []

    def __init__(self, *topics: str, **config: Any) -> None:
        self.stop_called = False
        HangingConsumer.instances.append(self)

    async def start(self) -> None:
        return None

    async def getmany(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self) -> None:
        return None

    async def stop(self) -> None:
        self.stop_called = True
        await asyncio.Event().wait()  # a coordinator that never answers


async def test_shutdown_does_not_wait_for_a_consumer_that_cannot_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(downlink, "AIOKafkaConsumer", HangingConsumer)
    monkeypatch.setattr(downlink, "CONSUMER_STOP_S", 0.3)
    HangingConsumer.instances.clear()
    link = Downlink(bootstrap="unused:9092", topic="t", group="g", scope="a/b", actuate=lambda _c: None)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    started = time.monotonic()

    await asyncio.wait_for(task, 5)

    assert HangingConsumer.instances and HangingConsumer.instances[0].stop_called
    assert time.monotonic() - started < 2.0


class OneBatchConsumer:
    """Stands in for AIOKafkaConsumer: one batch of commands, then nothing; records what is done, in order."""

    done: ClassVar[list[str]] = []
    payloads: ClassVar[list[bytes]] = []

    def __init__(self, *topics: str, **config: Any) -> None:
        OneBatchConsumer.done.append(f"auto_commit={config.get('enable_auto_commit')}")
        self._batch = [SimpleNamespace(value=v) for v in OneBatchConsumer.payloads]

    async def start(self) -> None:
        return None

    async def getmany(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        batch, self._batch = self._batch, []
        if not batch:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        return {"tp": batch}

    async def commit(self) -> None:
        OneBatchConsumer.done.append("commit")

    async def stop(self) -> None:
        OneBatchConsumer.done.append("stop")


@pytest.mark.parametrize("settled", [True, False])
async def test_offsets_are_committed_after_the_batch_is_carried_out_and_settled(
    monkeypatch: pytest.MonkeyPatch, settled: bool
) -> None:
    """No timer commits (a stop has nothing left to commit); each batch is committed once carried out and
    settled (delivered to the broker, the command ledger stored), and not at all if settling fails; commands
    for sites outside the scope are handed to `outside`."""
    monkeypatch.setattr(downlink, "AIOKafkaConsumer", OneBatchConsumer)
    commands = [
        Command(id=f"c{i}", alert_id="a", site=site, target="valve", command="close", ts=1.0)
        for i, site in enumerate(("a/b/f1", "a/bb/f1", "a/b/f2"))
    ]
    OneBatchConsumer.done.clear()
    OneBatchConsumer.payloads[:] = [c.to_json() for c in commands]

    async def settle() -> bool:
        OneBatchConsumer.done.append("settle")
        return settled

    link = Downlink(
        bootstrap="unused:9092",
        topic="t",
        group="g",
        scope="a/b",
        actuate=lambda c: OneBatchConsumer.done.append(f"actuate {c.id}"),
        settle=settle,
        outside=lambda c: OneBatchConsumer.done.append(f"outside {c.id}"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    deadline = time.monotonic() + 5
    while "settle" not in OneBatchConsumer.done:
        assert time.monotonic() < deadline, OneBatchConsumer.done
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)

    assert OneBatchConsumer.done == [
        "auto_commit=False",
        "actuate c0",
        "outside c1",
        "actuate c2",
        "settle",
        *(["commit"] if settled else []),
        "stop",
    ]


def test_a_command_is_carried_out_once_by_id() -> None:
    ledger = CommandLedger(size=2)
    ids = [
        Command(id=f"c{i}", alert_id="a", site="a/b", target="valve", command="close", ts=1.0).id
        for i in range(3)
    ]

    assert [ledger.first_time(i) for i in ids] == [True, True, True]
    assert ledger.first_time("c2") is False
    assert ledger.first_time("c0") is True  # beyond `size` ids back, forgotten


def test_the_ledger_outlives_the_spool_it_is_stored_in(tmp_path: Path) -> None:
    """Ids stored in the spool are known after a reopen; the stored ring keeps the last `size` of them."""
    with Spool(tmp_path / "queue", max_bytes=1 << 30) as spool:
        ledger = CommandLedger(size=3, restored=spool.ledger())
        assert [ledger.first_time(f"c{i}") for i in range(4)] == [True] * 4
        assert ledger.take() == []  # carried out, but not yet taken by the broker: nothing to store
        for i in range(4):
            ledger.delivered(f"c{i}")
        entries = ledger.take()
        assert ledger.take() == []
        spool.append([], entries[:2])  # c0, c1 stored on their own
        spool.append([SpoolRecord(Priority.URGENT, "t", None, b"alert")], entries[2:])  # c2, c3 with a record
        assert ledger.first_time("c4") is True
        ledger.delivered("c4")
        spool.append([], ledger.take())

    with Spool(tmp_path / "queue", max_bytes=1 << 30) as spool:
        assert spool.ledger() == [(2, "c2"), (3, "c3"), (4, "c4")]  # c0 and c1's slots were written over
        assert spool.stats().urgent == 1  # ledger entries are not records
        assert [r.value for _, r in spool.peek(10)] == [b"alert"]
        again = CommandLedger(size=3, restored=spool.ledger())
        assert [again.first_time(f"c{i}") for i in (2, 3, 4)] == [False] * 3
        assert again.first_time("c0") is True  # beyond `size` ids back, forgotten
        again.delivered("c0")
        spool.append([], again.take())

    with Spool(tmp_path / "queue", max_bytes=1 << 30) as spool:
        assert spool.ledger() == [(3, "c3"), (4, "c4"), (5, "c0")]


def test_a_ledger_write_that_fails_is_given_back_in_order() -> None:
    ledger = CommandLedger(size=10)
    ledger.delivered("a")
    failed = ledger.take()
    ledger.delivered("b")
    ledger.give_back(failed)
    assert [command_id for _, _, command_id in ledger.take()] == ["a", "b"]


def test_entries_waiting_to_be_stored_are_bounded_by_the_ring_and_the_newest_kept() -> None:
    ledger = CommandLedger(size=3)
    for i in range(5):  # a disk that fails for a while
        ledger.delivered(f"c{i}")
    assert [(slot, n, i) for slot, n, i in ledger.take()] == [(2, 2, "c2"), (0, 3, "c3"), (1, 4, "c4")]

    ledger.delivered("c5")
    failed = ledger.take()
    ledger.delivered("c6")
    ledger.delivered("c7")
    ledger.delivered("c8")
    ledger.give_back(failed)  # the write of c5 failed while c6..c8 came: the newest three are kept
    assert [i for _, _, i in ledger.take()] == ["c6", "c7", "c8"]


def test_entries_count_as_stored_only_once_their_write_is_done() -> None:
    ledger = CommandLedger(size=10)
    ledger.delivered("c0")
    mark = ledger.numbered
    assert not ledger.stored_below(mark)
    entries = ledger.take()
    assert not ledger.stored_below(mark)  # taken, being written
    ledger.give_back(entries)
    assert not ledger.stored_below(mark)
    entries = ledger.take()
    ledger.stored(entries)
    assert ledger.stored_below(mark)
    ledger.delivered("c1")
    assert ledger.stored_below(mark) and not ledger.stored_below(ledger.numbered)


def test_a_full_spool_that_drops_new_telemetry_still_stores_the_ledger(tmp_path: Path) -> None:
    with Spool(tmp_path / "queue", max_bytes=10, when_full="drop_new_telemetry") as spool:
        stored = spool.append([SpoolRecord(Priority.TELEMETRY, "t", None, b"x" * 100)], [(0, 0, "c0")])
        assert stored == 0
        assert spool.stats().dropped_telemetry == 1
        assert spool.ledger() == [(0, "c0")]


def test_an_unreadable_ledger_entry_is_skipped_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "queue"
    with Spool(path, max_bytes=1 << 30) as spool:
        spool.append([], [(0, 7, "c7"), (1, 8, "c8")])
    db = Rdict(str(path), Options(raw_mode=True))
    db[b"\x03\x00\x00\x00\x01"] = b"\x00" * 8 + b"\xff\xfe"  # c8's slot: not UTF-8
    db[b"\x03\x00"] = b"short"
    db.close()
    with Spool(path, max_bytes=1 << 30) as spool:
        assert spool.ledger() == [(7, "c7")]
    assert sum("unreadable command ledger entry" in r.message for r in caplog.records) == 2
