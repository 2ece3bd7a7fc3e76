"""Patterns over numeric readings: `avg`/`min`/`max`/`sum` of a group's readings and `rise`/`fall` of one
sensor's, on value windows (windows.py), judged as patterns.py describes.

The readings live in a `Family`'s window, shared by every reflex that reads the same ones (the engine
inserts each reading once); an evaluator first tells from the window alone whether the new reading is
`hopeless` for it, and only if not reads the group's own state (cooldown) and `judge`s its span."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from reflexes.judging import MAX_EVIDENCE, Evaluator, Hit, later
from reflexes.model import Aggregate, Change
from reflexes.windows import (
    BLOCK,
    Ids,
    Window,
    evict_values,
    exact_sum,
    insert_value,
    span_max,
    span_min,
    span_range,
    span_sum,
    value_window,
)


class AggregateEval(Evaluator):
    """`avg`/`min`/`max`/`sum` of the numeric matches of a group, over its family's window."""

    __slots__ = ("avg", "bounded", "family", "fn", "hopeless", "monotone", "op", "side", "span", "test")
    family: Family  # set by the engine when it files the reflex
    hopeless: Callable[[Window, int, float], bool]

    def __init__(self, pattern: Aggregate, within: float | None, quiet: float = 0.0) -> None:
        super().__init__(pattern, within, quiet)
        self.test = pattern.test
        self.fn = pattern.fn
        self.op = pattern.op
        self.span = {"sum": span_sum, "avg": span_sum, "min": span_min, "max": span_max}[pattern.fn]
        self.avg = pattern.fn == "avg"
        self.bounded = "sum" if pattern.fn == "avg" else pattern.fn
        self.monotone = pattern.op in ("<", "<=", ">", ">=")
        # What bounds the aggregate of every span holding a new reading v on the side the test passes
        # (above for > and >=, below for < and <=): the window's max or min ("vh", "vl"), or v itself
        # (min ≤ v ≤ max). None when nothing cheap does (sum, ==, !=).
        self.side: str | None = None
        if pattern.op in (">", ">=") and pattern.fn != "sum":
            self.side = "v" if pattern.fn == "min" else "vh"
        elif pattern.op in ("<", "<=") and pattern.fn != "sum":
            self.side = "v" if pattern.fn == "max" else "vl"
        self.hopeless = self._hopeless_test()

    def upgrade(self, state: dict[str, Any]) -> bool:
        old = state.pop("w", None)  # the window apart, with index blocks
        if old is None:
            return False
        state.update(_rebuilt(old))
        return True

    def _may_turn(self, v: float) -> bool:
        """Whether adding the value `v` to a window can make the test true where it was false: the sum
        moves by v, the average towards v, the min and max only to v."""
        if self.fn == "sum":
            return v > 0 if self.op in (">", ">=") else v < 0 if self.op in ("<", "<=") else v != 0
        return (self.op == "==" and self.avg) or self.test(v)

    def _hopeless_test(self) -> Callable[[Window, int, float], bool]:
        """`hopeless`, built for this test: whether no span holding the new reading v (entry k) can pass,
        nor now nor at a later moment it enters, told from the window's bounds alone (`avg > x` when no
        reading exceeds x, `min > x` when v does not, …), without the group's state."""
        side, test = self.side, self.test
        if side is None:
            return _never
        if side == "v":
            return lambda w, k, v: not test(v)
        if not self.avg:
            return lambda w, k, v: not test(w[side])
        up = side == "vh"

        def hopeless(w: Window, k: int, v: float) -> bool:
            # an average is rounded: widen the bound well past any rounding
            pad = 1e-9 * (abs(w["vl"]) + abs(w["vh"])) + 1e-12
            x = w[side] + pad if up else w[side] - pad
            return -1e300 < x < 1e300 and not test(x)  # else a sum may overflow: judge it exactly

        return hopeless

    def _by_total(self, w: Window, a: int, b: int) -> bool | None:
        """The sum or average test on entries [a, b) told from the window's total when the entries outside
        the span (each between the window's lowest and highest) cannot bring it across; else None."""
        low, high = w["vl"], w["vh"]
        scale = max(abs(low), abs(high))
        if scale > 1e300:  # sums of such readings may overflow: judge them exactly
            return None
        n, m = len(w["t"]), b - a
        # the total is rounded at every reading added (≤ n of them since it was last summed afresh) and the
        # exact sum at each of its m: the error stays below n² · 2⁻⁵² · scale, far inside this margin
        margin = 1e-9 * n * scale + 1e-12
        lo, hi = w["vs"] - (n - m) * high - margin, w["vs"] - (n - m) * low + margin
        if self.avg:
            lo, hi = lo / m, hi / m
        below, above = self.test(lo), self.test(hi)
        return below if below == above else None

    def _holds(self, w: Window, a: int, b: int) -> bool:
        """Whether the test holds on entries [a, b): decided from the window's total or from block summaries
        when the bounds they give fall on one side of the threshold (see span_range), else from the
        readings."""
        test = self.test
        if self.monotone and self.bounded == "sum":
            told = self._by_total(w, a, b)
            if told is not None:
                return told
        if b - a <= 2 * BLOCK or "bn" not in w:  # few readings: summed directly
            x = self.span(w, a, b)
            return test(x / (b - a) if self.avg else x)
        bounds = span_range(w, a, b, self.bounded)
        if bounds is not None:
            lo, hi = bounds
            if self.bounded == "sum":
                # sums are rounded: the block sums and the span's own sum each stray from the exact sum by
                # less than (b − a)² · 2⁻⁵² times the largest reading, however the readings cancel out;
                # widen the bounds well past that, so what they decide is what summing the span gives
                margin = 1e-9 * (b - a) * max(abs(w["vl"]), abs(w["vh"])) + 1e-12
                lo, hi = lo - margin, hi + margin
            if self.avg:
                lo, hi = lo / (b - a), hi / (b - a)
            if self.monotone:
                below, above = test(lo), test(hi)
                if below == above:
                    return below
            elif lo == hi:
                return test(lo)
        x = self.span(w, a, b)
        return test(x / (b - a) if self.avg else x)

    def _value(self, w: Window, a: int, b: int, skip: int = -1) -> float:
        """The aggregate of entries [a, b), without entry `skip` when it lies inside."""
        if not a <= skip < b:
            x = self.span(w, a, b)
            return x / (b - a) if self.avg else x
        if self.bounded == "sum":  # exactly rounded, like span_sum
            v = w["v"]
            x = exact_sum(v[a:skip] + v[skip + 1 : b])
            return x / (b - a - 1) if self.avg else x
        parts = [self.span(w, x, y) for x, y in ((a, skip), (skip + 1, b)) if x < y]
        return min(parts) if self.fn == "min" else max(parts)

    def judge(self, state: dict[str, Any], w: Window, k: int, ev: Any) -> list[Hit] | None:
        s, t, d, test = ev.ts, w["t"], self.within, self.test
        n = len(t)
        b = n if k == n - 1 else bisect_right(t, s, k)
        hits = None
        last = state.get("la")
        if last is None or not last - self.quiet < s < last + self.quiet:  # else the cooldown suppresses it
            a = bisect_left(t, s - d, 0, k)
            if self._holds(w, a, b):
                hits = [self._hit(w, a, b)]
        if b < n and self._may_turn(ev.value) and not self._cooling(state, t[b], min(s + d, t[-1])):
            for _, jb in later(t, b, s + d):
                a = bisect_left(t, t[jb - 1] - d, 0, k + 1)
                if self._holds(w, a, jb) and not test(self._value(w, a, jb, k)):
                    hits = [*(hits or ()), self._hit(w, a, jb)]
        return hits


