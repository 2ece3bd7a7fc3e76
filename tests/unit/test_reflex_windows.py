"""Block-summarised value windows answer every span exactly like a brute-force scan, whatever the order
readings arrive in."""

from __future__ import annotations

import math
import random
import sys
import tracemalloc
from bisect import bisect_left, bisect_right
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflexes.windows import (
    BLOCK,
    MAX_ENTRIES,
    WIDE,
    Floats,
    Ids,
    Window,
    compact,
    evict_values,
    insert_value,
    jsonable,
    span_max,
    span_min,
    span_range,
    span_sum,
    value_window,
)
from tests.unit.reflex_kit import alerts, bytes_per_reading, engine, ev, run

op = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 2000), st.integers(-100, 100)),  # ts in 0.5 s steps
    st.tuples(st.just("again"), st.integers(0, 400)),  # an earlier reading once more
    st.tuples(st.just("evict"), st.integers(0, 2000)),
)


def _check_blocks(w: Window) -> None:
    """The blocks partition the entries in time order and summarise exactly their values."""
    t, v = w["t"], w["v"]
    assert list(t) == sorted(t) and len(t) == len(v) == len(w["i"])
    assert (w.get("vl"), w.get("vh")) == ((min(v), max(v)) if v else (None, None))  # the readings' bounds
    assert w.get("vs") == (sum(v) if v else None)  # integer values: exact
    if "bn" not in w:
        assert len(t) <= 2 * BLOCK
        return
    bt, bn = w["bt"], w["bn"]
    assert list(t) == sorted(t) and len(t) == len(v) == len(w["i"]) == sum(bn)
    assert len(bt) == len(bn) == len(w["bs"]) == len(w["bl"]) == len(w["bh"])
    x = 0
    for p, n in enumerate(bn):
        part = t[x : x + n]
        assert n > 0 and part[0] >= bt[p] and (p + 1 == len(bt) or part[-1] < bt[p + 1])
        assert n <= 2 * BLOCK or part[0] == part[-1]
        assert (w["bl"][p], w["bh"][p]) == (min(v[x : x + n]), max(v[x : x + n]))
        assert w["bs"][p] == sum(v[x : x + n])  # integer values: exact
        x += n


@settings(max_examples=300, deadline=None)
@given(
    st.lists(op, min_size=1, max_size=500),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 600)), max_size=10),
    st.booleans(),
)
def test_spans_match_brute_force_in_any_arrival_order(
    ops: list[tuple[Any, ...]], queries: list[tuple[int, int]], one_length: bool
) -> None:
    """`one_length`: ids of one length, else of growing length (padded slots with their lengths kept)."""
    w = value_window()
    model: dict[str, tuple[float, int]] = {}
    inserted: list[tuple[float, int, str]] = []
    horizon = -math.inf
    for n, o in enumerate(ops):
        if o[0] == "insert":
            ts, v, eid = o[1] / 2, o[2], f"e{n:03d}" if one_length else f"e{n}"
        elif o[0] == "again" and inserted:
            ts, v, eid = inserted[o[1] % len(inserted)]
        else:
            if o[0] == "evict":
                evict_values(w, o[1] / 2)
                horizon = max(horizon, o[1] / 2)
                _check_blocks(w)
            continue
        present = eid in w["i"]
        k = insert_value(w, ts, v, eid)
        if present:
            assert k == -1  # the same event again changes nothing
        elif k >= 0:
            assert (w["t"][k], w["i"][k]) == (ts, eid)
            model[eid] = (ts, v)
        inserted.append((ts, v, eid))
        _check_blocks(w)
    assert isinstance(w["i"], Ids) and (w["i"].lens is None or not one_length)
    kept = dict(zip(w["i"], zip(w["t"], w["v"], strict=True), strict=True))
    assert set(kept) <= set(model)
    assert all(ts < horizon for eid, (ts, _) in model.items() if eid not in kept)  # only evicted ones left
    assert all(model[eid] == kept[eid] for eid in kept)
    t = w["t"]
    for lo, width in queries:
        a, b = bisect_left(t, lo / 2), bisect_right(t, (lo + width) / 2)
        values = w["v"][a:b]
        if values:
            assert (span_min(w, a, b), span_max(w, a, b), span_sum(w, a, b)) == (
                min(values),
                max(values),
                math.fsum(values),  # exactly rounded, whatever the order they arrived in
            )
            for fn, exact in (("min", min(values)), ("max", max(values)), ("sum", sum(values))):
                bounds = span_range(w, a, b, fn)  # from block summaries alone: must hold the exact value
                assert bounds is None or bounds[0] <= exact <= bounds[1]


