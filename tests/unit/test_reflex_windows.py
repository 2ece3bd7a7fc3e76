"""Block-summarised windows answer every span exactly like a brute-force scan."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from reflexes.windows import BLOCK, ValueWindow

op = st.one_of(
    st.tuples(st.just("insert"), st.floats(0, 1000), st.floats(-100, 100)),
    st.tuples(st.just("evict"), st.floats(0, 1000)),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(op, min_size=1, max_size=400),
    st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 300)), max_size=10),
)
def test_summary_matches_brute_force(
    ops: list[tuple[object, ...]], queries: list[tuple[float, float]]
) -> None:
    state: dict[str, object] = {}
    w = ValueWindow(state)
    model: list[tuple[float, float]] = []
    for n, o in enumerate(ops):
        if o[0] == "insert":
            _, ts, v = o
            w.insert_value(float(ts), float(v), f"e{n}")  # type: ignore[arg-type]
            model.append((float(ts), float(v)))  # type: ignore[arg-type]
        else:
            w.evict_before(float(o[1]))  # type: ignore[arg-type]
    model.sort(key=lambda x: x[0])
    assert w.t == [m[0] for m in model[len(model) - len(w.t) :]]
    assert len(w.v) == len(w.i) == len(w.t)
    assert len(w.lo) == len(w.hi) == len(w.s) == math.ceil(len(w.t) / BLOCK)
    for lo, width in queries:
        i, j = w.span(lo, lo + width)
        values = w.v[i:j]
        if not values:
            continue
        mn, mx, total = w.summary(i, j)
        assert (mn, mx) == (min(values), max(values))
        assert math.isclose(total, sum(values), rel_tol=1e-9, abs_tol=1e-6)


def test_eviction_keeps_blocks_aligned_and_bounded() -> None:
    w = ValueWindow({})
    for k in range(10 * BLOCK + 5):
        w.insert_value(float(k), float(k % 7), str(k))
    assert w.insert_value(5.0, 5.0, "5") == -1  # the same event again changes nothing
    w.evict_before(3.5 * BLOCK)
    assert w.t[0] == 3 * BLOCK  # whole blocks only
    i, j = w.span(0, 1e9)
    assert w.summary(i, j) == (0.0, 6.0, sum(float(k % 7) for k in range(3 * BLOCK, 10 * BLOCK + 5)))
