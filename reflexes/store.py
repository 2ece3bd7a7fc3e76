"""Where the engine keeps its state: a small key → JSON-able dict interface with an in-memory version.

The brain backs the same interface with Faust tables (changelogged RocksDB); the edge uses `MemoryStore`.
Keys are `"<reflex id>|<group>"` for reflex state, `"~<family>|<sensor or group>"` for the value windows
that reflexes reading the same readings share (aggregates.Family) and `META_KEY` for the engine's clock.
Values contain only dicts, lists, str, float, int, bool and None, and the `Floats` of value windows (arrays
of doubles that serialise as JSON lists: `windows.jsonable` as orjson's `default=`, `__json__` for Faust),
so any store can serialise them as JSON.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

State = dict[str, Any]
META_KEY = "~meta"


class Store(ABC):
    """Engine state, one JSON-able dict per key."""

    @abstractmethod
    def get(self, key: str) -> State | None: ...

    @abstractmethod
    def put(self, key: str, state: State) -> None:
        """Record `state` under `key`; called after every change, so a changelogged store stays current
        (except on a `MemoryStore`, whose dicts the engine changes in place: it sees only a state's first)."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def items(self) -> Iterator[tuple[str, State]]: ...

    def __len__(self) -> int:
        return sum(1 for _ in self.items())


class MemoryStore(Store):
    """State in a plain dict: the edge agent's store and the one replays and tests use."""

    def __init__(self, data: dict[str, State] | None = None) -> None:
        self.data: dict[str, State] = dict(data or {})

    def get(self, key: str) -> State | None:
        return self.data.get(key)

    def put(self, key: str, state: State) -> None:
        self.data[key] = state

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def items(self) -> Iterator[tuple[str, State]]:
        return iter(list(self.data.items()))

    def __len__(self) -> int:
        return len(self.data)
