"""Rule test cases: events in, expected alerts out, written in YAML next to the rules.

A file `<anything>.test.yaml` beside the rule files holds:

    rules: fire.yaml            # optional: rule files/folders relative to this file (default: its folder)
    cases:
      - name: smoke and heat in one room raise a fire alert
        defaults: {site: yuelu/c1/b1/f1/r101}      # optional: merged into every event
        events:                                     # applied in this order
          - {sensor: smoke-1, kind: smoke, value: 0.2, ts: 1000}
          - {sensor: temp-1, kind: temperature, value: 60, ts: 1010}
        expect:                                     # every alert, in order; each lists the fields to check
          - {reflex: kitchen-fire, status: raised, group: yuelu/c1/b1/f1/r101, ts: 1010}
        expect_commands:                            # optional; checked only when present
          - {target: gas_valve, command: close}

Instead of `events`, `steps` mixes `- event: {...}`, `- advance: 1100` (move the watermark to 1100 s,
firing due timers) and `- ack: <reflex id>` (acknowledge that reflex's latest alert). `expect: []` means
no alert at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from reflexes.engine import Engine, Output
from reflexes.errors import RuleError, RuleSetError, did_you_mean
from reflexes.loader import load_rules, plain
from reflexes.yamlsource import YamlSyntaxError, YMap, YSeq, parse_yaml
from schemas import Alert, Command, SchemaError, SensorEvent

CASE_KEYS = ("name", "defaults", "events", "steps", "expect", "expect_commands")
STEP_KEYS = ("event", "advance", "ack")


@dataclass(frozen=True)
class CaseResult:
    file: str
    line: int
    name: str
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def case_files(paths: list[str | Path]) -> list[Path]:
    """The `*.test.yaml` files in or beside `paths`."""
    found: dict[Path, None] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_file() and p.name.endswith((".test.yaml", ".test.yml")):
            found[p] = None
            continue
        folder = p if p.is_dir() else p.parent
        pattern = "**/*.test.y*ml" if p.is_dir() else "*.test.y*ml"
        for f in sorted(folder.glob(pattern)):
            found[f] = None
    return list(found)


def _fail(file: str, line: int, message: str) -> RuleSetError:
    return RuleSetError([RuleError(file, line, None, message)])


def run_file(path: Path) -> list[CaseResult]:
    """Run every case of one test file; raises RuleSetError when the file or its rules are malformed."""
    file = str(path)
    try:
        doc = parse_yaml(path.read_text(encoding="utf-8"))
    except YamlSyntaxError as e:
        raise _fail(file, e.line, str(e)) from None
    if not isinstance(doc, YMap) or not isinstance(doc.get("cases"), YSeq):
        raise _fail(file, 1, "a test file is a mapping with a 'cases' list")
    for key in doc:
        if key not in ("rules", "cases"):
            raise _fail(
                file, doc.key_line(key), f"unknown key '{key}'{did_you_mean(key, ('rules', 'cases'))}"
            )
    targets = doc.get("rules", ".")
    targets = [targets] if isinstance(targets, str) else targets
    rules = load_rules([path.parent / t for t in targets])
    return [
        _run_case(file, rules_case, doc["cases"].item_line(i), rules)
        for i, rules_case in enumerate(doc["cases"])
    ]


def _run_case(file: str, case: object, line: int, rules: Any) -> CaseResult:
    if not isinstance(case, YMap):
        raise _fail(file, line, "each case is a mapping with name, events and expect")
    for key in case:
        if key not in CASE_KEYS:
            raise _fail(
                file, case.key_line(key), f"unknown key '{key}' in case{did_you_mean(key, CASE_KEYS)}"
            )
    name = str(case.get("name", f"case at line {line}"))
    if "expect" not in case:
        raise _fail(file, line, f"case '{name}': needs 'expect' (use [] for no alerts)")
    defaults = plain(case.get("defaults", {}))
    steps: list[tuple[int, str, Any]] = []
    if "events" in case:
        evs = case["events"]
        if not isinstance(evs, YSeq):
            raise _fail(file, case.key_line("events"), "events: expected a list of events")
        steps.extend((evs.item_line(i), "event", e) for i, e in enumerate(evs))
    if "steps" in case:
        raw_steps = case["steps"]
        if not isinstance(raw_steps, YSeq):
            raise _fail(file, case.key_line("steps"), "steps: expected a list")
        for i, s in enumerate(raw_steps):
            if not isinstance(s, YMap) or len(s) != 1 or next(iter(s)) not in STEP_KEYS:
                raise _fail(
                    file,
                    raw_steps.item_line(i),
                    "each step is one of {event: …}, {advance: ts}, {ack: reflex}",
                )
            ((kind, body),) = s.items()
            steps.append((raw_steps.item_line(i), kind, body))
    engine = Engine(rules)
    outputs: list[Output] = []
    for sline, kind, body in steps:
        if kind == "event":
            if not isinstance(body, dict):
                raise _fail(file, sline, "an event is a mapping")
            try:
                ev = SensorEvent.model_validate({**defaults, **plain(body)})
            except (SchemaError, ValueError) as e:
                raise _fail(file, sline, f"case '{name}': invalid event: {e}") from None
            outputs.extend(engine.process(ev))
        elif kind == "advance":
            if isinstance(body, bool) or not isinstance(body, int | float):
                raise _fail(file, sline, "advance: expected a time in epoch seconds")
            outputs.extend(engine.advance(float(body)))
        else:
            raised = [
                o for o in outputs if isinstance(o, Alert) and o.reflex == body and o.status == "raised"
            ]
            if not raised:
                raise _fail(file, sline, f"ack: reflex '{body}' has raised no alert yet in case '{name}'")
            engine.acknowledge(raised[-1].id)
    failures: list[str] = []
    alerts = [o for o in outputs if isinstance(o, Alert)]
    failures.extend(_compare("alert", case["expect"], alerts, file, case.key_line("expect")))
    if "expect_commands" in case:
        commands = [o for o in outputs if isinstance(o, Command)]
        failures.extend(
            _compare("command", case["expect_commands"], commands, file, case.key_line("expect_commands"))
        )
    return CaseResult(file, line, name, tuple(failures))


def _compare(what: str, expected: object, actual: list[Any], file: str, line: int) -> list[str]:
    if not isinstance(expected, list):
        raise _fail(file, line, f"expect: expected a list of {what}s")
    failures: list[str] = []
    for i, want in enumerate(expected):
        if not isinstance(want, dict):
            raise _fail(file, line, f"expect[{i}]: expected a mapping of fields")
        if i >= len(actual):
            failures.append(
                f"expected {what} #{i + 1} {_show(plain(want))}, but only {len(actual)} {what}(s) came"
            )
            continue
        got = actual[i].model_dump(mode="json")
        for field, value in plain(want).items():
            if field not in got:
                raise _fail(
                    file, line, f"expect[{i}]: '{field}' is not a {what} field{did_you_mean(field, got)}"
                )
            have = got[field]
            if isinstance(have, list) and isinstance(value, list):
                ok = have == value
            elif (
                isinstance(have, float | int)
                and isinstance(value, float | int)
                and not isinstance(value, bool)
            ):
                ok = abs(float(have) - float(value)) < 1e-6
            else:
                ok = have == value
            if not ok:
                failures.append(
                    f"{what} #{i + 1} ({got.get('reflex', got.get('command'))}): {field} is {have!r}, expected {value!r}"
                )
    for extra in actual[len(expected) :]:
        d = extra.model_dump(mode="json")
        failures.append(
            f"unexpected {what}: {_show({k: d[k] for k in ('reflex', 'status', 'group', 'ts') if k in d} or d)}"
        )
    return failures


def _show(d: Any) -> str:
    return orjson.dumps(d).decode()
