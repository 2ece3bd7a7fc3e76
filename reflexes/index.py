"""The engine's index: the conditions an event can match, found without testing the others.

Conditions are filed by kind and by the literal prefix of their site glob (`d1/c3` of `d1/c3/**`): an event
is looked up under the deepest prefix of its site that some condition names, which holds every condition
whose prefix the site starts with. Inside that bucket a condition whose predicate compares the value with
a number (`value: "> 57"`, `between`, a `where` with `value > 57 and …`) sits in a list sorted by that
number, so one bisect yields the ones the event's value passes; equality and `in` predicates sit in a dict
by value. Only those candidates are tested, and only for what the index did not decide: a glob that is
its prefix plus `**` needs no regex, an exact comparison no predicate call. Conditions without a predicate
are candidates whenever their selectors pass. `for` conditions are filed the same way and also listed in
`watch`, with which the engine finds the events that break a run (selected, but failing the predicate).
Conditions whose plans read a shared window (`apart` names it: an aggregate's or a change's family) are
kept `apart`, grouped by that window, with their predicate left to test: the engine inserts a reading
once and asks each reflex whether it is worth judging before it becomes a candidate.

Candidates come back as heads (rule order, condition index, plan), which the engine sorts (with the
family members it adds) so that its outputs keep rule-set order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from reflexes.conditions import type_key
from reflexes.model import Condition

P = TypeVar("P")
Check = Callable[[Any], bool]
Head = tuple[int, int, P]  # (rule order, condition index, plan): what a match hands the engine
# (its head, built once, selectors left to test or None, predicate left to test or None)
Entry = tuple[Head[P], Check | None, Check | None]
Found = list[Head[P]]
# (the shared window's owner, the entries of its plans in rule order, their predicates left to test)
Apart = tuple[tuple[Any, tuple[Entry[P], ...]], ...]
SITE_CACHE_MAX = 200_000
_NO_MEMBERS: dict[Any, Any] = {}  # shared by the buckets without equality predicates; never written


class Bucket(Generic[P]):
    """The conditions of one kind that can match a site under one prefix, arranged by predicate."""

    __slots__ = ("always", "apart", "eq", "found", "ge", "gt", "le", "lt", "other", "watch")

    def __init__(
        self,
        entries: Iterable[tuple[Entry[P], Condition, bool]],
        apart: Callable[[P], Any] | None = None,
    ) -> None:
        found: Found[P] = []  # conditions the index decides entirely: candidates for every event
        always: list[Entry[P]] = []
        other: list[Entry[P]] = []
        # (plan, selectors left, predicate) of conditions whose failures matter (`for` runs)
        watch: list[tuple[P, Check | None, Check]] = []
        eq: dict[tuple[str, object], list[Entry[P]]] = {}
        bounds: dict[str, list[tuple[float, Entry[P]]]] = {">": [], ">=": [], "<": [], "<=": []}
        shared: dict[Any, list[Entry[P]]] = {}
        for entry, c, watched in entries:
            if watched and not c.always:
                watch.append((entry[0][2], c.rest, c.holds))
            owner = apart(entry[0][2]) if apart is not None else None
            if owner is not None:  # its predicate too is left to the engine (even one the index decides)
                shared.setdefault(owner, []).append((entry[0], entry[1], None if c.always else c.holds))
            elif c.always and entry[1] is None:
                found.append(entry[0])
            elif c.always:
                always.append(entry)
            elif c.bound is not None:
                bounds[c.bound[0]].append((c.bound[1], entry))
            elif c.members is not None:
                for m in c.members:
                    eq.setdefault(m, []).append(entry)
            else:
                other.append(entry)
        # tuples: most buckets have few of each, and an empty tuple costs nothing
        self.found, self.always, self.other, self.watch = (
            tuple(found),
            tuple(always),
            tuple(other),
            tuple(watch),
        )
        self.apart: Apart[P] = tuple((owner, tuple(plans)) for owner, plans in shared.items())
        self.eq = {m: tuple(lst) for m, lst in eq.items()} or _NO_MEMBERS
        # (sorted bounds, their entries) per comparison; None when the bucket has none
        self.gt, self.ge, self.lt, self.le = (_sorted(bounds[op]) for op in (">", ">=", "<", "<="))

    def match(self, ev: Any) -> Found[P]:
        """The candidates `ev` matches, in no set order; not those kept `apart`."""
        found = [*self.found]
        add = found.append
        for head, rest, _ in self.always:
            if rest(ev):  # type: ignore[misc]  # an entry is `always` for its selectors left to test
                add(head)
        v = ev.value
        if type(v) is float or type(v) is int:
            if self.gt is not None:  # value > x for every x below v
                _pick(self.gt[1][: bisect_left(self.gt[0], v)], ev, add)
            if self.ge is not None:
                _pick(self.ge[1][: bisect_right(self.ge[0], v)], ev, add)
            if self.lt is not None:
                _pick(self.lt[1][bisect_right(self.lt[0], v) :], ev, add)
            if self.le is not None:
                _pick(self.le[1][bisect_left(self.le[0], v) :], ev, add)
        if self.eq:
            same = self.eq.get(type_key(v))
            if same is not None:
                _pick(same, ev, add)
        if self.other:
            _pick(self.other, ev, add)
        return found

    def plans(self) -> list[P]:
        """Every plan filed here, in rule order (for introspection and tests)."""
        heads: list[Head[P]] = [*self.found, *(p[0] for _, plans in self.apart for p in plans)]
        entries: list[Entry[P]] = [*self.always, *self.other]
        entries += [e for tup in self.eq.values() for e in tup]
        for pair in (self.gt, self.ge, self.lt, self.le):
            if pair is not None:
                entries += pair[1]
        heads += [e[0] for e in entries]
        ranked = sorted({(h[0], id(h[2])): h for h in heads}.values(), key=_rank)
        return [h[2] for h in ranked]


def _rank(head: Head[Any]) -> tuple[int, int]:
    return head[0], head[1]


def _sorted(pairs: list[tuple[float, Entry[P]]]) -> tuple[list[float], tuple[Entry[P], ...]] | None:
    if not pairs:
        return None
    pairs.sort(key=lambda p: p[0])
    return [p[0] for p in pairs], tuple(p[1] for p in pairs)


def _pick(entries: tuple[Entry[P], ...], ev: Any, add: Callable[[Head[P]], None]) -> None:
    for head, rest, holds in entries:
        if (rest is None or rest(ev)) and (holds is None or holds(ev)):
            add(head)


class Index(Generic[P]):
    """kind → site prefix → `Bucket`, over the conditions of a rule set."""

    def __init__(
        self,
        conditions: list[tuple[int, int, P, Condition, bool]],
        apart: Callable[[P], Any] | None = None,
    ) -> None:
        """`conditions`: (rule order, condition index, plan, condition, watched: its failures matter) for
        every condition of every reflex; `apart`: the shared window a plan reads, or None (see Bucket)."""
        self.apart = apart
        keys = {""}
        for *_, c, _ in conditions:
            parts = c.site_prefix.split("/") if c.site_prefix else []
            keys.update("/".join(parts[: n + 1]) for n in range(len(parts)))
        self.keys = frozenset(keys)
        kinds = {c.kind for *_, c, _ in conditions if c.kind is not None}
        self.by_kind: dict[str, dict[str, Bucket[P]]] = {
            kind: self._buckets([x for x in conditions if x[3].kind in (None, kind)]) for kind in kinds
        }
        self.wild: dict[str, Bucket[P]] = self._buckets([x for x in conditions if x[3].kind is None])
        self.sites: dict[str, tuple[str, list[str]]] = {}

    def _buckets(self, conditions: list[tuple[int, int, P, Condition, bool]]) -> dict[str, Bucket[P]]:
        """A bucket for every key: a key's conditions are its parent's plus those whose prefix is the key
        itself; a key that adds none shares its parent's bucket."""
        at: dict[str, list[tuple[Entry[P], Condition, bool]]] = {}
        for order, i, plan, c, watched in conditions:
            holds = None if c.always or c.exact else c.holds  # left to test unless the index decides it
            at.setdefault(c.site_prefix, []).append((((order, i, plan), c.rest, holds), c, watched))
        buckets: dict[str, Bucket[P]] = {}
        members: dict[str, list[tuple[Entry[P], Condition, bool]]] = {}
        for key in sorted(self.keys, key=lambda k: (k.count("/") if k else -1, k)):
            parent = key.rsplit("/", 1)[0] if "/" in key else ""
            inherited = members.get(parent, []) if key else []
            own = at.get(key, [])
            if key and not own:
                buckets[key], members[key] = buckets[parent], inherited
                continue
            members[key] = sorted([*inherited, *own], key=lambda x: _rank(x[0][0]))
            buckets[key] = Bucket(members[key], self.apart)
        return buckets

    def site(self, site: str) -> tuple[str, list[str]]:
        """(the deepest prefix of `site` the index knows, the site's prefixes by level), cached."""
        if len(self.sites) >= SITE_CACHE_MAX:
            self.sites.clear()
        parts = site.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        key = next((p for p in reversed(prefixes) if p in self.keys), "")
        self.sites[site] = found = (key, prefixes)
        return found

    def bucket(self, kind: str, site: str) -> Bucket[P]:
        """The bucket an event of `kind` at `site` is looked up in."""
        key, _ = self.sites.get(site) or self.site(site)
        return self.by_kind.get(kind, self.wild)[key]
