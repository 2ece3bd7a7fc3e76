"""Time-ordered windows of numeric readings with per-block summaries.

A window is a JSON-able dict `{"e": [[ts, value, id], …], "b": [[min, max, sum], …]}` where block k
summarises `e[k*BLOCK:(k+1)*BLOCK]`. The min, max and sum of any time span then cost O(BLOCK + n/BLOCK)
instead of O(n), which is what keeps city-wide windows of thousands of readings cheap per event.
Entries are evicted from the front in whole blocks only, so the blocks stay aligned.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

BLOCK = 64
MAX_ENTRIES = 4096  # per window; bounds memory per group whatever the event rate


def _ts(e: list[Any]) -> float:
    return float(e[0])


class ValueWindow:
    """A view over one window's state dict; mutating methods update it in place."""

    __slots__ = ("b", "e")

    def __init__(self, w: dict[str, Any]) -> None:
        self.e: list[list[Any]] = w.setdefault("e", [])
        self.b: list[list[float]] = w.setdefault("b", [])

    def insert(self, ts: float, value: float, event_id: str) -> bool:
        """Add a reading; False (and nothing changes) when this event id is already in the window."""
        e, b = self.e, self.b
        i = bisect_left(e, ts, key=_ts)
        while i < len(e) and e[i][0] == ts:
            if e[i][2] == event_id:
                return False
            i += 1
        if not e or e[-1][0] <= ts:
            e.append([ts, value, event_id])
            if (len(e) - 1) % BLOCK == 0:
                b.append([value, value, value])
            else:
                blk = b[-1]
                if value < blk[0]:
                    blk[0] = value
                if value > blk[1]:
                    blk[1] = value
                blk[2] += value
        else:
            pos = bisect_right(e, ts, key=_ts)
            e.insert(pos, [ts, value, event_id])
            self._rebuild(pos // BLOCK)
        if len(e) > MAX_ENTRIES:
            del e[:BLOCK]
            del b[0]
        return True

    def _rebuild(self, first_block: int) -> None:
        e, b = self.e, self.b
        del b[first_block:]
        for k in range(first_block * BLOCK, len(e), BLOCK):
            values = [x[1] for x in e[k : k + BLOCK]]
            b.append([min(values), max(values), sum(values)])

    def evict_before(self, horizon: float) -> None:
        """Drop whole blocks of entries older than `horizon` (seconds)."""
        e = self.e
        if e and e[0][0] < horizon:
            n = bisect_left(e, horizon, key=_ts)
            n -= n % BLOCK
            if n:
                del e[:n]
                del self.b[: n // BLOCK]

    def span(self, lo: float, hi: float) -> tuple[int, int]:
        """Index range [i, j) of the entries with lo ≤ ts ≤ hi."""
        return bisect_left(self.e, lo, key=_ts), bisect_right(self.e, hi, key=_ts)

    def summary(self, i: int, j: int) -> tuple[float, float, float]:
        """(min, max, sum) of the values of entries [i, j); j > i."""
        e, b = self.e, self.b
        bi, bj = i // BLOCK, j // BLOCK
        if bi == bj or bj - bi < 2:
            values = [x[1] for x in e[i:j]]
            return min(values), max(values), sum(values)
        head = [x[1] for x in e[i : (bi + 1) * BLOCK]]
        tail = [x[1] for x in e[bj * BLOCK : j]]
        blocks = b[bi + 1 : bj]
        mins = [blk[0] for blk in blocks] + head + tail
        maxs = [blk[1] for blk in blocks] + head + tail
        total = sum(blk[2] for blk in blocks) + sum(head) + sum(tail)
        return min(mins), max(maxs), total
