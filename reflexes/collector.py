"""What a host of the engine asks of Python's garbage collector once its rule set is loaded.

The engine allocates a few short-lived tuples and lists per event and keeps its state in long-lived dicts
and lists. With CPython's default first threshold (700 new containers) the collector runs every few dozen
events, and each younger collection that ends up in a full one walks the whole state. `settle` moves what
is alive at start (code, rule set, plans, index, restored state) out of the collector's sight and lets
10,000 containers be allocated between collections: the engine frees its per-event objects by reference
counting anyway (it makes no cycles), so only the rare cyclic garbage of the host waits a little longer.
"""

from __future__ import annotations

import gc

FIRST_THRESHOLD = 10_000  # new containers between collections of the youngest generation (CPython: 700)


def settle(first_threshold: int = FIRST_THRESHOLD) -> None:
    """Collect, freeze every object alive now out of later collections, and set the collector's first
    threshold to `first_threshold` (the older generations' thresholds are kept)."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(first_threshold, second, third)
