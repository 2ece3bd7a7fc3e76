"""`nerve bench`: the edge and brain benchmarks with their raw transport baselines, one report (bench/all.py)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench", help="end-to-end latency and throughput, with the raw transports measured in the same run"
    )
    bench.add_argument(
        "--quick", action="store_true", help="the short runs of both benchmarks (a few minutes)"
    )
    bench.add_argument("--out", type=Path, help="report directory (default bench/)")
    bench.add_argument(
        "--only", choices=("edge", "brain"), help="run one benchmark (the other's report is reused)"
    )
    bench.add_argument("--combine", action="store_true", help="only rebuild the combined report from --out")
    bench.set_defaults(func=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    repo = Path(__file__).resolve().parents[1]  # an editable install runs from the checkout
    if (repo / "bench" / "all.py").exists() and str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    if importlib.util.find_spec("bench.all") is None:
        print("nerve bench runs from a checkout of the repository (the bench/ folder)", file=sys.stderr)
        return 2
    from bench.all import main
    from nerve_cli.demo import _brokers, _brokers_running

    forwarded = [
        *(["--quick"] if args.quick else []),
        *(["--out", str(args.out)] if args.out else []),
        *(["--only", args.only] if args.only else []),
        *(["--combine"] if args.combine else []),
    ]
    if args.combine:
        return main(forwarded)
    started = False
    if not _brokers_running():
        print("starting the local brokers (scripts/brokers.sh start)", flush=True)
        _brokers("start")
        started = True
    os.environ.setdefault("NERVE_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('NERVE_KAFKA_PORT', '9092')}")
    try:
        return main(forwarded)
    finally:
        if started:
            _brokers("stop")
