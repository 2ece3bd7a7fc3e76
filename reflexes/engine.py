"""The reflex engine: applies a compiled rule set to events in event time and emits alerts and commands.

No I/O and no clock: the host feeds events (`process`), moves the watermark while idle (`advance`),
passes acknowledgements (`acknowledge`) and publishes the returned outputs. All state is in the `Store`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from reflexes.aggregates import AggregateEval, ChangeEval, Family
from reflexes.index import Index
from reflexes.model import (
    Absent,
    ActuateAction,
    Aggregate,
    AlertAction,
    Change,
    ClearAction,
    Condition,
    EscalateAction,
    Reflex,
    RuleSet,
)
from reflexes.patterns import Evaluator, Hit, evaluator_for
from reflexes.store import META_KEY, MemoryStore, State, Store
from reflexes.windows import compact, jsonable, take_values
from schemas import Alert, Command

Output = Alert | Command


def _digest(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(repr, parts)).encode(), digest_size=16).hexdigest()


def alert_id(reflex: str, group: str, window_start: float, action: int) -> str:
    """Deterministic alert id: the same reflex, group and window start give the same id in every run.

    The window start is that of the window that fired (moment − within) for windowed patterns, the run's
    start for `for`, the event's time for a single condition, the last match for `absent`."""
    return _digest(reflex, group, float(window_start), action)


_ONE = [0]  # `which` of a match of a reflex with one condition (never mutated)


@dataclass(eq=False, slots=True)
class _Plan:
    reflex: Reflex
    evaluator: Evaluator
    prefix: str  # state key prefix "<id>|"
    level: int | None  # the site level of `per`, None for per sensor
    multi: bool  # more than one condition (all, sequence)
    running: set[str] | None  # `for`: the groups with a run in progress (their state holds one)
    match: Callable[[State, Any, list[int], float], list[Hit] | None]  # evaluator.match, bound once
    absent: Absent | None
    clear: ClearAction | None
    escalations: tuple[tuple[int, EscalateAction], ...]
    shared: AggregateEval | ChangeEval | None = None  # the evaluator of an aggregate or change (its family's)


def _family_plan(plan: _Plan) -> Family | None:
    """The family of value windows a plan reads (for the index to keep its conditions apart), or None."""
    return None if plan.shared is None else plan.shared.family


def _family_of(r: Reflex) -> tuple[str, bool] | None:
    """(id, by sensor) of the family of value windows an aggregate or change reflex reads (see
    aggregates.Family), None for other patterns. Change windows are a sensor's, and so are an aggregate's
    with `per: sensor`; an aggregate per site level shares them with the conditions equal but for a site glob
    that the group decides (none, or a prefix no deeper than the group plus `**`), or else equal."""
    p = r.pattern
    if not isinstance(p, Aggregate | Change):
        return None
    c, level = p.cond, r.per_level
    if isinstance(p, Change) or level is None:
        return "~" + _digest("sensor", c.plain)[:16], True
    depth = len(c.site_prefix.split("/")) if c.site_prefix else 0
    text = c.plain if c.decided and depth <= level + 1 else c.text
    return "~" + _digest("group", level, text)[:16], False


