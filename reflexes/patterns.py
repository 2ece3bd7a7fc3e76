"""Window logic of each pattern, on one group's state. Pure functions of (state, event, watermark).

This module holds the patterns over matches and `evaluator_for`; aggregates.py those over numeric readings
(avg/min/max/sum, rise/fall); judging.py the base they share. Each evaluator reads and updates `state["w"]` (JSON-able lists and dicts only; an aggregate keeps its value
window in the group state itself) and returns the `Hit`s the event being applied causes. Entries older than
`watermark − within` are evicted: no event that can still be applied could fall in their window. Moments
that the engine's cooldown would suppress anyway are not judged (unless the reflex has a `clear`, which
every holding moment keeps open).

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

from reflexes.aggregates import AggregateEval, ChangeEval
from reflexes.judging import MAX_EVIDENCE, Evaluator, Hit, later
from reflexes.model import Absent, Aggregate, AllOf, Change, Count, Distinct, Held, Pattern, Sequence, Single
from reflexes.windows import Window, evict_matches, insert_match, match_window

__all__ = ["Evaluator", "Hit", "evaluator_for"]


class SingleEval(Evaluator):
    __slots__ = ()

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        return [(ev.ts, ev.ts, ev.ts, [ev.id])]


class HeldEval(Evaluator):
    """`for: D`: w = {sensor: [run start, fired]}."""

    __slots__ = ("duration",)

    wants_misses = True

    def __init__(self, pattern: Held, within: float | None, quiet: float = 0.0) -> None:
        super().__init__(pattern, within, quiet)
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


class CountEval(Evaluator):
    """`count`: w = a match window."""

    __slots__ = ("test",)

    def __init__(self, pattern: Count, within: float | None, quiet: float = 0.0) -> None:
        super().__init__(pattern, within, quiet)
        self.test = pattern.test

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        w = state.get("w")
        if w is None:
            w = state["w"] = match_window()
        d = self.within
        t = w["t"]
        if t and t[0] < wm - d:  # else nothing to forget: spare the call
            evict_matches(w, wm - d)
        k = insert_match(w, ev.ts, ev.id)
        if k < 0:
            return None
        t, s, test = w["t"], ev.ts, self.test
        n = len(t)
        b = n if k == n - 1 else bisect_right(t, s, k)
        hits = None
        if not self._cooling(state, s, s):
            a = bisect_left(t, s - d, 0, k)
            if test(b - a):
                hits = [self._hit(w, a, b)]
        if b < n and not self._cooling(state, t[b], min(s + d, t[-1])):
            for _, jb in later(t, b, s + d):
                a = bisect_left(t, t[jb - 1] - d, 0, k + 1)  # the new match is inside: mt − d ≤ s < mt
                if test(jb - a) and not test(jb - a - 1):
                    hits = [*(hits or ()), self._hit(w, a, jb)]
        return hits


class DistinctEval(Evaluator):
    """`distinct`: w = a match window with the place (site at LEVEL) of each match in "p"."""

    __slots__ = ("level", "test")

    def __init__(self, pattern: Distinct, within: float | None, quiet: float = 0.0) -> None:
        super().__init__(pattern, within, quiet)
        self.test = pattern.test
        self.level = pattern.level

    def upgrade(self, state: dict[str, Any]) -> bool:
        old = state.get("w")
        if not old or "t" in old:
            return False
        w = state["w"] = match_window("p")
        for place, (ts, event_id) in old.items():  # {place: [latest ts, id]}
            insert_match(w, ts, event_id, {"p": place})
        return True

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        parts = ev.site.split("/")
        if len(parts) <= self.level:
            return None
        place = "/".join(parts[: self.level + 1])
        w = state.get("w")
        if w is None:
            w = state["w"] = match_window("p")
        d = self.within
        evict_matches(w, wm - d)
        k = insert_match(w, ev.ts, ev.id, {"p": place})
        if k < 0:
            return None
        t, p, s, test = w["t"], w["p"], ev.ts, self.test
        n = len(t)
        b = n if k == n - 1 else bisect_right(t, s, k)
        hits = None
        if not self._cooling(state, s, s):
            a = bisect_left(t, s - d, 0, k)
            if test(len(set(p[a:b]))):
                hits = [self._hit(w, a, b)]
        if b < n and not self._cooling(state, t[b], min(s + d, t[-1])):
            for _, jb in later(t, b, s + d):
                a = bisect_left(t, t[jb - 1] - d, 0, k + 1)
                count = len(set(p[a:jb]))
                before = count if place in p[a:k] or place in p[k + 1 : jb] else count - 1
                if test(count) and not test(before):
                    hits = [*(hits or ()), self._hit(w, a, jb)]
        return hits

    def _hit(self, w: Window, a: int, b: int) -> Hit:
        t, ids, p = w["t"], w["i"], w["p"]
        latest: dict[str, tuple[float, str]] = {}
        for k in range(b - 1, a - 1, -1):
            latest.setdefault(p[k], (t[k], ids[k]))
        inside = sorted(latest.values())
        moment = t[b - 1]
        return moment, moment - self.within, inside[0][0], [e[1] for e in inside[-MAX_EVIDENCE:]]


class AllEval(Evaluator):
    """`all`: w = one match window per condition."""

    __slots__ = ("n",)

    def __init__(self, pattern: AllOf | Sequence, within: float | None, quiet: float = 0.0) -> None:
        super().__init__(pattern, within, quiet)
        self.n = len(pattern.conds)

    def upgrade(self, state: dict[str, Any]) -> bool:
        windows = state.get("w") or []
        empty = [w for w in windows if "t" not in w]  # older versions left {} until a condition matched
        for w in empty:
            w.update(match_window())
        return bool(empty)

    def _windows(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Window] | None:
        """The windows after adding the event; None when it was already applied."""
        windows: list[Window] | None = state.get("w")
        if windows is None:
            windows = state["w"] = [match_window() for _ in range(self.n)]
        horizon = wm - self.within
        for w in windows:
            t = w["t"]
            if t and t[0] < horizon:  # else nothing to forget: spare the call
                evict_matches(w, horizon)
        fresh = False
        for i in which:
            fresh |= insert_match(windows[i], ev.ts, ev.id) >= 0
        return windows if fresh else None

    def _judge(self, windows: list[Window], mt: float, without: str | None = None) -> Hit | None:
        """The hit at moment `mt`: the latest match of each condition in [mt − within, mt] (not counting
        the event `without`), if every condition has one."""
        d = self.within
        chosen: list[tuple[float, str]] = []
        for w in windows:
            t, ids = w["t"], w["i"]
            k = bisect_right(t, mt) - 1
            if k >= 0 and ids[k] == without:
                k -= 1
            if k < 0 or t[k] < mt - d:
                return None
            chosen.append((t[k], ids[k]))
        return mt, mt - d, min(c[0] for c in chosen), [c[1] for c in chosen]

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        windows = self._windows(state, ev, which, wm)
        if windows is None:
            return None
        s, d = ev.ts, self.within
        hits = None
        if not self._cooling(state, s, s):
            hit = self._judge(windows, s)
            if hit is not None:
                hits = [hit]
        later: set[float] = set()
        for w in windows:
            t = w["t"]
            if t and t[-1] > s:
                later.update(t[bisect_right(t, s) : bisect_right(t, s + d)])
        if later and not self._cooling(state, min(later), max(later)):
            for mt in sorted(later):
                hit = self._judge(windows, mt)
                if hit is not None and self._judge(windows, mt, ev.id) is None:
                    hits = [*(hits or ()), hit]
        return hits


class SequenceEval(AllEval):
    """`sequence`: judged at each match of its last step; earlier steps are taken latest-first."""

    __slots__ = ()

    def _chain(self, windows: list[Window], j: int, without: str | None = None) -> Hit | None:
        """The hit at the last step's match j, if a chain of earlier steps (not using the event
        `without`) leads to it within the window."""
        last = windows[-1]
        t = last["t"][j]
        prev, chain, used = t, [last["i"][j]], {last["i"][j], without}
        for i in range(self.n - 2, -1, -1):
            w = windows[i]
            times, ids = w["t"], w["i"]
            a, b = bisect_left(times, t - self.within), bisect_right(times, prev)
            step = next((k for k in range(b - 1, a - 1, -1) if ids[k] not in used), None)
            if step is None:
                return None
            prev = times[step]
            chain.append(ids[step])
            used.add(ids[step])
        chain.reverse()
        return t, t - self.within, prev, chain

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        windows = self._windows(state, ev, which, wm)
        if windows is None:
            return None
        times, ids, s = windows[-1]["t"], windows[-1]["i"], ev.ts
        hits = None
        for j in range(bisect_left(times, s), bisect_right(times, s + self.within)):
            if self._cooling(state, times[j], times[j]):
                continue
            hit = self._chain(windows, j)
            if hit is None:
                continue
            if ids[j] != ev.id and self._chain(windows, j, ev.id) is not None:
                continue  # that moment held already without this event: it was judged then
            hits = [*(hits or ()), hit]
        return hits


class AbsentEval(Evaluator):
    """`absent`: matches only re-arm; the engine's timers decide silence (see Engine._absent_due)."""

    __slots__ = ("duration",)

    def __init__(self, pattern: Absent, within: float | None, quiet: float = 0.0) -> None:
        super().__init__(pattern, within, quiet)
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


def evaluator_for(
    pattern: Pattern, within: float | None, quiet: float = 0.0, by_sensor: bool = False
) -> Evaluator:
    """The evaluator that runs `pattern`; `quiet` is the reflex's cooldown, 0 when it has a `clear`;
    `by_sensor` when its groups are single sensors."""
    if isinstance(pattern, Change):
        return ChangeEval(pattern, within, quiet, by_sensor)
    return EVALUATORS[type(pattern)](pattern, within, quiet)
