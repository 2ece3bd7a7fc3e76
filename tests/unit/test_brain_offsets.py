"""The brain's watch for records Faust fetched but never handed to an agent."""

from __future__ import annotations

import logging

import pytest

from brain_bridge.worker import OffsetWatch


def test_offsets_in_turn_and_rewinds_are_not_losses(caplog: pytest.LogCaptureFixture) -> None:
    watch = OffsetWatch()
    for offset in (5, 6, 7, 3, 4, 5):  # a rebalance seeks back to the committed offset 3
        watch.saw("nerve.events", 0, offset)
    watch.saw("nerve.events", 1, 40)  # the first record of a partition may start anywhere
    assert watch.skipped == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_jump_forward_is_counted_and_named(caplog: pytest.LogCaptureFixture) -> None:
    watch = OffsetWatch()
    watch.saw("nerve.events", 2, 10)
    watch.saw("nerve.events", 3, 11)  # another partition does not count
    watch.saw("nerve.events", 2, 14)
    assert watch.skipped == 3
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "records 11..13 of nerve.events[2]" in record.getMessage()
