"""The edge agent's engine snapshot on disk: one JSON line per group, and the older one-object format."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.agent import read_snapshot, save_snapshot, write_snapshot
from reflexes import Engine, MemoryStore, load_rules_text
from reflexes.windows import Floats, Ids
from schemas import SensorEvent

RULES = """\
version: 1
reflexes:
  - id: hot-room
    tier: edge
    when: {kind: temperature, avg: "> 40"}
    within: 30s
    per: room
    then:
      - alert: {to: [fire], severity: warning, message: "Hot room {site}"}
"""


def busy_engine() -> Engine:
    engine = Engine(load_rules_text(RULES), tier="edge")
    for i in range(300):
        site = f"d/c/b/f{i % 3}/r{i % 7}"
        engine.process(
            SensorEvent(site=site, sensor=f"t-{i % 11}", kind="temperature", value=20 + i % 30, ts=1e9 + i)
        )
    engine.advance(1e9 + 200)
    return engine


def test_written_state_restores_the_same_engine(tmp_path: Path) -> None:
    engine = busy_engine()
    path = tmp_path / "engine.snapshot.json"
    write_snapshot(engine, path)
    assert path.read_bytes().count(b"\n") == len(engine.store)
    restored = Engine(load_rules_text(RULES), MemoryStore(read_snapshot(path)), tier="edge")
    assert restored.snapshot() == engine.snapshot()


def test_a_snapshot_of_an_older_agent_still_restores(tmp_path: Path) -> None:
    engine = busy_engine()
    path = tmp_path / "engine.snapshot.json"
    path.write_bytes(engine.snapshot())  # what agents wrote before: one JSON object
    restored = Engine(load_rules_text(RULES), MemoryStore(read_snapshot(path)), tier="edge")
    assert restored.snapshot() == engine.snapshot()


def test_restored_windows_are_compact_again(tmp_path: Path) -> None:
    """A snapshot holds windows as JSON lists; the restored engine keeps them as arrays of doubles, like
    the windows it builds itself, and their ids as one run of bytes, or a restart would cost the agent about 120
    more bytes per reading held."""
    engine = busy_engine()
    path = tmp_path / "engine.snapshot.json"
    write_snapshot(engine, path)
    restored = Engine(load_rules_text(RULES), MemoryStore(read_snapshot(path)), tier="edge")
    windows = [state for key, state in restored.store.items() if key.startswith("~") and "t" in state]
    assert windows and sum(len(w["t"]) for w in windows) > 0
    assert all(isinstance(w["t"], Floats) and isinstance(w["v"], Floats) for w in windows)
    assert all(isinstance(w["i"], Ids) for w in windows)


async def test_a_snapshot_taken_while_events_arrive_holds_every_group_whole(tmp_path: Path) -> None:
    """The agent writes its snapshot on the event loop in slices; between them events add groups and
    change others, and groups go (a rules reload): each group is written as it stands at its turn, whole
    (every window's times, values and ids of one length), and one removed before its turn is not written."""
    engine = busy_engine()
    path = tmp_path / "engine.snapshot.json"
    doomed = [key for key, _ in engine.store.items() if key.startswith("hot-room|")][-1]
    interleaved = 0
    writing = True

    async def more_events() -> None:
        nonlocal interleaved
        engine.store.delete(doomed)
        i = 300
        while writing:
            site = f"d/c/b/f{i % 3}/r{i}"  # a new room each time: new groups while the snapshot is written
            engine.process(
                SensorEvent(
                    site=site, sensor=f"t-{i % 11}", kind="temperature", value=20 + i % 30, ts=1e9 + i
                )
            )
            interleaved += 1
            i += 1
            await asyncio.sleep(0)

    engine.checkpoint()  # the clock's entry, which the snapshot writes first
    groups_before = len(engine.store)
    feeder = asyncio.create_task(more_events())  # its first step runs at the snapshot's first slice
    await save_snapshot(engine, path, slice_s=0.0)  # a slice per group: the most interleaving
    writing = False
    await feeder

    assert interleaved > 1
    state = read_snapshot(path)
    assert doomed not in state
    assert len(state) == groups_before - 1  # the groups there when it began, less the one removed since
    windows = [s for k, s in state.items() if k.startswith("~") and "t" in s]
    assert windows
    assert all(len(w["t"]) == len(w["v"]) == len(w["i"]) for w in windows)
    restored = Engine(load_rules_text(RULES), MemoryStore(state), tier="edge")
    assert len(restored.store) == len(state)


async def test_the_snapshot_on_the_loop_is_the_same_as_the_one_at_shutdown(tmp_path: Path) -> None:
    engine = busy_engine()
    await save_snapshot(engine, tmp_path / "a.json")
    write_snapshot(engine, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
