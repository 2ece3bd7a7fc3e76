"""Time-ordered windows kept as parallel lists, so that every search is a C-level bisect on plain floats.

`Moments` is a window of matches: `{"t": [ts, …], "i": [event id, …]}`. `ValueWindow` adds the numeric
values and per-block summaries: `{"t", "i", "v": [value, …], "lo": [min, …], "hi": [max, …], "s": [sum, …]}`
where entry k of lo/hi/s summarises block k, `v[k*BLOCK:(k+1)*BLOCK]`, so the min, max and sum of any time span cost O(BLOCK + n/BLOCK).
Both are views over JSON-able dicts (the engine's state), updated in place. Inserting an event id that is
already there at the same time changes nothing, so applying an event twice is harmless.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

BLOCK = 64
MAX_ENTRIES = 4096  # per window; bounds memory per group whatever the event rate


class Moments:
    """Times and event ids of the matches in a window, oldest first."""

    __slots__ = ("i", "t")

    def __init__(self, w: dict[str, Any]) -> None:
        self.t: list[float] = w.setdefault("t", [])
        self.i: list[str] = w.setdefault("i", [])

    def _position(self, ts: float, event_id: str) -> int | None:
        """Where (ts, id) goes, or None when it is already there."""
        t, ids = self.t, self.i
        if not t or t[-1] < ts:
            return len(t)
        k = bisect_left(t, ts)
        while k < len(t) and t[k] == ts:
            if ids[k] == event_id:
                return None
            k += 1
        return k

    def insert(self, ts: float, event_id: str) -> int:
        """Add a match; its index, or -1 when this event is already in the window."""
        k = self._position(ts, event_id)
        if k is None:
            return -1
        if k == len(self.t):
            self.t.append(ts)
            self.i.append(event_id)
        else:
            self.t.insert(k, ts)
            self.i.insert(k, event_id)
        if len(self.t) > MAX_ENTRIES:
            n = len(self.t) - MAX_ENTRIES
            self._drop(n)
            k = k - n if k >= n else -1  # the match itself was the oldest: nothing changed to judge
        return k

    def _drop(self, n: int) -> None:
        del self.t[:n]
        del self.i[:n]

    def evict_before(self, horizon: float) -> None:
        """Forget matches older than `horizon` (seconds)."""
        if self.t and self.t[0] < horizon:
            self._drop(bisect_left(self.t, horizon))

    def span(self, lo: float, hi: float) -> tuple[int, int]:
        """Index range [a, b) of the matches with lo ≤ ts ≤ hi."""
        return bisect_left(self.t, lo), bisect_right(self.t, hi)

    def __len__(self) -> int:
        return len(self.t)


class Places(Moments):
    """Matches with the place (site at a level) of each: `{"t", "i", "p": [place, …]}`."""

    __slots__ = ("p",)

    def __init__(self, w: dict[str, Any]) -> None:
        super().__init__(w)
        self.p: list[str] = w.setdefault("p", [])

    def insert_place(self, ts: float, event_id: str, place: str) -> int:
        """Add a match at `place`; its index, or -1 when this event is already in the window."""
        k = self._position(ts, event_id)
        if k is None:
            return -1
        self.p.insert(k, place)
        self.t.insert(k, ts)
        self.i.insert(k, event_id)
        if len(self.t) > MAX_ENTRIES:
            n = len(self.t) - MAX_ENTRIES
            self._drop(n)
            k = k - n if k >= n else -1
        return k

    def _drop(self, n: int) -> None:
        super()._drop(n)
        del self.p[:n]


class ValueWindow(Moments):
    """Matches with numeric values and block summaries; evicts whole blocks only, to keep them aligned."""

    __slots__ = ("hi", "lo", "s", "v")

    def __init__(self, w: dict[str, Any]) -> None:
        super().__init__(w)
        self.v: list[float] = w.setdefault("v", [])
        self.lo: list[float] = w.setdefault("lo", [])
        self.hi: list[float] = w.setdefault("hi", [])
        self.s: list[float] = w.setdefault("s", [])

    def insert_value(self, ts: float, value: float, event_id: str) -> int:
        """Add a reading; its index, or -1 when this event is already in the window (or was dropped at
        once because the window is full of newer readings)."""
        k = self._position(ts, event_id)
        if k is None:
            return -1
        t, v = self.t, self.v
        if k == len(t):
            t.append(ts)
            self.i.append(event_id)
            v.append(value)
            if (len(v) - 1) % BLOCK == 0:
                self.lo.append(value)
                self.hi.append(value)
                self.s.append(value)
            else:
                if value < self.lo[-1]:
                    self.lo[-1] = value
                if value > self.hi[-1]:
                    self.hi[-1] = value
                self.s[-1] += value
        else:
            t.insert(k, ts)
            self.i.insert(k, event_id)
            v.insert(k, value)
            self._rebuild(k // BLOCK)
        if len(t) > MAX_ENTRIES:
            self._drop(BLOCK)
            k = k - BLOCK if k >= BLOCK else -1
        return k

    def _drop(self, n: int) -> None:
        n -= n % BLOCK
        if n:
            super()._drop(n)
            del self.v[:n]
            blocks = n // BLOCK
            del self.lo[:blocks]
            del self.hi[:blocks]
            del self.s[:blocks]

    def _rebuild(self, first_block: int) -> None:
        v = self.v
        del self.lo[first_block:]
        del self.hi[first_block:]
        del self.s[first_block:]
        for k in range(first_block * BLOCK, len(v), BLOCK):
            chunk = v[k : k + BLOCK]
            self.lo.append(min(chunk))
            self.hi.append(max(chunk))
            self.s.append(sum(chunk))

    def summary(self, i: int, j: int) -> tuple[float, float, float]:
        """(min, max, sum) of the values of entries [i, j); j > i."""
        v = self.v
        bi, bj = i // BLOCK, j // BLOCK
        if bj - bi < 2:
            part = v[i:j]
            return min(part), max(part), sum(part)
        head, tail = v[i : (bi + 1) * BLOCK], v[bj * BLOCK : j]
        lo = min(min(head), min(self.lo[bi + 1 : bj]), min(tail) if tail else head[0])
        hi = max(max(head), max(self.hi[bi + 1 : bj]), max(tail) if tail else head[0])
        return lo, hi, sum(head) + sum(self.s[bi + 1 : bj]) + sum(tail)
