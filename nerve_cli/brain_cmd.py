"""`nerve brain run --config FILE`: a brain worker (Faust); `nerve rules deploy`: publish a checked rule set."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

from nerve_cli import kafka_auth


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    brain = sub.add_parser("brain", help="the city brain's workers (Faust)")
    bsub = brain.add_subparsers(dest="brain_command", metavar="ACTION", required=True)
    run = bsub.add_parser("run", help="run a brain worker; any number share the work in one consumer group")
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="the worker's YAML config")
    run.add_argument("--log-level", default="info", help="debug, info, warning (default info)")
    run.set_defaults(func=run_command)


def register_deploy(rules_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = rules_sub.add_parser(
        "deploy", help="check a rule set and publish it to the compacted rules topic"
    )
    deploy.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    deploy.add_argument("--name", default="city", help="rule set name workers follow (default city)")
    deploy.add_argument("--bootstrap", default=os.environ.get("NERVE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    deploy.add_argument("--prefix", default="nerve.", help="topic prefix (default nerve.)")
    kafka_auth.add_arguments(deploy)
    deploy.set_defaults(func=deploy_command)


def run_command(args: argparse.Namespace) -> int:
    import uvloop
    from faust.worker import Worker

    from brain_bridge.config import load_config
    from brain_bridge.worker import Brain
    from reflexes import RuleSetError, load_rules
    from reflexes.collector import settle
    from reflexes.model import DEFAULT_LATENESS_S, DEFAULT_LEVELS, RuleSet
    from schemas.routing import Routing
    from schemas.settings import ConfigError

    try:
        config = load_config(args.config)
        routing = Routing.load(config.departments) if config.departments else Routing.default()
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        rules = (
            load_rules(config.rules) if config.rules else RuleSet(1, DEFAULT_LEVELS, DEFAULT_LATENESS_S, ())
        )
    except RuleSetError as e:
        print(e, file=sys.stderr)
        return 2
    problems = routing.check(rules.tier("brain").departments())
    if problems:
        print("\n".join(f"{config.departments}: {p}" for p in problems), file=sys.stderr)
        return 2
    config.datadir.mkdir(parents=True, exist_ok=True)
    brain = Brain(config, rules, routing)
    from aiokafka.errors import KafkaError

    from brain_bridge.topics import brain_topics, ensure_topics

    try:
        named = [
            *rules.departments(),
            *(d for r in routing.routes for d in r.to),
            *(routing.departments or {}),
        ]
        departments = [routing.topic_for(d, config.kafka.prefix) for d in dict.fromkeys(named)]
        asyncio.run(ensure_topics(config, brain_topics(config, brain.level_topic, departments)))
    except (KafkaError, OSError) as e:
        print(f"Kafka at {config.kafka.bootstrap} is not reachable: {e}", file=sys.stderr)
        return 1
    uvloop.install()
    settle()  # the rule set and the app as loaded stay out of the collector's sight (reflexes/collector.py)
    worker = Worker(brain.app, loglevel=args.log_level, loop=asyncio.get_event_loop_policy().new_event_loop())
    worker.execute_from_commandline()
    return 0


async def _deploy(args: argparse.Namespace, sources: list[tuple[str, str]]) -> int:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    from reflexes.deployment import Deployment, decode_deployment, digest
    from schemas.credentials import aiokafka_options

    topic = args.prefix + "rules"
    auth = kafka_auth.from_arguments(args)
    security = {} if auth is None else aiokafka_options(auth)
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap, **security)
    try:
        await admin.start()
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
                )
        finally:
            await admin.close()
        latest = 0
        consumer = AIOKafkaConsumer(
            bootstrap_servers=args.bootstrap, group_id=None, enable_auto_commit=False, **security
        )
        await consumer.start()
        try:
            from aiokafka import TopicPartition

            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for msg in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if msg.key == args.name.encode() and msg.value:
                        latest = max(latest, decode_deployment(msg.value).version)
        finally:
            await consumer.stop()
        version = latest + 1
        sha = digest(sources)
        payload = Deployment(args.name, version, tuple(sources), sha, time.time()).to_json()
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True, **security
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=args.name.encode())
        finally:
            await producer.stop()
    except KafkaError as e:
        print(f"Kafka at {args.bootstrap} did not take the rule set: {e}", file=sys.stderr)
        return 1
    print(
        f"deployed rule set '{args.name}' version {version} ({len(sources)} file(s), sha256 {sha[:12]}) to {topic}"
    )
    return 0


def deploy_command(args: argparse.Namespace) -> int:
    from reflexes import RuleSetError
    from reflexes.loader import load_rules_sources, rule_sources

    try:
        sources = rule_sources(args.paths)
        load_rules_sources(sources)  # never deploy a rule set that fails the check
    except RuleSetError as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        print("not deployed", file=sys.stderr)
        return 1
    return asyncio.run(_deploy(args, sources))