def _never(w: Window, k: int, v: float) -> bool:
    return False


def _rebuilt(old: dict[str, Any]) -> Window:
    """A value window with the readings of one kept in the form of older versions."""
    w = value_window()
    for ts, event_id, value in zip(old.get("t", ()), old.get("i", ()), old.get("v", ()), strict=False):
        insert_value(w, ts, value, event_id)
    return w


class ChangeEval(Evaluator):
    """`rise`/`fall` of one sensor's readings, over its family's window of that sensor: rise = latest −
    lowest, fall = highest − latest, where "latest" is the reading at the moment judged. `by_sensor`: the
    groups are sensors (only for upgrading state older versions kept in the group's own keys)."""

    __slots__ = ("by_sensor", "family", "hopeless", "monotone", "rise", "side", "span", "test")
    family: Family  # set by the engine when it files the reflex
    hopeless: Callable[[Window, int, float], bool]

    def __init__(
        self, pattern: Change, within: float | None, quiet: float = 0.0, by_sensor: bool = False
    ) -> None:
        super().__init__(pattern, within, quiet)
        self.test = pattern.test
        self.rise = pattern.direction == "rise"
        self.span = span_min if self.rise else span_max
        self.by_sensor = by_sensor
        self.monotone = pattern.op in ("<", "<=", ">", ">=")
        # The window bound that bounds every change on the side the test passes: rise = v − min ≤ v − vl,
        # fall = max − v ≤ vh − v (and ≥ v − vh, vl − v for < and <=). None when the test is not monotone.
        rising = pattern.op in (">", ">=")
        self.side: str | None = None
        if self.monotone:
            self.side = "vl" if rising == self.rise else "vh"
        self.hopeless = self._hopeless_test()

    def upgrade(self, state: dict[str, Any]) -> bool:
        per_sensor = state.get("w")
        if not per_sensor:
            return False
        if self.by_sensor:  # older versions kept the one sensor's window apart
            del state["w"]
            for w in per_sensor.values():
                state.update(_rebuilt(w) if "lo" in w else w)
            return True
        old = [sensor for sensor, w in per_sensor.items() if "lo" in w]  # index blocks: lo, hi, s
        for sensor in old:
            per_sensor[sensor] = _rebuilt(per_sensor[sensor])
        return bool(old)

    def _judge(self, w: Window, j: int, skip: int = -1) -> Hit | None:
        """The hit at the moment of reading j (ignoring reading `skip`), if the change there passes."""
        t, v, d = w["t"], w["v"], self.within
        if self.side is not None:  # no change in the window can pass: rounding is monotone, no pad needed
            x = v[j] - w[self.side] if self.rise else w[self.side] - v[j]
            if not self.test(x):
                return None
        mt = t[j]
        a = bisect_left(t, mt - d, 0, j + 1)
        b = len(t) if j == len(t) - 1 else bisect_right(t, mt, j)
        if not a <= skip < b:
            bounds = span_range(w, a, b, "min" if self.rise else "max") if self.monotone else None
            if bounds is not None:  # the change lies between what the block summaries allow
                lo, hi = (
                    (v[j] - bounds[1], v[j] - bounds[0])
                    if self.rise
                    else (bounds[0] - v[j], bounds[1] - v[j])
                )
                if not self.test(lo) and not self.test(hi):
                    return None
            extreme = self.span(w, a, b)
        else:
            parts = [self.span(w, x, y) for x, y in ((a, skip), (skip + 1, b)) if x < y]
            extreme = min(parts) if self.rise else max(parts)
        if not self.test(v[j] - extreme if self.rise else extreme - v[j]):
            return None
        k = v.index(extreme, a, b)
        if k == skip:
            k = v.index(extreme, skip + 1, b)
        if k == j:
            return None  # no change from the reading itself
        # an id forgotten before a rise/fall reflex came to read the window (a reload) is left out
        return mt, mt - d, t[k], [x for x in (w["i"][k], w["i"][j]) if x]

    def _hopeless_test(self) -> Callable[[Window, int, float], bool]:
        """`hopeless`, built for this test: whether the new reading v (entry k) is the sensor's latest,
        alone at its time — judged at its own moment only, as no later reading holds it — and no change in
        the window can pass there."""
        side, test = self.side, self.test
        if side is None:
            return _never
        rise = self.rise

        def hopeless(w: Window, k: int, v: float) -> bool:
            t = w["t"]
            if k + 1 != len(t) or (k and t[k - 1] >= t[k]):
                return False
            return not test(v - w[side] if rise else w[side] - v)

        return hopeless

    def judge(self, state: dict[str, Any], w: Window, k: int, ev: Any) -> list[Hit] | None:
        s, t, d, v = ev.ts, w["t"], self.within, ev.value
        hits = None
        last = state.get("la")
        if last is None or not last - self.quiet < s < last + self.quiet:  # else the cooldown suppresses it
            hit = self._judge(w, k)
            if hit is not None:
                hits = [hit]
        first = bisect_left(t, s, 0, k)  # readings at the same time came before it: their windows hold it too
        if (first < k or k + 1 < len(t)) and not self._cooling(state, s, min(s + d, t[-1])):
            test, rise, values = self.test, self.rise, w["v"]
            for j in range(first, bisect_right(t, s + d, k + 1)):
                # a later reading of the sensor now has this one in its window: only as its new extreme
                if j != k and test(values[j] - v if rise else v - values[j]):
                    hit = self._judge(w, j)
                    if hit is not None and self._judge(w, j, k) is None:
                        hits = [*(hits or ()), hit]
        return hits


