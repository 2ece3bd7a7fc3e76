"""Rule files → checked, compiled `RuleSet`. Every error names the file, the line and the reflex id,
and all errors of all files are reported together."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from reflexes.conditions import CONDITION_KEYS, build_condition
from reflexes.durations import parse_duration
from reflexes.errors import ExpressionError, RuleError, RuleSetError, did_you_mean
from reflexes.expr import compile_short
from reflexes.model import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_LATENESS_S,
    DEFAULT_LEVELS,
    Absent,
    Action,
    ActuateAction,
    Aggregate,
    AlertAction,
    AllOf,
    Change,
    ClearAction,
    Condition,
    Count,
    Distinct,
    EscalateAction,
    Held,
    Pattern,
    Reflex,
    RuleSet,
    Single,
    Template,
)
from reflexes.model import (
    Sequence as SequencePattern,
)
from reflexes.yamlsource import YamlSyntaxError, YMap, YSeq, parse_yaml

TOP_KEYS = ("version", "levels", "lateness", "reflexes")
REFLEX_KEYS = ("id", "tier", "description", "when", "within", "per", "cooldown", "repeat", "then")
WINDOW_KEYS = ("count", "avg", "min", "max", "sum", "rise", "fall", "distinct")
PATTERN_KEYS = ("for", *WINDOW_KEYS)
COMPOSITE_KEYS = ("all", "sequence", "absent")
WHEN_KEYS = (*CONDITION_KEYS, *PATTERN_KEYS, *COMPOSITE_KEYS)
ACTION_KEYS = {
    "alert": ("to", "severity", "message"),
    "actuate": ("kind", "sensor", "command", "args"),
    "escalate": ("after", "to"),
    "clear": ("after",),
}
SEVERITIES = ("info", "warning", "critical", "emergency")
REFLEX_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_CONDITIONS = 16
MAX_REFLEXES = 20_000


class _Problems:
    """Collects errors for one file; `reflex` is the id errors are currently attributed to."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.reflex: str | None = None
        self.errors: list[RuleError] = []

    def add(self, line: int, message: str) -> None:
        self.errors.append(RuleError(self.file, line, self.reflex, message))


def _unknown_keys(p: _Problems, m: YMap, allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in m:
        if key not in allowed:
            p.add(m.key_line(key), f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}")


def _duration(p: _Problems, m: YMap, key: str, where: str = "") -> float | None:
    if key not in m:
        return None
    try:
        return parse_duration(m[key])
    except ValueError as e:
        p.add(m.key_line(key), f"{where + '.' if where else ''}{key}: {e}")
        return None


def _number_test(
    p: _Problems, line: int, key: str, text: object
) -> tuple[str, Callable[[float], bool]] | None:
    """`count: ">= 3"` style comparisons against a number: (operator, test). The test is only ever given
    numbers (counts, aggregates, changes), so it is the bound number's own comparison method, called in C:
    `count >= 3` is `(3.0).__le__(count)`."""
    if not isinstance(text, str):
        p.add(line, f"{key}: write a comparison such as '>= 3', got {text!r}")
        return None
    try:
        op, literal, _ = compile_short(text)
    except ExpressionError as e:
        p.add(line, f"{key}: {e}")
        return None
    if isinstance(literal, bool) or not isinstance(literal, int | float):
        p.add(line, f"{key}: compare with a number, got {literal!r}")
        return None
    bound = float(literal)
    tests: dict[str, Callable[[float], bool]] = {
        ">": bound.__lt__,
        ">=": bound.__le__,
        "<": bound.__gt__,
        "<=": bound.__ge__,
        "==": bound.__eq__,
        "!=": bound.__ne__,
    }
    return op, tests[op]


def _string_list(p: _Problems, m: YMap, key: str, what: str) -> tuple[str, ...] | None:
    v = m.get(key)
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and NAME.match(x) for x in v):
        p.add(m.key_line(key), f"{key}: expected a list of {what} names ([a-z0-9_-]), got {v!r}")
        return None
    return tuple(v)


