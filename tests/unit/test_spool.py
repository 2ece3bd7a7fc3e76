"""The edge spool on a real RocksDB in tmp_path: order, bound, reclaim, recovery, crash safety, locking."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from edge_agent import spool as spool_module
from edge_agent.spool import (
    WHEN_FULL,
    Priority,
    Spool,
    SpoolClosedError,
    SpoolCorruptError,
    SpoolError,
    SpoolId,
    SpoolRecord,
    SpoolUnavailableError,
    SpoolWriteError,
    WhenFull,
)

U, T = Priority.URGENT, Priority.TELEMETRY
BIG = 1 << 40  # bytes: a bound never reached


def rec(priority: Priority, n: int, size: int = 0, topic: str = "nerve.events") -> SpoolRecord:
    """A record whose value starts with its number `n` and is padded to `size` bytes."""
    value = f"{priority.name}-{n}".encode()
    return SpoolRecord(priority, topic, f"b{n % 7}".encode(), value.ljust(size, b"."))


def stored_size(r: SpoolRecord) -> int:
    """What the spool counts for a record: 7-byte header, topic, key, value (bytes)."""
    return 7 + len(r.topic.encode()) + len(r.key or b"") + len(r.value)


def values(items: list[tuple[SpoolId, SpoolRecord]]) -> list[bytes]:
    return [r.value for _, r in items]


def drain(spool: Spool, chunk: int) -> list[SpoolRecord]:
    out: list[SpoolRecord] = []
    while batch := spool.peek(chunk):
        spool.remove(i for i, _ in batch)
        out.extend(r for _, r in batch)
    return out


def disk_bytes(path: Path) -> int:
    """The bytes of the files under `path`; one that RocksDB's background compaction deletes while this
    walks the folder counts as gone."""
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.path.getsize(os.path.join(d, f))
    return total


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", max_bytes=BIG, sync=False) as s:
        yield s


# --- order -------------------------------------------------------------------------------------


def test_fifo_within_a_class_and_urgent_before_telemetry(spool: Spool) -> None:
    spool.append([rec(T, 0), rec(T, 1), rec(U, 0)])
    spool.append([rec(T, 2)])
    spool.append([rec(U, 1), rec(T, 3), rec(U, 2)])
    assert values(spool.peek(100)) == [
        b"URGENT-0", b"URGENT-1", b"URGENT-2", b"TELEMETRY-0", b"TELEMETRY-1", b"TELEMETRY-2", b"TELEMETRY-3",
    ]  # fmt: skip
    ids = [i for i, _ in spool.peek(100)]
    assert ids == sorted(ids)  # ids order as the drain does
    assert values(spool.peek(2)) == [b"URGENT-0", b"URGENT-1"]
    assert values(spool.peek(4))[3] == b"TELEMETRY-0"
    assert spool.peek(0) == []


def test_peek_does_not_remove_and_remove_continues_the_drain(spool: Spool) -> None:
    spool.append([rec(T, n) for n in range(10)])
    first = spool.peek(3)
    assert spool.peek(3) == first
    spool.remove([first[0][0], first[2][0]])  # not a prefix: record 1 stays first
    assert values(spool.peek(3)) == [b"TELEMETRY-1", b"TELEMETRY-3", b"TELEMETRY-4"]
    spool.remove([first[0][0], first[0][0]])  # already gone, repeated: ignored, not counted twice
    assert spool.stats().telemetry == 8
    live = spool.peek(2)[1][0]
    spool.remove([live, live])  # a live id twice: removed and counted once
    assert spool.stats().telemetry == 7
    assert [r.value for r in drain(spool, 3)] == [f"TELEMETRY-{n}".encode() for n in (1, *range(4, 10))]
    assert spool.stats().telemetry == spool.stats().bytes == 0


def test_urgent_appended_during_a_telemetry_drain_goes_first(spool: Spool) -> None:
    spool.append([rec(T, n) for n in range(6)])
    batch = spool.peek(2)
    spool.remove(i for i, _ in batch)
    spool.append([rec(U, 0)])
    assert values(spool.peek(2)) == [b"URGENT-0", b"TELEMETRY-2"]
    spool.remove(i for i, _ in spool.peek(1))
    assert values(spool.peek(10)) == [f"TELEMETRY-{n}".encode() for n in range(2, 6)]


def test_a_class_outgrowing_its_memory_tail_reads_on_from_disk_and_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = stored_size(rec(T, 0, size=40))
    monkeypatch.setattr(spool_module, "_TAIL_BYTES", 4 * size)  # four telemetry records stay in memory
    path = tmp_path / "spool"

    def names(records: Iterable[SpoolRecord]) -> list[str]:
        return [r.value.rstrip(b".").decode() for r in records]

    with Spool(path, max_bytes=BIG, sync=False) as s:
        s.append([rec(T, n, size=40) for n in range(3)])
        s.remove([s.peek(1)[0][0]])  # from memory
        s.append([rec(T, n, size=40) for n in range(3, 8)])  # 7 stored: the tail gives up at record 5
        s.append([rec(U, 0, size=40)])
        assert names(r for _, r in s.peek(3)) == ["URGENT-0", "TELEMETRY-1", "TELEMETRY-2"]
        batch = s.peek(5)
        s.remove([batch[0][0], batch[2][0], batch[4][0]])  # urgent, 2 and 4: 1 and 3 stay in front
        left = [f"TELEMETRY-{n}" for n in (1, 3, 5, 6, 7)]
        assert names(r for _, r in s.peek(10)) == left
        assert names(drain(s, 2)) == left
        assert s.stats().telemetry == s.stats().urgent == s.stats().bytes == 0
        s.append([rec(T, n, size=40) for n in range(8, 11)])  # drained empty: in memory again
        s.remove([s.peek(1)[0][0]])
    with Spool(path, max_bytes=BIG, sync=False) as s:  # what was removed from memory is gone on disk too
        assert names(r for _, r in s.peek(10)) == ["TELEMETRY-9", "TELEMETRY-10"]
        assert s.stats().telemetry == 2 and s.stats().bytes == 2 * size


def test_records_round_trip_exactly(spool: Spool) -> None:
    records = [
        SpoolRecord(U, "nerve.alerts.fire", None, b'{"id":"a1"}'),
        SpoolRecord(U, "nerve.deadletter", b"", b""),
        SpoolRecord(T, "nerve.events/城市", bytes(range(256)), bytes(range(255, -1, -1)) * 40),
    ]
    spool.append(records)
    assert [r for _, r in spool.peek(10)] == records
    assert spool.stats().bytes == sum(map(stored_size, records))


def test_reopen_keeps_everything_and_continues_sequences(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    with Spool(path, max_bytes=BIG) as s:
        s.append([rec(U, 0), rec(T, 0), rec(T, 1)])
        s.remove([s.peek(3)[1][0]])
        before = s.peek(10)
        stats = s.stats()
    with Spool(path, max_bytes=BIG) as s:
        assert s.peek(10) == before
        assert s.stats() == stats
        s.append([rec(T, 2), rec(U, 1)])
        after = s.peek(10)
        assert values(after) == [b"URGENT-0", b"URGENT-1", b"TELEMETRY-1", b"TELEMETRY-2"]
        assert max(i for i, _ in after) > max(i for i, _ in before)
        drain(s, 10)
        last = max(i for i, _ in after)
    with Spool(path, max_bytes=BIG) as s:  # even after a full drain, ids are not reused
        s.append([rec(U, 9), rec(T, 9)])
        assert all(i[1:] > last[1:] for i, _ in s.peek(2))


def test_reopen_keeps_the_memory_settings(tmp_path: Path) -> None:
    # rocksdict opens an existing database's column family with the options of its OPTIONS file unless
    # told otherwise: a new 8 MB block cache on every restart of the agent.
    path = tmp_path / "spool"
    for _ in range(2):
        with Spool(path, max_bytes=BIG) as s:
            s.append([rec(T, 0)])
            db = s._db  # RocksDB's own figures are not part of the spool's API
            assert db.property_int_value("rocksdb.block-cache-capacity") == spool_module._BLOCK_CACHE


# --- bound ------------------------------------------------------------------------------------


def test_bound_drops_the_oldest_telemetry_never_urgent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = stored_size(rec(T, 0, 100))
    with Spool(tmp_path / "spool", max_bytes=10 * size, sync=False) as s:
        s.append([rec(U, n, 100) for n in range(2)] + [rec(T, n, 100) for n in range(8)])
        assert s.stats().dropped_telemetry == 0
        with caplog.at_level(logging.WARNING, logger="nerve.edge.spool"):
            s.append([rec(T, n, 100) for n in range(8, 11)] + [rec(U, 2, 100)])
        stats = s.stats()
        assert (stats.urgent, stats.telemetry, stats.bytes) == (3, 7, 10 * size)
        assert (stats.dropped_telemetry, stats.dropped_bytes) == (4, 4 * size)
        got = [r.value.rstrip(b".") for _, r in s.peek(100)]
        assert got == [b"URGENT-0", b"URGENT-1", b"URGENT-2"] + [
            f"TELEMETRY-{n}".encode() for n in range(4, 11)
        ]
        [line] = caplog.records
        assert "4 oldest telemetry records" in line.getMessage()
        assert f"({4 * size} bytes)" in line.getMessage()


def test_drop_new_telemetry_keeps_the_oldest_and_still_stores_urgent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = stored_size(rec(T, 0, 100))
    with Spool(tmp_path / "spool", max_bytes=10 * size, sync=False, when_full="drop_new_telemetry") as s:
        assert s.append([rec(T, n, 100) for n in range(8)]) == 8
        with caplog.at_level(logging.WARNING, logger="nerve.edge.spool"):
            assert s.append([rec(T, n, 100) for n in range(8, 12)]) == 2  # 10 and 11 do not fit
            assert s.append([rec(T, 12, 100)]) == 0
            # urgent records are always stored: the oldest telemetry makes room
            assert s.append([rec(U, 0, 100), rec(U, 1, 100)]) == 2
        stats = s.stats()
        assert (stats.urgent, stats.telemetry, stats.bytes) == (2, 8, 10 * size)
        assert (stats.dropped_telemetry, stats.dropped_bytes) == (5, 5 * size)
        assert [r.value.rstrip(b".") for _, r in s.peek(100)] == [b"URGENT-0", b"URGENT-1"] + [
            f"TELEMETRY-{n}".encode() for n in range(2, 10)
        ]
        [line] = caplog.records
        assert "dropped 2 telemetry records (new ones that did not fit" in line.getMessage()
        with caplog.at_level(logging.WARNING, logger="nerve.edge.spool"):
            assert s.append([rec(T, 13, 10)]) == 0  # a smaller one fits no better: the episode goes on
            drain(s, 100)
            assert s.append([rec(T, 99, 100)]) == 1  # drained: the episode ends with its summary
        assert len(caplog.records) == 2
        assert "dropped 4 more telemetry records" in caplog.records[1].getMessage()
        assert "within bound again" in caplog.records[1].getMessage()


def test_an_unknown_policy_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="when_full must be one of drop_oldest_telemetry, drop_new_telemetry"
    ):
        Spool(tmp_path / "spool", max_bytes=BIG, when_full="drop_everything")  # type: ignore[arg-type]


def test_urgent_alone_may_exceed_the_bound(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", max_bytes=500, sync=False) as s:
        s.append([rec(T, 0, 100)])
        s.append([rec(U, n, 200) for n in range(10)])
        s.append([rec(T, 1, 100)])
        stats = s.stats()
        assert (stats.urgent, stats.telemetry, stats.dropped_telemetry) == (10, 0, 2)
        assert stats.bytes > 500
        assert [r.priority for _, r in s.peek(100)] == [U] * 10


def test_one_warning_per_drop_episode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    size = stored_size(rec(T, 0, 100))
    with (
        caplog.at_level(logging.WARNING, logger="nerve.edge.spool"),
        Spool(tmp_path / "spool", max_bytes=5 * size, sync=False) as s,
    ):
        for n in range(20):  # the uplink is down: every append drops one
            s.append([rec(T, n, 100)])
        assert len(caplog.records) == 1
        drain(s, 100)
        s.append([rec(T, 99, 100)])  # within bound again: the episode ends with its summary
        assert len(caplog.records) == 2
        assert "dropped 14 more telemetry records" in caplog.records[1].getMessage()
        assert s.stats().dropped_telemetry == 15


# --- disk space -------------------------------------------------------------------------------


def test_reclaim_gives_the_disk_space_back(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    rng = random.Random(7)
    with Spool(path, max_bytes=BIG, sync=False) as s:
        for _ in range(500):  # 50k records, ~10 MB of incompressible payload
            s.append([SpoolRecord(T, "nerve.events", b"yuelu/c1/b3", rng.randbytes(200)) for _ in range(100)])
        assert s.stats().telemetry == 50_000
        peak = disk_bytes(path)
        assert peak > 9_000_000
        assert len(drain(s, 1000)) == 50_000
        peak = max(peak, disk_bytes(path))
        s.reclaim()
        assert disk_bytes(path) < 0.2 * peak
        assert s.stats().bytes == 0


# --- errors -----------------------------------------------------------------------------------


def test_a_second_spool_on_one_path_fails_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    with Spool(path, max_bytes=BIG):
        with pytest.raises(SpoolUnavailableError, match=str(path)) as err:
            Spool(path, max_bytes=BIG)
        assert not err.value.retriable
        child = subprocess.run(
            [sys.executable, "-c", f"from pathlib import Path; from edge_agent.spool import Spool; Spool(Path({str(path)!r}), max_bytes=1)"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert child.returncode != 0
        assert "SpoolUnavailableError" in child.stderr
        assert f"spool {path} is in use" in child.stderr


def test_a_path_that_cannot_hold_a_spool_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(SpoolUnavailableError, match=str(tmp_path / "file" / "spool")):
        Spool(tmp_path / "file" / "spool", max_bytes=BIG)


def test_closed_spool_and_bad_ids(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", max_bytes=BIG)
    with pytest.raises(ValueError, match="not a spool id"):
        s.remove([SpoolId(b"\x02next-seq")])
    s.close()
    s.close()
    for call in (lambda: s.peek(1), lambda: s.append([rec(U, 0)]), lambda: s.remove([]), s.reclaim):
        with pytest.raises(SpoolClosedError):
            call()
    assert issubclass(SpoolClosedError, SpoolError)
    assert SpoolWriteError.retriable
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path / "other", max_bytes=0)


def test_a_record_of_no_class_is_refused(spool: Spool) -> None:
    with pytest.raises(ValueError, match="not a spool priority"):
        spool.append([rec(U, 0), SpoolRecord(2, "t", None, b"")])  # type: ignore[arg-type]
    assert spool.peek(10) == []


def test_a_foreign_key_fails_the_open_and_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    Spool(path, max_bytes=BIG).close()
    db = Rdict(str(path), Options(raw_mode=True))
    db[b"\x01abc"] = b"x"
    db.close()
    with pytest.raises(SpoolCorruptError, match="unexpected key 01616263"):
        Spool(path, max_bytes=BIG)
    db = Rdict(str(path), Options(raw_mode=True))  # the failed open let go of the spool
    db.close()


def test_an_unreadable_record_raises_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    with Spool(path, max_bytes=BIG) as s:
        s.append([rec(T, 0)])
        [(spool_id, _)] = s.peek(1)
    db = Rdict(str(path), Options(raw_mode=True))
    db[bytes(spool_id)] = b"\x09garbage"
    db.close()
    with Spool(path, max_bytes=BIG) as s, pytest.raises(SpoolCorruptError, match=spool_id.hex()):
        s.peek(1)


# --- concurrency ------------------------------------------------------------------------------


class GatedDb:
    """The spool's Rdict, with `flush_wal` held (while `hold` is set) or failing (while `fail` is set):
    the moment an append has written its batch but not yet counted it; and `write` failing on its
    `fail_write`-th call."""

    def __init__(self, db: Rdict) -> None:
        self.db, self.hold, self.fail = db, False, False
        self.inside, self.release = threading.Event(), threading.Event()
        self.writes, self.fail_write = 0, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)

    def flush_wal(self, sync: bool) -> None:
        if self.fail:
            raise OSError("No space left on device")
        if self.hold:
            self.inside.set()
            self.release.wait(30)
        self.db.flush_wal(sync)

    def write(self, batch: WriteBatch, options: WriteOptions | None = None) -> None:
        self.writes += 1
        if self.writes == self.fail_write:
            raise OSError("I/O error")
        self.db.write(batch, options)


def test_an_append_under_way_is_not_served_before_it_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_TAIL_BYTES", 0)  # served from RocksDB, as after a long outage
    with Spool(tmp_path / "spool", max_bytes=BIG, sync=True) as s:
        s.append([rec(T, n) for n in range(5)])
        gated = s._db = GatedDb(s._db)  # type: ignore[assignment]
        gated.hold = True
        writer = threading.Thread(target=s.append, args=([rec(T, 5)],))
        writer.start()
        try:
            assert gated.inside.wait(30)  # record 5 is in RocksDB, not yet counted
            assert [r.value for r in drain(s, 2)] == [f"TELEMETRY-{n}".encode() for n in range(5)]
            assert s.stats().telemetry == 0
        finally:
            gated.release.set()
            writer.join(30)
        assert s.stats().telemetry == 1
        assert [r.value for r in drain(s, 2)] == [b"TELEMETRY-5"]  # once, and counted right after
        assert (s.stats().telemetry, s.stats().bytes) == (0, 0)
        s._db = gated.db


def test_an_append_written_but_not_synced_fails_and_stays_counted(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", max_bytes=BIG, sync=True) as s:
        gated = s._db = GatedDb(s._db)  # type: ignore[assignment]
        gated.fail = True
        with pytest.raises(SpoolWriteError, match="stored but not synced: No space left"):
            s.append([rec(U, 0), rec(T, 0)])
        gated.fail = False
        s.append([rec(U, 0), rec(T, 0)])  # the caller's retry: a second copy, which ids make harmless
        assert (s.stats().urgent, s.stats().telemetry) == (2, 2)
        assert values(s.peek(10)) == [b"URGENT-0", b"URGENT-0", b"TELEMETRY-0", b"TELEMETRY-0"]
        drain(s, 3)
        assert (s.stats().urgent, s.stats().telemetry, s.stats().bytes) == (0, 0, 0)
        s._db = gated.db


def test_a_failed_drop_leaves_every_counted_record_served(tmp_path: Path) -> None:
    size = stored_size(rec(T, 0, 100))
    with Spool(tmp_path / "spool", max_bytes=4 * size, sync=False) as s:
        s.append([rec(T, n, 100) for n in range(4)])
        failing = s._db = GatedDb(s._db)  # type: ignore[assignment]
        failing.fail_write = 2  # the append's own write succeeds, the drop's fails
        s.append([rec(T, 4, 100), rec(T, 5, 100)])
        assert s.stats().telemetry == 6  # over the bound until the next append retries the drop
        assert [r.value.rstrip(b".") for _, r in s.peek(10)] == [f"TELEMETRY-{n}".encode() for n in range(6)]
        s.append([rec(T, 6, 100)])  # the drop again, from the same oldest record
        assert [r.value.rstrip(b".") for _, r in s.peek(10)] == [
            f"TELEMETRY-{n}".encode() for n in range(3, 7)
        ]
        assert s.stats().dropped_telemetry == 3
        s._db = failing.db


def test_appends_from_a_thread_while_draining(spool: Spool) -> None:
    batches = 200
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for b in range(batches):
                spool.append([rec(T, b * 10 + n) for n in range(9)] + [rec(U, b)])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    got: list[SpoolRecord] = []
    deadline = time.monotonic() + 60
    while (producer.is_alive() or spool.peek(1)) and time.monotonic() < deadline:
        got.extend(drain(spool, 7))
    producer.join(timeout=60)
    assert errors == []
    assert len(got) == batches * 10
    urgent = [r.value for r in got if r.priority is U]
    assert urgent == [f"URGENT-{b}".encode() for b in range(batches)]
    telemetry = [r.value for r in got if r.priority is T]
    assert telemetry == [f"TELEMETRY-{b * 10 + n}".encode() for b in range(batches) for n in range(9)]
    assert spool.stats().urgent == spool.stats().telemetry == spool.stats().bytes == 0


# --- model check ------------------------------------------------------------------------------

records_st = st.lists(
    st.builds(
        SpoolRecord,
        st.sampled_from(Priority),
        st.sampled_from(["nerve.events", "nerve.alerts.fire"]),
        st.none() | st.binary(max_size=8),
        st.binary(max_size=60),
    ),
    min_size=1,
    max_size=6,
)


class SpoolModel(RuleBasedStateMachine):
    """Random append/peek/remove/reopen against two lists; the bound drops the model's oldest telemetry, or
    (drop_new_telemetry) the new telemetry that does not fit.
    The in-memory tail of a class holds up to `tail_bytes`: with small ones, classes keep going from memory
    to RocksDB and back (after being drained empty) in one run."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="nerve-spool-"))
        self.model: dict[Priority, list[tuple[SpoolRecord, SpoolId | None]]] = {U: [], T: []}
        self.seen: list[SpoolId] = []
        self.dropped = 0

    @initialize(
        max_bytes=st.sampled_from([BIG, 300]),
        tail_bytes=st.sampled_from([1 << 20, 0, 60, 200]),
        when_full=st.sampled_from(WHEN_FULL),
    )
    def open(self, max_bytes: int, tail_bytes: int, when_full: WhenFull) -> None:
        self.tail_bytes, spool_module._TAIL_BYTES = spool_module._TAIL_BYTES, tail_bytes
        self.max_bytes, self.when_full = max_bytes, when_full
        self.spool = Spool(self.dir / "spool", max_bytes=max_bytes, sync=False, when_full=when_full)

    @rule(records=records_st)
    def append(self, records: list[SpoolRecord]) -> None:
        stored = self.spool.append(records)
        room = self.max_bytes - sum(stored_size(r) for c in self.model.values() for r, _ in c)
        kept = 0
        for r in records:
            if self.when_full == "drop_new_telemetry":
                if r.priority is T and stored_size(r) > room:
                    self.dropped += 1
                    continue
                room -= stored_size(r)
            self.model[r.priority].append((r, None))
            kept += 1
        assert stored == kept
        while (
            sum(stored_size(r) for c in self.model.values() for r, _ in c) > self.max_bytes and self.model[T]
        ):
            self.model[T].pop(0)
            self.dropped += 1

    @rule(limit=st.integers(0, 12))
    def peek(self, limit: int) -> None:
        got = self.spool.peek(limit)
        expected = (self.model[U] + self.model[T])[:limit]
        assert [r for _, r in got] == [r for r, _ in expected]
        combined = self.model[U] + self.model[T]
        for k, (spool_id, _) in enumerate(got):  # the model learns the ids, which never change
            assert combined[k][1] in (None, spool_id)
            combined[k] = (combined[k][0], spool_id)
        self.model[U], self.model[T] = combined[: len(self.model[U])], combined[len(self.model[U]) :]
        self.seen = [i for i, _ in got]

    @precondition(lambda self: bool(self.seen))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(self.seen), max_size=len(self.seen)))
        self.spool.remove(ids)
        for c in (U, T):
            self.model[c] = [(r, i) for r, i in self.model[c] if i is None or i not in ids]

    @rule()
    def reopen(self) -> None:
        self.spool.close()
        self.spool = Spool(self.dir / "spool", max_bytes=self.max_bytes, sync=False, when_full=self.when_full)
        self.dropped = 0  # dropped totals count since open

    @invariant()
    def stats_match(self) -> None:
        if not hasattr(self, "spool"):
            return
        stats = self.spool.stats()
        assert (stats.urgent, stats.telemetry) == (len(self.model[U]), len(self.model[T]))
        assert stats.bytes == sum(stored_size(r) for c in self.model.values() for r, _ in c)
        assert stats.dropped_telemetry == self.dropped

    def teardown(self) -> None:
        if hasattr(self, "spool"):
            self.spool.close()
        if hasattr(self, "tail_bytes"):
            spool_module._TAIL_BYTES = self.tail_bytes
        shutil.rmtree(self.dir, ignore_errors=True)


SpoolModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestSpoolModel = SpoolModel.TestCase


# --- crash safety -----------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from edge_agent.spool import Priority, Spool, SpoolRecord
spool = Spool(Path(sys.argv[1]), max_bytes=1 << 40, sync=True)
start = int(sys.argv[2])
for b in range(start, start + 100_000):
    spool.append([SpoolRecord(Priority(n % 2), "nerve.events", None, b"%d/%d" % (b, n) + b"." * 300) for n in range(50)])
    print(b, flush=True)
"""


def _kill_after(path: Path, start: int, lines: int) -> int:
    """Run the appending child, SIGKILL it after `lines` acknowledged batches; the last acknowledged one."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(start)], stdout=subprocess.PIPE)
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    acked = start - 1
    try:
        buffered = b""
        while acked < start + lines - 1:
            left = deadline - time.monotonic()
            assert left > 0, "the child did not report progress in time"
            ready, _, _ = select.select([child.stdout], [], [], left)
            if ready:
                chunk = os.read(child.stdout.fileno(), 4096)
                assert chunk, f"the child exited early: {child.wait()}"
                buffered += chunk
                *done, buffered = buffered.split(b"\n")
                acked = max([acked, *map(int, done)])
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()  # acknowledgements written before the kill; a torn last line is ignored
        acked = max([acked, *map(int, (buffered + rest).split(b"\n")[:-1])])
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked


