"""Workarounds for two record-losing races in faust-streaming 0.15.3 around a rebalance.

The second, in `_Deliverable` below: a fetch waiting across a rebalance took changelog records a recovery
had just sought to, and Faust dropped them. The first (faust-streaming#596, open):

When table recovery completes, `Recovery.on_recovery_completed` resumes the stream partitions, seeks them to
their committed offsets, and only then resumes the app's flow control — and resuming flow control clears
every stream queue. Records the fetcher delivered between the seek and that clear are dropped although
the consumer's position is already past them: they are never processed, and a worker taking over from a
killed one silently misses events (about one failover in four here).

The fix changes the order, not the logic: the stream partitions are resumed only after the seek, the
queues are cleared (flow control resumed) just before it, and the resume that follows no longer clears
what was fetched from the committed offsets on.
Records cleared before the seek are fetched again from the committed offset, so nothing is lost; a record
seen twice is harmless because the brain drops event ids it has already applied.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_PATCHED = "_nerve_clear_before_seek"


class _Deliverable:
    """The partitions whose fetched records aiokafka may hand to Faust now: the active ones, while the flow runs.

    Faust passes aiokafka its live set of active partitions, and a fetch call made before a rebalance waits in
    the consumer's thread for up to a second. When the rebalance pauses every partition that set is empty,
    and aiokafka reads an empty set as *all* partitions: the waiting call took the changelog records a new
    recovery had just sought to, aiokafka's position moved to their end, and Faust dropped them because the
    flow was stopped — the recovery then waited for them forever (seen in about one failover in ten here;
    brain_bridge/recovery_watch.py repairs what gets through). Asked live, this is never empty to aiokafka
    and holds nothing while the flow is stopped, so records stay in aiokafka until Faust can take them."""

    def __init__(self, consumer: Any, active: Any) -> None:
        self.consumer = consumer
        self.active = active

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return bool(self.consumer.flow_active) and tp in self.active


def apply() -> None:
    """Install the workarounds (idempotent)."""
    if getattr(Recovery.on_recovery_completed, _PATCHED, False):
        return
    fetch_records: Callable[..., Awaitable[Any]] = AIOKafkaConsumerThread._fetch_records

    @functools.wraps(fetch_records)
    async def _fetch_records(
        self: AIOKafkaConsumerThread,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (Faust's signature)
        max_records: int | None = None,
    ) -> Any:
        if active_partitions is not None:  # None: a client-only app reads every partition
            active_partitions = _Deliverable(self.consumer, active_partitions)
        return await fetch_records(
            self, consumer, active_partitions, timeout=timeout, max_records=max_records
        )

    AIOKafkaConsumerThread._fetch_records = _fetch_records  # type: ignore[method-assign]
    original: Callable[..., Awaitable[None]] = Recovery.on_recovery_completed

    @functools.wraps(original)
    async def on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
        app: Any = self.app
        consumer: Any = app.consumer
        flow = app.flow_control
        seek = consumer.perform_seek
        resume = flow.resume

        async def clear_then_seek() -> None:
            resume()  # clears the queues: whatever they hold predates the seek and is fetched again
            await seek()

        def resume_without_clearing() -> None:
            if not flow.is_active():
                resume()

        # The stream partitions stay paused until the seek is done, so the fetcher cannot deliver records
        # from the position before the seek and move Faust's read offsets past what the seek rewinds to
        # (records between the two would then be dropped as already read).
        resume_partitions = consumer.resume_partitions
        deferred: list[Any] = []

        def resume_deferred() -> None:
            if app.consumer_generation_id != generation_id:
                # A newer rebalance has begun and paused its partitions: resuming these now would let the
                # streams run before that rebalance's tables are restored. Its own recovery resumes them.
                deferred.clear()
                return
            while deferred:
                resume_partitions(deferred.pop(0))

        async def clear_then_seek_then_fetch() -> None:
            await clear_then_seek()
            resume_deferred()

        consumer.perform_seek = clear_then_seek_then_fetch
        consumer.resume_partitions = deferred.append
        flow.resume = resume_without_clearing
        try:
            await original(self, generation_id)
        finally:
            del consumer.perform_seek  # back to the class's methods
            del consumer.resume_partitions
            del flow.resume
            resume_deferred()  # no seek (an empty assignment, or a new rebalance): resume as Faust would

    setattr(on_recovery_completed, _PATCHED, True)
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