class _ReflexBuilder:
    def __init__(self, p: _Problems, levels: tuple[str, ...], lateness: float, default_file: str) -> None:
        self.p = p
        self.levels = levels
        self.lateness = lateness
        self.file = default_file

    def condition(self, raw: object, line: int, where: str) -> Condition | None:
        if not isinstance(raw, YMap):
            self.p.add(line, f"{where}: a condition is a mapping such as {{kind: smoke, value: '> 0.15'}}")
            return None
        extra = [k for k in raw if k not in CONDITION_KEYS]
        for key in extra:
            self.p.add(raw.key_line(key), f"unknown key '{key}' in {where}{did_you_mean(key, WHEN_KEYS)}")
        errors = build_condition(raw)
        if isinstance(errors, list):
            for eline, msg in errors:
                self.p.add(eline, f"{where}: {msg}")
            return None
        return None if extra else errors

    def pattern(self, r: YMap, within: float | None) -> Pattern | None:
        when = r.get("when")
        line = r.key_line("when")
        if not isinstance(when, YMap):
            self.p.add(line, "when: expected a mapping (a condition, or all/sequence/absent)")
            return None
        _unknown_keys(self.p, when, WHEN_KEYS, "when")
        composite = [k for k in COMPOSITE_KEYS if k in when]
        patterns = [k for k in PATTERN_KEYS if k in when]
        if len(composite) > 1:
            self.p.add(line, f"when: use one of all, sequence, absent, not {' and '.join(composite)}")
            return None
        if composite:
            return self._composite(composite[0], when, within)
        window = [k for k in patterns if k != "for"]
        if "for" in when and window:
            self.p.add(when.key_line("for"), f"when: 'for' cannot be combined with '{window[0]}'")
            return None
        shape = [k for k in window if k != "count"] if "distinct" in window else window
        if len(shape) > 1:
            self.p.add(line, f"when: use at most one of {', '.join(WINDOW_KEYS)}; found {', '.join(shape)}")
            return None
        cond_raw = YMap({k: v for k, v in when.items() if k in CONDITION_KEYS})
        cond_raw.line, cond_raw.key_lines = when.line, when.key_lines
        cond = self.condition(cond_raw, line, "when")
        if cond is None:
            return None
        if "for" in when:
            d = _duration(self.p, when, "for")
            self._no_within(r, within, "a 'for' pattern")
            return Held(cond, d) if d is not None else None
        if not window:
            self._no_within(r, within, "a single condition")
            return Single(cond)
        if within is None:
            self.p.add(line, f"when: '{window[0]}' needs 'within' on the reflex (the window length)")
            return None
        key = "distinct" if "distinct" in window else window[0]
        if key == "distinct":
            return self._distinct(when)
        compared = _number_test(self.p, when.key_line(key), key, when[key])
        if compared is None:
            return None
        op, test = compared
        if key == "count":
            return Count(cond, test)
        if key in ("rise", "fall"):
            return Change(cond, "rise" if key == "rise" else "fall", test, op)
        fn = {"avg": "avg", "min": "min", "max": "max", "sum": "sum"}[key]
        return Aggregate(cond, fn, test, op)  # type: ignore[arg-type]

    def _distinct(self, when: YMap) -> Pattern | None:
        level = when["distinct"]
        if level not in self.levels:
            self.p.add(
                when.key_line("distinct"),
                f"distinct: '{level}' is not a level{did_you_mean(str(level), self.levels)}"
                f" (levels are {', '.join(self.levels)})",
            )
            return None
        if "count" not in when:
            self.p.add(when.key_line("distinct"), "distinct: needs 'count' (e.g. count: '>= 3')")
            return None
        compared = _number_test(self.p, when.key_line("count"), "count", when["count"])
        cond_raw = YMap({k: v for k, v in when.items() if k in CONDITION_KEYS})
        cond_raw.line, cond_raw.key_lines = when.line, when.key_lines
        cond = self.condition(cond_raw, when.line, "when")
        if compared is None or cond is None:
            return None
        return Distinct(cond, self.levels.index(level), compared[1])

    def _composite(self, key: str, when: YMap, within: float | None) -> Pattern | None:
        others = [k for k in when if k != key and not (key == "absent" and k == "for")]
        if others:
            self.p.add(
                when.key_line(others[0]),
                f"when: '{others[0]}' cannot stand beside '{key}'"
                + (" (put conditions inside the list)" if key != "absent" else ""),
            )
            return None
        line = when.key_line(key)
        if key == "absent":
            cond = self.condition(when[key], line, "absent")
            if "for" not in when:
                self.p.add(line, "absent: needs 'for' (how long the silence must last, e.g. for: 2m)")
                return None
            d = _duration(self.p, when, "for")
            return Absent(cond, d) if cond is not None and d is not None else None
        items = when[key]
        if not isinstance(items, YSeq) or len(items) < 2:
            self.p.add(line, f"{key}: expected a list of at least 2 conditions")
            return None
        if len(items) > MAX_CONDITIONS:
            self.p.add(line, f"{key}: at most {MAX_CONDITIONS} conditions, got {len(items)}")
            return None
        if within is None:
            self.p.add(line, f"{key}: needs 'within' on the reflex (how close in time the events must be)")
        conds = [self.condition(c, items.item_line(i), f"{key}[{i}]") for i, c in enumerate(items)]
        if within is None or any(c is None for c in conds):
            return None
        ok = tuple(c for c in conds if c is not None)
        return AllOf(ok) if key == "all" else SequencePattern(ok)

    def _no_within(self, r: YMap, within: float | None, what: str) -> None:
        if within is not None:
            self.p.add(r.key_line("within"), f"within: has no effect on {what}; remove it")

    def actions(self, r: YMap, pattern: Pattern | None) -> tuple[Action, ...] | None:
        then = r.get("then")
        line = r.key_line("then")
        if not isinstance(then, YSeq) or not then:
            self.p.add(line, "then: expected a list of actions (alert, actuate, escalate, clear)")
            return None
        out: list[Action] = []
        for i, item in enumerate(then):
            iline = then.item_line(i)
            if not isinstance(item, YMap) or len(item) != 1:
                self.p.add(
                    iline, f"then[{i}]: each action is a mapping with one key: {', '.join(ACTION_KEYS)}"
                )
                continue
            ((name, body),) = item.items()
            if name not in ACTION_KEYS:
                self.p.add(iline, f"then[{i}]: unknown action '{name}'{did_you_mean(name, ACTION_KEYS)}")
                continue
            if not isinstance(body, YMap):
                self.p.add(iline, f"then[{i}].{name}: expected a mapping of {', '.join(ACTION_KEYS[name])}")
                continue
            _unknown_keys(self.p, body, ACTION_KEYS[name], f"{name}")
            action = self._action(name, body, i)
            if action is not None:
                out.append(action)
        kinds = [type(a) for a in out]
        if out and AlertAction not in kinds and (EscalateAction in kinds or ClearAction in kinds):
            self.p.add(line, "then: escalate and clear act on an alert: add an 'alert' action")
        if kinds.count(ClearAction) > 1:
            self.p.add(line, "then: at most one 'clear' action")
        return tuple(out) if len(out) == len(then) else None

    def _action(self, name: str, b: YMap, i: int) -> Action | None:
        where = f"then[{i}].{name}"
        if name == "alert":
            to = _string_list(self.p, b, "to", "department") if "to" in b else None
            if "to" not in b:
                self.p.add(b.line, f"{where}: needs 'to' (the departments)")
            sev = b.get("severity", "warning")
            if sev not in SEVERITIES:
                self.p.add(
                    b.key_line("severity"),
                    f"{where}: severity must be one of {', '.join(SEVERITIES)}"
                    f"{did_you_mean(str(sev), SEVERITIES)}",
                )
                return None
            msg = b.get("message", "{reflex} in {site}")
            if not isinstance(msg, str) or len(msg) > 1024:
                self.p.add(
                    b.key_line("message"), f"{where}: message must be a string of at most 1024 characters"
                )
                return None
            try:
                template = Template.parse(msg)
            except ValueError as e:
                self.p.add(b.key_line("message"), f"{where}: {e}")
                return None
            return AlertAction(to, sev, template) if to else None
        if name == "actuate":
            targets = [k for k in ("kind", "sensor") if k in b]
            if len(targets) != 1:
                self.p.add(b.line, f"{where}: name exactly one of 'kind' or 'sensor' as the target")
                return None
            target = b[targets[0]]
            command = b.get("command")
            if not isinstance(target, str) or not target:
                self.p.add(b.key_line(targets[0]), f"{where}: {targets[0]} must be a string")
                return None
            if not isinstance(command, str) or not command:
                self.p.add(b.key_line("command") if "command" in b else b.line, f"{where}: needs 'command'")
                return None
            args = b.get("args", {})
            if not isinstance(args, dict) or not all(
                isinstance(v, str | int | float | bool) for v in args.values()
            ):
                self.p.add(b.key_line("args"), f"{where}: args must be a mapping of names to scalars")
                return None
            return ActuateAction(target, targets[0], command, tuple(sorted(args.items())))  # type: ignore[arg-type]
        after = _duration(self.p, b, "after", where)
        if "after" not in b:
            self.p.add(b.line, f"{where}: needs 'after' (a duration)")
        if name == "escalate":
            to = _string_list(self.p, b, "to", "department") if "to" in b else None
            if "to" not in b:
                self.p.add(b.line, f"{where}: needs 'to' (the departments to escalate to)")
            return EscalateAction(after, to) if after is not None and to else None
        return ClearAction(after) if after is not None else None

    def reflex(self, r: object, line: int, seen: dict[str, tuple[str, int]]) -> Reflex | None:
        p = self.p
        p.reflex = None
        before = len(p.errors)
        if not isinstance(r, YMap):
            p.add(line, "each reflex is a mapping with id, tier, when, then")
            return None
        rid = r.get("id")
        if not isinstance(rid, str) or not REFLEX_ID.match(rid):
            p.reflex = rid if isinstance(rid, str) else None
            p.add(
                r.key_line("id") if "id" in r else r.line, f"id: {rid!r} must match [a-z0-9-]+ (≤ 63 chars)"
            )
            rid = None
        else:
            p.reflex = rid
        if rid is not None:
            if rid in seen:
                f, ln = seen[rid]
                p.add(r.key_line("id"), f"duplicate reflex id (first defined at {f}:{ln})")
            else:
                seen[rid] = (p.file, r.key_line("id"))
        _unknown_keys(p, r, REFLEX_KEYS, "the reflex")
        for key in ("tier", "when", "then"):
            if key not in r:
                p.add(r.line, f"missing '{key}'")
        tier = r.get("tier")
        if "tier" in r and tier not in ("edge", "brain"):
            p.add(
                r.key_line("tier"),
                f"tier: must be 'edge' or 'brain', got {tier!r}{did_you_mean(str(tier), ('edge', 'brain'))}",
            )
        description = r.get("description", "")
        if not isinstance(description, str):
            p.add(r.key_line("description"), "description: must be a string")
        within = _duration(p, r, "within")
        cooldown = _duration(p, r, "cooldown")
        repeat = _duration(p, r, "repeat")
        per = r.get("per", "sensor")
        per_level: int | None = None
        if per != "sensor":
            if per in self.levels:
                per_level = self.levels.index(per)
            else:
                p.add(
                    r.key_line("per"),
                    f"per: '{per}' is not 'sensor' or a level"
                    f"{did_you_mean(str(per), (*self.levels, 'sensor'))} (levels are {', '.join(self.levels)})",
                )
        pattern = self.pattern(r, within) if "when" in r else None
        if repeat is not None and not isinstance(pattern, Absent):
            p.add(r.key_line("repeat"), "repeat: only an 'absent' pattern repeats reminders")
        actions = self.actions(r, pattern) if "then" in r else None
        if len(p.errors) > before or rid is None or pattern is None or actions is None:
            return None
        return Reflex(
            id=rid,
            tier=tier,  # type: ignore[arg-type]
            description=description,
            pattern=pattern,
            within=within,
            per=str(per),
            per_level=per_level,
            cooldown=cooldown
            if cooldown is not None
            else (within if within is not None else DEFAULT_COOLDOWN_S),
            repeat=repeat,
            actions=actions,
            file=p.file,
            line=r.line,
            fingerprint=_fingerprint(r, self.levels, self.lateness),
        )


