"""`nerve simulate`: a synthetic city publishing sensor events over MQTT, with scenarios injected."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
from pydantic import ValidationError

from schemas.credentials import MqttAuth

if TYPE_CHECKING:
    from simulator.city import City
    from simulator.live import Summary
    from simulator.scenarios import ExpectedAlert, Scenario

Plan = list[tuple["Scenario", float]]

DEFAULT_MQTT_HOST: Final = "127.0.0.1"
DEFAULT_MQTT_PORT: Final = 1883


class _ScenarioAction(argparse.Action):
    """`--scenario KIND@SITE` appends [spec, None]; a following `--at SECONDS` fills in its start."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        planned: list[list[Any]] = list(getattr(namespace, "planned", None) or [])
        if option_string == "--at":
            if not planned or planned[-1][1] is not None:
                parser.error("--at SECONDS must follow the --scenario it times")
            planned[-1][1] = values
        else:
            planned.append([values, None])
        namespace.planned = planned


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 <= value < 1e7:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be 0 or more")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from simulator.city import DEFAULT_TOPIC_ROOT
    from simulator.scenarios import BUILDERS

    p = sub.add_parser(
        "simulate",
        help="a synthetic city publishing sensor events over MQTT, with scenarios injected",
        description="Publish a synthetic city's sensor events to an MQTT broker, one topic root per "
        f"building gateway. Scenarios: {', '.join(BUILDERS)}.",
    )
    p.add_argument(
        "--host", default=os.environ.get("NERVE_MQTT_HOST", DEFAULT_MQTT_HOST), help="MQTT broker host"
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("NERVE_MQTT_PORT", DEFAULT_MQTT_PORT)),
        help="MQTT port",
    )
    p.add_argument("--rate", type=float, default=200.0, help="events per second, all sensors (default 200)")
    p.add_argument(
        "--duration", type=_seconds, default=60.0, help="seconds to run; 0 runs until Ctrl-C (default 60)"
    )
    p.add_argument(
        "--topic-root",
        default=DEFAULT_TOPIC_ROOT,
        help="each building's topic root; placeholders {district} {community} {building} {building_path} "
        f"{{gateway}} (default {DEFAULT_TOPIC_ROOT})",
    )
    p.add_argument(
        "--scenario",
        dest="planned",
        action=_ScenarioAction,
        metavar="KIND@SITE",
        help="inject a scenario, e.g. fire@yuelu/c1/b2 or power-outage@yuelu/c2 (repeatable)",
    )
    p.add_argument(
        "--at",
        dest="planned",
        action=_ScenarioAction,
        type=_seconds,
        metavar="SECONDS",
        help="when the preceding --scenario starts, seconds after the run starts (default 5)",
    )
    p.add_argument("--scenarios", choices=("all",), help="run every scenario once, one after the other")
    p.add_argument("--seed", type=int, default=0, help="seed of the city and its readings (default 0)")
    p.add_argument("--bad-rate", type=float, default=0.001, help="fraction of bad payloads (default 0.001)")
    p.add_argument("--districts", default="yuelu", help="comma-separated district names (default yuelu)")
    p.add_argument("--communities", type=int, default=3, help="communities per district (default 3)")
    p.add_argument("--buildings", type=int, default=4, help="buildings per community (default 4)")
    p.add_argument("--floors", type=int, default=3, help="floors per building (default 3)")
    p.add_argument("--rooms", type=int, default=4, help="rooms per floor (default 4)")
    p.add_argument(
        "--summary", choices=("text", "json"), default="text", help="summary format (default text)"
    )
    p.add_argument("--dry-run", action="store_true", help="generate the traffic without a broker")
    secured = p.add_argument_group("a secured broker")
    secured.add_argument(
        "--tls", action="store_true", default=bool(os.environ.get("NERVE_MQTT_TLS")), help="connect with TLS"
    )
    secured.add_argument("--ca-file", type=Path, default=os.environ.get("NERVE_MQTT_CA_FILE"), metavar="FILE")
    secured.add_argument("--username", default=os.environ.get("NERVE_MQTT_USERNAME"))
    secured.add_argument(
        "--password-file",
        type=Path,
        default=os.environ.get("NERVE_MQTT_PASSWORD_FILE"),
        metavar="FILE",
        help="a file holding the password (default $NERVE_MQTT_PASSWORD_FILE)",
    )
    p.set_defaults(func=simulate_command, planned=None)


def _plan(args: argparse.Namespace) -> tuple[City, Plan]:
    """(city, [(scenario, start offset s)]) from the arguments; ValueError names what is wrong."""
    from simulator.city import CityShape, build_city
    from simulator.scenarios import all_scenarios, parse

    shape = CityShape(
        districts=tuple(d.strip() for d in args.districts.split(",") if d.strip()),
        communities=args.communities,
        buildings=args.buildings,
        floors=args.floors,
        rooms=args.rooms,
    )
    city = build_city(shape, seed=args.seed)
    plan: Plan = []
    for spec, at in args.planned or []:
        plan.append((parse(city, spec), 5.0 if at is None else at))
    if args.scenarios == "all":
        plan.extend(all_scenarios(city))
    return city, plan


