"""A watchdog for table recovery that stalls with the changelog read but not applied.

Faust 0.15.3 can lose changelog records between its consumer and the table: after a rebalance the consumer's
position in a changelog partition it gained reaches the end, yet none of the records reaches the recovery,
which then waits for them forever ("No event received for active tp … since recovery start" every few
seconds; the symptom of faust-streaming#155). The worker never becomes ready, and its partitions are
handled by no one. Seen in about one failover in ten of
tests/integration/test_brain.py::test_a_killed_worker_loses_no_alert. The path found (a fetch waiting
across the rebalance) is closed by brain_bridge/faust_fixes.py; this watchdog stays as the safety net for
any other path to the same stall.

The watchdog looks once a second at every changelog partition being restored: when the consumer has read
past the last record the recovery applied, nothing of it has arrived for `stall_s`, and nothing is waiting
in the recovery's queue, it seeks the partition back to the first record not applied, so the records are
read again (one applied twice is harmless: the recovery skips offsets it has seen). A partition that stalls
again after `max_rereads` re-reads is a worker that cannot recover: it crashes, so that its supervisor
restarts it and the group gives its partitions to a worker that can.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("nerve.brain")

#: seconds without a changelog record, while the consumer has read past what was applied
STALL_S = 5.0
#: re-reads of one partition in one recovery before the worker gives up
MAX_REREADS = 3
#: how long a position lookup may take (the consumer's thread answers it)
POSITION_TIMEOUT_S = 2.0


class RecoveryStuckError(RuntimeError):
    """Raised (as the worker's crash reason) when re-reading does not get a recovery going again."""


@dataclass(frozen=True)
class Progress:
    """Where the restore of one changelog partition stands."""

    partition: Any  # Faust's TP (topic, partition)
    applied: int  # offset of the last record the recovery applied; -1 before the first
    last: int  # offset of the last record to restore
    position: int | None  # the consumer's next offset to read; None when it has none yet
    idle_s: (
        float  # since the partition's last record reached the recovery (or the recovery or a re-read began)
    )


def stalled(progress: Iterable[Progress], queued: int, stall_s: float = STALL_S) -> list[Progress]:
    """The partitions whose records the consumer has read but the recovery has not received for `stall_s`.

    With records still queued for the recovery, it is behind, not stalled: nothing is."""
    if queued:
        return []
    return [
        p
        for p in progress
        if p.applied < p.last
        and p.idle_s >= stall_s
        and p.position is not None
        and p.position > p.applied + 1
    ]


class RecoveryWatch:
    """Re-reads changelog partitions whose restore stalls; crashes the app when that does not help."""

    def __init__(self, app: Any, stall_s: float = STALL_S, max_rereads: int = MAX_REREADS) -> None:
        self.app = app
        self.stall_s = stall_s
        self.max_rereads = max_rereads
        self.rereads: dict[Any, int] = {}  # partition → re-reads in the current recovery
        self.reread_at: dict[Any, float] = {}  # partition → monotonic time of its last re-read
        self.recovery_started: float | None = None
        # When the consumer's flow was last seen stopped (a rebalance under way): records cut off then are
        # dropped by Faust and read again by its next recovery, so no partition is idle before that.
        self.flow_stopped_at = 0.0

    async def run(self) -> None:
        while not self.app.should_stop:
            await asyncio.sleep(1.0)
            try:
                await self.check()
            except RecoveryStuckError as e:
                log.error("%s", e)
                await self.app.crash(e)
                return
            except Exception as e:  # a partition revoked meanwhile, the consumer stopping: look again later
                log.warning("recovery watch could not look at the recovery", extra={"error": repr(e)})

    async def check(self) -> None:
        recovery = self.app.tables.recovery
        started = recovery._recovery_started_at
        if not recovery.in_recovery or started is None:
            return
        if not self.app.consumer.flow_active:
            self.flow_stopped_at = time.monotonic()
            return
        if started != self.recovery_started:  # a new recovery (a new rebalance): its own count
            self.recovery_started = started
            self.rereads.clear()
            self.reread_at.clear()
        progress = await self.progress(recovery, started)
        for p in stalled(progress, recovery.tables.changelog_queue.qsize(), self.stall_s):
            if not self.unchanged(recovery, started, p):
                return  # a rebalance or a record came meanwhile: look again next time
            count = self.rereads.get(p.partition, 0)
            if count >= self.max_rereads:
                raise RecoveryStuckError(
                    f"restoring the table from {p.partition.topic}[{p.partition.partition}] stalled"
                    f" {count + 1} times (applied up to offset {p.applied} of {p.last}, the consumer at"
                    f" {p.position}); stopping so that the supervisor restarts the worker"
                )
            self.rereads[p.partition] = count + 1
            self.reread_at[p.partition] = time.monotonic()
            log.warning(
                "restoring the table from %s[%s] stalled: the consumer read up to offset %s, none of it"
                " reached the table for %.0f s (applied up to %s of %s); reading it again from %s",
                p.partition.topic,
                p.partition.partition,
                p.position,
                p.idle_s,
                p.applied,
                p.last,
                p.applied + 1,
            )
            await self.app.consumer.seek_wait({p.partition: p.applied + 1})

    def unchanged(self, recovery: Any, started: float, p: Progress) -> bool:
        """Whether the recovery `p` was taken from is still the one running, with the flow on and `p` where it was
        (looking up positions awaits the consumer's thread, and a rebalance may begin meanwhile)."""
        return bool(
            recovery.in_recovery
            and recovery._recovery_started_at == started
            and self.app.consumer.flow_active
            and recovery.active_offsets.get(p.partition) == p.applied
            and recovery.tables.changelog_queue.qsize() == 0
        )

    async def progress(self, recovery: Any, started: float) -> list[Progress]:
        """The partitions being restored that have been idle for `stall_s`, with the consumer's position."""
        now = time.monotonic()
        received = recovery._active_events_received_at
        out: list[Progress] = []
        for tp in list(recovery.active_tps):
            last = recovery.active_highwaters.get(tp)
            applied = recovery.active_offsets.get(tp)
            if last is None or applied is None or applied >= last:
                continue
            since = max(received.get(tp, started), self.reread_at.get(tp, started), self.flow_stopped_at)
            if now - since < self.stall_s:
                continue  # moving, or not idle long enough: no need to ask the consumer's thread
            try:
                async with asyncio.timeout(POSITION_TIMEOUT_S):
                    position = await self.app.consumer.position(tp)
            except TimeoutError:
                continue  # the consumer's thread is busy: this partition is looked at again next time
            out.append(Progress(tp, int(applied), int(last), position, now - since))
        return out
