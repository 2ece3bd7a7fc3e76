"""The typed, compiled form of a rule set: what the loader produces and the engine runs.

Everything here is immutable and built once at load time; conditions carry their compiled closures.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Tier = Literal["edge", "brain"]
Severity = Literal["info", "warning", "critical", "emergency"]
Scalar = bool | int | float | str

DEFAULT_LEVELS = ("district", "community", "building", "floor", "room")
DEFAULT_LATENESS_S = 5.0
DEFAULT_COOLDOWN_S = 60.0


@dataclass(frozen=True, eq=False)
class Condition:
    """Selectors (kind, sensor glob, site glob, tags) and at most one predicate on a single event."""

    kind: str | None
    selects: Callable[[Any], bool]  # selectors other than kind (kind is matched by the engine's index)
    holds: Callable[[Any], bool]  # the predicate; always true when the condition has none
    text: str  # canonical description, for fingerprints and messages
    plain: str = ""  # `text` without the site glob: conditions equal but for their site share windows
    # What the engine's index can decide without calling the closures above:
    site_prefix: str = ""  # the site glob's literal leading segments ("d1/c3" of "d1/c3/*/f2")
    rest: Callable[[Any], bool] | None = None  # the selectors the kind and that prefix leave; None: none
    decided: bool = True  # the site glob is its prefix plus `**` (or there is none): the prefix decides it
    # `holds` implies the value is a number and `value OP bound` ((">=", 57.0)); None when it does not
    bound: tuple[str, float] | None = None
    # `holds` implies the value's type key (`conditions.type_key`) is one of these; None when it does not
    members: frozenset[tuple[str, object]] | None = None
    exact: bool = False  # `holds` is exactly that comparison or membership
    always: bool = False  # no predicate: `holds` is always true


@dataclass(frozen=True, eq=False)
class Single:
    cond: Condition


@dataclass(frozen=True, eq=False)
class Held:
    """condition + `for: D`."""

    cond: Condition
    duration: float


@dataclass(frozen=True, eq=False)
class AllOf:
    conds: tuple[Condition, ...]


@dataclass(frozen=True, eq=False)
class Sequence:
    conds: tuple[Condition, ...]


@dataclass(frozen=True, eq=False)
class Count:
    cond: Condition
    test: Callable[[float], bool]


@dataclass(frozen=True, eq=False)
class Aggregate:
    cond: Condition
    fn: Literal["avg", "min", "max", "sum"]
    test: Callable[[float], bool]
    op: str  # the comparison of `test` ("<", ">=", "==", …): tells which new values can make it true


@dataclass(frozen=True, eq=False)
class Change:
    """`rise` (latest − lowest) or `fall` (highest − latest) of one sensor's values over the window."""

    cond: Condition
    direction: Literal["rise", "fall"]
    test: Callable[[float], bool]
    op: str  # the comparison of `test` ("<", ">=", "==", …)


@dataclass(frozen=True, eq=False)
class Absent:
    cond: Condition
    duration: float


@dataclass(frozen=True, eq=False)
class Distinct:
    cond: Condition
    level: int  # index into the site path
    test: Callable[[float], bool]


Pattern = Single | Held | AllOf | Sequence | Count | Aggregate | Change | Absent | Distinct

TEMPLATE_NAMES = ("site", "group", "sensor", "kind", "value", "reflex")
_TEMPLATE_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[^{}]+|[{}]")


@dataclass(frozen=True)
class Template:
    """A message template with `{site}`-style fields; rendered by plain substitution, never `str.format`."""

    parts: tuple[tuple[bool, str], ...]  # (is_field, text)

    @staticmethod
    def parse(text: str) -> Template:
        parts: list[tuple[bool, str]] = []
        for m in _TEMPLATE_PART.finditer(text):
            tok = m.group(0)
            if tok in ("{{", "}}"):
                parts.append((False, tok[0]))
            elif m.group(1) is not None:
                name = m.group(1).strip()
                if name not in TEMPLATE_NAMES:
                    from reflexes.errors import did_you_mean

                    raise ValueError(
                        f"unknown field '{{{name}}}' in message{did_you_mean(name, TEMPLATE_NAMES)}"
                        f" (fields are {', '.join('{' + n + '}' for n in TEMPLATE_NAMES)})"
                    )
                parts.append((True, name))
            elif tok in ("{", "}"):
                raise ValueError(f"unbalanced '{tok}' in message: write '{tok}{tok}' for a literal brace")
            else:
                parts.append((False, tok))
        return Template(tuple(parts))

    def render(self, fields: Mapping[str, object]) -> str:
        return "".join([str(fields.get(text, "")) if is_field else text for is_field, text in self.parts])


@dataclass(frozen=True)
class AlertAction:
    departments: tuple[str, ...]
    severity: Severity
    message: Template


@dataclass(frozen=True)
class ActuateAction:
    target: str
    target_by: Literal["kind", "sensor"]
    command: str
    args: tuple[tuple[str, Scalar], ...]


@dataclass(frozen=True)
class EscalateAction:
    after: float
    departments: tuple[str, ...]


@dataclass(frozen=True)
class ClearAction:
    after: float


Action = AlertAction | ActuateAction | EscalateAction | ClearAction


@dataclass(frozen=True, eq=False)
class Reflex:
    """One compiled reflex. `fingerprint` changes whenever anything that affects its behaviour changes."""

    id: str
    tier: Tier
    description: str
    pattern: Pattern
    within: float | None
    per: str  # "sensor" or a level name
    per_level: int | None  # index into the site path, None for per sensor
    cooldown: float
    repeat: float | None
    actions: tuple[Action, ...]
    file: str
    line: int
    fingerprint: str

    @property
    def conditions(self) -> tuple[Condition, ...]:
        p = self.pattern
        if isinstance(p, AllOf | Sequence):
            return p.conds
        return (p.cond,)

    @property
    def alert_actions(self) -> tuple[AlertAction, ...]:
        return tuple(a for a in self.actions if isinstance(a, AlertAction))


@dataclass(frozen=True, eq=False)
class RuleSet:
    """A loaded, checked rule set: the reflexes of one or more files sharing levels and lateness."""

    version: int
    levels: tuple[str, ...]
    lateness: float
    reflexes: tuple[Reflex, ...]
    sources: tuple[str, ...] = field(default=())

    def tier(self, tier: Tier | Literal["all"]) -> RuleSet:
        """The same rule set with only the reflexes of `tier` (or all of them)."""
        if tier == "all":
            return self
        return RuleSet(
            self.version,
            self.levels,
            self.lateness,
            tuple(r for r in self.reflexes if r.tier == tier),
            self.sources,
        )

    def by_id(self) -> dict[str, Reflex]:
        return {r.id: r for r in self.reflexes}

    def departments(self) -> dict[str, list[str]]:
        """Every department an `alert` or `escalate` action names → the ids of the reflexes naming it."""
        named: dict[str, list[str]] = {}
        for reflex in self.reflexes:
            for action in reflex.actions:
                if isinstance(action, AlertAction | EscalateAction):
                    for department in action.departments:
                        named.setdefault(department, []).append(reflex.id)
        return named
