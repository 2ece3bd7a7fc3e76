"""Time-ordered windows kept as parallel lists, so that every search is a C-level bisect on plain floats.

A match window is `{"t": [ts, …], "i": [event id, …]}`, perhaps with more parallel lists (distinct keeps
`"p"`, the place of each match). A value window (`value_window()`) adds the numeric values `"v"`, while it
holds any `"vl"`/`"vh"` the lowest and highest of them and `"vs"` their sum (added to reading by reading,
summed afresh whenever readings leave): bounds of every span's aggregate, from which aggregates.py tells
that most tests cannot pass, or hold, without reading the span; and, once it holds more than 2 × BLOCK
readings, blocks
of consecutive entries, each summarised: `"bt"` the time the block starts at, `"bn"` its size,
`"bs"`/`"bl"`/`"bh"` the sum, min and max of its values. A block holds the entries from its start time up
to the next block's: appending in time order fills blocks of BLOCK entries, an insert out of order updates
one block's summary in O(1) and splits a block grown past 2 × BLOCK. So the min and max of any time span,
and bounds of its sum, cost O(BLOCK + n/BLOCK), and an out-of-order insert never rebuilds summaries. A sum
itself is taken exactly rounded over the span's readings (`math.fsum`), so it does not depend on the
order readings arrived in: tests decided by the bounds never reach it.

All are JSON-able dicts (the engine's state), read and written in place by the functions below (no view
objects). A value window's times and values are `Floats` (array('d'): 8 bytes a reading instead of a list
slot and a float object, 32) and its event ids `Ids` (one run of bytes: 16 bytes for a 16-character id
instead of a list slot and a str object, 89), which JSON encoders take
through `jsonable` (orjson's `default`) or `__json__` (Faust's); read back from JSON they are lists, which
every function here takes as well, and `compact` turns them back. Inserting an event id that is already
there at the same time changes nothing, so applying an event twice is harmless; so does inserting a
reading older than one whose id an `Ids` has forgotten (it was late when that one was forgotten).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast, overload

BLOCK = 64
MAX_ENTRIES = 4096  # per window; bounds memory per group whatever the event rate

Window = dict[str, Any]


if TYPE_CHECKING:
    _Doubles = array[float]
else:
    _Doubles = array  # not subscriptable at run time


class Floats(_Doubles):
    """A list of floats as C doubles, for the times and values of value windows: a window of the edge's
    30 s room averages at thousands of readings per second holds hundreds of thousands of them."""

    __slots__ = ()

    def __new__(cls, values: Iterable[float] = ()) -> Floats:
        return cast("Floats", super().__new__(cls, "d", values))

    def __json__(self) -> list[float]:
        """Faust's JSON encoder (the brain's state tables) asks for this."""
        return self.tolist()


WIDE = 64
"""Bytes an `Ids` slot may have once ids differ in length (a blake2b or sha256 hex id, a uuid fit)."""


class Ids:
    """The event ids of a value window as one bytearray of `width`-byte slots (UTF-8), read back as str:
    a window holds hundreds of thousands of them at a gateway, where a str object in a list costs 73 bytes
    more than its characters. While every id has one length (uuids, hashes, the ids agents make,
    zero-padded counters) a slot is just the id; once lengths differ, shorter ids are padded and `lens`
    holds each one's length (2 bytes more an id), and an id longer than all before widens every slot (once
    per new width). Ids of differing lengths over WIDE bytes are kept in a list instead (`too_wide`). Takes what the windows' code asks of a list of ids: len, index, slices (lists),
    iteration, append, insert and deleting a slice.

    `forget(n)` gives up the ids of the first n entries: they read as "" from then on (an event id is never
    empty). The first `skip` entries hold no bytes, the slots hold the rest; a JSON list starts with as
    many "", which `Ids(list)` reads back as skipped. The engine forgets the ids of readings that no later
    event can be judged with (see `Family.insert`): at a gateway they are most of what its windows hold."""

    __slots__ = ("data", "lens", "skip", "width")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.data = bytearray()
        self.width = 0
        self.lens: array[int] | None = None
        self.skip = 0
        for event_id in ids:
            if event_id or self.data:
                self.append(event_id)
            else:  # a leading "": a forgotten id
                self.skip += 1

    def __len__(self) -> int:
        return self.skip + self._slots()

    def _slots(self) -> int:
        return len(self.data) // self.width if self.width else 0

    def forget(self, n: int) -> None:
        """The ids of the entries before index n read as "" from now on; their bytes are given up."""
        m = min(n, len(self)) - self.skip  # slots to give up
        if m <= 0:
            return
        del self.data[: m * self.width]  # from the front: O(1) in a bytearray
        if self.lens is not None:
            del self.lens[:m]
        self.skip += m

    def _remember(self, k: int) -> None:
        """Make the forgotten entries from index k on slots again (holding ""), for an id to go at k."""
        held = ["" for _ in range(k, self.skip)] + [self._at(j) for j in range(self.skip, len(self))]
        self.data, self.lens, self.width, self.skip = bytearray(), None, 0, k
        for event_id in held:
            self.append(event_id)

    def too_wide(self, event_id: str) -> bool:
        """Whether `event_id` would make these ids of differing lengths in slots wider than WIDE bytes:
        one long id among short ones would widen every slot, and a list is then cheaper."""
        n = len(event_id.encode())
        return bool(self.data) and n != self.width and max(n, self.width) > WIDE

    def holds(self, event_id: str, a: int, b: int) -> bool:
        """Whether `event_id` is among the ids [a, b): one search of the bytes, not a str per id."""
        return self._holds(event_id.encode(), a, b)

    def _holds(self, raw: bytes, a: int, b: int) -> bool:
        skip = self.skip
        if a < skip:
            if not raw and a < b:
                return True  # a forgotten id reads as ""
            a = skip
        if b <= a:
            return False
        return self._in_slots(raw, a - skip, b - skip)

    def _in_slots(self, raw: bytes, a: int, b: int) -> bool:
        n, w = len(raw), self.width
        data, lens = self.data, self.lens
        if not n:
            return lens is not None and 0 in lens[a:b]
        if n > w or (n < w and lens is None):  # lens None: every id is w bytes long
            return False
        slot = raw if n == w else raw.ljust(w, b"\0")
        start, stop = a * w, b * w
        while (j := data.find(slot, start, stop)) >= 0:
            if not j % w and (lens is None or lens[j // w] == n):
                return True
            start = (j // w + 1) * w  # across two slots, or a longer id's start: from the next slot
        return False

    def _slot(self, raw: bytes) -> bytes:
        """`raw` as a slot (padded to the width, widening every slot first if it is longer), its length
        in `lens` from now on if it differs."""
        n, width = len(raw), self.width
        if not n and not width:  # empty, and an empty id: a slot of one byte, its length 0 in `lens`
            self.width, self.lens = 1, array("H")
            return b"\0"
        if n > width:
            if self.lens is None and self.data:
                self.lens = array("H", [width]) * self._slots()
            self._rewidth(n)
            return raw
        if self.lens is None:
            self.lens = array("H", [width]) * self._slots()
        return raw.ljust(width, b"\0")

    def _rewidth(self, width: int) -> None:
        """Every slot cut or padded to `width` bytes."""
        w, data = self.width, self.data
        if data:
            self.data = bytearray(
                b"".join(data[j : j + w][:width].ljust(width, b"\0") for j in range(0, len(data), w))
            )
        self.width = width

    def append(self, event_id: str) -> None:
        raw = event_id.encode()
        n = len(raw)
        if n != self.width or not n:
            raw = self._slot(raw)
        if self.lens is not None:
            self.lens.append(n)
        self.data += raw

    def insert(self, k: int, event_id: str, unless_in: int | None = None) -> bool:
        """Put an id at index k (0 ≤ k ≤ len); with `unless_in`, only if it is not among the ids
        [unless_in, k) (False then: nothing changed)."""
        raw = event_id.encode()
        if unless_in is not None and unless_in < k and self._holds(raw, unless_in, k):
            return False
        if k < self.skip:
            self._remember(k)
        k -= self.skip
        n, w = len(raw), self.width
        if n != w or not n:
            raw = self._slot(raw)
            w = self.width
        if self.lens is not None:
            self.lens.insert(k, n)
        self.data[k * w : k * w] = raw
        return True

    @overload
    def __getitem__(self, k: int) -> str: ...

    @overload
    def __getitem__(self, k: slice) -> list[str]: ...

    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [self._at(j) for j in range(*k.indices(len(self)))]
        n = len(self)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError("event id index out of range")
        return self._at(k)

    def _at(self, k: int) -> str:
        k -= self.skip
        if k < 0:
            return ""
        w = self.width
        if self.lens is None:
            return self.data[k * w : k * w + w].decode()
        return self.data[k * w : k * w + self.lens[k]].decode()

    def __delitem__(self, k: slice) -> None:
        a, b, step = k.indices(len(self))
        if step != 1:
            raise ValueError("only contiguous slices of event ids are deleted")
        skip = self.skip
        self.skip -= max(0, min(b, skip) - min(a, skip))  # forgotten ones among them
        a, b = max(a, skip) - skip, max(b, skip) - skip  # and the slots
        del self.data[a * self.width : b * self.width]  # from the front: O(1) in a bytearray
        if self.lens is not None:
            del self.lens[a:b]

    def __iter__(self) -> Iterator[str]:
        return (self._at(j) for j in range(len(self)))

    def repack(self) -> None:
        """Narrow the slots to the longest id still held, and keep no lengths once all are one: what a
        long id, or ids of other lengths, made wide is given back once they have left the window."""
        lens = self.lens
        if lens is None or not lens:
            return
        top, low = max(max(lens), 1), min(lens)
        if top < self.width:
            self._rewidth(top)
        if low == top:
            self.lens = None

    def tolist(self) -> list[str]:
        return list(self)

    def __sizeof__(self) -> int:
        """With the bytes it holds (sys.getsizeof), as a list's size counts its slots."""
        lens = self.lens.__sizeof__() if self.lens is not None else 0
        return object.__sizeof__(self) + self.data.__sizeof__() + lens

    def __json__(self) -> list[str]:
        """Faust's JSON encoder (the brain's state tables) asks for this."""
        return self.tolist()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ids):
            return self.tolist() == other.tolist()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"Ids({self.tolist()!r})"


