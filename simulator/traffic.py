"""The city's message stream in event time: background readings at a fixed total rate, scenario readings
merged in, taken-over sensors and silenced buildings left out. Pure: the caller says up to which time
(epoch seconds) it wants messages, so the same seed, start and injections give the same bytes.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Final

from schemas import Scalar, event_id
from simulator.city import DEFAULT_TOPIC_ROOT, Building, City, Sensor, topic_roots
from simulator.readings import BAD_KINDS, bad_payload, encode, normal_value, tags_of
from simulator.scenarios import ExpectedAlert, Scenario

DEFAULT_BAD_RATE: Final = 0.001


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message to publish at `due` (epoch seconds; the event's `ts` for a good reading).
    `event_id` is the id the gateway gives the event (None for a bad payload, `bad` then says which)."""

    due: float
    topic: str
    payload: bytes
    sensor: Sensor
    value: Scalar | None
    event_id: str | None
    bad: str | None = None
    scenario: str | None = None


@dataclass(frozen=True, slots=True)
class Injection:
    """A scenario placed in time: it starts at `start_ts` (epoch seconds, a whole second)."""

    scenario: Scenario
    start_ts: float
    expected: tuple[ExpectedAlert, ...]

    @property
    def label(self) -> str:
        return self.scenario.label

    @property
    def ends_ts(self) -> float:
        return self.start_ts + self.scenario.span_s


class Traffic:
    """Messages of `city` from `start_ts` on: `rate` background readings per second (round-robin over a
    seeded shuffle of every sensor), a fraction `bad_rate` of them bad payloads, plus injected scenarios."""

    def __init__(
        self,
        city: City,
        *,
        start_ts: float,
        rate: float = 200.0,
        seed: int = 0,
        topic_root: str = DEFAULT_TOPIC_ROOT,
        bad_rate: float = DEFAULT_BAD_RATE,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of events per second (got {rate})")
        if not 0.0 <= bad_rate <= 1.0:
            raise ValueError(f"bad_rate must be within [0, 1] (got {bad_rate})")
        self.city = city
        self.start_ts = start_ts
        self.rate = rate
        self.bad_rate = bad_rate
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        roots = topic_roots(city, topic_root)
        self._buildings: dict[str, Building] = {b.path: b for b in city.buildings}
        self._topics = {s.id: s.topic(roots[s.building]) for s in city.sensors}
        self._order = list(city.sensors)
        self._rng.shuffle(self._order)
        self._k = 0  # index of the next background reading
        self._cursor = 0  # position in `_order` of the next background sensor
        self._scripted: list[tuple[float, int, Message]] = []
        self._seq = 0
        self._taken: dict[str, list[tuple[float, float]]] = {}  # sensor id → [(from, until)]
        self._silent: dict[str, list[tuple[float, float]]] = {}  # building path → [(from, until)]
        self.injections: list[Injection] = []

    # ------------------------------------------------------------ scenarios
    def inject(self, scenario: Scenario, start_ts: float) -> Injection:
        """Place `scenario` at `start_ts` (rounded up to a whole second, so that its readings' event times
        are exact and its `for` durations hold to the second)."""
        start = float(math.ceil(start_ts))
        for sensor_id in scenario.sensors:
            self._taken.setdefault(sensor_id, []).append((start, start + scenario.span_s))
        if scenario.silence is not None:
            self._silent.setdefault(scenario.silence, []).append((start, start + scenario.silence_s))
        for reading in scenario.readings:
            ts = start + reading.offset_s
            sensor = reading.sensor
            if self._silenced(sensor.building, ts):
                continue
            building = self._buildings[sensor.building]
            payload = encode(reading.value, ts, sensor.unit, tags_of(sensor, building, ts))
            message = Message(
                due=ts,
                topic=self._topics[sensor.id],
                payload=payload,
                sensor=sensor,
                value=reading.value,
                event_id=event_id(sensor.id, ts, reading.value),
                scenario=scenario.label,
            )
            heapq.heappush(self._scripted, (ts, self._seq, message))
            self._seq += 1
        injection = Injection(scenario, start, scenario.expected_alerts(start))
        self.injections.append(injection)
        return injection

    def silenced(self, building: str, ts: float) -> bool:
        """Whether a scenario keeps `building` (a path) silent at `ts`."""
        return self._silenced(building, ts)

    def _silenced(self, building: str, ts: float) -> bool:
        spans = self._silent.get(building)
        return spans is not None and any(a <= ts < b for a, b in spans)

    def _taken_over(self, sensor: str, ts: float) -> bool:
        spans = self._taken.get(sensor)
        return spans is not None and any(a <= ts <= b for a, b in spans)

    # ------------------------------------------------------------ the stream
    @property
    def next_due(self) -> float:
        """Epoch seconds of the next message."""
        background = self.start_ts + self._k / self.rate
        return min(background, self._scripted[0][0]) if self._scripted else background

    def until(self, ts: float) -> list[Message]:
        """Every message due at or before `ts` (epoch seconds) not yet taken, in due order."""
        out: list[Message] = []
        scripted = self._scripted
        while True:
            background = self.start_ts + self._k / self.rate
            if scripted and scripted[0][0] <= background:
                if scripted[0][0] > ts:
                    break
                out.append(heapq.heappop(scripted)[2])
                continue
            if background > ts:
                break
            self._k += 1
            message = self._background(round(background, 3))
            if message is not None:
                out.append(message)
        return out

    def _background(self, ts: float) -> Message | None:
        order = self._order
        for _ in range(len(order)):  # the next sensor that is neither taken over nor silenced
            sensor = order[self._cursor]
            self._cursor = (self._cursor + 1) % len(order)
            if not self._taken_over(sensor.id, ts) and not self._silenced(sensor.building, ts):
                break
        else:
            return None
        building = self._buildings[sensor.building]
        value = normal_value(sensor, building, ts, self._rng)
        payload = encode(value, ts, sensor.unit, tags_of(sensor, building, ts))
        topic = self._topics[sensor.id]
        if self.bad_rate and self._rng.random() < self.bad_rate:
            which = BAD_KINDS[self._rng.randrange(len(BAD_KINDS))]
            return Message(ts, topic, bad_payload(which, payload, ts), sensor, None, None, bad=which)
        return Message(ts, topic, payload, sensor, value, event_id(sensor.id, ts, value))
