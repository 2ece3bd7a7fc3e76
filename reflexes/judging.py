"""What judging a pattern returns and the base every evaluator shares (see patterns.py for how windowed
patterns are judged whatever the arrival order)."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from reflexes.model import Pattern

Hit = tuple[float, float, float, list[str]]
# (ts: the moment that fired, window start: what the alert id is made from, first_event_ts, evidence ids).
# A hit with no evidence means "the pattern still holds" without a new firing (a `for` run that already
# fired): it keeps a `clear` from closing the alert while the condition lasts.

MAX_EVIDENCE = 32


class Evaluator:
    """Base: `wants_misses` asks the engine to call `miss` for events that are selected but fail the
    predicate (they break a `for` run). `quiet` is the cooldown the engine applies to the reflex's alerts
    (0 when the reflex has a `clear`: then every moment that holds counts)."""

    __slots__ = ("quiet", "within")

    wants_misses = False

    def __init__(self, pattern: Pattern, within: float | None, quiet: float = 0.0) -> None:
        self.within = within or 0.0
        self.quiet = quiet

    def match(self, state: dict[str, Any], ev: Any, which: list[int], wm: float) -> list[Hit] | None:
        raise NotImplementedError

    def miss(self, state: dict[str, Any], ev: Any) -> bool:
        """`ev` is selected but fails the predicate; True when that changed the state."""
        return False

    def upgrade(self, state: dict[str, Any]) -> bool:
        """Bring a group's state kept by an older version to this one's form (the engine calls it for every
        group it finds in its store); True when it changed."""
        return False

    def _hit(self, w: dict[str, Any], a: int, b: int) -> Hit:
        """The hit of window `w`'s entries [a, b) (times in "t", event ids in "i"), at the moment of the
        last: the window that fired is [moment − within, moment]; the evidence is its latest ids."""
        t = w["t"]
        moment = t[b - 1]
        ids = w["i"][max(a, b - MAX_EVIDENCE) : b]
        if not all(ids):  # a forgotten id (Family.insert): the watermark keeps them out; never name ""
            ids = [x for x in ids if x]
        return moment, moment - self.within, t[a], ids

    def _cooling(self, state: dict[str, Any], lo: float, hi: float) -> bool:
        """Whether an alert at any moment in [lo, hi] (seconds) falls within the cooldown of the group's
        latest alert, so that the engine would suppress it: such moments need not be judged."""
        last = state.get("la")
        return last is not None and last - self.quiet < lo and hi < last + self.quiet


def later(t: list[float], first: int, until: float) -> list[tuple[int, int]]:
    """The moments after index `first` up to `until` (seconds) as (first index, end index) of each run of
    equal times in the sorted list `t`."""
    out: list[tuple[int, int]] = []
    j, end = first, bisect_right(t, until, first)
    while j < end:
        jb = bisect_right(t, t[j], j, end)
        out.append((j, jb))
        j = jb
    return out
