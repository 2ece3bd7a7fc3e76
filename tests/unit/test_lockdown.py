"""The pure parts of the secured city: the inventory, the ACL plans, credentials that never show."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from nerve_cli.lockdown.inventory import Inventory
from nerve_cli.lockdown.kafka_acls import Grant, acl_plan, topic_plan
from nerve_cli.lockdown.mosquitto import acl_text
from schemas.credentials import KafkaAuth, MqttAuth, aiokafka_options

CITY = Inventory(
    gateways=[{"id": "gw-a", "site": "yuelu/c1/b1"}, {"id": "gw-b", "site": "yuelu/c1/b2"}],
    departments=["fire", "police"],
    simulators=["sim"],
)


def grants_of(principal: str) -> set[tuple[str, str, str, str]]:
    return {(g.resource, g.name, g.pattern, g.operation) for g in acl_plan(CITY) if g.principal == principal}


def test_a_gateway_writes_events_and_alerts_and_reads_only_its_commands() -> None:
    assert grants_of("gw-a") == {
        ("topic", "nerve.events", "literal", "write"),
        ("topic", "nerve.alerts", "literal", "write"),
        ("topic", "nerve.alerts.", "prefixed", "write"),
        ("topic", "nerve.deadletter", "literal", "write"),
        ("topic", "nerve.edge-actuations", "literal", "write"),
        ("topic", "nerve.commands", "literal", "read"),
        ("topic", "nerve.rules", "literal", "read"),
        ("group", "nerve-edge-gw-a", "literal", "read"),
    }


def test_a_department_reads_only_its_topic_and_writes_only_acks() -> None:
    fire = grants_of("dept-fire")
    assert {g for g in fire if g[3] == "write"} == {("topic", "nerve.acks", "literal", "write")}
    read_topics = {g[1] for g in fire if g[0] == "topic" and g[3] == "read"}
    assert read_topics == {"nerve.alerts.fire", "nerve.acks"}
    assert Grant("dept-fire", "topic", "nerve.alerts.police", "literal", "read") not in acl_plan(CITY)


def test_alert_topics_want_two_in_sync_replicas_on_three() -> None:
    specs = {s.name: s for s in topic_plan(CITY, partitions=12, replication=3)}
    assert specs["nerve.alerts.fire"].configs["min.insync.replicas"] == "2"
    assert specs["nerve.rules"].configs == {"cleanup.policy": "compact"}
    assert specs["nerve.rules"].partitions == 1
    single = {s.name: s for s in topic_plan(CITY, partitions=4, replication=1)}
    assert "min.insync.replicas" not in single["nerve.alerts"].configs


def test_mosquitto_acl_keeps_each_gateway_in_its_building() -> None:
    text = acl_text(CITY)
    block = text.split("user gw-a\n", 1)[1].split("\n\n", 1)[0]
    assert "topic readwrite city/yuelu/c1/b1/#" in block
    assert "topic readwrite nerve/cmd/yuelu/c1/b1/#" in block
    assert "b2" not in block
    assert "user dept-fire\ntopic read nerve/alerts/fire" in text


@pytest.mark.parametrize(
    "change",
    [
        {"gateways": [{"id": "gw-a", "site": "yuelu/c1/b1"}, {"id": "gw-a", "site": "yuelu/c1/b2"}]},
        {"departments": ["fire", "fire-brigade"]},
        {"gateways": [{"id": "gw-a", "site": "yuelu/c1"}, {"id": "gw-b", "site": "yuelu/c1/b2"}]},
        {"mqtt_topic_root": "city/{nope}"},
    ],
)
def test_an_ambiguous_inventory_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Inventory.model_validate(CITY.model_dump() | change)


def test_a_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    secret = "s3cr3t-" + "x" * 20
    (tmp_path / "pw").write_text(secret)
    auth = KafkaAuth(security_protocol="SASL_SSL", username="gw-a", password_file=tmp_path / "pw")
    assert auth.secret() == secret
    assert secret not in repr(auth) + str(auth) + auth.model_dump_json()
    assert aiokafka_options(auth)["sasl_plain_password"] == secret
    mqtt = MqttAuth(tls=True, username="gw-a", password=SecretStr(secret))
    assert secret not in repr(mqtt)


def test_sasl_needs_a_user_and_a_password_and_one_source_of_it(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs username and password"):
        KafkaAuth(security_protocol="SASL_SSL", username="gw-a")
    (tmp_path / "pw").write_text("abc")
    with pytest.raises(ValidationError, match="not both"):
        KafkaAuth(username="gw-a", password=SecretStr("abc"), password_file=tmp_path / "pw")
    with pytest.raises(ValidationError, match="cannot read password file"):
        KafkaAuth(username="gw-a", password_file=tmp_path / "missing")
