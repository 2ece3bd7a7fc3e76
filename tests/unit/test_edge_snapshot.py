"""The edge agent's engine snapshot on disk: one JSON line per group, and the older one-object format."""

from __future__ import annotations

from pathlib import Path

from edge_agent.agent import read_snapshot, write_snapshot
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
