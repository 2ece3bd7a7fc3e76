"""`nerve secure init|provision|rotate`: certificates, credentials and ACLs of a secured city.

    nerve secure init --inventory examples/secure/inventory.yaml            # files into var/secure
    nerve secure provision --inventory … --bootstrap 127.0.0.1:29092         # users, topics, ACLs in Kafka
    nerve secure rotate gw-yuelu-c12-b3 --inventory … --bootstrap …          # a new password

Output names principals and files, never a password.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Final

from nerve_cli.lockdown.inventory import ADMIN, BROKER, Inventory, load_inventory
from nerve_cli.lockdown.vault import Vault
from schemas.settings import ConfigError

DEFAULT_DIR: Final = "var/secure"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    secure = sub.add_parser("secure", help="certificates, credentials and ACLs of a secured city")
    ssub = secure.add_subparsers(dest="secure_command", metavar="ACTION", required=True)

    init = ssub.add_parser("init", help="generate the CA, broker certificates, passwords and Mosquitto files")
    _common(init)
    init.add_argument("--renew-certs", action="store_true", help="issue new broker certificates")
    init.set_defaults(func=init_command)

    provision = ssub.add_parser("provision", help="create the Kafka users, topics and ACLs (as the admin)")
    _common(provision)
    _kafka(provision)
    provision.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    provision.add_argument("--replication", type=int, default=1, help="replication factor (default 1)")
    provision.set_defaults(func=provision_command)

    rotate = ssub.add_parser("rotate", help="give a principal a new password (Kafka and Mosquitto)")
    rotate.add_argument("principal", help="a gateway id, dept-<department>, a brain app id or a simulator")
    _common(rotate)
    _kafka(rotate, required=False)
    rotate.set_defaults(func=rotate_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", type=Path, required=True, metavar="FILE", help="the city inventory")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("NERVE_SECURE_DIR", DEFAULT_DIR)),
        help=f"where the generated files live (default $NERVE_SECURE_DIR or {DEFAULT_DIR})",
    )


def _kafka(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--bootstrap",
        required=required,
        metavar="HOST:PORT",
        help="the secured (SASL_SSL) Kafka listener" + ("" if required else "; without it Kafka is not told"),
    )


def _load(args: argparse.Namespace) -> tuple[Vault, Inventory] | None:
    try:
        inventory = load_inventory(args.inventory)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return None
    return Vault(args.dir), inventory


def init_command(args: argparse.Namespace) -> int:
    from nerve_cli.lockdown.city import prepare

    loaded = _load(args)
    if loaded is None:
        return 2
    vault, inventory = loaded
    try:
        done = prepare(vault, inventory, renew_certs=args.renew_certs)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"nerve secure init: {e}", file=sys.stderr)
        return 1
    print(f"secured city files in {vault.root}" + (" (new CA)" if done.new_ca else ""))
    if done.new_passwords:
        print(f"new passwords for: {', '.join(done.new_passwords)}")
    for path in done.files:
        print(f"  wrote {path}")
    return 0


def provision_command(args: argparse.Namespace) -> int:
    from nerve_cli.lockdown.kafka_acls import provision

    loaded = _load(args)
    if loaded is None:
        return 2
    vault, inventory = loaded
    try:
        done = provision(
            vault, inventory, args.bootstrap, partitions=args.partitions, replication=args.replication
        )
    except (RuntimeError, ValueError, OSError) as e:
        print(f"nerve secure provision: {e}", file=sys.stderr)
        return 1
    print(
        f"provisioned {args.bootstrap}: {len(done.users)} SCRAM users, "
        f"{len(done.topics_created)} new topics, {done.acls} ACLs"
    )
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    from nerve_cli.lockdown.kafka_acls import provision
    from nerve_cli.lockdown.mosquitto import write_passwd

    loaded = _load(args)
    if loaded is None:
        return 2
    vault, inventory = loaded
    principal = args.principal
    if principal in (ADMIN, BROKER):
        print(f"{principal}: rotate it by hand (docs/deployment.md, 'Rotating credentials')", file=sys.stderr)
        return 2
    in_kafka = principal in inventory.kafka_principals()
    in_mqtt = principal in inventory.mqtt_principals()
    if not (in_kafka or in_mqtt):
        print(f"{principal}: not a principal of {args.inventory}", file=sys.stderr)
        return 2
    vault.new_password(principal)
    print(f"new password for {principal} in {vault.password_file(principal)}")
    try:
        if in_mqtt:
            write_passwd(vault, inventory)
            print("mosquitto password file rewritten: send mosquitto SIGHUP to load it")
        if in_kafka and args.bootstrap:
            provision(vault, inventory, args.bootstrap, users=[principal])
            print(f"Kafka at {args.bootstrap} has the new SCRAM credentials of {principal}")
        elif in_kafka:
            print("Kafka not told (no --bootstrap): run `nerve secure provision` to apply it")
    except (RuntimeError, ValueError, OSError) as e:
        print(f"nerve secure rotate: {e}", file=sys.stderr)
        return 1
    return 0