class Engine:
    """Runs one rule set (optionally one tier of it) over events, keeping its state in `store`."""

    def __init__(
        self, rules: RuleSet, store: Store | None = None, tier: Literal["edge", "brain", "all"] = "all"
    ) -> None:
        self.tier: Literal["edge", "brain", "all"] = tier
        self.store: Store = store if store is not None else MemoryStore()
        self.watermark = -math.inf
        self.max_ts = -math.inf
        self.late = 0
        meta = self.store.get(META_KEY)
        if meta:
            self.watermark = meta["wm"] if meta.get("wm") is not None else -math.inf
            self.max_ts = meta["max"] if meta.get("max") is not None else -math.inf
            self.late = int(meta.get("late", 0))
        if type(self.store) is MemoryStore:  # its dict directly: one call less per group touched
            self._get: Callable[[str], State | None] = self.store.data.get
            self._put: Callable[[str, State], None] = self.store.data.__setitem__
        else:
            self._get, self._put = self.store.get, self.store.put
        # A MemoryStore hands out the very dicts it keeps: changed in place, a state needs no put but its
        # first. Any other store is told of every change (a changelogged table must see each one).
        self._changelog = type(self.store) is not MemoryStore
        self._install(rules.tier(tier))

    # ------------------------------------------------------------ plan and index
    def _install(self, rules: RuleSet) -> None:
        """Build the plans and the index (see index.py): an event only touches the conditions of its kind
        (or of no kind) whose site glob can match its site and whose predicate its value can pass; order
        follows the rule set, so outputs are stable."""
        self.rules = rules
        self.lateness = rules.lateness
        self._plans: dict[str, _Plan] = {}
        self._families: dict[str, Family] = {}
        filed: list[tuple[int, int, _Plan, Condition, bool]] = []
        for order, r in enumerate(rules.reflexes):
            clears = any(isinstance(a, ClearAction) for a in r.actions)
            evaluator = evaluator_for(r.pattern, r.within, 0.0 if clears else r.cooldown, r.per_level is None)
            plan = _Plan(
                reflex=r,
                evaluator=evaluator,
                prefix=r.id + "|",
                level=r.per_level,
                multi=len(r.conditions) > 1,
                running=set() if evaluator.wants_misses else None,
                match=evaluator.match,
                absent=r.pattern if isinstance(r.pattern, Absent) else None,
                clear=next((a for a in r.actions if isinstance(a, ClearAction)), None),
                escalations=tuple((i, a) for i, a in enumerate(r.actions) if isinstance(a, EscalateAction)),
            )
            shared = _family_of(r)
            if shared is not None:
                assert isinstance(evaluator, AggregateEval | ChangeEval)
                fid, by_sensor = shared
                family = self._families.get(fid)
                if family is None:
                    family = self._families[fid] = Family(
                        fid, None if by_sensor else r.per_level, evaluator.within
                    )
                family.within = max(family.within, evaluator.within)
                family.keeps_ids |= isinstance(evaluator, ChangeEval)
                evaluator.family, plan.shared = family, evaluator
            self._plans[r.id] = plan
            filed.extend((order, i, plan, c, evaluator.wants_misses) for i, c in enumerate(r.conditions))
        self._index: Index[_Plan] = Index(filed, _family_plan)
        self._rebuild_timers()

    def indexed(self, kind: str, site: str) -> list[str]:
        """Ids of the reflexes an event of `kind` at `site` is looked up against (before predicates)."""
        return [p.reflex.id for p in self._index.bucket(kind, site).plans()]

    def reload(self, rules: RuleSet) -> list[str]:
        """Switch to `rules`, keeping the state of reflexes whose definition did not change.

        Returns the ids of reflexes whose state was dropped (changed or removed).
        """
        rules = rules.tier(self.tier)
        new = {r.id: r.fingerprint for r in rules.reflexes}
        old = {rid: p.reflex.fingerprint for rid, p in self._plans.items()}
        dropped = sorted(rid for rid, fp in old.items() if new.get(rid) != fp)
        gone = set(dropped)
        self._install(rules)
        for key in [k for k, _ in self.store.items()]:
            owner = key.split("|", 1)[0]
            if key != META_KEY and (owner in gone or (owner[0] == "~" and owner not in self._families)):
                self.store.delete(key)  # a dropped reflex's groups, or windows no reflex reads any more
        return dropped

    # ------------------------------------------------------------ clock
    def is_late(self, ts: float) -> bool:
        """True when an event at `ts` (seconds) is older than the watermark and would not be applied."""
        return ts < self.watermark

    def advance(self, watermark: float) -> list[Output]:
        """Move the watermark forward to `watermark` (epoch seconds) and fire the timers it passes."""
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        return self._run_due(watermark)

    def checkpoint(self) -> None:
        """Write the engine's clock into the store (hosts call this before committing offsets)."""
        self.store.put(
            META_KEY,
            {
                "wm": None if math.isinf(self.watermark) else self.watermark,
                "max": None if math.isinf(self.max_ts) else self.max_ts,
                "late": self.late,
            },
        )

    def snapshot(self) -> bytes:
        """All state (clock and every group) as JSON bytes."""
        self.checkpoint()
        return orjson.dumps(dict(self.store.items()), default=jsonable, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def restore(
        cls, rules: RuleSet, snapshot: bytes, tier: Literal["edge", "brain", "all"] = "all"
    ) -> Engine:
        """A fresh engine on a MemoryStore filled from `snapshot()` output."""
        return cls(rules, MemoryStore(orjson.loads(snapshot)), tier)

    # ------------------------------------------------------------ events
    def process(self, ev: Any) -> list[Output]:
        """Apply one event; returns the alerts and commands it caused (late events are counted, not applied)."""
        t = ev.ts
        if t < self.watermark:
            self.late += 1
            return []
        out: list[Output] = []
        if t > self.max_ts:
            self.max_ts = t
            wm = t - self.lateness
            if wm > self.watermark:
                self.watermark = wm
                if self._heap and self._heap[0][0] <= wm:
                    out = self._run_due(wm)
        index = self._index
        key, prefixes = index.sites.get(ev.site) or index.site(ev.site)
        bucket = index.by_kind.get(ev.kind, index.wild)[key]
        found = bucket.match(ev)
        sensor, at = ev.sensor, ev.site
        depth = len(prefixes)
        for plan, rest, holds in bucket.watch:
            running = plan.running
            if running:
                level = plan.level
                if level is None:
                    group = sensor
                elif depth > level:
                    group = prefixes[level]
                else:
                    continue
                if group in running and (rest is None or rest(ev)) and not holds(ev):
                    self._miss(plan, group, ev)
        get, put, wm, changelog = self._get, self._put, self.watermark, self._changelog
        v = ev.value
        if bucket.apart and (type(v) is float or type(v) is int):
            # aggregates and changes: the reading goes once into each family's window, and only the
            # reflexes the window's bounds leave a chance become candidates (the others read no state)
            for family, members in bucket.apart:
                w = None
                for head, rest, passes in members:
                    plan = head[2]
                    level = plan.level
                    if (
                        (level is not None and depth <= level)
                        or (rest is not None and not rest(ev))
                        or (passes is not None and not passes(ev))
                    ):
                        continue
                    if w is None:
                        who = sensor if family.level is None else prefixes[family.level]
                        family.insert(ev, who, wm, get, put, changelog)
                        if family.k < 0:
                            break  # already in the window: applied before
                        w, k = family.w, family.k
                    shared = plan.shared
                    if shared is not None and not shared.hopeless(w, k, v):
                        found.append(head)
        if len(found) > 1:
            found.sort()  # rule order: by (order, index), unique per condition, so plans are never compared
        j, n = 0, len(found)
        while j < n:
            order, i, plan = found[j]
            j += 1
            level = plan.level
            if level is None:
                group, site = sensor, at
            elif depth > level:
                group = site = prefixes[level]
            else:
                continue
            shared = plan.shared
            which = _ONE
            if shared is None and plan.multi:
                which = [i]
                while j < n and found[j][0] == order:
                    which.append(found[j][1])
                    j += 1
            gkey = plan.prefix + group
            state = get(gkey)
            if state is None:
                state = {"s": site}
                put(gkey, state)
            if plan.absent is not None:
                out.extend(self._absent_match(plan, gkey, state, group, ev))
            else:
                if shared is not None:
                    hits = shared.judge(state, shared.family.w, shared.family.k, ev)
                else:
                    hits = plan.match(state, ev, which, wm)
                if plan.running is not None:
                    plan.running.add(group)
                if hits is not None:
                    for hit in hits:
                        if hit[3]:
                            out.extend(self._hit(plan, gkey, state, group, hit, (sensor, ev.kind, ev.value)))
                        else:
                            self._sustain(plan, gkey, state, hit[0])
            if changelog:
                put(gkey, state)
        return out

    def _miss(self, plan: _Plan, group: str, ev: Any) -> None:
        """`ev` is selected by the plan's `for` condition but fails its predicate: it breaks the run of
        `group`, which has one."""
        assert plan.running is not None
        gkey = plan.prefix + group
        state = self._get(gkey)
        if state is not None and plan.evaluator.miss(state, ev):
            self._put(gkey, state)
        if state is None or not state.get("w"):
            plan.running.discard(group)

    # ------------------------------------------------------------ firing
    def _hit(
        self,
        plan: _Plan,
        key: str,
        state: State,
        group: str,
        hit: Hit,
        ctx: tuple[str, str, object],
        *,
        reminder: bool = False,
    ) -> list[Output]:
        r = plan.reflex
        t, start, first_ts, evidence = hit
        if not reminder:
            self._sustain(plan, key, state, t)
            if self._cooling(state, t, r.cooldown):
                return []
            self._cool(state, t, r.cooldown)
        site = state["s"]
        sensor, kind, value = ctx
        fields = {
            "site": site,
            "group": group,
            "sensor": sensor,
            "kind": kind,
            "value": value,
            "reflex": r.id,
        }
        out: list[Output] = []
        first_alert: str | None = None
        for idx, action in enumerate(r.actions):
            if isinstance(action, AlertAction):
                aid = alert_id(r.id, group, start, idx)
                message = action.message.render(fields)
                out.append(
                    Alert(
                        id=aid,
                        reflex=r.id,
                        tier=r.tier,
                        status="raised",
                        severity=action.severity,
                        departments=action.departments,
                        site=site,
                        group=group,
                        message=message,
                        ts=t,
                        evidence=tuple(evidence),
                        first_event_ts=first_ts,
                    )
                )
                if first_alert is None:
                    first_alert = aid
                    if reminder:
                        continue  # a reminder neither opens a new alert to clear nor escalates again
                    if plan.clear is not None:
                        state.setdefault("open", []).append([aid, idx, message, first_ts])
                    for eidx, esc in plan.escalations:
                        state.setdefault("esc", []).append([t + esc.after, aid, eidx, idx, message, first_ts])
                        self._alert_keys[aid] = key
                        self._schedule(t + esc.after, key)
                    if plan.clear is not None and plan.absent is None:
                        self._sustain(plan, key, state, t)  # now that the alert is open, arm its clear
            elif isinstance(action, ActuateAction):
                cause = first_alert or _digest(r.id, group, float(start), "fire")
                out.append(
                    Command(
                        id=_digest(cause, idx),
                        alert_id=cause,
                        site=site,
                        target=action.target,
                        target_by=action.target_by,
                        command=action.command,
                        args=dict(action.args),
                        ts=t,
                    )
                )
        return out

    @staticmethod
    def _cooling(state: State, t: float, cooldown: float) -> bool:
        """Whether an alert at `t` falls within `cooldown` (s) of an alert of the group, before or after it."""
        last = state.get("la")
        if last is None:
            return False
        if -cooldown < t - last < cooldown:
            return True
        return any(-cooldown < t - x < cooldown for x in state.get("le", ()))

    def _cool(self, state: State, t: float, cooldown: float) -> None:
        """Record an alert at `t`: "la" is the latest; "le" the earlier ones a moment that can still be
        judged (at or after the watermark) may fall near — only possible when cooldown < lateness."""
        last = state.get("la")
        if last is None or t >= last:
            state["la"] = t
            earlier = last
        else:
            earlier = t
        if earlier is None or cooldown >= self.lateness:
            return
        horizon = self.watermark - cooldown
        kept = [x for x in (*state.get("le", ()), earlier) if x > horizon]
        if kept:
            state["le"] = kept
        else:
            state.pop("le", None)

    def _sustain(self, plan: _Plan, key: str, state: State, t: float) -> None:
        """The pattern holds at `t`: push back the `clear` of an open alert (not for `absent`, whose
        clear counts from the group's return)."""
        if plan.clear is not None and plan.absent is None and state.get("open"):
            due = max(t, state.get("clr", t) - plan.clear.after) + plan.clear.after
            state["clr"] = due
            self._schedule(due, key)

    def _absent_match(self, plan: _Plan, key: str, state: State, group: str, ev: Any) -> list[Output]:
        assert plan.absent is not None
        out: list[Output] = []
        ab = state.get("ab")
        t = ev.ts
        if ab is not None:
            if t <= ab[0]:
                return out
            if not ab[1] and ab[0] + plan.absent.duration <= t:
                out.extend(self._silence(plan, key, state, group))  # this event proves the gap was that long
            if plan.clear is not None and state.get("open") and state.get("clr") is None:
                state["clr"] = t + plan.clear.after  # the clock starts at the first match after the silence
                self._schedule(t + plan.clear.after, key)
        state["ab"] = [t, False, None, ev.sensor, ev.kind, ev.value]
        self._schedule(t + plan.absent.duration, key)
        return out

    def _silence(self, plan: _Plan, key: str, state: State, group: str) -> list[Output]:
        assert plan.absent is not None
        ab = state["ab"]
        due = ab[0] + plan.absent.duration
        ab[1] = True
        state.pop("clr", None)
        if plan.reflex.repeat is not None:
            ab[2] = due + plan.reflex.repeat
            self._schedule(ab[2], key)
        return self._hit(plan, key, state, group, (due, ab[0], ab[0], []), (ab[3], ab[4], ab[5]))

    # ------------------------------------------------------------ timers
    def _rebuild_timers(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        self._alert_keys: dict[str, str] = {}
        for key, state in list(self.store.items()):
            if key[0] == "~":
                if not self._changelog:  # a window kept in memory (read back from JSON: lists) made compact
                    compact(state)
                continue
            plan = self._plans.get(key.split("|", 1)[0])
            if plan is None:
                continue
            upgraded = plan.evaluator.upgrade(state)
            if plan.shared is not None and self._adopt(plan.shared, plan.level, key.split("|", 1)[1], state):
                upgraded = True
            if upgraded:
                self.store.put(key, state)
            if plan.running is not None and state.get("w"):
                plan.running.add(key.split("|", 1)[1])
            due = self._next_due(plan, state)
            if due is not None:
                self._schedule(due, key)
            for esc in state.get("esc", ()):
                self._alert_keys[esc[1]] = key

    def _adopt(self, shared: AggregateEval | ChangeEval, level: int | None, group: str, state: State) -> bool:
        """Move the readings an older version kept in a group's own state into its family's window."""
        old = take_values(state)  # an aggregate's group, or a change's group of one sensor
        found = [] if old is None else [(group, old)]
        if isinstance(shared, ChangeEval) and isinstance(state.get("w"), dict):
            found += state.pop("w").items()  # a change's windows by sensor
        for who, w in found:
            # a sensor's site is the group's when the group is that sensor, else the next event tells it
            shared.family.adopt(self.store, who, state.get("s") if level is None else None, w)
        return bool(found)

    def _schedule(self, due: float, key: str) -> None:
        current = self._scheduled.get(key)
        if current is None or due < current:
            self._scheduled[key] = due
            heapq.heappush(self._heap, (due, key))

    @staticmethod
    def _next_due(plan: _Plan, state: State) -> float | None:
        dues: list[float] = [e[0] for e in state.get("esc", ())]
        if state.get("clr") is not None:
            dues.append(state["clr"])
        ab = state.get("ab")
        if ab is not None and plan.absent is not None:
            if not ab[1]:
                dues.append(ab[0] + plan.absent.duration)
            elif ab[2] is not None:
                dues.append(ab[2])
        return min(dues) if dues else None

    def _run_due(self, wm: float) -> list[Output]:
        out: list[Output] = []
        heap = self._heap
        while heap and heap[0][0] <= wm:
            due, key = heapq.heappop(heap)
            if self._scheduled.get(key) != due:
                continue  # superseded by an earlier schedule that already ran
            del self._scheduled[key]
            plan = self._plans.get(key.split("|", 1)[0])
            state = self.store.get(key)
            if plan is None or state is None:
                continue
            out.extend(self._timers_of(plan, key, state, due))
            self.store.put(key, state)
            nxt = self._next_due(plan, state)
            if nxt is not None:
                self._schedule(nxt, key)
        return out

    def _timers_of(self, plan: _Plan, key: str, state: State, wm: float) -> list[Output]:
        """Fire the timers of one group due at or before `wm`; `_run_due` passes the popped due time so
        that timers of all groups fire in global due order."""
        out: list[Output] = []
        group = key.split("|", 1)[1]
        while True:
            due = self._next_due(plan, state)
            if due is None or due > wm:
                return out
            ab = state.get("ab")
            if (
                ab is not None
                and plan.absent is not None
                and not ab[1]
                and ab[0] + plan.absent.duration == due
            ):
                out.extend(self._silence(plan, key, state, group))
            elif ab is not None and ab[1] and ab[2] == due and plan.reflex.repeat is not None:
                ab[2] = due + plan.reflex.repeat
                out.extend(
                    self._hit(
                        plan, key, state, group, (due, due, due, []), (ab[3], ab[4], ab[5]), reminder=True
                    )
                )
            elif state.get("clr") == due:
                out.extend(self._cleared(plan, state, group, due))
            else:
                out.extend(self._escalate(plan, state, group, due))

    def _cleared(self, plan: _Plan, state: State, group: str, due: float) -> list[Output]:
        state.pop("clr", None)
        out: list[Output] = []
        for aid, idx, message, start in state.pop("open", []):
            action = plan.reflex.actions[idx]
            assert isinstance(action, AlertAction)
            out.append(
                Alert(
                    id=aid,
                    reflex=plan.reflex.id,
                    tier=plan.reflex.tier,
                    status="cleared",
                    severity=action.severity,
                    departments=action.departments,
                    site=state["s"],
                    group=group,
                    message=f"Cleared: {message}",
                    ts=due,
                    evidence=(),
                    first_event_ts=start,
                )
            )
        return out

    def _escalate(self, plan: _Plan, state: State, group: str, due: float) -> list[Output]:
        esc_list = state.get("esc", [])
        entry = min(esc_list, key=lambda e: e[0])
        esc_list.remove(entry)
        if not esc_list:
            state.pop("esc", None)
        _, aid, eidx, aidx, message, start = entry
        self._alert_keys.pop(aid, None)
        esc = plan.reflex.actions[eidx]
        alert = plan.reflex.actions[aidx]
        assert isinstance(esc, EscalateAction)
        assert isinstance(alert, AlertAction)
        departments = tuple(dict.fromkeys((*alert.departments, *esc.departments)))
        return [
            Alert(
                id=aid,
                reflex=plan.reflex.id,
                tier=plan.reflex.tier,
                status="escalated",
                severity=alert.severity,
                departments=departments,
                site=state["s"],
                group=group,
                message=f"Escalated: {message}",
                ts=due,
                evidence=(),
                first_event_ts=start,
            )
        ]

    # ------------------------------------------------------------ acknowledgements
    def acknowledge(self, alert_id: str) -> bool:
        """Cancel pending escalations of `alert_id`; True when one was pending."""
        key = self._alert_keys.pop(alert_id, None)
        if key is None:
            return False
        state = self.store.get(key)
        if state is None:
            return False
        esc = [e for e in state.get("esc", ()) if e[1] != alert_id]
        cancelled = len(esc) != len(state.get("esc", ()))
        if esc:
            state["esc"] = esc
        else:
            state.pop("esc", None)
        self.store.put(key, state)
        return cancelled

    def pending_escalations(self) -> list[str]:
        """Ids of alerts whose escalation is still pending (an ack for them would cancel it)."""
        return sorted(self._alert_keys)

    # ------------------------------------------------------------ introspection
    def stats(self) -> dict[str, Any]:
        """Counters for reports and metrics; `readings` is what the value windows hold, the state that grows
        with the event rate (about 20 bytes each in memory, and the event id's while it is kept)."""
        groups = windows = readings = 0
        for key, state in self.store.items():
            if key[0] != "~":
                groups += 1
            elif key != META_KEY:
                windows += 1
                readings += len(state.get("t", ()))
        return {
            "reflexes": len(self._plans),
            "groups": groups,
            "windows": windows,
            "readings": readings,
            "late_events": self.late,
            "watermark": None if math.isinf(self.watermark) else self.watermark,
            "timers": len(self._scheduled),
        }

    def reflex_ids(self) -> Iterable[str]:
        return self._plans.keys()
