"""The edge agent's store-and-forward spool: a durable on-disk FIFO in two priority classes.

This module is the only owner of the spool files. Records are kept in RocksDB (rocksdict, raw mode)
under 9-byte keys, a priority byte and a big-endian u64 sequence, so key order is the drain order:
every urgent record before any telemetry, oldest first within a class. A record's value is a 7-byte
header (format, topic length, key length) followed by the topic, the key and the payload, unencoded.

The same store keeps the agent's command ledger (the ids of the commands it carried out, so that one
delivered again after a restart is not actuated twice): a ring of slots under keys 0x03 + a big-endian
u32 slot, each holding the entry's number (u64) and the command id, written in the same atomic, synced
batches as the records.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Literal, NewType, Self, get_args

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

log = logging.getLogger("nerve.edge.spool")

SpoolId = NewType("SpoolId", bytes)
"""Opaque, orderable id of a stored record (its RocksDB key); order is drain order."""

LedgerEntry = tuple[int, int, str]
"""A command ledger entry to store: (slot, number, command id). A slot holds the latest entry written to it."""

_KEY = struct.Struct(">BQ")
_HEADER = struct.Struct(">BHI")  # format, topic length, key length (_NO_KEY: the record has no key)
_FORMAT = 1
_NO_KEY = 0xFFFFFFFF
_SEQ = struct.Struct(">Q")
# Next sequence, written in every append batch so ids are never reused, even after a full drain.
_META_NEXT_SEQ = b"\x02next-seq"
_LEDGER = 3  # first byte of the command ledger's keys; above every record's and the meta key
_LEDGER_KEY = struct.Struct(">BI")  # _LEDGER, slot
_LEDGER_NUMBER = struct.Struct(">Q")  # a ledger value: the entry's number, then the command id (UTF-8)
_DROP_LOG_INTERVAL = 60.0  # seconds between summary lines while a drop episode lasts
# Memory RocksDB may hold, in bytes. The spool is a FIFO: records are read once, just after they were
# written (from the memtable), or once in order while a backlog drains; a block cache saves nothing
# there, and RocksDB's default LRU cache (32 MB) filled up during every drain.
_WRITE_BUFFER = 1 << 20  # per memtable; at most _WRITE_BUFFERS of them (one filling, one flushing)
_WRITE_BUFFERS = 2
_BLOCK_CACHE = 1 << 20
# Records of a class that were appended while all of its records fit in this many bytes stay in memory as
# well (its "tail"), and peek serves them from there: read back from RocksDB and decoded, they cost the
# agent more CPU (7.6 µs a record) than writing them. A class whose records outgrow it (Kafka is away)
# is read from RocksDB again, until it has been drained empty.
_TAIL_BYTES = 1 << 20


WhenFull = Literal["drop_oldest_telemetry", "drop_new_telemetry"]
WHEN_FULL: tuple[WhenFull, ...] = get_args(WhenFull)


class Priority(IntEnum):
    URGENT = 0  # alerts, commands
    TELEMETRY = 1  # sensor events, heartbeats, dead letters


_PRIORITIES = tuple(Priority)  # by value: an Enum call per record was another 1.5 %


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ (object.__setattr__ per field) was 4 %
class SpoolRecord:  # of the agent's CPU, at two records per event (made by ingest, read back by the uplink)
    priority: Priority
    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counts of stored records; `bytes` is what `max_bytes` bounds: the stored record sizes
    (payload + topic + key + 7-byte header), not RocksDB's files on disk."""

    urgent: int
    telemetry: int
    bytes: int
    dropped_telemetry: int  # records, total since open
    dropped_bytes: int  # total since open


class SpoolError(Exception):
    """Base of spool errors; callers decide by type and `retriable`, never by message text."""

    retriable: bool = False


class SpoolUnavailableError(SpoolError):
    """The spool cannot be opened: its path is not writable or another process holds it."""


class SpoolCorruptError(SpoolError):
    """The spool's files or a stored record cannot be read."""


class SpoolWriteError(SpoolError):
    """A write failed (disk full, I/O error); nothing of the batch may be assumed stored."""

    retriable = True