class Family:
    """The value window that reflexes reading the same readings share (the engine files them): one insert
    per event whatever the number of reflexes, each of which then judges its own span of it.

    Readings are those a condition selects apart from its site glob; they are windowed per group of a site
    level (`by_sensor` False: the glob is decided by that group, or the conditions are equal) or per sensor
    (True: every glob is decided by the sensor's one site). A sensor's window notes that site and starts
    afresh if the sensor reports from another (SPEC §2: a device id is unique within the city). The window
    keeps the longest `within` of the family; `k` and `w` are those of the latest insert, which the engine
    hands to every reflex of the family that judges the event. `level` is the group's site level, None
    for windows per sensor.

    The window forgets the event ids (`Ids.forget`) of its readings older than the watermark, but for the
    MAX_EVIDENCE just before it: an event older than the watermark is late and never applied, and an
    aggregate's alert names the latest MAX_EVIDENCE readings up to the moment it judges, which is the new
    reading's or a later one. A family read by a `rise`/`fall` reflex (`keeps_ids`) keeps them all: its
    alert names the span's first reading, however old."""

    __slots__ = ("by_sensor", "k", "keeps_ids", "level", "prefix", "w", "within")

    def __init__(self, fid: str, level: int | None, within: float) -> None:
        self.prefix = fid + "|"
        self.level = level
        self.by_sensor = level is None
        self.within = within
        self.keeps_ids = False
        self.k = -1
        self.w: Window = {}

    def insert(
        self,
        ev: Any,
        who: str,
        wm: float,
        get: Callable[[str], Window | None],
        put: Callable[[str, Window], None],
        changelog: bool,
    ) -> None:
        """Add `ev`'s reading to the window of `who` (its sensor or group); `k` is -1 when there is none
        (not a number, or already there)."""
        v = ev.value
        if type(v) is not float and type(v) is not int:
            self.k = -1
            return
        key = self.prefix + who
        w = get(key)
        if w is None:
            w = value_window()
            if self.by_sensor:
                w["s"] = ev.site
            put(key, w)
        elif self.by_sensor and w["s"] != ev.site:
            if w["s"] is not None:  # the sensor moved: its readings start afresh
                w.clear()
                w.update(value_window())
            w["s"] = ev.site  # None: adopted from an older version's state, whose site it did not keep
        d, t = self.within, w["t"]
        if not len(t) & 7 and t:  # every 8 readings
            if t[0] < wm - d:  # stale ones are outside every window
                evict_values(w, wm - d)
            ids = w["i"]
            if not self.keeps_ids and type(ids) is Ids:
                ids.forget(bisect_left(t, wm) - MAX_EVIDENCE)
        self.k = insert_value(w, ev.ts, v, ev.id)
        self.w = w
        if changelog:
            put(key, w)

    def adopt(self, store: Any, who: str, site: str | None, old: Window) -> None:
        """Merge into `who`'s window the readings an older version kept in a group's own state."""
        key = self.prefix + who
        w = store.get(key)
        if w is None:
            w = value_window()
            if self.by_sensor:
                w["s"] = site
        for ts, event_id, value in zip(old.get("t", ()), old.get("i", ()), old.get("v", ()), strict=False):
            insert_value(w, ts, value, event_id)
        store.put(key, w)
