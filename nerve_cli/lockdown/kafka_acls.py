"""Kafka users, topics and ACLs for a secured city, from the inventory.

`acl_plan` is pure: what each principal may do. `provision` applies it with the admin principal through
Kafka's Admin API (confluent-kafka): SCRAM-SHA-512 credentials for every principal (upserted, so it also
rotates), the topics with their retention (created when missing), and the ACLs (creating an existing ACL
changes nothing). The broker runs `StandardAuthorizer` with `allow.everyone.if.no.acl.found=false`:
whatever is not granted here is refused.

Who may do what:
- a gateway writes `events`, `alerts`, `alerts.*` (the departments its edge reflexes name), `deadletter`
  and its actuation log; reads `commands` (in its group `nerve-edge-<gateway>`) and `rules`. It may not
  write `commands`: a command names the site it acts on, Kafka cannot check that, and a gateway must not
  command another building's devices.
- a department reads only `alerts.<department>` (groups `<department>` and `<department>-*`), reads and
  writes `acks` (reading lets `nerve alerts list` show who acknowledged).
- a brain app reads `events`, `acks`, `rules`; writes `alerts`, `alerts.*`, `commands`, `deadletter`;
  owns every topic and group that starts with its app id (changelogs, clock, re-keyed events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from nerve_cli.lockdown.inventory import ADMIN, Inventory
from nerve_cli.lockdown.vault import Vault

Resource = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe", "create", "all"]

DAY_MS: Final = 24 * 3600 * 1000
SCRAM_ITERATIONS: Final = 8192


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One ALLOW ACL: `principal` may `operation` on the `resource` named `name` (exactly or as a prefix)."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the city needs: partitions, and its configs (retention, compaction, min ISR)."""

    name: str
    partitions: int
    configs: dict[str, str]


def acl_plan(inventory: Inventory) -> list[Grant]:
    """Every ACL of the city, sorted; see the module docstring."""
    t = inventory.topic
    grants: list[Grant] = []

    def allow(
        principal: str,
        resource: Resource,
        name: str,
        ops: tuple[Operation, ...],
        pattern: Pattern = "literal",
    ) -> None:
        grants.extend(Grant(principal, resource, name, pattern, op) for op in ops)

    for gateway in inventory.gateways:
        who = gateway.id
        for name in ("events", "alerts", "deadletter", inventory.actuation_log):
            allow(who, "topic", t(name), ("write",))
        allow(who, "topic", t("alerts."), ("write",), "prefixed")
        allow(who, "topic", t("commands"), ("read",))
        allow(who, "topic", t("rules"), ("read",))
        allow(who, "group", f"nerve-edge-{gateway.id}", ("read",))
    for department in inventory.departments:
        who = inventory.department_user(department)
        allow(who, "topic", t(f"alerts.{department}"), ("read",))
        allow(who, "topic", t("acks"), ("read", "write"))
        allow(who, "group", department, ("read",))
        allow(who, "group", f"{department}-", ("read",), "prefixed")
    for app in inventory.brains:
        for name in ("events", "acks", "rules"):
            allow(app, "topic", t(name), ("read",))
        for name in ("alerts", "commands", "deadletter"):
            allow(app, "topic", t(name), ("write",))
        allow(app, "topic", t("alerts."), ("write",), "prefixed")
        allow(app, "topic", app, ("all",), "prefixed")
        allow(app, "group", app, ("all",), "prefixed")
    return sorted(grants)


