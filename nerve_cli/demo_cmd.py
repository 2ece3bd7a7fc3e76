"""`nerve demo`: the whole arc on one machine, local brokers included."""

from __future__ import annotations

import argparse
import os

from rich.console import Console


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="the whole reflex arc on one machine, with a simulated city")
    demo.add_argument("--kafka", help="bootstrap of a running Kafka (default: start the local brokers)")
    demo.add_argument("--mqtt", help="host:port of a running Mosquitto (default: start the local brokers)")
    demo.add_argument("--rate", type=float, default=100.0, help="city-wide events per second (default 100)")
    demo.add_argument(
        "--quick",
        action="store_true",
        help="only the scenarios that fire within seconds (fire, gas cluster, door forced, power outage)",
    )
    demo.add_argument(
        "--only", metavar="KINDS", help="comma-separated scenario kinds to run, e.g. fire,power-outage"
    )
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from nerve_cli.demo import QUICK, _brokers, _brokers_running, run_demo

    # SIGTERM (a supervisor, a test's timeout) unwinds like Ctrl-C: the demo stops every process it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from simulator.scenarios import BUILDERS

    console = Console()
    only: tuple[str, ...] | None = QUICK if args.quick else None
    if args.only:
        only = tuple(kind.strip() for kind in args.only.split(",") if kind.strip())
        unknown = [kind for kind in only if kind not in BUILDERS]
        if unknown or not only:
            console.print(
                f"--only: unknown scenario {', '.join(map(repr, unknown))}; one of {', '.join(BUILDERS)}"
            )
            return 2
    started = False
    if (args.kafka is None or args.mqtt is None) and not _brokers_running():
        console.print("starting the local brokers (scripts/brokers.sh start)")
        _brokers("start")
        started = True
    kafka = args.kafka or f"127.0.0.1:{os.environ.get('NERVE_KAFKA_PORT', '9092')}"
    host, _, port = (args.mqtt or f"127.0.0.1:{os.environ.get('NERVE_MQTT_PORT', '1883')}").rpartition(":")
    try:
        return asyncio.run(run_demo(kafka, host, int(port), args.rate, only, console))
    except KeyboardInterrupt:
        console.print("interrupted; everything the demo started is stopped")
        return 130
    finally:
        if started:
            _brokers("stop")
