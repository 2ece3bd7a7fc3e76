"""What a department's own software uses to hear Nerve: follow its alerts, acknowledge them, list open ones.

Alerts arrive on `<prefix>alerts.<department>` (or `<prefix>alerts`, every alert), keyed by group;
acknowledgements go to `<prefix>acks`, keyed by alert id (SPEC §5). An alert's identity on those topics is
(id, status): delivery is at-least-once, so a retry or a replay may repeat a pair, and `AlertFeed` yields
each pair once.
"""

# aiokafka ships no py.typed marker; its consumers, producers and records are Any here.

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas import Ack, Alert, SchemaError
from schemas.credentials import KafkaAuth, aiokafka_options
from schemas.fields import DEPARTMENT_PATTERN
from schemas.wire import WireModel

log = logging.getLogger("nerve.departments")

DEFAULT_PREFIX: Final = "nerve."
REMEMBERED_PAIRS: Final = 100_000
"""How many (alert id, status) pairs a feed remembers to drop repeats (oldest forgotten first)."""

_RANK: Final = {"raised": 0, "escalated": 1, "cleared": 2}
_CLIENT_ID: Final = "nerve-departments"
M = TypeVar("M", bound=WireModel)


class FeedError(Exception):
    """Kafka could not serve a department's request. `retriable`: trying again later may succeed."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class KafkaUnreachableError(FeedError):
    """No broker answered at the bootstrap address (named in the message)."""

    retriable = True


def _security(auth: KafkaAuth | None) -> dict[str, Any]:
    """aiokafka's TLS/SASL keyword arguments for a department's principal (none for a plaintext broker)."""
    return {} if auth is None else aiokafka_options(auth)


def alerts_topic(department: str | None, prefix: str = DEFAULT_PREFIX) -> str:
    """`<prefix>alerts.<department>`, or `<prefix>alerts` (every alert) when `department` is None."""
    if department is None:
        return f"{prefix}alerts"
    if len(department) > 64 or re.fullmatch(DEPARTMENT_PATTERN, department) is None:
        raise ValueError(
            f"department {department!r}: must be 1-64 letters, digits, '.', '_' or '-' (it names a topic)"
        )
    return f"{prefix}alerts.{department}"


class SeenPairs:
    """The last `capacity` (alert id, status) pairs, to let each through once; the least recent goes first."""

    def __init__(self, capacity: int = REMEMBERED_PAIRS) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def first_time(self, alert_id: str, status: str) -> bool:
        """True when the pair is new (and remember it); False for a repeat of a remembered pair."""
        pair = (alert_id, status)
        if pair in self._pairs:
            self._pairs.move_to_end(pair)
            return False
        self._pairs[pair] = None
        if len(self._pairs) > self.capacity:
            self._pairs.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._pairs)


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one alert stands after everything on the topics: its furthest status and who acknowledged it.

    `raised_ts` is the event time it was raised (epoch seconds; the earliest time seen when the raise
    itself was not on the topic read), `updated_ts` the event time of its furthest status, `acked_at`
    the wall clock of the first acknowledgement.
    """

    id: str
    status: str
    severity: str
    reflex: str
    tier: str
    departments: tuple[str, ...]
    site: str
    group: str
    message: str
    raised_ts: float
    updated_ts: float
    acked_by: str | None = None
    acked_at: float | None = None
    ack_note: str | None = None

    @property
    def acked(self) -> bool:
        return self.acked_by is not None

    @property
    def open(self) -> bool:
        return self.status != "cleared"