def _report(summary: Summary, city: City, args: argparse.Namespace) -> dict[str, Any]:
    """The summary as plain data (the `--summary json` output)."""

    def expected(alerts: Sequence[ExpectedAlert]) -> list[dict[str, Any]]:
        return [asdict(a) for a in alerts]

    return {
        "buildings": len(city.buildings),
        "sensors": len(city.sensors),
        "topic_root": args.topic_root,
        "broker": None if args.dry_run else f"{args.host}:{args.port}",
        "elapsed_s": round(summary.elapsed_s, 3),
        "messages": summary.messages,
        "events": summary.events,
        "bad": dict(summary.bad),
        "scripted": summary.scripted,
        "by_kind": dict(sorted(summary.by_kind.items())),
        "acknowledged": summary.acknowledged,
        "scenarios": [
            {
                "label": i.label,
                "at_s": round(i.start_ts - summary.started_ts, 3),
                "start_ts": i.start_ts,
                "gateway": i.scenario.gateway,
                "silence_s": i.scenario.silence_s,
                "fires_within_s": i.scenario.fires_within_s,
                "cut_short": i.start_ts + max(i.scenario.span_s, i.scenario.fires_within_s)
                > summary.started_ts + summary.elapsed_s,
                "expected": expected(i.expected),
                "note": i.scenario.note,
            }
            for i in summary.injections
        ],
        "not_reached": [{"label": s.label, "at_s": at} for s, at in summary.pending],
    }


def render(report: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    elapsed = report["elapsed_s"] or 1e-9
    bad = report["bad"]
    lines = [
        f"nerve simulate: {report['buildings']} buildings, {report['sensors']} sensors, "
        f"topic root {report['topic_root']}, broker {report['broker'] or 'none (dry run)'}",
        f"published {report['events']} events in {elapsed:.1f} s ({report['events'] / elapsed:.1f}/s), "
        f"{report['scripted']} of them scripted; {sum(bad.values())} bad payloads"
        + (f" ({', '.join(f'{n} {k}' for k, n in sorted(bad.items()))})" if bad else "")
        + (
            ""
            if report["broker"] is None
            else ("; all acknowledged by the broker" if report["acknowledged"] else "; NOT all acknowledged")
        ),
        "by kind: " + ", ".join(f"{k} {n}" for k, n in report["by_kind"].items()),
    ]
    if report["scenarios"]:
        lines.append("scenarios injected:")
    for s in report["scenarios"]:
        silence = f" — stop gateway {s['gateway']} for {s['silence_s']:g} s" if s["gateway"] else ""
        cut = " (the run ended before it played out)" if s["cut_short"] else ""
        lines.append(f"  +{s['at_s']:g} s  {s['label']}{silence}{cut}")
        lines.extend(
            f"      expects {a['reflex']} ({a['tier']}) {a['status']} for {a['group']} at +{a['after_s']:g}"
            + (f" ±{a['tolerance_s']:g}" if a["tolerance_s"] else "")
            + " s"
            for a in s["expected"]
        )
        if s["note"]:
            lines.append(f"      note: {s['note']}")
    lines.extend(
        f"  not reached (after the end of the run): {s['label']} at +{s['at_s']:g} s"
        for s in report["not_reached"]
    )
    return "\n".join(lines)


async def _simulate(args: argparse.Namespace, city: City, plan: Plan) -> int:
    from simulator.live import Simulator
    from simulator.publisher import MemoryPublisher, MqttPublisher, Publisher, PublishError

    publisher: Publisher
    mqtt: MqttPublisher | None = None
    if args.dry_run:
        publisher = MemoryPublisher()
    else:
        try:
            auth = MqttAuth(
                tls=args.tls, ca_file=args.ca_file, username=args.username, password_file=args.password_file
            )
        except ValidationError as e:
            print(f"nerve simulate: {'; '.join(err['msg'] for err in e.errors())}", file=sys.stderr)
            return 2
        mqtt = MqttPublisher(args.host, args.port, auth=auth)
        try:
            await asyncio.to_thread(mqtt.connect, 10.0)
        except PublishError as e:
            print(f"nerve simulate: {e}", file=sys.stderr)
            return 1
        publisher = mqtt
    try:
        simulator = Simulator(
            city, publisher, args.rate, args.seed, topic_root=args.topic_root, bad_rate=args.bad_rate
        )
        for scenario, at in plan:
            simulator.inject(scenario, at)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        summary = await simulator.run(stop, args.duration or None)
    finally:
        if mqtt is not None:
            mqtt.close()
    report = _report(summary, city, args)
    if args.summary == "json":
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
    else:
        print(render(report))
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    import uvloop

    if not args.rate > 0 or not 0.0 <= args.bad_rate <= 1.0:
        print("nerve simulate: --rate must be > 0 and --bad-rate within [0, 1]", file=sys.stderr)
        return 2
    try:
        from simulator.city import check_topic_root, topic_roots

        city, plan = _plan(args)
        topic_roots(city, check_topic_root(args.topic_root))
    except ValueError as e:
        print(f"nerve simulate: {e}", file=sys.stderr)
        return 2
    return uvloop.run(_simulate(args, city, plan))