def test_eviction_drops_whole_blocks_only_and_the_window_stays_bounded() -> None:
    w = value_window()
    for k in range(10 * BLOCK + 5):
        insert_value(w, float(k), float(k % 7), str(k))
    assert insert_value(w, 5.0, 5.0, "5") == -1
    evict_values(w, 3.5 * BLOCK)
    assert w["t"][0] == 3 * BLOCK  # the block holding the horizon stays whole
    assert span_sum(w, 0, len(w["t"])) == sum(float(k % 7) for k in range(3 * BLOCK, 10 * BLOCK + 5))
    evict_values(w, 1e9)
    assert w == value_window()
    small = value_window()
    for k in range(BLOCK):
        insert_value(small, float(k), 1.0, str(k))
    evict_values(small, 10.5)
    assert "bn" not in small and small["t"][0] == 11.0  # no blocks yet: evicted reading by reading
    for k in range(MAX_ENTRIES + 3 * BLOCK):
        insert_value(w, float(k), 1.0, str(k))
    assert len(w["t"]) <= MAX_ENTRIES and w["t"][-1] == MAX_ENTRIES + 3 * BLOCK - 1


def test_out_of_order_inserts_split_blocks_instead_of_rebuilding_them() -> None:
    w = value_window()
    for k in range(4 * BLOCK):
        insert_value(w, float(2 * k), 0.0, f"a{k}")
    blocks = list(w["bt"])
    for k in range(BLOCK + 1):  # all into the first block, between its readings
        insert_value(w, 0.5 + 1.9 * k, float(k), f"b{k}")
    assert w["bt"][0] == blocks[0] and w["bt"][2:] == blocks[1:]  # block 0 split in two, others untouched
    assert w["bn"][0] + w["bn"][1] == 2 * BLOCK + 1
    _check_blocks(w)


def test_block_bounds_hold_the_exact_aggregate_of_large_spans() -> None:
    rng = random.Random(5)
    w = value_window()
    for k in range(2_000):  # about 1 s of disorder, as the engine sees it inside the lateness
        insert_value(w, k / 10 - rng.random(), rng.uniform(-50, 50), str(k))
    t, v = w["t"], w["v"]
    decided = 0
    for _ in range(200):
        a = rng.randrange(0, len(t) - 1)
        b = rng.randrange(a + 1, len(t) + 1)
        for fn, exact in (("min", min(v[a:b])), ("max", max(v[a:b])), ("sum", math.fsum(v[a:b]))):
            bounds = span_range(w, a, b, fn)
            if bounds is not None:
                decided += 1
                margin = 1e-9 * (abs(bounds[0]) + abs(bounds[1]))
                assert bounds[0] - margin <= exact <= bounds[1] + margin
    assert decided > 300


def test_a_window_kept_without_bounds_gets_them_from_its_readings() -> None:
    w = value_window()
    for k in range(3 * BLOCK):
        insert_value(w, float(k), float(k % 11), str(k))
    del w["vl"], w["vh"], w["vs"]  # as an older version kept it
    insert_value(w, 0.5, 4.0, "x")
    assert (w["vl"], w["vh"], w["vs"]) == (0.0, 10.0, sum(w["v"]))
    _check_blocks(w)


