"""Conditions: selectors and one predicate, compiled into closures over a single event."""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable
from typing import Any

from reflexes.errors import ExpressionError
from reflexes.expr import Binary, Literal, Name, compile_short, compile_where, equal, is_number, parse
from reflexes.model import Condition
from reflexes.yamlsource import YMap

CONDITION_KEYS = ("kind", "sensor", "site", "tags", "value", "between", "in", "where")
PREDICATE_KEYS = ("value", "between", "in", "where")
KIND = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_GLOB_CHARS = 256
MAX_IN_ITEMS = 256

Check = Callable[[Any], bool]
Problems = list[tuple[int, str]]


def _always(ev: Any) -> bool:
    return True


def site_glob(pattern: str) -> re.Pattern[str]:
    """Compile a site glob: `*` one segment (or part of one), `?` one character, `**` any number of segments.

    The result matches '/' + site so that `**` can stand for zero segments anywhere.
    """
    parts: list[str] = []
    for seg in pattern.split("/"):
        if seg == "**":
            parts.append("(?:/[^/]+)*")
        else:
            parts.append("/" + _glob_segment(seg, "[^/]"))
    return re.compile("".join(parts))


def sensor_glob(pattern: str) -> re.Pattern[str]:
    """Compile a sensor id glob: `*` any characters, `?` one character."""
    return re.compile(_glob_segment(pattern, "."))


def _glob_segment(seg: str, any_char: str) -> str:
    out = []
    for ch in seg:
        if ch == "*":
            out.append(any_char + "*")
        elif ch == "?":
            out.append(any_char)
        else:
            out.append(re.escape(ch))
    return "".join(out)


# answers a glob check remembers (sites or sensors; about 0.9 MB), forgotten all at once beyond
GLOB_MEMO_MAX = 10_000


def _remembered(key: Callable[[Any], str], matches: Callable[[str], bool]) -> Check:
    """A check of `matches` on the string `key` takes from an event, remembering its answer per string (a
    city has far fewer sites and sensors than events)."""
    seen: dict[str, bool] = {}

    def check(ev: Any) -> bool:
        value = key(ev)
        hit = seen.get(value)
        if hit is None:
            if len(seen) >= GLOB_MEMO_MAX:
                seen.clear()
            hit = seen[value] = matches(value)
        return hit

    return check


@functools.lru_cache(maxsize=64)
def _site_check(pattern: str) -> Check:
    """Whether an event's site matches the glob `pattern`: one check shared by every condition with that
    glob."""
    match = site_glob(pattern).fullmatch
    return _remembered(operator.attrgetter("site"), lambda site: match("/" + site) is not None)


@functools.lru_cache(maxsize=64)
def _sensor_check(pattern: str) -> Check:
    """Whether an event's sensor id matches the glob `pattern`, shared like `_site_check`."""
    match = sensor_glob(pattern).fullmatch
    return _remembered(operator.attrgetter("sensor"), lambda sensor: match(sensor) is not None)


def type_key(v: object) -> tuple[str, object]:
    """A value as the predicates compare it: numbers by value (1 == 1.0), anything else with its type."""
    if is_number(v):
        return ("n", float(v))  # type: ignore[arg-type]
    return (type(v).__name__, v)


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _where_bound(text: str) -> tuple[str, float] | None:
    """A `value OP number` comparison that an expression cannot hold without: one of its top-level
    `and`-ed terms."""
    try:
        node = parse(text)
    except ExpressionError:
        return None
    terms, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Binary) and n.op == "and":
            stack.extend((n.right, n.left))
        else:
            terms.append(n)
    for n in terms:
        if not isinstance(n, Binary) or n.op not in _FLIPPED:
            continue
        left, right = n.left, n.right
        if isinstance(left, Name) and left.name == "value" and isinstance(right, Literal):
            op, literal = n.op, right.value
        elif isinstance(right, Name) and right.name == "value" and isinstance(left, Literal):
            op, literal = _FLIPPED[n.op], left.value
        else:
            continue
        if is_number(literal):
            return op, float(literal)  # type: ignore[arg-type]
    return None


def _index_facts(
    key: str, raw: object
) -> tuple[tuple[str, float] | None, frozenset[tuple[str, object]] | None, bool]:
    """What a (valid) predicate implies about the value, for the engine's index: (bound, members, exact)."""
    if key == "where":
        return _where_bound(str(raw)), None, False
    if key == "between":
        assert isinstance(raw, list)
        return (">=", float(raw[0])), None, False
    if key == "in":
        assert isinstance(raw, list)
        return None, frozenset(type_key(x) for x in raw), True
    if isinstance(raw, dict):
        ((sub, body),) = raw.items()
        return _index_facts(sub, body)
    if isinstance(raw, str) and raw.lstrip()[:1] in ("<", ">", "=", "!"):
        op, literal, _ = compile_short(raw)
        if op in _FLIPPED and is_number(literal):
            return (op, float(literal)), None, True  # type: ignore[arg-type]
        if op == "==":
            return None, frozenset({type_key(literal)}), False
        return None, None, False
    return None, frozenset({type_key(raw)}), False


