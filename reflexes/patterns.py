"""Window logic of each pattern, on one group's state. Pure functions of (state, event, watermark).

Each evaluator reads and updates `state["w"]` (JSON-able lists and dicts only) and returns the `Hit`s the
event being applied causes. Entries older than `watermark − within` are evicted: no event that can still be
applied could fall in their window.

Judging in event time, whatever the arrival order
-------------------------------------------------
A windowed pattern (count, avg/min/max/sum, rise/fall, distinct, all, sequence) is judged at *moments*:
the event times of the group's matches (for rise/fall, of the sensor's readings; for sequence, of its last
step). It holds at moment m when the matches applied so far that lie in [m − within, m] satisfy it. A match
applied at time s is judged at its own moment, as before, and — when it arrived out of order — also at
every later moment in (s, s + within] whose window it enters: those fire only if the pattern holds there
now and did not before (they were judged when their own event arrived). A firing at moment m has ts m,
window start m − within (which the alert id is made from), first_event_ts the earliest evidence and the
window's matches as evidence. So an event that arrives late but inside the lateness and completes a window
raises the alert that the sorted stream raises at that moment, with the same id and ts.

What arrival order can still change (alerts are raised at once and never retracted):
- A moment is judged on the matches that have arrived. For tests that only get truer as matches are added
  — count and distinct `>`/`>=`, `max >`/`>=`, `min <`/`<=`, `sum >`/`>=` of non-negative values,
  rise/fall `>`/`>=`, all, sequence — a moment that holds early holds in the sorted stream too, so the set
  of moments that fire, and of their alert ids, is the sorted stream's (cooldown aside). Other tests (avg,
  count `<`/`<=`/`==`, …) can hold on a window that is still missing a late match, and then fire where the
  sorted stream would not; every moment that holds on its complete window fires in any order.
- Cooldown (see the engine) suppresses a moment within the cooldown of an alert of the group, before or
  after it; which moment of a burst fires first, and so that alert's ts and id, can depend on the order.
- Evidence and first_event_ts describe the window as it was when the moment fired; the message fields
  (`{sensor}`, `{value}`, …) describe the event whose arrival made it fire.
Sums and averages are floating point, added in arrival order: at exactly the threshold, the last bit can
differ between orders.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from reflexes.model import Absent, Aggregate, AllOf, Change, Count, Distinct, Held, Pattern, Sequence, Single
from reflexes.windows import (
    Moments,
    Places,
    Window,
    evict_values,
    insert_value,
    span_max,
    span_min,
    span_sum,
    value_window,
)

Hit = tuple[float, float, float, list[str]]
# (ts: the moment that fired, window start: what the alert id is made from, first_event_ts, evidence ids).
# A hit with no evidence means "the pattern still holds" without a new firing (a `for` run that already
# fired): it keeps a `clear` from closing the alert while the condition lasts.

MAX_EVIDENCE = 32


class Evaluator:
    """Base: `wants_misses` asks the engine to call `miss` for events that are selected but fail the
    predicate (they break a `for` run)."""

    wants_misses = False

    def __init__(self, pattern: Pattern, within: float | None) -> None:
        self.within = within or 0.0

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        raise NotImplementedError

    def miss(self, state: dict[str, Any], ev: Any) -> bool:
        """`ev` is selected but fails the predicate; True when that changed the state."""
        return False

    def upgrade(self, state: dict[str, Any]) -> bool:
        """Bring a group's state kept by an older version to this one's form (the engine calls it for every
        group it finds in its store); True when it changed."""
        return False


class SingleEval(Evaluator):
    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        return [(ev.ts, ev.ts, ev.ts, [ev.id])]


class HeldEval(Evaluator):
    """`for: D`: w = {sensor: [run start, fired]}."""

    wants_misses = True

    def __init__(self, pattern: Held, within: float | None) -> None:
        super().__init__(pattern, within)
        self.duration = pattern.duration

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        runs: dict[str, list[Any]] = state.setdefault("w", {})
        t = ev.ts
        run = runs.get(ev.sensor)
        if run is None:
            run = runs[ev.sensor] = [t, False]
        elif t < run[0]:
            run[0] = t
        if t >= run[0] + self.duration:
            if run[1]:
                return [(t, run[0], run[0], [])]  # still holding: sustains, does not fire again
            run[1] = True
            return [(t, run[0], run[0], [ev.id])]
        return None

    def miss(self, state: dict[str, Any], ev: Any) -> bool:
        runs = state.get("w")
        if runs:
            run = runs.get(ev.sensor)
            if run is not None and ev.ts >= run[0]:
                del runs[ev.sensor]
                return True
        return False


def _later(t: list[float], first: int, until: float) -> list[tuple[int, int]]:
    """The moments after index `first` up to `until` (seconds) as (first index, end index) of each run of
    equal times in the sorted list `t`."""
    out: list[tuple[int, int]] = []
    j, end = first, bisect_right(t, until, first)
    while j < end:
        jb = bisect_right(t, t[j], j, end)
        out.append((j, jb))
        j = jb
    return out


class CountEval(Evaluator):
    """`count`: w = `Moments` of the matches."""

    def __init__(self, pattern: Count, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        m = Moments(state.setdefault("w", {}))
        d = self.within
        m.evict_before(wm - d)
        k = m.insert(ev.ts, ev.id)
        if k < 0:
            return None
        t, s, test = m.t, ev.ts, self.test
        hits: list[Hit] = []
        a, b = bisect_left(t, s - d, 0, k), bisect_right(t, s, k)
        if test(b - a):
            hits.append(self._hit(m, a, b))
        for _, jb in _later(t, b, s + d):
            mt = t[jb - 1]
            a = bisect_left(t, mt - d, 0, k + 1)  # the new match is inside: mt − d ≤ s < mt
            if test(jb - a) and not test(jb - a - 1):
                hits.append(self._hit(m, a, jb))
        return hits or None

    def _hit(self, m: Moments, a: int, b: int) -> Hit:
        moment = m.t[b - 1]
        return moment, moment - self.within, m.t[a], m.i[max(a, b - MAX_EVIDENCE) : b]


class AggregateEval(Evaluator):
    """`avg`/`min`/`max`/`sum` of the numeric matches: the group's state is itself the value window (see
    windows.py; its keys do not collide with the engine's), one dict less per group."""

    def __init__(self, pattern: Aggregate, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test
        self.fn = pattern.fn
        self.op = pattern.op
        self.span = {"sum": span_sum, "avg": span_sum, "min": span_min, "max": span_max}[pattern.fn]
        self.avg = pattern.fn == "avg"

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
        w = state
        t = w.get("t")
        if t is None:
            w.update(value_window())
            t = w["t"]
        d = self.within
        if t and t[0] < wm - d:
            evict_values(w, wm - d)
        k = insert_value(w, ev.ts, v, ev.id)
        if k < 0:
            return None
        s, n, test = ev.ts, len(t), self.test
        a = bisect_left(t, s - d, 0, k)
        b = n if k == n - 1 else bisect_right(t, s, k)
        x = self.span(w, a, b)
        hits = [self._hit(w, a, b)] if test(x / (b - a) if self.avg else x) else None
        if b < n and self._may_turn(v):
            for _, jb in _later(t, b, s + d):
                a = bisect_left(t, t[jb - 1] - d, 0, k + 1)
                if test(self._value(w, a, jb)) and not test(self._value(w, a, jb, k)):
                    hits = [*(hits or ()), self._hit(w, a, jb)]
        return hits

    def _hit(self, w: Window, a: int, b: int) -> Hit:
        t = w["t"]
        moment = t[b - 1]
        return moment, moment - self.within, t[a], w["i"][max(a, b - MAX_EVIDENCE) : b]


def _rebuilt(old: dict[str, Any]) -> Window:
    """A value window with the readings of one kept in the form of older versions."""
    w = value_window()
    for ts, event_id, value in zip(old.get("t", ()), old.get("i", ()), old.get("v", ()), strict=False):
        insert_value(w, ts, value, event_id)
    return w


class ChangeEval(Evaluator):
    """`rise`/`fall`: w = {sensor: value window}; rise = latest − lowest, fall = highest − latest, where
    "latest" is the reading at the moment judged."""

    def __init__(self, pattern: Change, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test
        self.rise = pattern.direction == "rise"

    def upgrade(self, state: dict[str, Any]) -> bool:
        per_sensor = state.get("w") or {}
        old = [sensor for sensor, w in per_sensor.items() if "bn" not in w]
        for sensor in old:
            per_sensor[sensor] = _rebuilt(per_sensor[sensor])
        return bool(old)

    def _judge(self, w: Window, j: int, skip: int = -1) -> Hit | None:
        """The hit at the moment of reading j (ignoring reading `skip`), if the change there passes."""
        t, v, d = w["t"], w["v"], self.within
        mt = t[j]
        a = bisect_left(t, mt - d, 0, j + 1)
        b = bisect_right(t, mt, j)
        span = span_min if self.rise else span_max
        if not a <= skip < b:
            extreme = span(w, a, b)
        else:
            parts = [span(w, x, y) for x, y in ((a, skip), (skip + 1, b)) if x < y]
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
        per_sensor: dict[str, Window] | None = state.get("w")
        if per_sensor is None:
            per_sensor = state["w"] = {}
        w = per_sensor.get(ev.sensor)
        if w is None:
            w = per_sensor[ev.sensor] = value_window()
        d = self.within
        t = w["t"]
        if t and t[0] < wm - d:
            evict_values(w, wm - d)
        k = insert_value(w, ev.ts, v, ev.id)
        if k < 0:
            return None
        hit = self._judge(w, k)
        hits = None if hit is None else [hit]
        if k + 1 < len(t):
            test, rise, values = self.test, self.rise, w["v"]
            for j in range(k + 1, bisect_right(t, ev.ts + d, k + 1)):
                # a later reading of the sensor now has this one in its window: only as its new extreme
                if test(values[j] - v if rise else v - values[j]):
                    hit = self._judge(w, j)
                    if hit is not None and self._judge(w, j, k) is None:
                        hits = [*(hits or ()), hit]
        return hits


class DistinctEval(Evaluator):
    """`distinct`: w = `Places`, the matches with the site at LEVEL of each."""

    def __init__(self, pattern: Distinct, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test
        self.level = pattern.level

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        parts = ev.site.split("/")
        if len(parts) <= self.level:
            return None
        place = "/".join(parts[: self.level + 1])
        w = Places(state.setdefault("w", {}))
        d = self.within
        w.evict_before(wm - d)
        k = w.insert_place(ev.ts, ev.id, place)
        if k < 0:
            return None
        t, p, s, test = w.t, w.p, ev.ts, self.test
        hits: list[Hit] = []
        a, b = bisect_left(t, s - d, 0, k), bisect_right(t, s, k)
        if test(len(set(p[a:b]))):
            hits.append(self._hit(w, a, b))
        for _, jb in _later(t, b, s + d):
            a = bisect_left(t, t[jb - 1] - d, 0, k + 1)
            n = len(set(p[a:jb]))
            before = n if place in p[a:k] or place in p[k + 1 : jb] else n - 1
            if test(n) and not test(before):
                hits.append(self._hit(w, a, jb))
        return hits or None

    def upgrade(self, state: dict[str, Any]) -> bool:
        old = state.get("w")
        if not old or "t" in old:
            return False
        state["w"] = {}
        w = Places(state["w"])
        for place, (ts, event_id) in old.items():  # {place: [latest ts, id]}
            w.insert_place(ts, event_id, place)
        return True

    def _hit(self, w: Places, a: int, b: int) -> Hit:
        latest: dict[str, tuple[float, str]] = {}
        for k in range(b - 1, a - 1, -1):
            latest.setdefault(w.p[k], (w.t[k], w.i[k]))
        inside = sorted(latest.values())
        moment = w.t[b - 1]
        return moment, moment - self.within, inside[0][0], [e[1] for e in inside[-MAX_EVIDENCE:]]


class AllEval(Evaluator):
    """`all`: w = one `Moments` (time-ordered matches) per condition."""

    def __init__(self, pattern: AllOf | Sequence, within: float | None) -> None:
        super().__init__(pattern, within)
        self.n = len(pattern.conds)

    def _moments(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Moments] | None:
        """The windows after adding the event; None when it was already applied."""
        raw: list[dict[str, Any]] = state.setdefault("w", [{} for _ in range(self.n)])
        lists = [Moments(w) for w in raw]
        horizon = wm - self.within
        for m in lists:
            m.evict_before(horizon)
        fresh = False
        for i in which:
            fresh |= lists[i].insert(ev.ts, ev.id) >= 0
        return lists if fresh else None

    def _judge(self, lists: list[Moments], mt: float, without: str | None = None) -> Hit | None:
        """The hit at moment `mt`: the latest match of each condition in [mt − within, mt] (not counting
        the event `without`), if every condition has one."""
        d = self.within
        chosen: list[tuple[float, str]] = []
        for m in lists:
            k = bisect_right(m.t, mt) - 1
            if k >= 0 and m.i[k] == without:
                k -= 1
            if k < 0 or m.t[k] < mt - d:
                return None
            chosen.append((m.t[k], m.i[k]))
        return mt, mt - d, min(c[0] for c in chosen), [c[1] for c in chosen]

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        lists = self._moments(state, ev, which, wm)
        if lists is None:
            return None
        s = ev.ts
        hits: list[Hit] = []
        hit = self._judge(lists, s)
        if hit is not None:
            hits.append(hit)
        later: set[float] = set()
        for m in lists:
            later.update(m.t[bisect_right(m.t, s) : bisect_right(m.t, s + self.within)])
        for mt in sorted(later):
            hit = self._judge(lists, mt)
            if hit is not None and self._judge(lists, mt, ev.id) is None:
                hits.append(hit)
        return hits or None


class SequenceEval(AllEval):
    """`sequence`: judged at each match of its last step; earlier steps are taken latest-first."""

    def _chain(self, lists: list[Moments], j: int, without: str | None = None) -> Hit | None:
        """The hit at the last step's match j, if a chain of earlier steps (not using the event
        `without`) leads to it within the window."""
        last = lists[-1]
        t = last.t[j]
        prev, chain, used = t, [last.i[j]], {last.i[j], without}
        for i in range(self.n - 2, -1, -1):
            m = lists[i]
            a, b = m.span(t - self.within, prev)
            step = next((k for k in range(b - 1, a - 1, -1) if m.i[k] not in used), None)
            if step is None:
                return None
            prev = m.t[step]
            chain.append(m.i[step])
            used.add(m.i[step])
        chain.reverse()
        return t, t - self.within, prev, chain

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        lists = self._moments(state, ev, which, wm)
        if lists is None:
            return None
        last, s = lists[-1], ev.ts
        hits: list[Hit] = []
        for j in range(bisect_left(last.t, s), bisect_right(last.t, s + self.within)):
            hit = self._chain(lists, j)
            if hit is None:
                continue
            if last.i[j] != ev.id and self._chain(lists, j, ev.id) is not None:
                continue  # that moment held already without this event: it was judged then
            hits.append(hit)
        return hits or None


class AbsentEval(Evaluator):
    """`absent`: matches only re-arm; the engine's timers decide silence (see Engine._absent_due)."""

    def __init__(self, pattern: Absent, within: float | None) -> None:
        super().__init__(pattern, within)
        self.duration = pattern.duration

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        return None


EVALUATORS: dict[type, type[Evaluator]] = {
    Single: SingleEval,
    Held: HeldEval,
    AllOf: AllEval,
    Sequence: SequenceEval,
    Count: CountEval,
    Aggregate: AggregateEval,
    Change: ChangeEval,
    Distinct: DistinctEval,
    Absent: AbsentEval,
}


def evaluator_for(pattern: Pattern, within: float | None) -> Evaluator:
    """The evaluator that runs `pattern`."""
    return EVALUATORS[type(pattern)](pattern, within)
