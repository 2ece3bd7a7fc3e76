"""`nerve alerts tail|ack|list`: a department's view of the alerts on Kafka, from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from brain_bridge.departments import (
    DEFAULT_PREFIX,
    AlertFeed,
    AlertState,
    FeedError,
    acknowledge,
    alert_states,
)
from nerve_cli import kafka_auth
from schemas import Alert, SchemaError

DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"
SEVERITY_STYLES: Final = {
    "info": "cyan",
    "warning": "yellow",
    "critical": "bold red",
    "emergency": "bold white on red",
}
CLEARED_STYLE: Final = "green"  # a cleared alert is good news, whatever its severity was


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = sub.add_parser("alerts", help="follow, acknowledge and list a department's alerts")
    asub = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    tail = asub.add_parser("tail", help="follow alerts live (Ctrl-C stops)")
    tail.add_argument(
        "--department", metavar="D", help="the department whose alerts to follow (default: every alert)"
    )
    tail.add_argument("--json", action="store_true", help="one Alert JSON per line instead of text")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest alert kept instead of now"
    )
    tail.add_argument(
        "--group", metavar="G", help="consumer group: commit what was shown and resume there next time"
    )
    _kafka_arguments(tail)
    tail.set_defaults(func=tail_command)

    ack = asub.add_parser("ack", help="acknowledge an alert (stops its escalation)")
    ack.add_argument("alert_id", metavar="ID", help="the alert's id")
    ack.add_argument("--by", required=True, metavar="NAME", help="who acknowledges: a person or a system")
    ack.add_argument("--note", metavar="TEXT", help="a short note kept with the acknowledgement")
    _kafka_arguments(ack)
    ack.set_defaults(func=ack_command)

    listing = asub.add_parser("list", help="the alerts as they stand now, newest first")
    listing.add_argument("--open", action="store_true", help="only alerts not cleared")
    listing.add_argument("--department", metavar="D", help="only this department's alerts")
    listing.add_argument("--json", action="store_true", help="one JSON object per alert instead of a table")
    listing.add_argument(
        "--within", type=float, default=5.0, metavar="SECONDS", help="give up after this long (default 5)"
    )
    _kafka_arguments(listing)
    listing.set_defaults(func=list_command)


def _kafka_arguments(parser: argparse.ArgumentParser) -> None:
    bootstrap = os.environ.get("NERVE_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
    parser.add_argument(
        "--bootstrap",
        default=bootstrap,
        metavar="HOST:PORT",
        help=f"Kafka bootstrap servers (default $NERVE_KAFKA_BOOTSTRAP or {DEFAULT_BOOTSTRAP}; now {bootstrap})",
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, metavar="P", help=f"topic prefix (default {DEFAULT_PREFIX})"
    )
    kafka_auth.add_arguments(parser)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_alert(alert: Alert) -> Text:
    """One readable line: event time (UTC), status coloured by severity, severity, reflex, site, message, id."""
    style = SEVERITY_STYLES[alert.severity]
    line = Text()
    line.append(_utc(alert.ts), style="dim")
    line.append("  ")
    line.append(f"{alert.status:<9}", style=CLEARED_STYLE if alert.status == "cleared" else style)
    line.append(" ")
    line.append(f"{alert.severity:<9}", style=style)
    line.append(" ")
    line.append(f"{alert.reflex:<24}", style="bold")
    line.append(f" {alert.site}  {alert.message}  ")
    line.append(f"[{alert.id}]", style="dim")
    return line


def render_table(states: list[AlertState], title: str) -> Table:
    """The alert states as a rich table, in the given order."""
    table = Table(title=title, title_justify="left")
    for column in ("raised (UTC)", "status", "severity", "reflex", "site", "message", "acked", "id"):
        table.add_column(column, overflow="fold")
    for s in states:
        style = SEVERITY_STYLES.get(s.severity, "")
        acked = f"{s.acked_by} {_utc(s.acked_at)}" if s.acked_by and s.acked_at is not None else ""
        table.add_row(
            _utc(s.raised_ts),
            Text(s.status, style=CLEARED_STYLE if s.status == "cleared" else style),
            Text(s.severity, style=style),
            s.reflex,
            s.site,
            s.message,
            acked,
            Text(s.id, style="dim"),
        )
    return table


@contextlib.contextmanager
def _quiet_kafka_client() -> Iterator[None]:
    """aiokafka logs every refused connection as an error; the command says it once, in one line."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _run(name: str, work: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run one command's coroutine; a Kafka failure is one line on stderr and exit code 1."""
    with _quiet_kafka_client():
        try:
            return asyncio.run(work())
        except FeedError as e:
            print(f"nerve alerts {name}: {e}", file=sys.stderr)
            return 1
        except SchemaError as e:
            print(f"nerve alerts {name}: {e}", file=sys.stderr)
            return 2
        except ValueError as e:  # a department name that cannot be a topic
            print(f"nerve alerts {name}: {e}", file=sys.stderr)
            return 2


def tail_command(args: argparse.Namespace) -> int:
    try:
        return _run("tail", lambda: _tail(args))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 0


async def _tail(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    feed = AlertFeed(
        args.bootstrap,
        args.department,
        prefix=args.prefix,
        group=args.group,
        from_beginning=args.from_beginning,
        security=kafka_auth.from_arguments(args),
    )
    console = Console(highlight=False, soft_wrap=True)

    def show(alert: Alert) -> None:
        if args.json:
            sys.stdout.write(alert.to_json().decode() + "\n")
            sys.stdout.flush()
        else:
            console.print(render_alert(alert))

    async def follow() -> None:
        async with feed:
            async for alert in feed:
                try:
                    show(alert)
                except BrokenPipeError:  # `| head`: the reader left; leave quietly too
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    return

    follower = asyncio.create_task(follow())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({follower, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        follower.cancel()
    try:
        await follower
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    return 0


def ack_command(args: argparse.Namespace) -> int:
    async def work() -> int:
        ack = await acknowledge(
            args.bootstrap,
            args.alert_id,
            args.by,
            note=args.note,
            prefix=args.prefix,
            security=kafka_auth.from_arguments(args),
        )
        print(ack.to_json().decode())
        return 0

    return _run("ack", work)


def list_command(args: argparse.Namespace) -> int:
    async def work() -> int:
        states = await alert_states(
            args.bootstrap,
            department=args.department,
            prefix=args.prefix,
            within_s=args.within,
            security=kafka_auth.from_arguments(args),
        )
        if args.open:
            states = [s for s in states if s.open]
        if args.json:
            sys.stdout.write("".join(orjson.dumps(s).decode() + "\n" for s in states))
            return 0
        # Piped output keeps whole rows rather than rich's 80-column default, so that it greps.
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
        which = "open alerts" if args.open else "alerts"
        if not states:
            console.print(f"no {which}")
        else:
            where = f" for {args.department}" if args.department else ""
            console.print(render_table(states, f"{len(states)} {which}{where}"))
        return 0

    return _run("list", work)