def test_a_reading_costs_a_window_its_event_id_s_bytes_and_two_doubles() -> None:
    """Times and values are C doubles, 16 bytes a reading, and ids of one length one run of bytes: 28 bytes
    for a 12-character id, which as a str object in a list would cost 73 more, the floats in lists 48 more.
    An edge agent's 30 s room averages hold hundreds of thousands of readings; the events (and their id
    strings) are gone once applied."""
    n = MAX_ENTRIES
    values = [20.0 + k % 50 / 10 for k in range(n)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        w = value_window()
        for k in range(n):
            insert_value(w, 1e9 + k / 100, values[k], f"live-{k:07d}")
        per_reading = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(w["t"]) == n and w["i"][n - 1] == f"live-{n - 1:07d}"
    assert per_reading < 34, f"{per_reading:.1f} bytes per reading"


def test_ids_are_kept_as_bytes_and_read_back_as_the_strings() -> None:
    ids = Ids(["aé-1", "bé-2"])  # one length in UTF-8 bytes (5), whatever the characters
    ids.append("cé-3")
    ids.insert(0, "zé-0")
    assert (len(ids), ids[0], ids[-1], ids[1:3], list(ids), ids.lens) == (
        4,
        "zé-0",
        "cé-3",
        ["aé-1", "bé-2"],
        ["zé-0", "aé-1", "bé-2", "cé-3"],
        None,  # one length: no lengths kept
    )
    assert ids[::2] == ["zé-0", "bé-2"] and ids[5:9] == []
    del ids[:2]
    assert ids.tolist() == ["bé-2", "cé-3"] and ids == Ids(["bé-2", "cé-3"])
    with pytest.raises(IndexError):
        ids[2]


def test_ids_of_other_lengths_are_padded_or_widen_the_slots() -> None:
    ids = Ids(["abc", "def"])
    ids.append("g")  # shorter: padded, and every length kept from now on
    ids.insert(1, "longer-id")  # longer: every slot widened
    ids.insert(0, "\x00")  # a NUL is an id's own character, not padding
    ids.append("ab\x00")
    expected = ["\x00", "abc", "longer-id", "def", "g", "ab\x00"]
    assert ids.tolist() == expected and [ids[k] for k in range(-6, 6)] == expected * 2
    assert (
        ids.width == 9
        and len(ids.data) == 6 * 9
        and ids.lens is not None
        and list(ids.lens)
        == [
            1,
            3,
            9,
            3,
            1,
            3,
        ]
    )
    del ids[1:3]
    assert ids.tolist() == ["\x00", "def", "g", "ab\x00"] and list(ids.lens) == [1, 3, 1, 3]
    assert Ids(["a", "bb", "ccc"]).tolist() == ["a", "bb", "ccc"]
    empty = Ids(["", "a", ""])  # not an event's id (they are 1 to 128 characters), but kept like any
    assert empty.tolist() == ["", "a", ""] and empty.holds("", 2, 3) and not empty.holds("", 1, 2)
    assert sys.getsizeof(Ids(["x" * 16] * 1000)) > 16_000  # with its bytes, like a list with its slots


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["append", "insert", "delete", "forget"]),
            st.integers(0, 50),
            st.text(st.sampled_from("ab\x00é"), min_size=1, max_size=6),  # NULs as an id's own characters
        ),
        max_size=60,
    )
)
def test_ids_behave_like_a_list_of_the_same_ids(ops: list[tuple[str, int, str]]) -> None:
    """... with "" for each forgotten id, whatever comes after the forgetting (an insert among them too)."""
    ids, model = Ids(), []
    for name, k, event_id in ops:
        if name == "append":
            ids.append(event_id)
            model.append(event_id)
        elif name == "insert":
            k = min(k, len(model))
            ids.insert(k, event_id)
            model.insert(k, event_id)
        elif name == "forget":
            ids.forget(k)
            model[:k] = [""] * min(k, len(model))
            assert len(ids.data) == (len(model) - ids.skip) * ids.width  # the forgotten hold no bytes
        else:
            del ids[:k]
            del model[:k]
            ids.repack()  # as evict_values does
            if model[ids.skip :]:
                assert ids.width == max(1, *(len(x.encode()) for x in model[ids.skip :]))
        assert len(ids) == len(model)
    assert ids.tolist() == model and ids[1:-1] == model[1:-1]
    again = Ids(orjson.loads(orjson.dumps(ids, default=jsonable)))  # as a snapshot reads it back
    assert again.tolist() == model and again.skip >= ids.skip
    for a in range(len(model) + 1):  # `holds` finds exactly the ids a scan of the list finds
        for b in range(a, min(a + 4, len(model)) + 1):
            for event_id in {*model[a:b], *(x + "\x00" for x in model), *(x[:-1] for x in model), "x"}:
                assert ids.holds(event_id, a, b) is (event_id in model[a:b]), (event_id, a, b)