def test_every_acknowledged_append_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    start = 0
    for lines in (20, 5, 40):  # three crashes on one spool, each recovering the last
        acked = _kill_after(path, start, lines)
        with Spool(path, max_bytes=BIG) as s:
            found: dict[int, int] = {}
            for _, r in s.peek(1_000_000):
                batch = int(r.value.split(b"/")[0])
                found[batch] = found.get(batch, 0) + 1
        # Batch numbers run on from round to round, so every earlier round is checked again too.
        assert all(found.get(b) == 50 for b in range(acked + 1)), "an acknowledged batch was lost"
        assert set(found) - set(range(acked + 2)) == set(), "more than the batch in flight appeared"
        assert found.get(acked + 1, 50) == 50, "a batch was stored in part"
        start = max(found) + 1


# --- numbers ----------------------------------------------------------------------------------


def test_throughput_and_recovery_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spool"
    payload = random.Random(1).randbytes(300)
    batches = 1000  # 100k records of 300 bytes
    with Spool(path, max_bytes=BIG, sync=True) as s:
        t0 = time.perf_counter()
        for b in range(batches):
            s.append([SpoolRecord(T, "nerve.events", b"yuelu/c1/b%d" % b, payload) for _ in range(100)])
        append_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with Spool(path, max_bytes=BIG) as s:
        open_s = time.perf_counter() - t0
        assert s.stats().telemetry == 100 * batches
        t0 = time.perf_counter()
        assert len(drain(s, 1000)) == 100 * batches
        drain_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        s.reclaim()
        reclaim_s = time.perf_counter() - t0
    with capsys.disabled():
        print(
            f"\nspool, sync=True: {batches / append_s:,.0f} appends/s of 100×300 B"
            f" ({100 * batches / append_s:,.0f} records/s); peek+remove {100 * batches / drain_s:,.0f} records/s"
            f" (peek 1000); open of 100k records {open_s * 1000:.0f} ms; reclaim {reclaim_s * 1000:.0f} ms"
        )