def _predicate(key: str, raw: object, line: int, problems: Problems) -> Check | None:
    """The predicate as a check on the event's value (or the whole event for `where`)."""
    try:
        if key == "where":
            if not isinstance(raw, str):
                problems.append((line, "where: expected an expression string"))
                return None
            return compile_where(raw)
        if key == "between":
            if (
                not isinstance(raw, list)
                or len(raw) != 2
                or not all(is_number(x) for x in raw)
                or raw[0] > raw[1]
            ):
                problems.append((line, f"between: expected [low, high] numbers with low ≤ high, got {raw!r}"))
                return None
            lo, hi = float(raw[0]), float(raw[1])
            return lambda ev: (type(v := ev.value) is float or type(v) is int) and lo <= v <= hi
        if key == "in":
            if (
                not isinstance(raw, list)
                or not raw
                or len(raw) > MAX_IN_ITEMS
                or not all(isinstance(x, bool | int | float | str) for x in raw)
            ):
                problems.append(
                    (line, f"in: expected a list of 1–{MAX_IN_ITEMS} numbers, strings or booleans")
                )
                return None
            members = frozenset(type_key(x) for x in raw)
            return lambda ev: type_key(ev.value) in members
        # value:
        if isinstance(raw, dict):
            if len(raw) != 1 or next(iter(raw)) not in ("between", "in"):
                problems.append((line, "value: a mapping here holds 'between' or 'in'"))
                return None
            ((sub, body),) = raw.items()
            return _predicate(sub, body, line, problems)
        if isinstance(raw, str) and raw.lstrip()[:1] in ("<", ">", "=", "!"):
            _, _, test = compile_short(raw)
            return lambda ev: test(ev.value)
        if isinstance(raw, bool | int | float | str):
            literal = raw
            return lambda ev: equal(ev.value, literal)
        problems.append((line, f"value: expected a predicate such as '> 57' or a literal, got {raw!r}"))
        return None
    except ExpressionError as e:
        problems.append((line, f"{key}: {e}"))
        return None


def build_condition(raw: YMap) -> Condition | Problems:
    """Compile a condition mapping, or return every (line, problem) found in it."""
    problems: Problems = []
    checks: list[Check] = []
    kind = raw.get("kind")
    if "kind" in raw and (not isinstance(kind, str) or not KIND.match(kind)):
        problems.append((raw.key_line("kind"), f"kind: expected a lowercase name ([a-z0-9_]), got {kind!r}"))
    site_check: Check | None = None
    for key in ("site", "sensor"):
        if key in raw:
            g = raw[key]
            if not isinstance(g, str) or not g or len(g) > MAX_GLOB_CHARS:
                problems.append(
                    (raw.key_line(key), f"{key}: expected a glob string of at most {MAX_GLOB_CHARS} chars")
                )
                continue
            if key == "site":
                site_check = _site_check(g)
                checks.append(site_check)
            else:
                checks.append(_sensor_check(g))
    if "tags" in raw:
        tags = raw["tags"]
        if not isinstance(tags, dict) or not all(
            isinstance(v, bool | int | float | str) for v in tags.values()
        ):
            problems.append((raw.key_line("tags"), "tags: expected a mapping of tag names to values"))
        else:
            wanted = tuple(tags.items())
            checks.append(lambda ev: all(k in ev.tags and equal(ev.tags[k], v) for k, v in wanted))
    preds = [k for k in PREDICATE_KEYS if k in raw]
    holds: Check = _always
    if len(preds) > 1:
        problems.append(
            (raw.key_line(preds[1]), f"a condition has at most one predicate; found {', '.join(preds)}")
        )
    elif preds:
        compiled = _predicate(preds[0], raw[preds[0]], raw.key_line(preds[0]), problems)
        if compiled is not None:
            holds = compiled
    if "kind" not in raw and not checks and not preds:
        problems.append(
            (raw.line, "a condition needs at least one of kind, sensor, site, tags or a predicate")
        )
    if problems:
        return problems
    text = json.dumps(raw, sort_keys=True, default=str)
    plain = json.dumps({k: v for k, v in raw.items() if k != "site"}, sort_keys=True, default=str)
    segments = str(raw["site"]).split("/") if "site" in raw else []
    literal: list[str] = []
    for segment in segments:
        if not segment or any(ch in segment for ch in "*?"):
            break
        literal.append(segment)
    # "d1/c3/**" selects exactly the sites under its literal prefix: the index decides it alone
    decided = not segments or (len(literal) == len(segments) - 1 and segments[-1] == "**")
    rest = [c for c in checks if not (decided and c is site_check)]
    bound, members, exact = _index_facts(preds[0], raw[preds[0]]) if preds else (None, None, False)
    return Condition(
        kind=kind,
        selects=_all_of(checks) or _always,
        holds=holds,
        text=text,
        plain=plain,
        site_prefix="/".join(literal),
        rest=_all_of(rest),
        decided=decided,
        bound=bound,
        members=members,
        exact=exact,
        always=not preds,
    )


def _all_of(checks: list[Check]) -> Check | None:
    """One check for all of `checks`; None when there are none."""
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda ev: all(c(ev) for c in checks)