def jsonable(obj: object) -> list[float] | list[str]:
    """orjson's `default=` for engine state: a Floats or Ids as the JSON list it stands for."""
    if isinstance(obj, array | Ids):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-able engine state")


EXACT = 2**53
"""Integers up to this size are doubles exactly; a window given a larger one keeps its values in a list."""


def _doubles(values: list[Any]) -> bool:
    return all(type(x) is float or -EXACT <= x <= EXACT for x in values)


def compact(w: Window) -> None:
    """Make a value window read back from JSON (lists) as compact as one built here: Floats unless it
    holds integers beyond EXACT, Ids unless they are `too_wide`."""
    for key in ("t", "v"):
        values = w.get(key)
        if type(values) is list and _doubles(values):
            w[key] = Floats(values)
    ids = w.get("i")
    if type(ids) is list and "v" in w and all(type(x) is str for x in ids):
        lengths = {len(x.encode()) for x in ids if x}  # "": forgotten, kept in no slot
        if len(lengths) <= 1 or max(lengths) <= WIDE:  # else `too_wide`
            w["i"] = Ids(ids)


def position(t: list[float], ids: list[str], ts: float, event_id: str) -> int:
    """Where (ts, id) goes in the sorted times `t`, or -1 when that event is already there."""
    if not t or t[-1] < ts:
        return len(t)
    k = bisect_left(t, ts)
    n = len(t)
    while k < n and t[k] == ts:
        if ids[k] == event_id:
            return -1
        k += 1
    return k


