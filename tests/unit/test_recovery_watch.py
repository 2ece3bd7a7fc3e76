"""The brain's recovery watchdog: which restores count as stalled, and what it does about them.

The watchdog's effect on a real stall is exercised by tests/integration/test_brain.py (a killed worker's
partitions restored by the survivor); here its decisions are checked against a stand-in for Faust's recovery.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from brain_bridge.recovery_watch import Progress, RecoveryStuckError, RecoveryWatch, stalled

TP2 = TP("app-engine-state-changelog", 2)
TP3 = TP("app-engine-state-changelog", 3)


def progress(applied: int = -1, last: int = 274, position: int | None = 275, idle_s: float = 6.0) -> Progress:
    return Progress(TP2, applied, last, position, idle_s)


def test_a_restore_the_consumer_read_past_but_that_got_nothing_for_a_while_is_stalled() -> None:
    assert stalled([progress()], queued=0, stall_s=5.0) == [progress()]
    assert stalled([progress(applied=100, position=275)], queued=0, stall_s=5.0) == [
        progress(applied=100, position=275)
    ]


@pytest.mark.parametrize(
    ("p", "queued", "why"),
    [
        (progress(idle_s=4.9), 0, "records arrived recently"),
        (progress(), 3, "records wait in the recovery's queue: it is behind, not stalled"),
        (progress(position=0), 0, "the consumer has not read anything yet (Kafka is slow, not Faust)"),
        (progress(applied=100, position=101), 0, "the consumer is where the recovery is"),
        (progress(position=None), 0, "the consumer has no position yet"),
        (progress(applied=274), 0, "everything is applied"),
    ],
)
def test_a_restore_is_not_stalled_when(p: Progress, queued: int, why: str) -> None:
    assert stalled([p], queued=queued, stall_s=5.0) == [], why


class FakeRecovery:
    """The attributes of faust.tables.recovery.Recovery the watchdog reads."""

    def __init__(self, offsets: dict[Any, int], highwaters: dict[Any, int]) -> None:
        self.in_recovery = True
        self._recovery_started_at: float | None = time.monotonic() - 10
        self.active_tps = set(offsets)
        self.active_offsets = dict(offsets)
        self.active_highwaters = dict(highwaters)
        self._active_events_received_at: dict[Any, float] = {}
        self.queued = 0
        self.tables = SimpleNamespace(changelog_queue=SimpleNamespace(qsize=lambda: self.queued))


class FakeConsumer:
    def __init__(self, positions: dict[Any, int]) -> None:
        self.positions = positions
        self.seeks: list[dict[Any, int]] = []
        self.looked_up: list[Any] = []
        self.flow_active = True  # False while a rebalance is under way

    async def position(self, tp: Any) -> int:
        self.looked_up.append(tp)
        return self.positions[tp]

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        self.seeks.append(dict(partitions))


def fake_app(recovery: FakeRecovery, consumer: FakeConsumer) -> Any:
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery), consumer=consumer, should_stop=False)


async def test_a_stalled_partition_is_read_again_from_its_first_record_not_applied() -> None:
    recovery = FakeRecovery({TP2: -1, TP3: 40}, {TP2: 274, TP3: 460})
    recovery._active_events_received_at[TP3] = time.monotonic()  # TP3 is moving
    consumer = FakeConsumer({TP2: 275, TP3: 461})
    watch = RecoveryWatch(fake_app(recovery, consumer), stall_s=5.0)
    await watch.check()
    assert consumer.seeks == [{TP2: 0}]
    # Right after a re-read the partition gets `stall_s` again before it counts as stalled.
    await watch.check()
    assert consumer.seeks == [{TP2: 0}]


async def test_a_partition_that_stalls_after_every_re_read_crashes_the_worker() -> None:
    recovery = FakeRecovery({TP2: 10}, {TP2: 274})
    consumer = FakeConsumer({TP2: 275})
    watch = RecoveryWatch(fake_app(recovery, consumer), stall_s=0.0, max_rereads=2)
    await watch.check()
    await watch.check()
    assert consumer.seeks == [{TP2: 11}, {TP2: 11}]
    with pytest.raises(RecoveryStuckError, match=r"changelog\[2\] stalled 3 times"):
        await watch.check()
    # A new recovery (another rebalance) starts its own count.
    recovery._recovery_started_at = time.monotonic()
    await watch.check()
    assert len(consumer.seeks) == 3


async def test_nothing_is_done_outside_a_recovery() -> None:
    recovery = FakeRecovery({TP2: -1}, {TP2: 274})
    recovery.in_recovery = False
    consumer = FakeConsumer({TP2: 275})
    await RecoveryWatch(fake_app(recovery, consumer), stall_s=0.0).check()
    assert consumer.seeks == []


async def test_the_watch_survives_a_failed_look_and_crashes_the_app_when_stuck() -> None:
    recovery = FakeRecovery({TP2: -1}, {TP2: 274})

    class Flaky(FakeConsumer):
        calls = 0

        async def position(self, tp: Any) -> int:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("partition not assigned")  # e.g. revoked by a rebalance meanwhile
            return await super().position(tp)

    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app = fake_app(recovery, Flaky({TP2: 275}))
    app.crash = crash
    await asyncio.wait_for(RecoveryWatch(app, stall_s=0.0, max_rereads=0).run(), timeout=10)
    assert app.consumer.calls == 2
    assert len(crashes) == 1 and isinstance(crashes[0], RecoveryStuckError)


async def test_nothing_is_done_while_a_rebalance_stops_the_flow_nor_until_stall_s_after_it() -> None:
    recovery = FakeRecovery({TP2: -1}, {TP2: 274})
    consumer = FakeConsumer({TP2: 275})  # a batch cut off by the rebalance: read, never delivered
    watch = RecoveryWatch(fake_app(recovery, consumer), stall_s=5.0)
    consumer.flow_active = False
    await watch.check()
    consumer.flow_active = True  # the next recovery runs: it gets stall_s from here
    await watch.check()
    assert consumer.seeks == [] and consumer.looked_up == []
    watch.flow_stopped_at -= 5.0  # ... and once they have passed, the stall counts
    await watch.check()
    assert consumer.seeks == [{TP2: 0}]


async def test_records_queued_for_the_recovery_or_all_applied_mean_no_stall() -> None:
    recovery = FakeRecovery({TP2: -1, TP3: 460}, {TP2: 274, TP3: 460})
    recovery.queued = 10
    consumer = FakeConsumer({TP2: 275, TP3: 461})
    watch = RecoveryWatch(fake_app(recovery, consumer), stall_s=5.0)
    await watch.check()
    assert consumer.seeks == []
    assert consumer.looked_up == [TP2]  # TP3 is restored: its position is not even asked for


async def test_a_record_applied_while_positions_are_looked_up_cancels_the_re_read() -> None:
    recovery = FakeRecovery({TP2: -1}, {TP2: 274})

    class Late(FakeConsumer):
        async def position(self, tp: Any) -> int:
            recovery.active_offsets[TP2] = 0  # the consumer's thread was slow; the record arrived meanwhile
            return await super().position(tp)

    consumer = Late({TP2: 275})
    await RecoveryWatch(fake_app(recovery, consumer), stall_s=5.0).check()
    assert consumer.looked_up == [TP2] and consumer.seeks == []
