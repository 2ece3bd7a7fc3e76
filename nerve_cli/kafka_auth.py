"""Kafka credentials for the command line (`nerve alerts …`, `nerve rules deploy`): flags, with environment
defaults so that a password never has to be typed on a command line, where `ps` would show it.

    --security-protocol  $NERVE_KAFKA_SECURITY_PROTOCOL  (PLAINTEXT)
    --username           $NERVE_KAFKA_USERNAME
    --password-file      $NERVE_KAFKA_PASSWORD_FILE      (or the password itself in $NERVE_KAFKA_PASSWORD)
    --ca-file            $NERVE_KAFKA_CA_FILE
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Final, get_args

from pydantic import SecretStr, ValidationError

from schemas.credentials import KafkaAuth, KafkaProtocol

ENV: Final = {
    "security_protocol": "NERVE_KAFKA_SECURITY_PROTOCOL",
    "username": "NERVE_KAFKA_USERNAME",
    "password_file": "NERVE_KAFKA_PASSWORD_FILE",
    "ca_file": "NERVE_KAFKA_CA_FILE",
}
PASSWORD_ENV: Final = "NERVE_KAFKA_PASSWORD"  # noqa: S105 - the variable name, not a password


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Kafka credential flags (see the module docstring) to `parser`."""
    group = parser.add_argument_group("Kafka security (a secured city)")
    group.add_argument(
        "--security-protocol",
        choices=get_args(KafkaProtocol),
        default=os.environ.get(ENV["security_protocol"], "PLAINTEXT"),
        help=f"default ${ENV['security_protocol']} or PLAINTEXT",
    )
    group.add_argument(
        "--username", default=os.environ.get(ENV["username"]), help=f"default ${ENV['username']}"
    )
    group.add_argument(
        "--password-file",
        type=Path,
        default=os.environ.get(ENV["password_file"]),
        metavar="FILE",
        help=f"a file holding the password (default ${ENV['password_file']}; or set ${PASSWORD_ENV})",
    )
    group.add_argument(
        "--ca-file",
        type=Path,
        default=os.environ.get(ENV["ca_file"]),
        metavar="FILE",
        help=f"PEM CA that signed the brokers' certificates (default ${ENV['ca_file']})",
    )


def from_arguments(args: argparse.Namespace) -> KafkaAuth | None:
    """The KafkaAuth the flags describe; None for plain PLAINTEXT. Exits with status 2 naming the problem."""
    if args.security_protocol == "PLAINTEXT" and args.username is None:
        return None
    password = os.environ.get(PASSWORD_ENV)
    try:
        return KafkaAuth(
            security_protocol=args.security_protocol,
            username=args.username,
            password=SecretStr(password) if password and args.password_file is None else None,
            password_file=args.password_file,
            ca_file=args.ca_file,
        )
    except ValidationError as e:
        problems = "; ".join(err["msg"] for err in e.errors())
        print(f"Kafka security: {problems}", file=sys.stderr)
        raise SystemExit(2) from None