def fold_alerts(alerts: Iterable[Alert], acks: Iterable[Ack] = ()) -> list[AlertState]:
    """The state of every alert id in `alerts`, newest raised first (ties by id).

    An alert only moves forward (raised → escalated → cleared) and its records may arrive repeated or
    out of order, so the furthest status wins wherever it appears; departments are the union over all
    its records. The earliest acknowledgement (by `ts`) of each id counts; acks of unknown ids are ignored.
    """
    furthest: dict[str, Alert] = {}
    departments: dict[str, dict[str, None]] = {}
    raised: dict[str, float] = {}
    earliest: dict[str, float] = {}
    for alert in alerts:
        current = furthest.get(alert.id)
        if current is None or _RANK[alert.status] > _RANK[current.status]:
            furthest[alert.id] = alert
        departments.setdefault(alert.id, {}).update(dict.fromkeys(alert.departments))
        earliest[alert.id] = min(alert.ts, earliest.get(alert.id, alert.ts))
        if alert.status == "raised":
            raised[alert.id] = min(alert.ts, raised.get(alert.id, alert.ts))
    first_ack: dict[str, Ack] = {}
    for ack in acks:
        prior = first_ack.get(ack.alert_id)
        if ack.alert_id in furthest and (prior is None or ack.ts < prior.ts):
            first_ack[ack.alert_id] = ack
    states = []
    for alert_id, alert in furthest.items():
        first = first_ack.get(alert_id)
        states.append(
            AlertState(
                id=alert_id,
                status=alert.status,
                severity=alert.severity,
                reflex=alert.reflex,
                tier=alert.tier,
                departments=tuple(departments[alert_id]),
                site=alert.site,
                group=alert.group,
                message=alert.message,
                raised_ts=raised.get(alert_id, earliest[alert_id]),
                updated_ts=alert.ts,
                acked_by=None if first is None else first.by,
                acked_at=None if first is None else first.ts,
                ack_note=None if first is None else first.note,
            )
        )
    states.sort(key=lambda s: (-s.raised_ts, s.id))
    return states


