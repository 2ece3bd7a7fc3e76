"""Conditions: selectors and one predicate, compiled into closures over a single event."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from reflexes.errors import ExpressionError
from reflexes.expr import compile_short, compile_where, equal, is_number
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


def _site_check(regex: re.Pattern[str]) -> Check:
    match = regex.fullmatch
    return lambda ev: match("/" + ev.site) is not None


def _sensor_check(regex: re.Pattern[str]) -> Check:
    match = regex.fullmatch
    return lambda ev: match(ev.sensor) is not None


def _type_key(v: object) -> tuple[str, object]:
    if is_number(v):
        return ("n", float(v))  # type: ignore[arg-type]
    return (type(v).__name__, v)


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
            members = frozenset(_type_key(x) for x in raw)
            return lambda ev: _type_key(ev.value) in members
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
    for key, compile_glob in (("site", site_glob), ("sensor", sensor_glob)):
        if key in raw:
            g = raw[key]
            if not isinstance(g, str) or not g or len(g) > MAX_GLOB_CHARS:
                problems.append(
                    (raw.key_line(key), f"{key}: expected a glob string of at most {MAX_GLOB_CHARS} chars")
                )
                continue
            checks.append(_site_check(compile_glob(g)) if key == "site" else _sensor_check(compile_glob(g)))
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
    selects: Check
    if not checks:
        selects = _always
    elif len(checks) == 1:
        selects = checks[0]
    else:
        selects = lambda ev: all(c(ev) for c in checks)  # noqa: E731
    text = json.dumps(raw, sort_keys=True, default=str)
    literal: list[str] = []
    for segment in str(raw.get("site", "")).split("/")[:2]:
        if not segment or any(ch in segment for ch in "*?"):
            break
        literal.append(segment)
    return Condition(kind=kind, selects=selects, holds=holds, text=text, site_prefix="/".join(literal))