# ---------------------------------------------------------------- match windows
def match_window(*extra: str) -> Window:
    """An empty window of matches: times, event ids and a parallel list per name in `extra`."""
    w: Window = {"t": [], "i": []}
    for name in extra:
        w[name] = []
    return w


def insert_match(w: Window, ts: float, event_id: str, extra: dict[str, object] | None = None) -> int:
    """Add a match (and its `extra` values, one per parallel list); its index, or -1 when this event is
    already in the window (or was dropped at once because the window is full of newer matches)."""
    t: list[float] = w["t"]
    if not t or ts > t[-1]:
        k = len(t)
        t.append(ts)
        w["i"].append(event_id)
        if extra:
            for name, value in extra.items():
                w[name].append(value)
    else:
        k = position(t, w["i"], ts, event_id)
        if k < 0:
            return -1
        t.insert(k, ts)
        w["i"].insert(k, event_id)
        if extra:
            for name, value in extra.items():
                w[name].insert(k, value)
    if len(t) > MAX_ENTRIES:
        n = len(t) - MAX_ENTRIES
        for values in w.values():
            del values[:n]
        k = k - n if k >= n else -1
    return k


def evict_matches(w: Window, horizon: float) -> None:
    """Forget matches older than `horizon` (seconds)."""
    t = w["t"]
    if t and t[0] < horizon:
        n = bisect_left(t, horizon)
        for values in w.values():
            del values[:n]