def decode(model: type[M], record: Any) -> M | None:
    """The record's value as `model`, or None (with a warning naming topic, partition and offset)."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    if record.value is None:
        log.warning("skipping a record with no value at %s", where)
        return None
    try:
        return model.from_json(record.value)
    except SchemaError as e:
        log.warning("skipping a malformed %s at %s: %s", model.__name__, where, e)
        return None


async def _start(client: Any, bootstrap: str, deadline: float) -> None:
    """Start an aiokafka client by `deadline` (loop time); stops it and raises FeedError if it cannot."""
    try:
        async with asyncio.timeout_at(deadline):
            await client.start()
    except BaseException as e:  # cancellation included: a half-started client still holds connections
        await client.stop()
        if isinstance(e, KafkaConnectionError | OSError | TimeoutError):
            raise KafkaUnreachableError(f"Kafka is not reachable at {bootstrap}") from e
        if isinstance(e, KafkaError):
            raise FeedError(
                f"Kafka at {bootstrap} refused to start a client: {e}", retriable=e.retriable
            ) from e
        raise


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, feed: AlertFeed) -> None:
        self.feed = feed

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self.feed._release(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        return None


class AlertFeed:
    """A department's alerts, live: `async with AlertFeed(...) as feed: async for alert in feed: ...`.

    Yields each (id, status) pair once (the last 100 000 pairs are remembered) and skips malformed
    records with a warning. With `group`, the feed is a member of that consumer group and commits what
    it has handled: an alert counts as handled once the caller asks for the next one, or leaves the
    `async with` without an exception; a restarted service resumes after it. Without `group` it starts at
    the end of the topic (or the beginning with `from_beginning`) and commits nothing. `security` holds
    the department's principal in a secured city (TLS, SASL user and password).

    Entering waits up to `ready_within_s` seconds for Kafka and for the topic's partitions, so that
    alerts published after `__aenter__` returns are seen; raises `KafkaUnreachableError` if no broker answers.
    """

    def __init__(
        self,
        bootstrap: str,
        department: str | None,
        *,
        prefix: str = DEFAULT_PREFIX,
        group: str | None = None,
        from_beginning: bool = False,
        ready_within_s: float = 10.0,
        remember: int = REMEMBERED_PAIRS,
        security: KafkaAuth | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.department = department
        self.topic = alerts_topic(department, prefix)
        self.group = group
        self.from_beginning = from_beginning
        self.ready_within_s = ready_within_s
        self.duplicates = 0
        """Records skipped as a repeat of an (id, status) pair already yielded."""
        self.malformed = 0
        """Records skipped because they are not a valid Alert."""
        self._seen = SeenPairs(remember)
        self._consumer: Any = None
        self._buffer: deque[Any] = deque()
        self._last: Any = None  # the record behind the alert most recently yielded
        self._handled: dict[Any, int] = {}  # partition → next offset to commit

    async def __aenter__(self) -> Self:
        if self._consumer is not None:
            raise RuntimeError("this AlertFeed is already open")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_within_s
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=_CLIENT_ID,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
            metadata_max_age_ms=30_000,  # find a department topic created after the feed started
            **_security(self.security),
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self) if self.group else None)
        await _start(consumer, self.bootstrap, deadline)
        try:
            await self._settle(consumer, deadline)
        except BaseException:  # `__aexit__` does not run when entering fails
            await consumer.stop()
            raise
        self._consumer = consumer
        return self

    async def _settle(self, consumer: Any, deadline: float) -> None:
        """Wait for partitions and pin the starting offsets: "latest" means when the feed was opened."""
        try:
            async with asyncio.timeout_at(deadline):
                # aiokafka has no public "assigned" event for a consumer without a group: poll.
                while not consumer.assignment():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                for tp in consumer.assignment():
                    await consumer.position(tp)
        except TimeoutError:
            # The topic does not exist yet, or this group member got no partitions: it will catch up.
            log.info(
                "%s: no partitions assigned within %.0f s; following anyway", self.topic, self.ready_within_s
            )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        if exc_type is None:
            self._mark(self._last)
        self._last = None
        self._buffer.clear()
        try:
            await self._commit(consumer)
        finally:
            await consumer.stop()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Alert:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("use `async with AlertFeed(...)` before iterating")
        self._mark(self._last)  # the caller asked for the next one: the previous alert is handled
        self._last = None
        while True:
            while self._buffer:
                record = self._buffer.popleft()
                alert = decode(Alert, record)
                if alert is None:
                    self.malformed += 1
                elif not self._seen.first_time(alert.id, alert.status):
                    self.duplicates += 1
                else:
                    self._last = record
                    return alert
                self._mark(record)
            await self._commit(consumer)
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            except KafkaError as e:
                raise FeedError(
                    f"reading {self.topic} from Kafka at {self.bootstrap} failed: {e}", retriable=e.retriable
                ) from e
            for records in batches.values():
                self._buffer.extend(records)

    def _mark(self, record: Any) -> None:
        if record is not None and self.group is not None:
            self._handled[TopicPartition(record.topic, record.partition)] = record.offset + 1

    async def _commit(self, consumer: Any, only: set[Any] | None = None) -> None:
        """Commit the handled offsets (of the partitions in `only`, if given); a failure is only logged:
        the alerts are then delivered again, which at-least-once allows."""
        if not self._handled:
            return
        offsets = {tp: o for tp, o in self._handled.items() if only is None or tp in only}
        for tp in offsets:
            del self._handled[tp]
        offsets = {tp: o for tp, o in offsets.items() if tp in consumer.assignment()}
        if not offsets:
            return
        try:
            async with asyncio.timeout(10):
                await consumer.commit(offsets)
        except (KafkaError, TimeoutError) as e:
            log.warning("%s: committing offsets for group %s failed: %r", self.topic, self.group, e)

    async def _release(self, revoked: set[Any]) -> None:
        """Partitions go to another member: commit what was handled there and drop what was not yielded."""
        if self._consumer is None:
            return
        self._buffer = deque(r for r in self._buffer if TopicPartition(r.topic, r.partition) not in revoked)
        await self._commit(self._consumer, only=revoked)


async def acknowledge(
    bootstrap: str,
    alert_id: str,
    by: str,
    *,
    note: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    within_s: float = 10.0,
    security: KafkaAuth | None = None,
) -> Ack:
    """Acknowledge `alert_id` on `<prefix>acks` (keyed by the alert id, acks=all); returns the Ack sent.

    `ts` is now (epoch seconds). Raises SchemaError for an invalid id, name or note, KafkaUnreachableError
    when no broker answers, FeedError when Kafka does not confirm the write within `within_s` seconds.
    """
    fields: dict[str, object] = {"alert_id": alert_id, "by": by, "ts": time.time()}
    if note is not None:
        fields["note"] = note
    ack = Ack.from_dict(fields)
    topic = f"{prefix}acks"
    deadline = asyncio.get_running_loop().time() + within_s
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=_CLIENT_ID,
        acks="all",
        enable_idempotence=True,
        **_security(security),
    )
    await _start(producer, bootstrap, deadline)
    try:
        async with asyncio.timeout_at(deadline):
            await producer.send_and_wait(topic, ack.to_json(), key=alert_id.encode())
    except TimeoutError as e:
        raise FeedError(
            f"Kafka at {bootstrap} did not confirm the ack on {topic} within {within_s:g} s", retriable=True
        ) from e
    except KafkaError as e:
        raise FeedError(f"writing to {topic} at {bootstrap} failed: {e}", retriable=e.retriable) from e
    finally:
        await producer.stop()
    return ack


async def _read_to_end(consumer: Any, topics: Iterable[str]) -> dict[str, list[Any]]:
    """Every record of `topics` below the end offsets they have now, per topic (a missing topic is empty)."""
    # A metadata request for named topics would create missing ones (auto.create.topics.enable); the
    # full listing does not. The consumer's public `topics()` makes the same request but drops partitions.
    cluster = await consumer._client.fetch_all_metadata()
    tps = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]
    records: dict[str, list[Any]] = {}
    if not tps:
        return records
    consumer.assign(tps)
    ends: Mapping[Any, int] = await consumer.end_offsets(tps)
    await consumer.seek_to_beginning(*tps)
    pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=200)
        for tp, batch in batches.items():
            records.setdefault(tp.topic, []).extend(r for r in batch if r.offset < ends[tp])
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
    return records


async def alert_states(
    bootstrap: str,
    *,
    department: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    within_s: float = 5.0,
    security: KafkaAuth | None = None,
) -> list[AlertState]:
    """Every alert's state (cleared ones included), newest raised first; see `open_alerts`."""
    topic, acks_topic = alerts_topic(department, prefix), f"{prefix}acks"
    deadline = asyncio.get_running_loop().time() + within_s
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=_CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **_security(security),
    )
    await _start(consumer, bootstrap, deadline)
    try:
        async with asyncio.timeout_at(deadline):
            records = await _read_to_end(consumer, [topic, acks_topic])
    except TimeoutError as e:
        raise FeedError(
            f"could not read {topic} and {acks_topic} from Kafka at {bootstrap} within {within_s:g} s",
            retriable=True,
        ) from e
    except KafkaError as e:
        raise FeedError(
            f"reading {topic} from Kafka at {bootstrap} failed: {e}", retriable=e.retriable
        ) from e
    finally:
        # aiokafka (0.14) re-raises CancelledError from stop() when its no-group coordinator task has not
        # run yet: give it one turn of the loop first.
        await asyncio.sleep(0)
        await consumer.stop()
    alerts = (a for a in (decode(Alert, r) for r in records.get(topic, ())) if a is not None)
    acks = [a for a in (decode(Ack, r) for r in records.get(acks_topic, ())) if a is not None]
    return fold_alerts(alerts, acks)


async def open_alerts(
    bootstrap: str,
    *,
    department: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    within_s: float = 5.0,
    security: KafkaAuth | None = None,
) -> list[AlertState]:
    """The alerts not cleared, newest raised first, with who acknowledged them.

    Reads `<prefix>alerts` (or the department's topic) and `<prefix>acks` from the beginning up to their
    end offsets at the time of the call — it does not wait for new records. Raises KafkaUnreachableError
    when no broker answers, FeedError (retriable) when the read does not finish within `within_s` seconds.
    """
    states = await alert_states(
        bootstrap, department=department, prefix=prefix, within_s=within_s, security=security
    )
    return [s for s in states if s.open]
