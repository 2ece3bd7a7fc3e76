"""The floor under any Faust agent: a no-op agent draining a backlog, records per CPU-second.

    python -m bench.faust_floor --kafka HOST:PORT --topic T --count N --out FILE.json

A fresh Faust app (its own app id, in-memory store, uvloop as the brain runs) whose one agent reads raw
bytes from `topic` with `stream.events()`, as the brain's agents do, and does nothing with them. From its
first record to its `count`-th it measures wall time and the process's CPU time (every thread: Faust
runs aiokafka's consumer in a thread of its own), writes them to `--out` and exits. Whatever the brain
spends per event beyond this, it spends in its own code; this much it cannot get under while every
event is a Faust record.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(kafka: str, topic: str, count: int, out: Path, datadir: Path) -> Any:
    import faust

    app = faust.App(
        f"nerve-bench-faust-floor-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{kafka}",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    started: list[float] = []

    @app.agent(source)
    async def noop(stream: faust.StreamT[bytes]) -> None:
        n = 0
        async for _event in stream.events():
            if not started:
                started.extend((time.monotonic(), cpu_s()))
            n += 1
            if n == count:
                finish(n, time.monotonic() - started[0], cpu_s() - started[1], out)

    return app


def finish(records: int, wall: float, cpu: float, out: Path) -> None:
    """Write the result and end the process: a measurement, not a service to stop gracefully."""
    result: dict[str, Any] = {"records": records, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    result["records_per_cpu_s"] = round(records / cpu, 1) if cpu > 0 else None
    out.write_bytes(orjson.dumps(result))
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--datadir", type=Path, required=True)
    args = parser.parse_args(argv)
    app = build(args.kafka, args.topic, args.count, args.out, args.datadir)
    sys.argv = [sys.argv[0], "--loop", "uvloop", "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
