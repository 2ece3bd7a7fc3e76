"""`Simulator`: the city's traffic paced on the wall clock and handed to a publisher, with a record of
when each event went out (perf_counter and wall clock) so that a host can measure sensor → alert latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from simulator.city import DEFAULT_TOPIC_ROOT, City, check_topic_root, topic_roots
from simulator.publisher import Publisher
from simulator.scenarios import Scenario
from simulator.traffic import DEFAULT_BAD_RATE, Injection, Message, Traffic

MAX_WAIT_S: Final = 0.05
"""Longest pause between two looks at the clock (seconds): stop and injections are noticed this fast."""

MIN_WAIT_S: Final = 0.002
"""Shortest pause: above the rate of one message per 2 ms, messages go out in small batches."""


@dataclass(frozen=True, slots=True)
class Published:
    """A message as it went out: `perf` (time.perf_counter) and `wall` (time.time) just before publishing."""

    message: Message
    perf: float
    wall: float


@dataclass(slots=True)
class Summary:
    """What a run did."""

    started_ts: float = 0.0
    elapsed_s: float = 0.0
    events: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    scripted: int = 0
    acknowledged: bool = True
    injections: list[Injection] = field(default_factory=list)
    pending: list[tuple[Scenario, float]] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return self.events + sum(self.bad.values())


class Simulator:
    """Publishes `city`'s traffic through `publisher` at `rate` events per second (wall clock).

    `inject` places a scenario; `run` publishes until `stop` is set or `duration_s` has passed. Every
    good event is kept in `records` by event id (the newest `max_records`), and `on_publish` (if given) is
    called with each `Published` message, bad ones included, from the event loop's thread.
    """

    def __init__(
        self,
        city: City,
        publisher: Publisher,
        rate: float = 200.0,
        seed: int = 0,
        *,
        topic_root: str = DEFAULT_TOPIC_ROOT,
        bad_rate: float = DEFAULT_BAD_RATE,
        on_publish: Callable[[Published], None] | None = None,
        max_records: int = 1_000_000,
    ) -> None:
        topic_roots(city, check_topic_root(topic_root))  # fail now, not when the run starts
        if rate <= 0 or not 0.0 <= bad_rate <= 1.0:
            raise ValueError(f"rate must be > 0 and bad_rate within [0, 1] (got {rate}, {bad_rate})")
        self.city = city
        self.publisher = publisher
        self.rate = rate
        self.seed = seed
        self.topic_root = topic_root
        self.bad_rate = bad_rate
        self.on_publish = on_publish
        self.max_records = max_records
        self.records: dict[str, Published] = {}
        self.summary = Summary()
        self._traffic: Traffic | None = None
        self._pending: list[tuple[Scenario, float]] = []

    @property
    def running(self) -> bool:
        return self._traffic is not None

    @property
    def injections(self) -> list[Injection]:
        """Scenarios placed in time so far (with their start and expected alerts)."""
        return list(self._traffic.injections) if self._traffic is not None else []

    def inject(self, scenario: Scenario, at_s: float = 0.0) -> Injection | None:
        """Start `scenario` `at_s` seconds from now (while running) or after the run starts (before it);
        returns its `Injection` while running, None when it waits for the run. Call from the loop's thread."""
        if self._traffic is None:
            self._pending.append((scenario, at_s))
            return None
        return self._traffic.inject(scenario, time.time() + at_s)

    async def run(self, stop: asyncio.Event | None = None, duration_s: float | None = None) -> Summary:
        """Publish until `stop` is set or `duration_s` seconds have passed; returns the summary (also in
        `summary`). Scenarios injected for later than the end are listed in `summary.pending`."""
        stop = stop or asyncio.Event()
        start = time.time()
        traffic = Traffic(
            self.city,
            start_ts=start,
            rate=self.rate,
            seed=self.seed,
            topic_root=self.topic_root,
            bad_rate=self.bad_rate,
        )
        self._traffic = traffic
        summary = self.summary = Summary(started_ts=start)
        end = start + duration_s if duration_s is not None else float("inf")
        pending = sorted(self._pending, key=lambda item: item[1])
        self._pending = []
        for scenario, at_s in pending:
            if start + at_s < end:
                traffic.inject(scenario, start + at_s)
            else:
                summary.pending.append((scenario, at_s))
        try:
            while not stop.is_set():
                now = time.time()
                for message in traffic.until(min(now, end)):
                    self._publish(message, summary)
                if now >= end:
                    break
                wait = min(MAX_WAIT_S, max(MIN_WAIT_S, traffic.next_due - time.time()), end - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            summary.elapsed_s = time.time() - start
            summary.injections = list(traffic.injections)
            summary.acknowledged = await asyncio.to_thread(self.publisher.flush, 10.0)
            self._traffic = None
        return summary

    def _publish(self, message: Message, summary: Summary) -> None:
        record = Published(message, time.perf_counter(), time.time())
        self.publisher.publish(message.topic, message.payload)
        if message.bad is not None:
            summary.bad[message.bad] += 1
        else:
            summary.events += 1
            summary.by_kind[message.sensor.kind] += 1
            if message.scenario is not None:
                summary.scripted += 1
        if message.event_id is not None:
            records = self.records
            if len(records) >= self.max_records:
                del records[next(iter(records))]  # the oldest: dicts keep insertion order
            records[message.event_id] = record
        if self.on_publish is not None:
            self.on_publish(record)