def topic_plan(inventory: Inventory, *, partitions: int, replication: int) -> list[TopicSpec]:
    """The city's topics with their configs; alert topics demand 2 in-sync replicas on a 3-broker cluster."""
    t = inventory.topic
    alerts = {"retention.ms": str(30 * DAY_MS)}
    if replication >= 3:
        alerts["min.insync.replicas"] = "2"
    return [
        TopicSpec(t("events"), partitions, {"retention.ms": str(7 * DAY_MS)}),
        TopicSpec(t("alerts"), partitions, dict(alerts)),
        *(TopicSpec(t(f"alerts.{d}"), partitions, dict(alerts)) for d in inventory.departments),
        TopicSpec(t("acks"), partitions, dict(alerts)),
        TopicSpec(t("commands"), partitions, {"retention.ms": str(1 * DAY_MS)}),
        TopicSpec(t("deadletter"), partitions, {"retention.ms": str(14 * DAY_MS)}),
        TopicSpec(t(inventory.actuation_log), partitions, {"retention.ms": str(7 * DAY_MS)}),
        TopicSpec(t("rules"), 1, {"cleanup.policy": "compact"}),
    ]


def admin_config(vault: Vault, bootstrap: str) -> dict[str, str | int | float | bool]:
    """librdkafka settings of the admin principal over SASL_SSL (the password comes from the vault)."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": ADMIN,
        "sasl.password": vault.password(ADMIN).get_secret_value(),
        "ssl.ca.location": str(vault.ca_cert),
    }


def admin_properties(vault: Vault) -> str:
    """Client properties of the admin principal for Kafka's Java tools (kafka-acls, kafka-configs)."""
    secret = vault.password(ADMIN).get_secret_value()
    return "\n".join(
        [
            "security.protocol=SASL_SSL",
            "sasl.mechanism=SCRAM-SHA-512",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{secret}";',
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={vault.ca_cert}",
            "",
        ]
    )


@dataclass(slots=True)
class Provisioned:
    """What `provision` did, for a one-line report (names only, never a secret)."""

    users: list[str]
    topics_created: list[str]
    acls: int


def provision(
    vault: Vault,
    inventory: Inventory,
    bootstrap: str,
    *,
    partitions: int = 4,
    replication: int = 1,
    users: list[str] | None = None,
    timeout_s: float = 30.0,
) -> Provisioned:
    """Apply users (all Kafka principals but the admin, or only `users`), topics and ACLs to the cluster at
    `bootstrap` as the admin principal; raises RuntimeError naming what Kafka refused."""
    from confluent_kafka import KafkaException

    # confluent_kafka.admin re-exports these without __all__, which mypy's strict mode does not count.
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        NewTopic,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(admin_config(vault, bootstrap))
    names = users if users is not None else [p for p in inventory.kafka_principals() if p != ADMIN]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, info, vault.password(name).get_secret_value().encode())
        for name in names
    ]
    problems: list[str] = []
    if upserts:
        for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as e:
                problems.append(f"SCRAM credentials of {user}: {e.args[0].str()}")
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        s
        for s in topic_plan(inventory, partitions=partitions, replication=replication)
        if s.name not in existing
    ]
    created: list[str] = []
    if wanted:
        new = [NewTopic(s.name, s.partitions, replication, config=s.configs) for s in wanted]
        for topic, future in admin.create_topics(new, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                created.append(topic)
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    problems.append(f"topic {topic}: {e.args[0].str()}")
    resource = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
    pattern = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
    operation = {
        "read": AclOperation.READ,
        "write": AclOperation.WRITE,
        "describe": AclOperation.DESCRIBE,
        "create": AclOperation.CREATE,
        "all": AclOperation.ALL,
    }
    plan = acl_plan(inventory)
    bindings = [
        AclBinding(
            resource[g.resource],
            g.name,
            pattern[g.pattern],
            f"User:{g.principal}",
            "*",
            operation[g.operation],
            AclPermissionType.ALLOW,
        )
        for g in plan
    ]
    for binding, future in admin.create_acls(bindings, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as e:
            problems.append(f"ACL {binding}: {e.args[0].str()}")
    if problems:
        raise RuntimeError("Kafka refused part of the provisioning:\n  " + "\n  ".join(problems))
    return Provisioned(users=names, topics_created=created, acls=len(plan))
