"""`nerve replay`: the rules over a JSON-lines file of events, in event time, with no broker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO

from reflexes.engine import Engine
from reflexes.errors import RuleSetError
from reflexes.loader import load_rules
from schemas import Alert, SchemaError, SensorEvent


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay", help="evaluate rules on a JSONL file of events; alerts as JSON lines on stdout"
    )
    p.add_argument("--rules", required=True, nargs="+", metavar="PATH", help="rule files or folders")
    p.add_argument(
        "--events", required=True, metavar="FILE.jsonl", help="one SensorEvent JSON per line ('-' for stdin)"
    )
    p.add_argument(
        "--tier", choices=("edge", "brain", "all"), default="all", help="which reflexes run (default all)"
    )
    p.add_argument(
        "--until",
        type=float,
        metavar="EPOCH_S",
        help="after the last event, move the watermark to this time so that timers (absent, clear, escalate) fire",
    )
    p.add_argument(
        "--format",
        choices=("json", "text"),
        default="json",
        help="json: one Alert JSON per line (default); text: one readable line per alert",
    )
    p.set_defaults(func=replay_command)


def render_text(alert: Alert) -> str:
    """One readable line for an alert: event time (UTC), status, severity, reflex, departments, message."""
    when = datetime.fromtimestamp(alert.ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{when}  {alert.status:<9} {alert.severity:<9} {alert.reflex:<28} → "
        f"{','.join(alert.departments):<24} {alert.message}"
    )


def replay(
    engine: Engine, lines: IO[bytes], name: str, out: IO[str], err: IO[str], text: bool = False
) -> tuple[int, int, int]:
    """Apply every line of `lines`; returns (applied, rejected, late)."""
    applied = rejected = 0
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            ev = SensorEvent.from_json(raw)
        except SchemaError as e:
            rejected += 1
            print(f"{name}:{lineno}: rejected: {e}", file=err)
            continue
        if engine.is_late(ev.ts):
            engine.process(ev)  # counts it
            print(
                f"{name}:{lineno}: late: ts {ev.ts} is older than the watermark {engine.watermark} (not applied)",
                file=err,
            )
            continue
        applied += 1
        _emit(engine.process(ev), out, text)
    return applied, rejected, engine.late


def _emit(outputs: Sequence[object], out: IO[str], text: bool) -> None:
    for o in outputs:
        if isinstance(o, Alert):
            out.write((render_text(o) if text else o.to_json().decode()) + "\n")


def replay_command(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.rules)
    except RuleSetError as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        return 1
    engine = Engine(rules, tier=args.tier)
    text = args.format == "text"
    if args.events == "-":
        applied, rejected, late = replay(engine, sys.stdin.buffer, "<stdin>", sys.stdout, sys.stderr, text)
    else:
        try:
            with open(args.events, "rb") as f:
                applied, rejected, late = replay(engine, f, args.events, sys.stdout, sys.stderr, text)
        except OSError as e:
            print(f"{args.events}: cannot read: {e}", file=sys.stderr)
            return 1
    if args.until is not None:
        _emit(list(engine.advance(args.until)), sys.stdout, text)
    print(f"replay: {applied} applied, {rejected} rejected, {late} late", file=sys.stderr)
    return 0
