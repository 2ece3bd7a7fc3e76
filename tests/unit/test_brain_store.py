"""The brain's write-behind table store: the engine behaves as on a MemoryStore, the table gets one write
per changed key per flush, and a fresh engine on the flushed table goes on exactly where the old one was."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from brain_bridge.store import TableStore
from reflexes import Engine, load_rules_text
from reflexes.engine import Output
from tests.unit.test_reflex_state import RULES, _apply, step


class JsonTable(dict[str, bytes]):
    """Stands in for a Faust table: values stored as JSON (a fresh dict at every read); writes counted."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        raw = super().get(key)
        return default if raw is None else orjson.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, orjson.dumps(value))

    def items(self) -> Any:
        return [(k, orjson.loads(v)) for k, v in super().items()]


def test_writes_wait_for_the_flush_and_collapse_per_key() -> None:
    table = JsonTable()
    store = TableStore(table, 3)
    state: dict[str, Any] = {"n": 0}
    for n in range(1, 6):
        state["n"] = n
        store.put("count|c1", state)
    store.put("other|c2", {"x": 1})
    assert table.writes == 0 and store.get("count|c1") == {"n": 5}
    assert store.flush() == 2
    assert table.writes == 2 and orjson.loads(dict.__getitem__(table, "3:count|c1")) == {"n": 5}
    assert store.flush() == 0 and table.writes == 2


def test_reads_come_from_the_table_once_and_deletes_reach_it() -> None:
    table = JsonTable()
    writer = TableStore(table, 0)
    writer.put("a|g", {"v": 1})
    writer.flush()
    reader = TableStore(table, 0)
    first = reader.get("a|g")
    assert first == {"v": 1} and reader.get("a|g") is first and table.reads == 1
    assert reader.get("missing|g") is None and reader.get("missing|g") is None and table.reads == 2
    reader.delete("a|g")
    assert reader.get("a|g") is None and "0:a|g" in table  # not yet
    reader.flush()
    assert "0:a|g" not in table and list(reader.items()) == []


def test_other_partitions_keys_are_not_its_items() -> None:
    table = JsonTable()
    for partition in (0, 1):
        store = TableStore(table, partition)
        store.put("r|g", {"p": partition})
        store.flush()
    assert list(TableStore(table, 1).items()) == [("r|g", {"p": 1})]


def test_past_its_limit_the_cache_drops_clean_states_at_a_flush() -> None:
    table = JsonTable()
    store = TableStore(table, 0, cache_limit=3)
    for i in range(5):
        store.put(f"r|g{i}", {"i": i})
    store.flush()
    reads = table.reads
    assert store.get("r|g4") == {"i": 4} and table.reads == reads + 1  # read again from the table


@settings(max_examples=120, deadline=None)
@given(st.lists(step, max_size=80), st.lists(st.integers(0, 80), max_size=6), st.data())
def test_an_engine_on_the_table_store_pages_as_on_memory_across_takeovers(
    steps: list[tuple[Any, ...]], cuts: list[int], data: st.DataObject
) -> None:
    rules = load_rules_text(RULES)
    clock, seen = [0.0], list[Output]()
    uncut = _apply(Engine(rules), steps, clock, seen)

    table = JsonTable()
    clock, seen = [0.0], []
    store = TableStore(table, 2)
    engine = Engine(rules, store)
    pieces: list[str] = []
    bounds = sorted({c for c in cuts if c < len(steps)} | {0, len(steps)})
    for lo, hi in itertools.pairwise(bounds):  # each piece: one Kafka message (a bundle)
        pieces.extend(_apply(engine, steps[lo:hi], clock, seen))
        engine.checkpoint()
        store.flush()  # as the worker does before Faust acknowledges the message
        if data.draw(st.booleans()):  # another worker takes the partition over from the changelog
            store = TableStore(table, 2)
            engine = Engine(rules, store)
    assert pieces == uncut
