"""Small builders shared by the reflex engine tests."""

from __future__ import annotations

import textwrap
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