# ---------------------------------------------------------------- value windows
def value_window() -> Window:
    """An empty value window (its blocks come once it holds more than 2 × BLOCK readings)."""
    return {"t": Floats(), "i": Ids(), "v": Floats()}


VALUE_KEYS = ("t", "i", "v", "vl", "vh", "vs", "bt", "bn", "bs", "bl", "bh")


def take_values(state: dict[str, Any]) -> Window | None:
    """Take out of `state` the value window an older version kept among the group's own keys."""
    if "t" not in state:
        return None
    return {key: state.pop(key) for key in VALUE_KEYS if key in state}


def insert_value(w: Window, ts: float, value: float, event_id: str) -> int:
    """Add a reading; its index, or -1 when this event is already in the window (or was dropped at once
    because the window is full of newer readings)."""
    if type(value) is int and not -EXACT <= value <= EXACT and type(w["v"]) is not list:
        # A double would round it: from now on the values are a list, whole ones as ints, so that min,
        # max, rise and fall see it exactly, also against the readings before it (2**53 + 1 - 2**53.0 is 0).
        w["v"] = [int(x) if x.is_integer() else x for x in w["v"]]
        if "bn" in w:
            _build_blocks(w)  # block minima and maxima likewise
        _bound(w)
    ids: list[str] | Ids = w["i"]
    if (
        type(ids) is Ids
        # only ids over WIDE bytes, or among slots over WIDE bytes, can be too wide (a character is ≤ 4 bytes)
        and (
            ids.width > WIDE or len(event_id) > WIDE or (len(event_id) > WIDE // 4 and not event_id.isascii())
        )
        and ids.too_wide(event_id)
    ):
        w["i"] = ids = ids.tolist()  # until the window is empty again
    t: list[float] = w["t"]
    blocks = "bn" in w
    if t and ts <= t[-1]:
        k = bisect_left(t, ts)
        if type(ids) is Ids:
            if k < ids.skip:
                # Older than a reading whose id is forgotten: that happened once the watermark had passed
                # it, so this event was late then. Only a host that restored an older watermark than its
                # windows saw (a snapshot's) gets here; taken as applied, so no repeat is counted twice.
                return -1
            # after the readings at this very time (an agent stamps a whole read with one), if not among them
            end = bisect_right(t, ts, k)
            if not ids.insert(end, event_id, k):
                return -1
            k = end
        else:
            n = len(t)
            while k < n and t[k] == ts:  # position(), inline: this is the engine's hottest path
                if ids[k] == event_id:
                    return -1
                k += 1
            ids.insert(k, event_id)
        t.insert(k, ts)
        w["v"].insert(k, value)
        if blocks:
            _into_block(w, ts, value)
    else:
        k = len(t)
        t.append(ts)
        ids.append(event_id)
        w["v"].append(value)
        if blocks:
            _append_block(w, ts, value)
    if "vs" in w:
        w["vs"] += value
        if value > w["vh"]:
            w["vh"] = value
        elif value < w["vl"]:
            w["vl"] = value
    else:  # the first reading (or a window kept by an older version)
        _bound(w)
    if not blocks:
        if len(t) > 2 * BLOCK:
            _build_blocks(w)
    elif len(t) > MAX_ENTRIES:
        n = w["bn"][0]
        _drop_blocks(w, 1)
        _bound(w)
        k = k - n if k >= n else -1
    return k


def _bound(w: Window) -> None:
    """Set "vl"/"vh"/"vs" to the min, max and sum of the window's readings (none when it holds none)."""
    if not w["v"]:
        for key in ("vl", "vh", "vs"):
            w.pop(key, None)
    elif "bn" in w:
        w["vl"], w["vh"], w["vs"] = min(w["bl"]), max(w["bh"]), sum(w["bs"])
    else:
        w["vl"], w["vh"], w["vs"] = min(w["v"]), max(w["v"]), sum(w["v"])


def _append_block(w: Window, ts: float, value: float) -> None:
    bn = w["bn"]
    if bn[-1] < BLOCK:
        bn[-1] += 1
        w["bs"][-1] += value
        if value < w["bl"][-1]:
            w["bl"][-1] = value
        if value > w["bh"][-1]:
            w["bh"][-1] = value
    else:
        w["bt"].append(ts)
        bn.append(1)
        w["bs"].append(value)
        w["bl"].append(value)
        w["bh"].append(value)


def _into_block(w: Window, ts: float, value: float) -> None:
    bt, bn = w["bt"], w["bn"]
    p = bisect_right(bt, ts) - 1
    if p < 0:
        p = 0
        bt[0] = ts  # the first block now starts earlier
    bn[p] += 1
    w["bs"][p] += value
    if value < w["bl"][p]:
        w["bl"][p] = value
    if value > w["bh"][p]:
        w["bh"][p] = value
    if bn[p] > 2 * BLOCK:
        _split(w, p)


def _build_blocks(w: Window) -> None:
    """Summarise the readings in blocks of about BLOCK (readings at one time stay in one block)."""
    t, v = w["t"], w["v"]
    w["bt"], w["bn"], w["bs"], w["bl"], w["bh"] = [], [], [], [], []
    x, n = 0, len(t)
    while x < n:
        y = n if x + BLOCK >= n else bisect_right(t, t[x + BLOCK - 1], x + BLOCK - 1)
        part = v[x:y]
        w["bt"].append(t[x])
        w["bn"].append(y - x)
        w["bs"].append(sum(part))
        w["bl"].append(min(part))
        w["bh"].append(max(part))
        x = y


def _split(w: Window, p: int) -> None:
    """Split block p in two at a change of time near its middle (entries at one time stay together)."""
    t, v, bt, bn = w["t"], w["v"], w["bt"], w["bn"]
    x = bisect_left(t, bt[p])
    y = x + bn[p]
    mid = bisect_left(t, t[x + bn[p] // 2], x, y)
    if mid == x:
        mid = bisect_right(t, t[mid], x, y)
        if mid == y:
            return  # all at one time: it cannot be split
    left, right = v[x:mid], v[mid:y]
    bt.insert(p + 1, t[mid])
    bn[p : p + 1] = [mid - x, y - mid]
    w["bs"][p : p + 1] = [sum(left), sum(right)]
    w["bl"][p : p + 1] = [min(left), min(right)]
    w["bh"][p : p + 1] = [max(left), max(right)]


def _drop_blocks(w: Window, blocks: int) -> None:
    n = sum(w["bn"][:blocks])
    for key in ("t", "i", "v"):
        del w[key][:n]
    for key in ("bt", "bn", "bs", "bl", "bh"):
        del w[key][:blocks]


def evict_values(w: Window, horizon: float) -> None:
    """Forget readings older than `horizon` (seconds): whole blocks of them once the window has blocks.
    A window left empty starts afresh as `value_window()` made it (compact, whatever it held before)."""
    t = w["t"]
    if not t or t[0] >= horizon:
        return
    if t[-1] < horizon:
        for key in ("bt", "bn", "bs", "bl", "bh", "vl", "vh", "vs"):
            w.pop(key, None)
        w.update(value_window())
        return
    if "bn" not in w:
        n = bisect_left(t, horizon)
        for key in ("t", "i", "v"):
            del w[key][:n]
        _bound(w)
    else:
        p = bisect_right(w["bt"], horizon, 1) - 1  # the block holding `horizon`: the ones before are older
        if p <= 0:
            return
        _drop_blocks(w, p)
        _bound(w)
    ids = w["i"]
    if type(ids) is Ids and ids.lens is not None:
        ids.repack()


def _blocks(w: Window, a: int, b: int) -> tuple[int, int, int, int] | None:
    """For entries [a, b): (end of the head, first full block, end of the full blocks, start of the tail),
    or None when they span fewer than three blocks (scan them directly)."""
    if b - a <= 2 * BLOCK or "bn" not in w:
        return None
    t, bt = w["t"], w["bt"]
    q = bisect_right(bt, t[a]) - 1  # block of entry a
    r = bisect_right(bt, t[b - 1]) - 1  # block of entry b − 1
    if r - q < 2:
        return None
    return bisect_left(t, bt[q + 1], a, b), q + 1, r, bisect_left(t, bt[r], a, b)


def span_range(w: Window, a: int, b: int, fn: str) -> tuple[float, float] | None:
    """Bounds (low, high) of the `fn` ("sum", "min" or "max") of entries [a, b) from the block summaries
    alone: exact for the blocks inside, the min and max of the two blocks cut at the ends standing for the
    entries taken from them. None when [a, b) spans fewer than three blocks. Cheap: no reading is read."""
    parts = _blocks(w, a, b)
    if parts is None:
        return None
    head, p1, p2, tail = parts
    if fn == "max":
        highs: list[float] = w["bh"]
        inner = max(highs[p1:p2])
        return inner, max(inner, highs[p1 - 1], highs[p2])
    lows: list[float] = w["bl"]
    if fn == "min":
        inner = min(lows[p1:p2])
        return min(inner, lows[p1 - 1], lows[p2]), inner
    highs = w["bh"]
    inner = sum(w["bs"][p1:p2])
    nh, nt = head - a, b - tail
    return (
        inner + nh * lows[p1 - 1] + nt * lows[p2],
        inner + nh * highs[p1 - 1] + nt * highs[p2],
    )


def exact_sum(values: list[float]) -> float:
    """The sum of `values` exactly rounded (`math.fsum`), ±inf when it exceeds the largest float.

    fsum gives up when a partial sum overflows, even if the whole would fit: then it is summed as fractions.
    """
    try:
        return math.fsum(values)
    except OverflowError:
        total = sum(map(Fraction, values), Fraction(0))
        try:
            return float(total)
        except OverflowError:
            return math.inf if total > 0 else -math.inf


def span_sum(w: Window, a: int, b: int) -> float:
    """Sum of the values of entries [a, b), exactly rounded (`exact_sum`): the same whatever the order
    the readings came in, and exactly 0 when they cancel out. The block sums only bound it (span_range)."""
    return exact_sum(w["v"][a:b])


def span_min(w: Window, a: int, b: int) -> float:
    """Lowest value of entries [a, b); b > a."""
    v: list[float] = w["v"]
    if b - a <= 2 * BLOCK:
        return min(v[a:b])
    parts = _blocks(w, a, b)
    if parts is None:
        return min(v[a:b])
    head, p1, p2, tail = parts
    lows: list[float] = w["bl"]
    return min(min(v[a:head]), min(lows[p1:p2]), min(v[tail:b]))


def span_max(w: Window, a: int, b: int) -> float:
    """Highest value of entries [a, b); b > a."""
    v: list[float] = w["v"]
    if b - a <= 2 * BLOCK:
        return max(v[a:b])
    parts = _blocks(w, a, b)
    if parts is None:
        return max(v[a:b])
    head, p1, p2, tail = parts
    highs: list[float] = w["bh"]
    return max(max(v[a:head]), max(highs[p1:p2]), max(v[tail:b]))
