"""Window logic of each pattern, on one group's state. Pure functions of (state, event, watermark).

Each evaluator reads and updates `state["w"]` (JSON-able lists and dicts only) and returns a `Hit` —
(window start, evidence ids) — when the pattern is satisfied by the event being applied. Entries older
than `watermark − within` are evicted: no event that can still be applied could fall in their window.
"""

from __future__ import annotations

from typing import Any

from reflexes.model import Absent, Aggregate, AllOf, Change, Count, Distinct, Held, Pattern, Sequence, Single
from reflexes.windows import Moments, ValueWindow

Hit = tuple[float, list[str]]
# A hit with no evidence means "the pattern still holds" without a new firing (a `for` run that already
# fired): it keeps a `clear` from closing the alert while the condition lasts.

MAX_EVIDENCE = 32


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
    """`all`: w = one `Moments` (time-ordered matches) per condition."""

    def __init__(self, pattern: AllOf | Sequence, within: float | None) -> None:
        super().__init__(pattern, within)
        self.n = len(pattern.conds)

    def _moments(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Moments] | None:
        """The windows after adding the event; None when it was already applied."""
        raw: list[dict[str, Any]] = state.setdefault("w", [{} for _ in range(self.n)])
        lists = [Moments(w) for w in raw]
        fresh = False
        for i in which:
            fresh |= lists[i].insert(ev.ts, ev.id)
        horizon = wm - self.within
        for m in lists:
            m.evict_before(horizon)
        return lists if fresh else None

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        lists = self._moments(state, ev, which, wm)
        if lists is None:
            return None
        t, d = ev.ts, self.within
        if all(not m.t or m.t[-1] <= t for m in lists):
            # In-order fast path: the event is the newest, so the best partner of each condition is its latest.
            chosen: list[tuple[float, str]] = []
            for i, m in enumerate(lists):
                if i in which:
                    chosen.append((t, ev.id))
                elif not m.t or m.t[-1] < t - d:
                    return None
                else:
                    chosen.append((m.t[-1], m.i[-1]))
            return min(c[0] for c in chosen), [c[1] for c in chosen]
        starts: set[float] = {t}
        for m in lists:
            a, b = m.span(t - d, t)
            starts.update(m.t[a:b])
        for start in sorted(starts):
            picked: list[tuple[float, str]] = []
            for i, m in enumerate(lists):
                if i in which:
                    picked.append((t, ev.id))
                    continue
                a, b = m.span(start, start + d)
                if a == b:
                    break
                picked.append((m.t[b - 1], m.i[b - 1]))
            else:
                return min(c[0] for c in picked), [c[1] for c in picked]
        return None


class SequenceEval(AllEval):
    """`sequence`: judged when its last step arrives; earlier steps are taken latest-first."""

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        lists = self._moments(state, ev, which, wm)
        if lists is None or self.n - 1 not in which:
            return None
        t = ev.ts
        prev, chain, used = t, [ev.id], {ev.id}
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
        return prev, chain


class CountEval(Evaluator):
    """`count`: w = `Moments` of the matches."""

    def __init__(self, pattern: Count, within: float | None) -> None:
        super().__init__(pattern, within)
        self.test = pattern.test

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> Hit | None:
        m = Moments(state.setdefault("w", {}))
        if not m.insert(ev.ts, ev.id):
            return None
        m.evict_before(wm - self.within)
        a, b = m.span(ev.ts - self.within, ev.ts)
        if self.test(float(b - a)):
            return m.t[a], m.i[max(a, b - MAX_EVIDENCE) : b]
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
        if not window.insert_value(ev.ts, ev.value, ev.id):
            return None
        window.evict_before(wm - self.within)
        i, j = window.span(ev.ts - self.within, ev.ts)
        lo, hi, total = window.summary(i, j)
        fn = self.fn
        value = lo if fn == "min" else hi if fn == "max" else total if fn == "sum" else total / (j - i)
        if self.test(float(value)):
            return window.t[i], window.i[max(i, j - MAX_EVIDENCE) : j]
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
        if not window.insert_value(ev.ts, v, ev.id):
            return None
        window.evict_before(wm - self.within)
        i, j = window.span(ev.ts - self.within, ev.ts)
        lo, hi, _ = window.summary(i, j)
        change = v - lo if self.rise else hi - v
        if not self.test(float(change)):
            return None
        extreme = lo if self.rise else hi
        k = i + window.v[i:j].index(extreme)
        if window.i[k] == ev.id:
            return None
        return window.t[k], [window.i[k], ev.id]


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