class SpoolClosedError(SpoolError):
    """The spool was used after close()."""


@dataclass(slots=True)
class _DropEpisode:
    """Telemetry dropped since the last log line of an episode of drops."""

    since: float  # monotonic seconds of the last line
    records: int = 0
    bytes: int = 0


def _options() -> Options:
    opts = Options(raw_mode=True)  # raw: our bytes keys sort as written, values are not pickled
    opts.create_if_missing(True)
    opts.set_keep_log_file_num(3)  # RocksDB's own text LOG files, one more per open otherwise
    opts.set_write_buffer_size(_WRITE_BUFFER)  # a gateway's memory, not a server's
    opts.set_max_write_buffer_number(_WRITE_BUFFERS)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(_BLOCK_CACHE))
    opts.set_block_based_table_factory(table)
    # Files that are mostly tombstones after a drain get compacted in the background as well.
    opts.add_compact_on_deletion_collector_factory(10_000, 5_000, 0.5)
    return opts


def _upper_bound(priority: Priority) -> ReadOptions:
    # Only the upper bound: rocksdict 0.3.29's set_iterate_lower_bound sets the upper bound.
    opts = ReadOptions()
    opts.set_iterate_upper_bound(bytes([priority + 1]))
    return opts


def _encode(record: SpoolRecord) -> bytes:
    topic = record.topic.encode()
    if len(topic) > 0xFFFF:
        raise ValueError(f"topic longer than 65535 bytes: {record.topic[:60]}…")
    key_len = _NO_KEY if record.key is None else len(record.key)
    return b"".join((_HEADER.pack(_FORMAT, len(topic), key_len), topic, record.key or b"", record.value))


def _decode(spool_id: bytes, data: bytes) -> SpoolRecord:
    try:
        fmt, topic_len, key_len = _HEADER.unpack_from(data)
        pos = _HEADER.size + topic_len
        topic = data[_HEADER.size : pos].decode()
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpoolCorruptError(f"record {spool_id.hex()}: unreadable header or topic: {exc}") from exc
    key = None
    if key_len != _NO_KEY:
        key, pos = data[pos : pos + key_len], pos + key_len
    if fmt != _FORMAT or pos > len(data):
        raise SpoolCorruptError(
            f"record {spool_id.hex()}: format {fmt}, {len(data)} bytes, header says ≥ {pos}"
        )
    return SpoolRecord(_PRIORITIES[spool_id[0]], topic, key, data[pos:])


def _open_error(path: Path, exc: Exception) -> SpoolError:
    # rocksdict raises bare Exception; its message is all there is to tell the causes apart.
    text = str(exc)
    if "lock" in text.lower():
        return SpoolUnavailableError(f"spool {path} is in use by another process or Spool object: {text}")
    if "Corruption" in text or "comparator" in text:
        return SpoolCorruptError(f"spool {path} cannot be read: {text}")
    return SpoolUnavailableError(f"spool {path} cannot be opened: {text}")


