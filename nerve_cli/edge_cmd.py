"""`nerve edge run --config FILE`: run a building gateway's edge agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = sub.add_parser("edge", help="the building gateway's edge agent")
    esub = edge.add_subparsers(dest="edge_command", metavar="ACTION", required=True)
    run = esub.add_parser("run", help="run an edge agent (MQTT in, edge reflexes, spool, Kafka uplink)")
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="the agent's YAML config")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    run.add_argument("--plain-logs", action="store_true", help="human-readable logs instead of JSON lines")
    run.set_defaults(func=run_command)


async def _serve(config_path: Path) -> int:
    from edge_agent.agent import EdgeAgent
    from edge_agent.config import ConfigError, load_config
    from edge_agent.memory import tune_malloc
    from reflexes import RuleSetError, load_rules
    from schemas.routing import Routing

    try:
        config = load_config(config_path)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        rules = load_rules(config.rules)
    except RuleSetError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        routing = Routing.load(config.departments) if config.departments else Routing.default()
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    problems = routing.check(rules.tier("edge").departments())
    if problems:
        print("\n".join(f"{config.departments}: {p}" for p in problems), file=sys.stderr)
        return 2
    if config.malloc_arena_max:  # before the agent starts its threads (paho, spool, uplink)
        tune_malloc(config.malloc_arena_max)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = EdgeAgent(config, rules, routing)
    await agent.run(stop)
    return 0 if agent.failed is None else 1  # a task failed: exit so that the supervisor restarts the agent


def run_command(args: argparse.Namespace) -> int:
    import uvloop

    from edge_agent.telemetry import setup_logging

    setup_logging(args.log_level, json_logs=not args.plain_logs)
    return uvloop.run(_serve(args.config))
