"""`nerve secure init`: everything a secured city needs on disk, generated from the inventory into the vault.

Idempotent: what exists is kept (a password, once made, stays until rotated), what is missing is made, and
the files derived from the inventory (Mosquitto's password and ACL files, the admin's client properties)
are rewritten every time, so adding a gateway to the inventory and running `init` again is enough locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerve_cli.lockdown.certs import ensure_broker_certs, ensure_ca
from nerve_cli.lockdown.inventory import ADMIN, BROKER, Inventory
from nerve_cli.lockdown.kafka_acls import admin_properties
from nerve_cli.lockdown.mosquitto import write_acl, write_passwd
from nerve_cli.lockdown.vault import Vault


@dataclass(slots=True)
class Prepared:
    """What `prepare` made (principal names and file paths only, never a secret)."""

    new_passwords: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    new_ca: bool = False


def prepare(vault: Vault, inventory: Inventory, *, renew_certs: bool = False) -> Prepared:
    """Generate the CA, the broker certificates, a password per principal and the Mosquitto files."""
    done = Prepared()
    done.new_ca = ensure_ca(vault)
    done.files += ensure_broker_certs(vault, inventory.hosts, renew=renew_certs or done.new_ca)
    principals = dict.fromkeys([ADMIN, BROKER, *inventory.kafka_principals(), *inventory.mqtt_principals()])
    done.new_passwords = [p for p in principals if vault.ensure_password(p)]
    done.files.append(str(write_passwd(vault, inventory)))
    done.files.append(str(write_acl(vault, inventory)))
    properties = vault.path("kafka", "admin.properties")
    vault.write(properties, admin_properties(vault), secret=True)
    done.files.append(str(properties))
    return done