class Spool:
    """Durable two-class FIFO. `append` may run in a worker thread while `peek`/`remove` run on the
    event loop: appends are serialised among themselves (so keys become visible in sequence order),
    and one short-held lock guards the counters, the peek cursors and the size cache."""

    def __init__(
        self, path: Path, *, max_bytes: int, sync: bool = True, when_full: WhenFull = "drop_oldest_telemetry"
    ) -> None:
        """Open or recover the spool at `path` (a directory); `max_bytes` bounds the stored record
        bytes. Beyond it, `when_full` drops telemetry: the oldest stored (`drop_oldest_telemetry`), or the
        new that does not fit (`drop_new_telemetry`); urgent records are always stored, making room by
        dropping the oldest telemetry. `sync` fsyncs the WAL on every append."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if when_full not in WHEN_FULL:
            raise ValueError(f"when_full must be one of {', '.join(WHEN_FULL)}, got {when_full!r}")
        self.path = path
        self.max_bytes = max_bytes
        self.when_full = when_full
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolUnavailableError(f"spool {path} cannot be created: {exc}") from exc
        options = _options()
        try:
            # The column family's options must be named too: on reopening an existing spool, rocksdict
            # otherwise opens it with the options saved in RocksDB's OPTIONS file, where neither the
            # block cache (it makes a new 8 MB one) nor the deletion collector is kept.
            self._db = Rdict(str(path), options, column_families={"default": options})
        except Exception as exc:  # rocksdict raises bare Exception
            raise _open_error(path, exc) from exc
        self._append_lock = threading.Lock()
        self._lock = threading.Lock()
        self._reclaim_lock = threading.Lock()  # close() waits for a compaction under way
        self._closed = False
        self._sync = sync
        # Deletes are not fsynced: one lost to a power cut only re-sends a record (ids deduplicate),
        # and the next synced append makes it durable anyway.
        self._lazy_write = WriteOptions()
        self._bounds = {p: _upper_bound(p) for p in Priority}
        self._counts = dict.fromkeys(Priority, 0)
        self._bytes = 0
        self._dropped = self._dropped_bytes = 0
        self._episode: _DropEpisode | None = None
        self._sizes: dict[bytes, int] = {}  # sizes of peeked records, so remove() need not read them
        try:
            self._next_seq = self._visible_seq = self._recover()
        except BaseException:
            self._db.close()
            raise
        # No live key of a class sorts below its cursor: keys are only ever added above all others.
        self._cursor = {p: _KEY.pack(p, 0) for p in Priority}
        # A class's tail, when not None, holds every one of its stored records, in key order, with its size.
        self._tail: dict[Priority, deque[tuple[SpoolId, SpoolRecord, int]] | None] = {
            p: deque() if self._counts[p] == 0 else None for p in Priority
        }
        self._tail_bytes = dict.fromkeys(Priority, 0)

    def _recover(self) -> int:
        """Rebuild counts and bytes by a scan (about 0.1 s per 100k records); return the next sequence."""
        next_seq = 0
        meta = self._db.get(_META_NEXT_SEQ)
        if meta is not None:
            next_seq = _SEQ.unpack(meta)[0]
        it = self._db.iter(self._bounds[Priority.TELEMETRY])
        it.seek_to_first()
        while it.valid():
            key: bytes = it.key()
            if len(key) != _KEY.size:
                raise SpoolCorruptError(f"spool {self.path}: unexpected key {key.hex()}")
            priority, seq = _KEY.unpack(key)
            self._counts[Priority(priority)] += 1
            self._bytes += len(it.value())
            next_seq = max(next_seq, seq + 1)
            it.next()
        return next_seq

    def append(self, records: Sequence[SpoolRecord], ledger: Sequence[LedgerEntry] = ()) -> int:
        """Store `records` and the command `ledger` entries in one atomic batch, durable on return when
        `sync` is set; then, if the spool holds more than `max_bytes`, drop the oldest telemetry until it
        does not. Under `drop_new_telemetry`, telemetry that would take it over `max_bytes` is not stored
        (the ledger entries are). Returns how many of `records` were stored."""
        if not records and not ledger:
            return 0
        with self._append_lock:
            self._check_open()
            batch = WriteBatch(raw_mode=True)
            added = dict.fromkeys(Priority, 0)
            size = 0
            seq = self._next_seq
            entries: list[tuple[SpoolId, SpoolRecord, int]] = []
            refused = refused_bytes = 0
            room = None
            if self.when_full == "drop_new_telemetry":
                with self._lock:  # removes only make more room meanwhile
                    room = self.max_bytes - self._bytes
            for record in records:
                if record.priority not in added:
                    raise ValueError(f"not a spool priority: {record.priority!r}")
                value = _encode(record)
                if room is not None:
                    if record.priority == Priority.TELEMETRY and len(value) > room:
                        refused += 1
                        refused_bytes += len(value)
                        continue
                    room -= len(value)
                key = SpoolId(_KEY.pack(record.priority, seq))
                batch.put(key, value)
                entries.append((key, record, len(value)))
                added[record.priority] += 1
                size += len(value)
                seq += 1
            if not entries and not ledger:  # every record was new telemetry that did not fit
                with self._lock:
                    self._count_drops(refused, refused_bytes)
                return 0
            for slot, number, command_id in ledger:
                batch.put(_LEDGER_KEY.pack(_LEDGER, slot), _LEDGER_NUMBER.pack(number) + command_id.encode())
            batch.put(_META_NEXT_SEQ, _SEQ.pack(seq))
            self._next_seq = seq  # even if the write fails: an id is never reused
            try:
                # A synced write holds the GIL through its fsync (about 200 µs here), stalling the event
                # loop that runs the reflexes; flush_wal(sync) makes the same bytes durable with the GIL
                # released, so the loop keeps going while the spool writer thread waits on the disk.
                self._db.write(batch, self._lazy_write)
            except Exception as exc:
                raise SpoolWriteError(f"spool {self.path}: append of {len(records)} failed: {exc}") from exc
            unsynced: Exception | None = None
            if self._sync:
                try:
                    self._db.flush_wal(True)
                except Exception as exc:
                    unsynced = exc
            # Stored either way: counted and served (the caller's retry after an unsynced write stores a
            # second copy, which the ids make harmless), so that counts, tails and cursors stay true.
            with self._lock:
                for priority, n in added.items():
                    self._counts[priority] += n
                self._bytes += size
                self._visible_seq = seq
                self._into_tails(entries)
                dropped, dropped_bytes = self._drop_oldest_telemetry()
                self._count_drops(refused + dropped, refused_bytes + dropped_bytes)
            if unsynced is not None:
                raise SpoolWriteError(
                    f"spool {self.path}: append of {len(records)} stored but not synced: {unsynced}"
                ) from unsynced
            return len(entries)

    def ledger(self) -> list[tuple[int, str]]:
        """The stored command ledger: (number, command id) of each slot, oldest number first. An
        unreadable entry is logged and left out: it costs at most one repeated command, where refusing to
        start would cost the gateway."""
        with self._append_lock:
            self._check_open()
            bound = ReadOptions()
            bound.set_iterate_upper_bound(bytes([_LEDGER + 1]))
            it = self._db.iter(bound)
            it.seek(bytes([_LEDGER]))
            entries: list[tuple[int, str]] = []
            while it.valid():
                key: bytes = it.key()
                value: bytes = it.value()
                try:
                    if len(key) != _LEDGER_KEY.size or len(value) < _LEDGER_NUMBER.size:
                        raise ValueError(f"{len(key)}-byte key, {len(value)}-byte value")
                    entries.append(
                        (_LEDGER_NUMBER.unpack_from(value)[0], value[_LEDGER_NUMBER.size :].decode())
                    )
                except ValueError as exc:  # UnicodeDecodeError too
                    log.warning(
                        "unreadable command ledger entry skipped",
                        extra={"spool": str(self.path), "key": key.hex(), "error": str(exc)},
                    )
                it.next()
        entries.sort()
        return entries

    def _count_drops(self, n: int, size: int) -> None:
        """With the lock held: count and log `n` telemetry records of `size` bytes dropped by an append."""
        self._dropped += n
        self._dropped_bytes += size
        self._log_drops(n, size)

    def _into_tails(self, entries: list[tuple[SpoolId, SpoolRecord, int]]) -> None:
        """With the lock held: add appended records to their class's tail, or give up a tail they overflow."""
        tails, tail_bytes = self._tail, self._tail_bytes
        for entry in entries:
            priority = entry[1].priority
            tail = tails[priority]
            if tail is None:
                continue
            tail_bytes[priority] += entry[2]
            if tail_bytes[priority] > _TAIL_BYTES:
                # This record and every later one of the class are read from RocksDB, from the oldest on.
                self._cursor[priority] = tail[0][0] if tail else entry[0]
                tails[priority] = None
            else:
                tail.append(entry)

    def _tail_again(self, priority: Priority) -> None:
        """With the lock held: a class left without records keeps its next ones in memory again."""
        if self._counts[priority] <= 0 and self._tail[priority] is None:
            self._tail[priority] = deque()
            self._tail_bytes[priority] = 0

    def _drop_oldest_telemetry(self) -> tuple[int, int]:
        """With the lock held: delete the oldest telemetry until within max_bytes; (records, bytes)."""
        if self._bytes <= self.max_bytes or self._counts[Priority.TELEMETRY] <= 0:
            return 0, 0
        tail = self._tail[Priority.TELEMETRY]
        if tail is not None:  # the drop reads RocksDB, from the oldest record on
            if tail:
                self._cursor[Priority.TELEMETRY] = tail[0][0]
            self._tail[Priority.TELEMETRY] = None
        batch = WriteBatch(raw_mode=True)
        n = size = 0
        cursor = self._cursor[Priority.TELEMETRY]
        it = self._db.iter(self._bounds[Priority.TELEMETRY])
        it.seek(cursor)
        while it.valid() and self._bytes - size > self.max_bytes:
            key: bytes = it.key()
            batch.delete(key)
            self._sizes.pop(key, None)
            size += len(it.value())
            n += 1
            self._cursor[Priority.TELEMETRY] = key
            it.next()
        if n:
            try:
                self._db.write(batch, self._lazy_write)
            except Exception:
                # The append itself is stored; the next append retries the drop, from the same record.
                self._cursor[Priority.TELEMETRY] = cursor
                log.exception("spool %s: dropping %d telemetry records failed", self.path, n)
                return 0, 0
            self._counts[Priority.TELEMETRY] -= n
            self._bytes -= size
            self._tail_again(Priority.TELEMETRY)
        return n, size

    def _log_drops(self, n: int, size: int) -> None:
        """With the lock held: one warning when a drop episode starts, a summary at most every
        `_DROP_LOG_INTERVAL` seconds while it lasts, and one when the spool is within bound again."""
        now = time.monotonic()
        ep = self._episode
        if ep is None:
            if n:
                self._episode = _DropEpisode(now)
                what = (
                    "the %d oldest telemetry records"
                    if self.when_full == "drop_oldest_telemetry"
                    else "%d telemetry records (new ones that did not fit; old ones only for urgent records)"
                )
                log.warning(
                    "spool %s over %d bytes: dropped " + what + " (%d bytes); further drops are summarised",
                    self.path, self.max_bytes, n, size,
                )  # fmt: skip
            return
        ep.records += n
        ep.bytes += size
        # Refusing new telemetry keeps the spool just under its bound, where a small record may still fit:
        # that is not the end of the episode, a drain is.
        limit = self.max_bytes if self.when_full == "drop_oldest_telemetry" else 0.9 * self.max_bytes
        ending = self._closed or (not n and self._bytes <= limit)
        if ep.records and (ending or now - ep.since >= _DROP_LOG_INTERVAL):
            log.warning(
                "spool %s: dropped %d more telemetry records (%d bytes) in %.0f s%s",
                self.path, ep.records, ep.bytes, now - ep.since, "; within bound again" if ending else "",
            )  # fmt: skip
            ep.since, ep.records, ep.bytes = now, 0, 0
        if ending:
            self._episode = None

    def peek(self, limit: int) -> list[tuple[SpoolId, SpoolRecord]]:
        """Up to `limit` of the oldest records, urgent ones first; nothing is removed. Each class is
        read from a cursor past the records already removed, so a long drain stays linear."""
        out: list[tuple[SpoolId, SpoolRecord]] = []
        with self._lock:
            self._check_open()
            for priority in Priority:
                if len(out) >= limit:
                    break
                tail = self._tail[priority]
                if tail is not None:
                    out.extend((sid, record) for sid, record, _ in islice(tail, limit - len(out)))
                    continue
                if self._counts[priority] <= 0:
                    # Every key below the last completed append is gone: skip their tombstones next time.
                    self._cursor[priority] = _KEY.pack(priority, self._visible_seq)
                    continue
                # An append under way has its records in RocksDB before it counts them: they are not
                # served before it has (removed meanwhile, they would be counted after they were gone).
                end = _KEY.pack(priority, self._visible_seq)
                it = self._db.iter(self._bounds[priority])
                it.seek(self._cursor[priority])
                if it.valid():
                    self._cursor[priority] = min(it.key(), end)
                while it.valid() and len(out) < limit:
                    key: bytes = it.key()
                    if key >= end:
                        break
                    value: bytes = it.value()
                    self._sizes[key] = len(value)
                    out.append((SpoolId(key), _decode(key, value)))
                    it.next()
        return out

    def remove(self, ids: Iterable[SpoolId]) -> None:
        """Delete records whose delivery the uplink confirmed; ids already gone are ignored."""
        with self._lock:
            self._check_open()
            pending = dict.fromkeys(ids)  # a repeated id must not be counted twice
            for key in pending:
                if len(key) != _KEY.size or key[0] > Priority.TELEMETRY:
                    raise ValueError(f"not a spool id: {key!r}")
            batch = WriteBatch(raw_mode=True)
            removed = dict.fromkeys(Priority, 0)
            size = 0
            front = dict.fromkeys(Priority, 0)  # per class, how many of its tail's oldest records go
            scattered: dict[Priority, set[bytes]] = {}  # and which others of it (a partly failed send)
            for priority, tail in self._tail.items():
                if not tail:
                    continue
                last = None
                for key, _, n in tail:  # the uplink removes what it peeked: the oldest, in order
                    if key not in pending:
                        break
                    del pending[key]
                    last = key
                    front[priority] += 1
                    size += n
                if last is not None:
                    batch.delete_range(tail[0][0], _KEY.pack(priority, _KEY.unpack(last)[1] + 1))
            for priority in {_PRIORITIES[key[0]] for key in pending}:  # one pass over the rest of a tail
                for key, _, n in islice(self._tail[priority] or (), front[priority], None):
                    if key in pending:
                        del pending[key]
                        scattered.setdefault(priority, set()).add(key)
                        batch.delete(key)
                        removed[priority] += 1
                        size += n
            for key in pending:
                priority = _PRIORITIES[key[0]]
                if self._tail[priority] is not None:  # it holds every record of the class: not stored
                    continue
                known = self._sizes.pop(key, None)
                if known is None:
                    value = self._db.get(key)
                    if value is None:
                        continue
                    known = len(value)
                batch.delete(key)
                removed[priority] += 1
                size += known
            if batch.is_empty():
                return
            try:
                self._db.write(batch, self._lazy_write)
            except Exception as exc:
                raise SpoolWriteError(f"spool {self.path}: remove failed: {exc}") from exc
            for priority, n in front.items():
                tail = self._tail[priority]
                if tail is None:
                    continue
                for _ in range(n):
                    self._tail_bytes[priority] -= tail.popleft()[2]
                removed[priority] += n
            for priority, keys in scattered.items():
                kept: deque[tuple[SpoolId, SpoolRecord, int]] = deque()
                for entry in self._tail[priority] or ():
                    if entry[0] in keys:
                        self._tail_bytes[priority] -= entry[2]
                    else:
                        kept.append(entry)
                self._tail[priority] = kept
            for priority, n in removed.items():
                self._counts[priority] -= n
                self._tail_again(priority)
            self._bytes -= size

    def reclaim(self) -> None:
        """Compact the whole key range so the space of removed records is given back to the disk.
        Blocks for a while (seconds on large spools): call it from a worker thread after a drain."""
        with self._reclaim_lock:
            self._check_open()
            self._db.compact_range(None, None)

    def stats(self) -> SpoolStats:
        """Current counts and bytes, and the telemetry dropped since open."""
        with self._lock:
            return SpoolStats(
                urgent=self._counts[Priority.URGENT],
                telemetry=self._counts[Priority.TELEMETRY],
                bytes=self._bytes,
                dropped_telemetry=self._dropped,
                dropped_bytes=self._dropped_bytes,
            )

    def close(self) -> None:
        """Flush and close; idempotent."""
        with self._reclaim_lock, self._append_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            self._log_drops(0, 0)
            self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosedError(f"spool {self.path} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
