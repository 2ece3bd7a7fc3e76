"""The hosts' window of recent event ids (duplicates from MQTT redelivery and sensor retries)."""

from __future__ import annotations

from reflexes.recent import RecentIds


def test_remembers_the_last_size_ids_in_arrival_order() -> None:
    recent = RecentIds(3)
    assert [recent.seen(i) for i in "abca"] == [False, False, False, True]
    # A repeat does not refresh an id: "a" is still the oldest and leaves first.
    assert [recent.seen(i) for i in "da"] == [False, False]
    assert [recent.seen(i) for i in "cdb"] == [True, True, False]


def test_size_zero_remembers_nothing() -> None:
    recent = RecentIds(0)
    assert [recent.seen("x"), recent.seen("x")] == [False, False]
