"""Small builders shared by the reflex engine tests."""

from __future__ import annotations

import gc
import textwrap
import tracemalloc
from typing import Any

from reflexes import Engine, load_rules_text
from reflexes.engine import Output
from schemas import Alert, Command, SensorEvent

ROOM = "yuelu/c1/b1/f1/r101"


def ev(
    kind: str, value: Any, ts: float, *, sensor: str | None = None, site: str = ROOM, **tags: Any
) -> SensorEvent:
    return SensorEvent(site=site, sensor=sensor or f"{kind}-1", kind=kind, value=value, ts=ts, tags=tags)


def engine(body: str, *, lateness: str = "5s", tier: str = "all") -> Engine:
    text = f"version: 1\nlateness: {lateness}\nreflexes:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    return Engine(load_rules_text(text, "test.yaml"), tier=tier)  # type: ignore[arg-type]


def run(e: Engine, *events: SensorEvent) -> list[Output]:
    out: list[Output] = []
    for x in events:
        out.extend(e.process(x))
    return out


def alerts(outputs: list[Output]) -> list[Alert]:
    return [o for o in outputs if isinstance(o, Alert)]


def commands(outputs: list[Output]) -> list[Command]:
    return [o for o in outputs if isinstance(o, Command)]


def bytes_per_reading(e: Engine, id_suffix: str = "", n: int = 20_000) -> float:
    """What a reading of a 30 s room average costs engine `e` (traced through Engine.process), 10 rooms at
    1,000 events/s with ids `tp-NNNNNNN` + `id_suffix`; every reading stays within the 30 s."""
    rooms = [f"d/c/b/f1/r{k}" for k in range(10)]

    def events(a: int, b: int) -> list[SensorEvent]:
        return [
            SensorEvent(
                id=f"tp-{i:07d}{id_suffix}",
                site=rooms[i % 10],
                sensor=f"t-{i % 100}",
                kind="temperature",
                value=20 + i % 50 / 10,
                ts=1e9 + i / 1000,
            )
            for i in range(a, b)
        ]

    run(e, *events(0, 2000))  # windows, groups and index entries exist before the measurement
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for a in range(2000, 2000 + n, 2000):
            run(e, *events(a, a + 2000))
        gc.collect()
        per_reading = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert e.stats()["readings"] == 2000 + n  # all within the 30 s: every one kept
    return per_reading
