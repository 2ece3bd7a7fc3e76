"""Entry point of the `nerve` console script.

Each command group lives in its own module with a `register(subparsers)` function that adds its
parsers and sets `func` on them; a command that is not implemented yet is simply absent.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# Each command and the module that registers it, in the order `nerve --help` lists them. Only the module of
# the command being run is imported: an edge agent then never loads the brain, the simulator or `rich`
# (2.4 MB of a gateway's resident memory, and a quarter of a second of start-up).
COMMANDS = {
    "rules": "rules_cmd",
    "replay": "replay_cmd",
    "edge": "edge_cmd",
    "brain": "brain_cmd",
    "alerts": "alerts_cmd",
    "simulate": "simulate_cmd",
    "bench": "bench_cmd",
    "demo": "demo_cmd",
    "schemas": "schemas_cmd",
    "secure": "secure_cmd",
}


def _registrar(command: str) -> Register:
    module = importlib.import_module(f"nerve_cli.{COMMANDS[command]}")
    register: Register = module.register
    return register


class _Version(argparse.Action):
    """`--version`, looked up only when asked for (importlib.metadata costs every command 3 MB)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib import metadata

        try:
            version = metadata.version("nerve")
        except metadata.PackageNotFoundError:  # running from a source tree without install
            version = "0+unknown"
        sys.stdout.write(f"nerve {version}\n")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `nerve` parser: with `only` (a command name), that command alone; else every command."""
    parser = argparse.ArgumentParser(prog="nerve", description="Nerve: a streaming nerve system for a city.")
    parser.add_argument("--version", action=_Version, help="show the program's version number and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in [only] if only in COMMANDS else COMMANDS:
        _registrar(command)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `nerve` with `argv` (default: sys.argv[1:]); returns the process exit code."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=args_list[0] if args_list else None)
    args = parser.parse_args(args_list)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