def test_windows_with_ids_of_several_lengths_answer_alike() -> None:
    w, same = value_window(), value_window()
    for k in range(3 * BLOCK):
        insert_value(w, float(k), float(k % 9), f"e{k}")  # e0 … e191: three lengths
        insert_value(same, float(k), float(k % 9), f"e{k:03d}")
    assert isinstance(w["i"], Ids) and w["i"][8:11] == ["e8", "e9", "e10"]
    assert insert_value(w, 100.5, 4.0, "a-longer-id") == 101
    assert insert_value(same, 100.5, 4.0, "a-longer-id") == 101
    assert w["i"][100:103] == ["e100", "a-longer-id", "e101"]
    assert insert_value(w, 7.0, 7.0, "e7") == -1  # still a duplicate
    assert insert_value(w, 100.5, 4.0, "a-longer-id") == -1
    n = len(w["t"])
    assert (span_sum(w, 0, n), span_min(w, 3, n), span_max(w, 0, 90)) == (
        span_sum(same, 0, n),
        span_min(same, 3, n),
        span_max(same, 0, 90),
    )
    evict_values(w, 1e9)  # emptied: it starts afresh
    assert w == value_window()


def test_one_long_id_among_short_ones_turns_the_window_to_a_list_until_it_is_empty() -> None:
    """Padding every 10-byte id to a 100-byte one's width would cost more than a list."""
    wide = value_window()  # as many characters as the slots have bytes, but twice the bytes
    insert_value(wide, 0.0, 1.0, "a" * WIDE)
    insert_value(wide, 1.0, 1.0, "é" * WIDE)
    assert type(wide.get("i")) is list
    w = value_window()
    for k in range(3 * BLOCK):
        insert_value(w, float(k), 1.0, f"short-{k:04d}")
    insert_value(w, 500.0, 1.0, "x" * WIDE)  # as wide as a slot may get: still Ids
    assert isinstance(w["i"], Ids) and w["i"].width == WIDE
    long_id = "y" * (WIDE + 1)
    assert insert_value(w, 1000.0, 2.0, long_id) == 3 * BLOCK + 1
    assert type(w.get("i")) is list and w["i"][-3:] == ["short-0191", "x" * WIDE, long_id]
    assert insert_value(w, 1000.0, 2.0, long_id) == -1
    again = orjson.loads(orjson.dumps(w, default=jsonable))
    compact(again)
    assert type(again.get("i")) is list and again["i"] == w["i"]
    evict_values(w, 1e9)
    assert isinstance(w["i"], Ids)
    padded = value_window()  # slots widened by one long id narrow again once it has left
    insert_value(padded, 0.0, 1.0, "x" * WIDE)
    for k in range(1, 3 * BLOCK):
        insert_value(padded, float(k), 1.0, f"short-{k:04d}")
    assert padded["i"].width == WIDE and padded["i"].lens is not None
    evict_values(padded, 2.0 * BLOCK)  # drops the first block, the long id with it
    assert padded["i"].width == len("short-0001") and padded["i"].lens is None
    first = int(padded["t"][0])
    assert first > 0 and padded["i"].tolist() == [f"short-{k:04d}" for k in range(first, 3 * BLOCK)]
    only_long = value_window()  # ids all of one length, however long, stay Ids
    for k in range(10):
        insert_value(only_long, float(k), 1.0, f"{k}" * 100)
    assert isinstance(only_long["i"], Ids) and only_long["i"][9] == "9" * 100


def test_ids_read_back_from_json_are_made_compact_when_they_have_one_length() -> None:
    w = value_window()
    for k in range(10):
        insert_value(w, float(k), 1.0, f"id-{k}")
    as_json = orjson.loads(orjson.dumps(w, default=jsonable))
    assert as_json["i"] == [f"id-{k}" for k in range(10)]
    compact(as_json)
    assert isinstance(as_json["i"], Ids) and as_json["i"].tolist() == [f"id-{k}" for k in range(10)]
    insert_value(w, 20.0, 1.0, "id-10")  # another length
    mixed = orjson.loads(orjson.dumps(w, default=jsonable))
    compact(mixed)
    assert isinstance(mixed["i"], Ids) and mixed["i"][-2:] == ["id-9", "id-10"]


