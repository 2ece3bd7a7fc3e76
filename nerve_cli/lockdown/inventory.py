"""The city inventory: who may talk to the brokers — gateways with their buildings, departments, brain apps,
simulators — from which `nerve secure` derives every credential, the Mosquitto ACL and the Kafka ACLs.

```yaml
version: 1
prefix: "nerve."                               # Kafka topic prefix
mqtt_topic_root: "city/{building_path}"        # where a building's devices publish (simulator's default)
mqtt_command_root: "nerve/cmd/{building_path}" # under which its devices read commands (edge default)
hosts: [localhost, 127.0.0.1]                  # names and addresses in the brokers' certificates
gateways:
  - {id: gw-yuelu-c12-b3, site: yuelu/c12/b3}
departments: [fire, police]
brains: [nerve-brain]                          # Faust app ids (= consumer group, prefix of its own topics)
simulators: [simulator]                        # MQTT users that play every building's devices
```
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from schemas.fields import Department, SitePath
from schemas.settings import load_settings

PrincipalName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
AppId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9._-]+$", max_length=128)]
ROOT_FIELDS: Final = ("building_path", "district", "community", "building", "gateway")
DEPARTMENT_USER_PREFIX: Final = "dept-"
ADMIN: Final = "nerve-admin"
"""The operators' principal (Kafka super user): provisions topics, users and ACLs, deploys rule sets."""
BROKER: Final = "kafka-broker"
"""The Kafka brokers' own principal: SCRAM between brokers, certificate CN towards the controllers."""


def _problem(detail: str) -> PydanticCustomError:
    return PydanticCustomError("inventory", "{detail}", {"detail": detail})


class Gateway(BaseModel):
    """One building gateway: its id names its MQTT and Kafka principals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: PrincipalName
    site: SitePath = Field(description="The building it serves, e.g. yuelu/c12/b3.")


class Inventory(BaseModel):
    """The city's principals; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]*$")] = "nerve."
    mqtt_topic_root: str = "city/{building_path}"
    mqtt_command_root: str = "nerve/cmd/{building_path}"
    mqtt_alert_root: str = Field(default="nerve/alerts", description="Edge alerts: <root>/<department>.")
    mqtt_deadletter_topic: str = "nerve/deadletter"
    hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"], min_length=1)
    gateways: list[Gateway] = Field(default_factory=list)
    departments: list[Department] = Field(default_factory=list)
    brains: list[AppId] = Field(default_factory=lambda: ["nerve-brain"])
    simulators: list[PrincipalName] = Field(default_factory=list)
    actuation_log: str = Field(
        default="edge-actuations", description="Topic (after the prefix) where gateways log their actuations."
    )

    @field_validator("mqtt_topic_root", "mqtt_command_root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value or any(c in value for c in "+#\x00") or value.endswith("/"):
            raise _problem(f"{value!r}: a topic root has no wildcards and no trailing '/'")
        try:
            value.format(**dict.fromkeys(ROOT_FIELDS, "x"))
        except (KeyError, IndexError, ValueError) as exc:
            raise _problem(f"{value!r}: allowed placeholders are {', '.join(ROOT_FIELDS)} ({exc})") from None
        return value

    @model_validator(mode="after")
    def _unique(self) -> Inventory:
        names = [g.id for g in self.gateways] + self.brains + self.simulators
        names += [self.department_user(d) for d in self.departments] + [ADMIN, BROKER]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise _problem(f"principal names must be unique; repeated: {', '.join(repeated)}")
        roots = [self.topic_root(g) for g in self.gateways]
        for gateway, root in zip(self.gateways, roots, strict=True):
            others = [r for r in roots if r != root and (r + "/").startswith(root + "/")]
            if roots.count(root) > 1 or others:
                raise _problem(f"gateway {gateway.id}: its topic root {root!r} overlaps another building's")
        # Department groups are `<department>` and `<department>-*`: one department's groups must not be
        # another's, or it could join that group and take its partitions away.
        for department in self.departments:
            for other in self.departments:
                if other != department and other.startswith(department + "-"):
                    raise _problem(
                        f"departments {department!r} and {other!r}: one name must not start with the other "
                        "and '-' (their consumer groups would overlap)"
                    )
        return self

    def topic(self, name: str) -> str:
        """The Kafka topic `name` with the prefix."""
        return self.prefix + name

    def department_user(self, department: str) -> str:
        """The Kafka (and MQTT) principal of a department."""
        return DEPARTMENT_USER_PREFIX + department

    def _fill(self, template: str, gateway: Gateway) -> str:
        parts = gateway.site.split("/")
        return template.format(
            building_path=gateway.site,
            district=parts[0],
            community=parts[1] if len(parts) > 1 else "",
            building=parts[2] if len(parts) > 2 else "",
            gateway=gateway.id,
        )

    def topic_root(self, gateway: Gateway) -> str:
        """The MQTT topic root of the gateway's building, e.g. `city/yuelu/c12/b3`."""
        return self._fill(self.mqtt_topic_root, gateway)

    def command_root(self, gateway: Gateway) -> str:
        """The MQTT root of the building's device commands, e.g. `nerve/cmd/yuelu/c12/b3`."""
        return self._fill(self.mqtt_command_root, gateway)

    def kafka_principals(self) -> list[str]:
        """Every Kafka user: admin, brokers, gateways, departments, brains (simulators speak MQTT only)."""
        return [
            ADMIN,
            BROKER,
            *(g.id for g in self.gateways),
            *(self.department_user(d) for d in self.departments),
            *self.brains,
        ]

    def mqtt_principals(self) -> list[str]:
        """Every Mosquitto user: gateways, simulators, departments (their local alert topics)."""
        return [
            *(g.id for g in self.gateways),
            *self.simulators,
            *(self.department_user(d) for d in self.departments),
        ]

    def ip_hosts(self) -> list[str]:
        """The `hosts` that are IP addresses."""
        out = []
        for host in self.hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
            out.append(host)
        return out


def load_inventory(path: Path) -> Inventory:
    """Load and validate the inventory at `path`; raises ConfigError naming the file and key."""
    return load_settings(path, Inventory, env_prefix="")
