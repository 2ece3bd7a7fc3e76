"""`nerve schemas export [--check] [--dir DIR]`: write or verify the JSON Schema files of the contracts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from schemas.export import SCHEMA_DIR, check, write_all


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `schemas` command group to the `nerve` parser."""
    group = sub.add_parser("schemas", help="JSON Schema files of the Nerve contracts")
    group.set_defaults(func=lambda _args: _usage(group))
    actions = group.add_subparsers(dest="schemas_action", metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write the schema files (or, with --check, verify them)",
        description="Write one JSON Schema file per contract (SensorEvent, Alert, Command, Ack, DeadLetter).",
    )
    export.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing the files that are missing or stale",
    )
    export.add_argument(
        "--dir",
        type=Path,
        default=SCHEMA_DIR,
        metavar="DIR",
        help=f"directory of the schema files (default: {SCHEMA_DIR})",
    )
    export.set_defaults(func=_export)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _export(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if args.check:
        stale = check(directory)
        for name in stale:
            print(f"stale: {directory / name}", file=sys.stderr)
        if stale:
            print("run `nerve schemas export` to regenerate them", file=sys.stderr)
            return 1
        print(f"schemas up to date in {directory}")
        return 0
    for path in write_all(directory):
        print(f"wrote {path}")
    return 0
