"""The brain's watch for records Faust fetched but never handed to an agent."""

from __future__ import annotations

import logging

import pytest

from brain_bridge.worker import OffsetWatch


def test_offsets_in_turn_and_rewinds_are_not_losses(caplog: pytest.LogCaptureFixture) -> None:
    watch = OffsetWatch()
    # a rebalance seeks back to the committed offset 3
    assert [watch.saw("nerve.events", 0, offset) for offset in (5, 6, 7, 3, 4, 5)] == [None] * 6
    assert watch.saw("nerve.events", 1, 40) is None  # the first record of a partition may start anywhere
    assert watch.skipped == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_jump_forward_is_returned_counted_and_named(caplog: pytest.LogCaptureFixture) -> None:
    watch = OffsetWatch()
    watch.saw("nerve.events", 2, 10)
    watch.saw("nerve.events", 3, 11)  # another partition does not count
    assert watch.saw("nerve.events", 2, 14) == (11, 14)
    assert watch.skipped == 3
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "records 11..13 of nerve.events[2]" in record.getMessage()


def test_a_partition_given_away_is_forgotten() -> None:
    watch = OffsetWatch()
    watch.saw("nerve.events", 0, 10)
    watch.saw("nerve.events", 1, 10)
    watch.keep({("nerve.events", 1)})
    assert watch.saw("nerve.events", 0, 500) is None  # others handled 11..499 meanwhile
    assert watch.saw("nerve.events", 1, 12) == (11, 12)


def test_a_new_assignment_starts_at_the_committed_offset() -> None:
    watch = OffsetWatch()
    watch.start("nerve.events", 0, 120)  # the group committed 120: the next record handed over is 120
    assert watch.saw("nerve.events", 0, 120) is None
    watch.start("nerve.events", 1, 120)
    assert watch.saw("nerve.events", 1, 125) == (120, 125)  # Faust dropped 120..124 before the first one
    assert watch.skipped == 5


def test_a_partition_kept_across_a_rebalance_keeps_what_it_saw() -> None:
    watch = OffsetWatch()
    watch.saw("nerve.events", 0, 10)
    watch.saw("nerve.events", 0, 11)
    watch.start("nerve.events", 0, 8)  # kept: 8..11 were handled here, a rewind to 8 is no loss
    assert [watch.saw("nerve.events", 0, offset) for offset in (8, 9, 10, 11, 12)] == [None] * 5
    assert watch.skipped == 0