def _fingerprint(raw: YMap, levels: tuple[str, ...], lateness: float) -> str:
    """Identity of a reflex's behaviour: its definition plus the set-wide settings it depends on."""
    canon = json.dumps([raw, list(levels), lateness], sort_keys=True, default=str)
    return hashlib.blake2b(canon.encode(), digest_size=12).hexdigest()


def _header(p: _Problems, doc: YMap) -> tuple[int, tuple[str, ...], float]:
    _unknown_keys(p, doc, TOP_KEYS, "the rule file")
    version = doc.get("version")
    if version != 1:
        p.add(
            doc.key_line("version") if "version" in doc else doc.line, f"version: must be 1, got {version!r}"
        )
    levels: tuple[str, ...] = DEFAULT_LEVELS
    if "levels" in doc:
        raw = doc["levels"]
        if (
            not isinstance(raw, list)
            or not raw
            or len(raw) > 16
            or not all(isinstance(x, str) and NAME.match(x) for x in raw)
            or len(set(raw)) != len(raw)
            or "sensor" in raw
        ):
            p.add(
                doc.key_line("levels"),
                "levels: expected a list of 1–16 distinct lowercase names (not 'sensor')",
            )
        else:
            levels = tuple(raw)
    lateness = DEFAULT_LATENESS_S
    if "lateness" in doc:
        d = _duration(p, doc, "lateness")
        lateness = d if d is not None else lateness
    return 1, levels, lateness


