"""Engine state in a Faust table: one `reflexes.Store` view per source partition.

Faust writes a table key to the changelog partition of the event being processed, so every engine is
bound to one partition and its keys are namespaced `"<partition>:<key>"`: state written while processing
partition p stays in partition p's RocksDB and changelog, and moves with that partition on a rebalance.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from reflexes.store import State, Store


class TableStore(Store):
    """The keys of one partition in a Faust table (any mutable mapping of str → JSON-able dict)."""

    def __init__(self, table: MutableMapping[str, Any], partition: int) -> None:
        self.table = table
        self.prefix = f"{partition}:"

    def get(self, key: str) -> State | None:
        value = self.table.get(self.prefix + key)
        return value if isinstance(value, dict) else None

    def put(self, key: str, state: State) -> None:
        self.table[self.prefix + key] = state

    def delete(self, key: str) -> None:
        full = self.prefix + key
        if full in self.table:
            del self.table[full]

    def items(self) -> Iterator[tuple[str, State]]:
        size = len(self.prefix)
        return iter([(k[size:], v) for k, v in list(self.table.items()) if k.startswith(self.prefix)])
