"""Engine state in a Faust table: one `reflexes.Store` view per source partition, written behind.

Faust writes a table key to the changelog partition of the event being processed, so every engine is
bound to one partition and its keys are namespaced `"<partition>:<key>"`: state written while processing
partition p stays in partition p's RocksDB and changelog, and moves with that partition on a rebalance.

Every table write is a RocksDB put, a JSON encoding of the whole state (a window with all its readings)
and a record on the changelog, and every read a RocksDB get and a JSON decoding. The engine touches a
group's state for each event, so the store keeps the states it has read or written in memory and writes
the changed ones to the table in `flush`, which the worker calls once per Kafka message before moving on
(before Faust acknowledges it): a bundle of re-keyed events costs one changelog record per group it
changed, not one per event, and nothing acknowledged is missing from the changelog.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from reflexes.store import State, Store

CACHE_LIMIT = 50_000  # states kept in memory per partition; past it, the clean ones are dropped at a flush


class TableStore(Store):
    """The keys of one partition in a Faust table (any mutable mapping of str → JSON-able dict)."""

    def __init__(
        self, table: MutableMapping[str, Any], partition: int, cache_limit: int = CACHE_LIMIT
    ) -> None:
        self.table = table
        self.prefix = f"{partition}:"
        self.cache_limit = cache_limit
        self._cache: dict[str, State | None] = {}  # key → state as last read or written (None: absent)
        self._dirty: set[str] = set()  # keys written or deleted since the last flush

    def get(self, key: str) -> State | None:
        try:
            return self._cache[key]
        except KeyError:
            value = self.table.get(self.prefix + key)
            state = value if isinstance(value, dict) else None
            self._cache[key] = state
            return state

    def put(self, key: str, state: State) -> None:
        self._cache[key] = state
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        self._cache[key] = None
        self._dirty.add(key)

    def flush(self) -> int:
        """Write every state changed since the last flush to the table; returns how many keys."""
        written = len(self._dirty)
        for key in self._dirty:
            state, full = self._cache[key], self.prefix + key
            if state is not None:
                self.table[full] = state
            elif full in self.table:
                del self.table[full]
        self._dirty.clear()
        if len(self._cache) > self.cache_limit:
            self._cache.clear()  # all clean now: they are read again from the table when needed
        return written

    def items(self) -> Iterator[tuple[str, State]]:
        self.flush()
        size = len(self.prefix)
        cache = self._cache
        found = [(k[size:], v) for k, v in list(self.table.items()) if k.startswith(self.prefix)]
        # the very dicts the engine holds, where it holds them, so a change through either is one change
        return iter([(k, cache.get(k) or v) for k, v in found])