def test_a_window_read_back_from_json_is_made_compact_and_answers_alike() -> None:
    w = value_window()
    for k in range(3 * BLOCK):
        insert_value(w, float(k), float(k % 13), f"e{k}")
    as_json = orjson.loads(orjson.dumps(w, default=jsonable))
    assert type(as_json["t"]) is list and as_json["t"] == list(w["t"])
    before = (span_sum(as_json, 5, 150), span_min(as_json, 5, 150), span_max(as_json, 5, 150))
    compact(as_json)
    assert isinstance(as_json["t"], Floats) and isinstance(as_json["v"], Floats)
    assert (span_sum(as_json, 5, 150), span_min(as_json, 5, 150), span_max(as_json, 5, 150)) == before
    assert before == (span_sum(w, 5, 150), span_min(w, 5, 150), span_max(w, 5, 150))


def test_faust_encodes_a_window_as_the_json_lists_it_stands_for() -> None:
    """The brain keeps engine state in Faust tables, whose JSON codec asks objects for `__json__`."""
    from faust.utils import json as faust_json

    w = value_window()
    insert_value(w, 1.0, 2.5, "a")
    insert_value(w, 0.5, 3.0, "b")
    assert orjson.loads(faust_json.dumps({"w": w})) == {
        "w": {"t": [0.5, 1.0], "i": ["b", "a"], "v": [3.0, 2.5], "vl": 2.5, "vh": 3.0, "vs": 5.5}
    }


def test_integers_beyond_what_a_double_holds_stay_exact() -> None:
    """Readings may be 64-bit integers (a counter); past 2**53 a double would round them, and 2**53 + 1
    would be no rise over 2**53, nor above it."""
    rules = """
- id: counter-step
  tier: edge
  when: {kind: counter, rise: ">= 1"}
  within: 10m
  then: [{alert: {to: [ops]}}]
- id: counter-max
  tier: edge
  when: {kind: counter, max: "> 9007199254740992"}
  within: 10m
  then: [{alert: {to: [ops]}}]
"""
    e = engine(rules)
    out = run(e, ev("counter", 2**53, 0), ev("counter", 2**53 + 1, 1))
    assert sorted(a.reflex for a in alerts(out)) == ["counter-max", "counter-step"]
    w = value_window()
    insert_value(w, 0.0, 2**53, "a")
    insert_value(w, 1.0, 2**53 + 1, "b")
    assert span_max(w, 0, 2) == 2**53 + 1
    again = orjson.loads(orjson.dumps(w, default=jsonable))
    compact(again)
    assert span_max(again, 0, 2) == 2**53 + 1 and isinstance(again["t"], Floats)
    blocked = value_window()
    for k in range(3 * BLOCK):  # block summaries built from doubles
        insert_value(blocked, float(k), k + 1, f"e{k}")
    insert_value(blocked, 1000.0, 2**60 + 1, "big")
    n = len(blocked["t"])
    assert span_max(blocked, 0, n) - span_min(blocked, 0, n) == 2**60  # exactly
    assert blocked["vh"] - blocked["vl"] == 2**60 and max(blocked["bh"]) == 2**60 + 1


ROOM_AVERAGE = """
- id: hot-room
  tier: edge
  when: {kind: temperature, avg: "> 400"}
  within: 30s
  per: room
  then: [{alert: {to: [fire]}}]
"""
"""A 30 s room average that never fires: every reading of the last 30 s stays in its window."""


def test_the_engine_counts_the_readings_its_windows_hold() -> None:
    """`stats()["readings"]`: the engine's state that grows with the event rate (an edge gauge)."""
    e = engine(ROOM_AVERAGE)
    run(e, *[ev("temperature", 20, t) for t in range(50)])
    assert 31 <= e.stats()["readings"] < 50  # at least the last 30 s; older readings evicted
    assert e.stats()["windows"] == 1


def test_the_engine_keeps_a_reading_in_little_more_than_its_id_s_bytes() -> None:
    """Through Engine.process, not only the window: nothing else on the way (the event, its id string, an
    index or a cache) stays alive per reading. A 30 s room average at an edge keeps every reading."""
    per_reading = bytes_per_reading(engine(ROOM_AVERAGE))
    assert per_reading < 40, f"{per_reading:.1f} bytes per reading"  # 16 + a 10-character id, with slack