def _load_doc(
    text: str, file: str, seen: dict[str, tuple[str, int]]
) -> tuple[tuple[str, ...] | None, float | None, list[Reflex], list[RuleError]]:
    p = _Problems(file)
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError as e:
        p.add(e.line, str(e))
        return None, None, [], p.errors
    if not isinstance(doc, YMap):
        p.add(1, "a rule file is a mapping with 'version' and 'reflexes'")
        return None, None, [], p.errors
    _, levels, lateness = _header(p, doc)
    reflexes_raw = doc.get("reflexes")
    out: list[Reflex] = []
    if not isinstance(reflexes_raw, YSeq):
        p.add(
            doc.key_line("reflexes") if "reflexes" in doc else doc.line,
            "reflexes: expected a list of reflexes",
        )
        return levels, lateness, out, p.errors
    builder = _ReflexBuilder(p, levels, lateness, file)
    for i, r in enumerate(reflexes_raw):
        built = builder.reflex(r, reflexes_raw.item_line(i), seen)
        if built is not None:
            out.append(built)
    return levels, lateness, out, p.errors


def load_rules_text(text: str, file: str = "<rules>") -> RuleSet:
    """Check and compile one rule file given as text; raises RuleSetError with every problem."""
    return _assemble([(file, text)])


def rule_files(paths: Sequence[str | Path]) -> list[Path]:
    """The rule files named by `paths` (files, or folders searched for *.yaml / *.yml, tests excluded)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                f for f in sorted(path.rglob("*")) if f.suffix in (".yaml", ".yml") and not _is_test_file(f)
            )
        else:
            files.append(path)
    return files


def _is_test_file(path: Path) -> bool:
    return path.name.endswith((".test.yaml", ".test.yml"))


def load_rules(paths: Sequence[str | Path]) -> RuleSet:
    """Check and compile the rule files or folders in `paths` as one rule set; raises RuleSetError."""
    sources: list[tuple[str, str]] = []
    errors: list[RuleError] = []
    for f in rule_files(paths):
        try:
            sources.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            errors.append(RuleError(str(f), 1, None, f"cannot read: {e}"))
    if not sources and not errors:
        errors.append(RuleError(", ".join(map(str, paths)) or "<none>", 1, None, "no rule files found"))
    if errors:
        raise RuleSetError(errors)
    return _assemble(sources)


def load_rules_sources(sources: list[tuple[str, str]]) -> RuleSet:
    """Check and compile a rule set given as (file name, text) pairs — e.g. as deployed on `nerve.rules`."""
    if not sources:
        raise RuleSetError([RuleError("<none>", 1, None, "no rule files in the rule set")])
    return _assemble(sources)


def rule_sources(paths: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(file name, text) of the rule files named by `paths`, for deployment; raises RuleSetError."""
    sources: list[tuple[str, str]] = []
    for f in rule_files(paths):
        try:
            sources.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise RuleSetError([RuleError(str(f), 1, None, f"cannot read: {e}")]) from None
    return sources


def _assemble(sources: list[tuple[str, str]]) -> RuleSet:
    seen: dict[str, tuple[str, int]] = {}
    errors: list[RuleError] = []
    reflexes: list[Reflex] = []
    settings: set[tuple[tuple[str, ...], float]] = set()
    for file, text in sources:
        levels, lateness, found, errs = _load_doc(text, file, seen)
        errors.extend(errs)
        reflexes.extend(found)
        if levels is not None and lateness is not None:
            settings.add((levels, lateness))
    if len(settings) > 1:
        errors.append(
            RuleError(sources[0][0], 1, None, "all files of a rule set must share 'levels' and 'lateness'")
        )
    if len(reflexes) > MAX_REFLEXES:
        errors.append(RuleError(sources[0][0], 1, None, f"more than {MAX_REFLEXES} reflexes"))
    if errors:
        raise RuleSetError(errors)
    levels, lateness = next(iter(settings)) if settings else (DEFAULT_LEVELS, DEFAULT_LATENESS_S)
    return RuleSet(1, levels, lateness, tuple(reflexes), tuple(f for f, _ in sources))


def plain(value: Any) -> Any:
    """YMap/YSeq → dict/list (for callers that want plain data)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
