"""Patterns over numeric readings: `avg`/`min`/`max`/`sum` of a group's readings and `rise`/`fall` of one
sensor's, on value windows (windows.py), judged as patterns.py describes."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from reflexes.judging import Evaluator, Hit, later
from reflexes.model import Aggregate, Change
from reflexes.windows import (
    BLOCK,
    Window,
    evict_values,
    insert_value,
    span_max,
    span_min,
    span_range,
    span_sum,
    value_window,
)


class AggregateEval(Evaluator):
    """`avg`/`min`/`max`/`sum` of the numeric matches: the group's state is itself the value window (see
    windows.py; its keys do not collide with the engine's), one dict less per group."""

    __slots__ = ("avg", "bounded", "fn", "monotone", "op", "side", "span", "test")

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

    def _hopeless(self, w: Window, v: float) -> bool:
        """Whether no span holding the new reading `v` can pass the test, told from the window's bounds
        alone (`avg > x` when no reading exceeds x, `min > x` when v does not, …)."""
        side = self.side
        if side is None:
            return False
        x = v if side == "v" else w[side]
        if self.avg:  # an average is rounded: widen the bound well past any rounding
            pad = 1e-9 * (abs(w["vl"]) + abs(w["vh"])) + 1e-12
            x = x + pad if side == "vh" else x - pad
            if not -1e300 < x < 1e300:  # a sum of such readings may overflow: judge it exactly
                return False
        return not self.test(x)

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
            if self.avg:
                lo, hi = lo / (b - a), hi / (b - a)
            if self.bounded == "sum":  # sums are rounded: widen the bounds well past any rounding
                margin = 1e-9 * (abs(lo) + abs(hi)) + 1e-12
                lo, hi = lo - margin, hi + margin
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
        parts = [self.span(w, x, y) for x, y in ((a, skip), (skip + 1, b)) if x < y]
        if self.fn == "min":
            return min(parts)
        if self.fn == "max":
            return max(parts)
        return sum(parts) / (b - a - 1) if self.avg else sum(parts)

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        v = ev.value
        if type(v) is not float and type(v) is not int:
            return None
        t = state.get("t")
        if t is None:
            state.update(value_window())
            t = state["t"]
        d = self.within
        if not len(t) & 7 and t and t[0] < wm - d:  # every 8 readings: stale ones are outside every window
            evict_values(state, wm - d)
        k = insert_value(state, ev.ts, v, ev.id)
        if k < 0:
            return None
        if self.side is not None and self._hopeless(state, v):  # nor now nor at a later moment it enters
            return None
        s, n, test = ev.ts, len(t), self.test
        b = n if k == n - 1 else bisect_right(t, s, k)
        hits = None
        last = state.get("la")
        if last is None or not last - self.quiet < s < last + self.quiet:  # else the cooldown suppresses it
            a = bisect_left(t, s - d, 0, k)
            if self._holds(state, a, b):
                hits = [self._hit(state, a, b)]
        if b < n and self._may_turn(v) and not self._cooling(state, t[b], min(s + d, t[-1])):
            for _, jb in later(t, b, s + d):
                a = bisect_left(t, t[jb - 1] - d, 0, k + 1)
                if test(self._value(state, a, jb)) and not test(self._value(state, a, jb, k)):
                    hits = [*(hits or ()), self._hit(state, a, jb)]
        return hits


def _rebuilt(old: dict[str, Any]) -> Window:
    """A value window with the readings of one kept in the form of older versions."""
    w = value_window()
    for ts, event_id, value in zip(old.get("t", ()), old.get("i", ()), old.get("v", ()), strict=False):
        insert_value(w, ts, value, event_id)
    return w


class ChangeEval(Evaluator):
    """`rise`/`fall`: w = {sensor: value window}, or the group state itself is the window when the group is
    one sensor (`per: sensor`); rise = latest − lowest, fall = highest − latest, where "latest" is the
    reading at the moment judged."""

    __slots__ = ("by_sensor", "monotone", "rise", "side", "span", "test")

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
        return mt, mt - d, t[k], [w["i"][k], w["i"][j]]

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        v = ev.value
        if type(v) is not float and type(v) is not int:
            return None
        w: Window | None
        if self.by_sensor:
            w = state
            if "t" not in w:
                w.update(value_window())
        else:
            per_sensor: dict[str, Window] | None = state.get("w")
            if per_sensor is None:
                per_sensor = state["w"] = {}
            w = per_sensor.get(ev.sensor)
            if w is None:
                w = per_sensor[ev.sensor] = value_window()
        d = self.within
        t = w["t"]
        if not len(t) & 7 and t and t[0] < wm - d:
            evict_values(w, wm - d)
        k = insert_value(w, ev.ts, v, ev.id)
        if k < 0:
            return None
        s, side = ev.ts, self.side
        latest = k + 1 == len(t) and (k == 0 or t[k - 1] < s)  # the sensor's latest, alone at its time
        if latest and side is not None and not self.test(v - w[side] if self.rise else w[side] - v):
            return None  # judged at its own moment only (no later one holds it), where no change can pass
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
