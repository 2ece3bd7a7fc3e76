"""Window logic of each pattern, on one group's state. Pure functions of (state, event, watermark).

Each evaluator reads and updates `state["w"]` (JSON-able lists and dicts only) and returns a `Hit` —
(window start, evidence ids) — when the pattern is satisfied by the event being applied. Entries older
than `watermark − within` are evicted: no event that can still be applied could fall in their window.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from reflexes.model import Absent, Aggregate, AllOf, Change, Count, Distinct, Held, Pattern, Sequence, Single
from reflexes.windows import ValueWindow

Hit = tuple[float, list[str]]
# A hit with no evidence means "the pattern still holds" without a new firing (a `for` run that already
# fired): it keeps a `clear` from closing the alert while the condition lasts.

MAX_WINDOW_ENTRIES = 4096  # per window; bounds memory per group whatever the event rate
MAX_EVIDENCE = 32


def _ts(e: list[Any]) -> float:
    return float(e[0])


def _insert(entries: list[list[Any]], entry: list[Any]) -> bool:
    """Insert [ts, id] in time order; False (and nothing changes) when that event is already there, so that
    applying an event twice — a redelivery, a replay after a crash — changes no window."""
    ts, event_id = entry
    i = bisect_left(entries, ts, key=_ts)
    while i < len(entries) and entries[i][0] == ts:
        if entries[i][1] == event_id:
            return False
        i += 1
    if i == len(entries):
        entries.append(entry)  # the common case: events arrive in time order
    else:
        entries.insert(i, entry)
    if len(entries) > MAX_WINDOW_ENTRIES:
        del entries[0]
    return True


def _evict(entries: list[list[Any]], horizon: float) -> None:
    if entries and entries[0][0] < horizon:
        del entries[: bisect_left(entries, horizon, key=lambda e: e[0])]


def _span(entries: list[list[Any]], lo: float, hi: float) -> list[list[Any]]:
    """Entries with lo ≤ ts ≤ hi."""
    i = bisect_left(entries, lo, key=lambda e: e[0])
    j = bisect_right(entries, hi, key=lambda e: e[0])
    return entries[i:j]


class Evaluator:
    """Base: `wants_misses` asks the engine to call `miss` for events that are selected but fail the
    predicate (they break a `for` run)."""

    wants_misses = False

    def __init__(self, pattern: Pattern, within: float | None) -> None:
        self.within = within or 0.0

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        raise NotImplementedError

    def miss(self, state: dict[str, Any], ev: Any) -> None:
        return None


class SingleEval(Evaluator):
    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        return ev.ts, [ev.id]


class HeldEval(Evaluator):
    """`for: D`: w = {sensor: [run start, fired]}."""

    wants_misses = True

    def __init__(self, pattern: Held, within: float | None) -> None:
        super().__init__(pattern, within)
        self.duration = pattern.duration

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        runs: dict[str, list[Any]] = state.setdefault("w", {})
        t = ev.ts
        run = runs.get(ev.sensor)
        if run is None:
            run = runs[ev.sensor] = [t, False]
        elif t < run[0]:
            run[0] = t
        if t >= run[0] + self.duration:
            if run[1]:
                return run[0], []  # still holding: sustains, does not fire again
            run[1] = True
            return run[0], [ev.id]
        return None

    def miss(self, state: dict[str, Any], ev: Any) -> None:
        runs = state.get("w")
        if runs:
            run = runs.get(ev.sensor)
            if run is not None and ev.ts >= run[0]:
                del runs[ev.sensor]


class AllEval(Evaluator):
    """`all`: w = one time-ordered list of [ts, id] per condition."""

    def __init__(self, pattern: AllOf | Sequence, within: float | None) -> None:
        super().__init__(pattern, within)
        self.n = len(pattern.conds)
        self.fresh = False  # whether the event being applied added anything (False for a duplicate)

    def _lists(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[list[list[Any]]]:
        lists: list[list[list[Any]]] = state.setdefault("w", [[] for _ in range(self.n)])
        horizon = wm - self.within
        self.fresh = False
        for i in which:
            self.fresh |= _insert(lists[i], [ev.ts, ev.id])
        for entries in lists:
            _evict(entries, horizon)
        return lists

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        lists = self._lists(state, ev, which, wm)
        if not self.fresh:
            return None
        t, d = ev.ts, self.within
        if all(not entries or entries[-1][0] <= t for entries in lists):
            # In-order fast path: the event is the newest, so the best partner of each condition is its latest.
            latest: list[list[Any]] = []
            for i, entries in enumerate(lists):
                if i in which:
                    latest.append([t, ev.id])
                elif not entries or entries[-1][0] < t - d:
                    return None
                else:
                    latest.append(entries[-1])
            return min(c[0] for c in latest), [c[1] for c in latest]
        starts = sorted({e[0] for entries in lists for e in _span(entries, t - d, t)} | {t})
        for s in starts:
            chosen: list[list[Any]] = []
            for i, entries in enumerate(lists):
                if i in which:
                    chosen.append([t, ev.id])
                    continue
                inside = _span(entries, s, s + d)
                if not inside:
                    break
                chosen.append(inside[-1])
            else:
                return min(c[0] for c in chosen), [c[1] for c in chosen]
        return None


class SequenceEval(AllEval):
    """`sequence`: judged when its last step arrives; earlier steps are taken latest-first."""

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        lists = self._lists(state, ev, which, wm)
        if self.n - 1 not in which or not self.fresh:
            return None
        t = ev.ts
        prev, chain, used = t, [ev.id], {ev.id}
        for i in range(self.n - 2, -1, -1):
            step = None
            for e in reversed(_span(lists[i], t - self.within, prev)):
                if e[1] not in used:
                    step = e
                    break
            if step is None:
                return None
            prev = step[0]
            chain.append(step[1])
            used.add(step[1])
        chain.reverse()
        return prev, chain


class CountEval(Evaluator):
    """`count`: w = [[ts, id], …] of matches."""

    def __init__(self, pattern: Count, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        entries: list[list[Any]] = state.setdefault("w", [])
        if not _insert(entries, [ev.ts, ev.id]):
            return None
        _evict(entries, wm - self.within)
        i = bisect_left(entries, ev.ts - self.within, key=_ts)
        j = bisect_right(entries, ev.ts, key=_ts)
        if self.test(float(j - i)):
            return entries[i][0], [e[1] for e in entries[max(i, j - MAX_EVIDENCE) : j]]
        return None


def _numeric(v: object) -> bool:
    return type(v) is float or type(v) is int


class AggregateEval(Evaluator):
    """`avg`/`min`/`max`/`sum` of the numeric matches: w is a `ValueWindow`."""

    def __init__(self, pattern: Aggregate, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test
        self.fn = pattern.fn

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        if not _numeric(ev.value):
            return None
        window = ValueWindow(state.setdefault("w", {}))
        if not window.insert(ev.ts, ev.value, ev.id):
            return None
        window.evict_before(wm - self.within)
        i, j = window.span(ev.ts - self.within, ev.ts)
        lo, hi, total = window.summary(i, j)
        fn = self.fn
        value = lo if fn == "min" else hi if fn == "max" else total if fn == "sum" else total / (j - i)
        if self.test(float(value)):
            e = window.e
            return e[i][0], [x[2] for x in e[max(i, j - MAX_EVIDENCE) : j]]
        return None


class ChangeEval(Evaluator):
    """`rise`/`fall`: w = {sensor: ValueWindow}; rise = latest − lowest, fall = highest − latest."""

    def __init__(self, pattern: Change, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test
        self.rise = pattern.direction == "rise"

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        v = ev.value
        if not _numeric(v):
            return None
        per_sensor: dict[str, dict[str, Any]] = state.setdefault("w", {})
        window = ValueWindow(per_sensor.setdefault(ev.sensor, {}))
        if not window.insert(ev.ts, v, ev.id):
            return None
        window.evict_before(wm - self.within)
        i, j = window.span(ev.ts - self.within, ev.ts)
        lo, hi, _ = window.summary(i, j)
        change = v - lo if self.rise else hi - v
        if not self.test(float(change)):
            return None
        extreme = lo if self.rise else hi
        ref = next(x for x in window.e[i:j] if x[1] == extreme)
        if ref[2] == ev.id:
            return None
        return ref[0], [ref[2], ev.id]


class DistinctEval(Evaluator):
    """`distinct`: w = {site at LEVEL: [latest ts, id]}."""

    def __init__(self, pattern: Distinct, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test
        self.level = pattern.level

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        parts = ev.site.split("/")
        if len(parts) <= self.level:
            return None
        place = "/".join(parts[: self.level + 1])
        sites: dict[str, list[Any]] = state.setdefault("w", {})
        seen = sites.get(place)
        if seen is None or seen[0] <= ev.ts:
            sites[place] = [ev.ts, ev.id]
        horizon = wm - self.within
        for old in [p for p, e in sites.items() if e[0] < horizon]:
            del sites[old]
        lo, t = ev.ts - self.within, ev.ts
        n = sum(1 for e in sites.values() if lo <= e[0] <= t)
        if self.test(float(n)):
            inside = sorted((e for e in sites.values() if lo <= e[0] <= t), key=lambda e: (e[0], e[1]))
            return inside[0][0], [e[1] for e in inside[-MAX_EVIDENCE:]]
        return None


class AbsentEval(Evaluator):
    """`absent`: matches only re-arm; the engine's timers decide silence (see Engine._absent_due)."""

    def __init__(self, pattern: Absent, within: float | None) -> None:
        super().__init__(pattern, within)
        self.duration = pattern.duration

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
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
