"""Entry point of the `nerve` console script.

Each command group lives in its own module with a `register(subparsers)` function that adds its
parsers and sets `func` on them; a command that is not implemented yet is simply absent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Register]:
    from nerve_cli import (
        alerts_cmd,
        bench_cmd,
        brain_cmd,
        demo_cmd,
        edge_cmd,
        replay_cmd,
        rules_cmd,
        schemas_cmd,
        secure_cmd,
        simulate_cmd,
    )

    return [
        rules_cmd.register,
        replay_cmd.register,
        edge_cmd.register,
        brain_cmd.register,
        alerts_cmd.register,
        simulate_cmd.register,
        bench_cmd.register,
        demo_cmd.register,
        schemas_cmd.register,
        secure_cmd.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    """The full `nerve` parser with every implemented command group."""
    parser = argparse.ArgumentParser(prog="nerve", description="Nerve: a streaming nerve system for a city.")
    try:
        version = metadata.version("nerve")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        version = "0+unknown"
    parser.add_argument("--version", action="version", version=f"nerve {version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `nerve` with `argv` (default: sys.argv[1:]); returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
