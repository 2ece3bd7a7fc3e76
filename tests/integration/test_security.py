"""Issue #7's "done when", on the real secured brokers (`scripts/brokers.sh start --secure`): who may
connect, publish, read and write — and that no password ever reaches a log line."""

# aiokafka ships no py.typed marker; its clients and errors are Any here.

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from brain_bridge.departments import AlertFeed, FeedError, alert_states
from edge_agent import uplink as uplink_module
from edge_agent.spool import Priority, Spool, SpoolId, SpoolRecord, SpoolWriteError
from edge_agent.uplink import Uplink
from nerve_cli.lockdown.inventory import ADMIN
from schemas import Alert
from tests.integration.conftest import port_answers, split_address
from tests.integration.edge_kit import run_uplink_until
from tests.integration.secure_kit import (
    REPO,
    Proc,
    Publisher,
    SecureCity,
    Subscriber,
    mqtt_client,
    secure_city_from_env,
    try_connect,
    wait_until,
)

B3, B4 = "gw-yuelu-c12-b3", "gw-yuelu-c12-b4"


def fire_alert(alert_id: str) -> Alert:
    now = time.time()
    return Alert.from_dict(
        {
            "id": alert_id,
            "reflex": "room-fire",
            "tier": "brain",
            "status": "raised",
            "severity": "critical",
            "departments": ["fire"],
            "site": "yuelu/c12/b3",
            "group": "yuelu/c12/b3",
            "message": "Fire suspected in yuelu/c12/b3",
            "ts": now,
            "evidence": [],
            "first_event_ts": now,
            "emitted_at": now,
        }
    )


@pytest.fixture(scope="session")
def city() -> SecureCity:
    """The secured city; fails (never skips) when its brokers or its vault are missing."""
    city = secure_city_from_env()
    fix = "start them with `scripts/brokers.sh start --secure` (or run `make test`)"
    if not city.vault.ca_cert.exists():
        pytest.fail(f"no secured city files in {city.vault.root}: {fix}", pytrace=False)
    host, port = split_address(city.kafka)
    if not port_answers(host, port):
        pytest.fail(f"the secured Kafka is not reachable at {city.kafka}: {fix}", pytrace=False)
    if not port_answers(city.mqtt_host, city.mqtt_port):
        pytest.fail(
            f"the secured Mosquitto is not reachable at {city.mqtt_host}:{city.mqtt_port}: {fix}",
            pytrace=False,
        )
    return city


# ------------------------------------------------------------------------------------------------ MQTT


def test_mqtt_refuses_anonymous_a_wrong_password_and_plaintext(city: SecureCity) -> None:
    anonymous = try_connect(mqtt_client(city, user=None), city)
    wrong = try_connect(mqtt_client(city, user=B3, password="not-" + city.password(B3)[:8]), city)
    unknown = try_connect(mqtt_client(city, user="gw-nobody", password=uuid.uuid4().hex), city)
    plaintext = try_connect(mqtt_client(city, user=B3, tls=False), city)
    right = try_connect(mqtt_client(city, user=B3), city)

    assert anonymous.failure, f"anonymous connect was accepted: {anonymous.reason}"
    assert anonymous.reason == "Not authorized", anonymous.reason
    assert wrong.failure, f"a wrong password was accepted: {wrong.reason}"
    assert wrong.reason == "Not authorized", wrong.reason
    assert unknown.failure, unknown.reason
    # A plaintext CONNECT on the TLS listener is no TLS handshake: Mosquitto closes the socket, no CONNACK.
    assert plaintext.failure, f"plaintext connect was accepted: {plaintext.reason}"
    assert plaintext.reason is not None and "CONNACK" in plaintext.reason, plaintext.reason
    assert not right.failure, f"the gateway's own credentials were refused: {right.reason}"


@pytest.fixture
def probe() -> str:
    return uuid.uuid4().hex


def test_a_gateway_gets_nothing_into_another_buildings_topics(city: SecureCity, probe: str) -> None:
    inv = city.inventory
    b3, b4 = (next(g for g in inv.gateways if g.id == name) for name in (B3, B4))
    b4_topics = [f"{inv.topic_root(b4)}/#", f"{inv.command_root(b4)}/#"]
    watcher = Subscriber(city, B4, b4_topics)  # b4's gateway may read all of this
    intruder, simulator = Publisher(city, B3), Publisher(city, inv.simulators[0])
    try:
        forged = [
            (f"{inv.topic_root(b4)}/sensors/f1/r101/smoke-{probe}/smoke", f"forged-reading-{probe}".encode()),
            (f"{inv.command_root(b4)}/f1/r101/gas_valve", f"forged-command-{probe}".encode()),
        ]
        for topic, payload in forged:
            intruder.publish(topic, payload)  # acknowledged (QoS 1) and, by the ACL, dropped
        # The intruder may still speak for its own building.
        intruder.publish(f"{inv.topic_root(b3)}/sensors/f1/r101/smoke-{probe}/smoke", b"own-building")
        # Mosquitto routes messages in the order it takes them: once this marker, published after the
        # forged messages were acknowledged, has arrived, a forged message that got through would have too.
        marker = f"marker-{probe}".encode()
        simulator.publish(f"{inv.topic_root(b4)}/sensors/f1/r101/marker-{probe}/door", marker)
        wait_until(lambda: marker in watcher.payloads(), 10, "the marker on b4's subscriber")
        leaked = [p for p in watcher.payloads() if probe.encode() in p and p != marker]
        assert leaked == [], f"messages from {B3} reached {B4}'s topics: {leaked}"
    finally:
        for client in (watcher, intruder, simulator):
            client.close()


# ----------------------------------------------------------------------------------------------- Kafka


async def test_a_department_reads_its_own_alerts_and_nothing_else(city: SecureCity) -> None:
    inv = city.inventory
    fire, police = inv.department_user("fire"), inv.department_user("police")
    # Its own topic, in its own group: readable.
    async with AlertFeed(
        city.kafka, "fire", prefix=inv.prefix, group="fire-dispatch", security=city.kafka_auth(fire)
    ):
        pass
    # Another department's topic: Kafka refuses, through the department API and through a bare consumer.
    with pytest.raises(FeedError) as refused:
        async with AlertFeed(city.kafka, "fire", prefix=inv.prefix, security=city.kafka_auth(police)) as feed:
            await asyncio.wait_for(anext(feed), 30)
    assert isinstance(refused.value.__cause__, TopicAuthorizationFailedError), repr(refused.value.__cause__)
    # Listing: fire sees an alert on its topic; to police the topic does not even exist.
    alert_id = uuid.uuid4().hex
    producer = AIOKafkaProducer(acks="all", **city.kafka_options(ADMIN))
    await producer.start()
    try:
        await producer.send_and_wait(
            inv.topic("alerts.fire"), fire_alert(alert_id).to_json(), key=b"yuelu/c12/b3"
        )
    finally:
        await producer.stop()
    seen = await alert_states(
        city.kafka, department="fire", prefix=inv.prefix, security=city.kafka_auth(fire)
    )
    assert alert_id in {s.id for s in seen}
    hidden = await alert_states(
        city.kafka, department="fire", prefix=inv.prefix, security=city.kafka_auth(police)
    )
    assert hidden == []
    # Another department's consumer group: refused too (it could take that department's partitions).
    with pytest.raises((FeedError, GroupAuthorizationFailedError)):
        async with AlertFeed(
            city.kafka, "police", prefix=inv.prefix, group="fire-dispatch", security=city.kafka_auth(police)
        ) as feed:
            await asyncio.wait_for(anext(feed), 30)


@pytest.mark.parametrize("topic", ["alerts.police", "alerts.fire", "alerts", "commands", "events"])
async def test_a_department_may_not_write_alerts_commands_or_events(city: SecureCity, topic: str) -> None:
    producer = AIOKafkaProducer(acks="all", **city.kafka_options(city.inventory.department_user("fire")))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(
                producer.send_and_wait(city.inventory.topic(topic), b"{}", key=b"forged"), 30
            )
    finally:
        await producer.stop()


async def test_a_department_may_write_acks(city: SecureCity) -> None:
    producer = AIOKafkaProducer(acks="all", **city.kafka_options(city.inventory.department_user("fire")))
    await producer.start()
    try:
        meta = await asyncio.wait_for(
            producer.send_and_wait(city.inventory.topic("acks"), b"{}", key=b"probe"), 30
        )
        assert meta.offset >= 0
    finally:
        await producer.stop()


@pytest.mark.parametrize("topic", ["commands", "alerts.fire"])
async def test_a_gateway_may_not_command_or_read_departments(city: SecureCity, topic: str) -> None:
    """A gateway may not write commands (they name any building) nor read a department's alerts."""
    options = city.kafka_options(B3)
    if topic == "commands":
        producer = AIOKafkaProducer(acks="all", **options)
        await producer.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(
                    producer.send_and_wait(city.inventory.topic(topic), b"{}", key=b"yuelu/c12/b4"), 30
                )
        finally:
            await producer.stop()
        return
    with pytest.raises(FeedError) as refused:
        async with AlertFeed(
            city.kafka, "fire", prefix=city.inventory.prefix, security=city.kafka_auth(B3)
        ) as feed:
            await asyncio.wait_for(anext(feed), 30)
    assert isinstance(refused.value.__cause__, TopicAuthorizationFailedError), repr(refused.value.__cause__)


# ----------------------------------------------------------------------------------- the whole arc, secured

ARC_RULES = """\
version: 1
lateness: 300ms
reflexes:
  - id: secured-edge-gas
    tier: edge
    when: {kind: gas, value: ">= 10"}
    per: room
    then:
      - alert: {to: [fire], severity: critical, message: "Gas in {site}"}
      - actuate: {kind: gas_valve, command: close}
  - id: secured-brain-smoke
    tier: brain
    when: {kind: smoke, value: "> 0.5"}
    per: room
    then:
      - alert: {to: [fire], severity: critical, message: "Smoke in {site}"}
      - actuate: {kind: alarm_sounder, command: "on"}
"""


def edge_config(city: SecureCity, tmp: Path) -> Path:
    inv, v = city.inventory, city.vault
    b3 = next(g for g in inv.gateways if g.id == B3)
    path = tmp / "gateway.yaml"
    path.write_text(
        f"""gateway: {B3}
site: {b3.site}
rules: [rules.yaml]
mqtt:
  host: {city.mqtt_host}
  port: {city.mqtt_port}
  tls: true
  ca_file: {v.ca_cert}
  username: {B3}
  password_file: {v.password_file(B3)}
  subscriptions:
    - topic: "{inv.topic_root(b3)}/sensors/+floor/+room/+sensor/+kind"
  command_topic: "{inv.mqtt_command_root.split("{")[0]}{{site}}/{{target}}"
kafka:
  bootstrap: "{city.kafka}"
  prefix: "{inv.prefix}"
  security_protocol: SASL_SSL
  username: {B3}
  password_file: {v.password_file(B3)}
  ca_file: {v.ca_cert}
  actuation_log: {inv.actuation_log}
  request_timeout_ms: 5000
spool:
  path: {tmp / "spool"}
lateness_margin_s: 0.4
heartbeat_s: 1.0
metrics_port: 0
"""
    )
    return path


def brain_config(city: SecureCity, tmp: Path) -> Path:
    inv, v = city.inventory, city.vault
    app = inv.brains[0]
    path = tmp / "brain.yaml"
    path.write_text(
        f"""app_id: {app}
worker: secured-{uuid.uuid4().hex[:6]}
rules: [rules.yaml]
kafka:
  bootstrap: "{city.kafka}"
  prefix: "{inv.prefix}"
  security_protocol: SASL_SSL
  username: {app}
  password_file: {v.password_file(app)}
  ca_file: {v.ca_cert}
partitions: 4
datadir: {tmp / "brain"}
lateness_margin_s: 0.4
tick_s: 0.2
"""
    )
    return path


async def test_the_whole_arc_runs_secured_and_no_secret_reaches_a_log(
    city: SecureCity, tmp_path: Path, probe: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Sensor → MQTT (TLS) → edge agent → Kafka (SASL_SSL) → brain worker → nerve.alerts.fire → the fire
    department, and the brain's command back to the building's device; every process logs at DEBUG, and
    no password of any principal appears in any of their lines, the test's own or the brokers'."""
    caplog.set_level(logging.DEBUG)
    inv = city.inventory
    b3 = next(g for g in inv.gateways if g.id == B3)
    (tmp_path / "rules.yaml").write_text(ARC_RULES)
    brain = Proc.start(
        "brain",
        tmp_path,
        "brain",
        "run",
        "--config",
        str(brain_config(city, tmp_path)),
        "--log-level",
        "debug",
    )
    edge = Proc.start(
        "edge", tmp_path, "edge", "run", "--config", str(edge_config(city, tmp_path)), "--log-level", "DEBUG"
    )
    room = f"r{probe[:8]}"
    devices = Subscriber(city, inv.simulators[0], [f"{inv.command_root(b3)}/f1/{room}/#"])
    sensors = Publisher(city, inv.simulators[0])
    try:
        edge.wait_for('"edge agent ready"', 60)
        brain.wait_for("[^Worker]: Ready", 180)
        async with AlertFeed(
            city.kafka, "fire", prefix=inv.prefix, security=city.kafka_auth(inv.department_user("fire"))
        ) as feed:
            root = f"{inv.topic_root(b3)}/sensors/f1/{room}"
            sensors.publish(f"{root}/gas-{probe[:8]}/gas", b"42")
            sensors.publish(f"{root}/smoke-{probe[:8]}/smoke", b"0.9")
            site = f"{b3.site}/f1/{room}"
            wanted = {"secured-edge-gas", "secured-brain-smoke"}
            got: dict[str, Alert] = {}
            async with asyncio.timeout(90):
                async for alert in feed:
                    if alert.site == site and alert.reflex in wanted:
                        got[alert.reflex] = alert
                        if set(got) == wanted:
                            break
        assert got["secured-brain-smoke"].tier == "brain"
        assert got["secured-edge-gas"].tier == "edge"
        # The efferent path: the edge closed the gas valve itself; the brain's command came back through
        # nerve.commands and the gateway's downlink to the room's alarm sounder.
        wait_until(
            lambda: {t.rsplit("/", 1)[1] for t, _ in devices.messages} >= {"gas_valve", "alarm_sounder"},
            60,
            "the gas valve and alarm sounder commands on MQTT",
        )
    finally:
        for client in (devices, sensors):
            client.close()
        edge.stop()
        brain.stop()
    logs = {
        "edge agent": edge.text(),
        "brain worker": brain.text(),
        "test process": "\n".join(r.getMessage() + " " + repr(r.__dict__) for r in caplog.records),
        **broker_logs(),
    }
    assert all("DEBUG" in logs[p].upper() for p in ("edge agent", "brain worker")), "not logging at DEBUG"
    leaks = [
        f"{principal}'s password in the {where} log"
        for principal, secret in city.secrets().items()
        for where, text in logs.items()
        if secret in text
    ]
    assert leaks == [], leaks


def broker_logs() -> dict[str, str]:
    """The secured brokers' own logs, when they run from this checkout's launcher (NERVE_VAR)."""
    folder = Path(os.environ.get("NERVE_VAR", REPO / "var")) / "brokers-secure"
    found = {}
    for name in ("kafka/kafka.log", "mosquitto/mosquitto.log", "mosquitto/mosquitto.out"):
        path = folder / name
        if path.exists():
            found[f"broker {name}"] = path.read_text(errors="replace")
    return found


async def test_the_uplink_drops_records_for_a_refused_topic_and_delivers_the_rest(
    city: SecureCity, tmp_path: Path
) -> None:
    """A record the gateway's principal may not write (a command) is dropped, counted and logged instead of
    blocking the spool; the records around it, in one batch, still reach Kafka."""
    delivered: list[tuple[Priority, int]] = []
    options = city.kafka_options(B3)
    with Spool(tmp_path / "spool", max_bytes=1 << 20) as spool:
        spool.append(
            [
                SpoolRecord(Priority.URGENT, city.inventory.topic("commands"), b"yuelu/c12/b4", b"{}"),
                SpoolRecord(Priority.TELEMETRY, city.inventory.topic("events"), b"yuelu/c12/b3", b'{"a":1}'),
                SpoolRecord(Priority.TELEMETRY, city.inventory.topic("events"), b"yuelu/c12/b3", b'{"a":2}'),
            ]
        )
        uplink = Uplink(
            spool,
            bootstrap=options.pop("bootstrap_servers"),
            client_id=f"refusal-{uuid.uuid4().hex[:6]}",
            security=options,
            on_delivered=lambda priority, n: delivered.append((priority, n)),
        )
        await run_uplink_until(
            uplink, lambda: not spool.stats().urgent + spool.stats().telemetry, "the drain"
        )
        stats = spool.stats()
    assert (stats.urgent, stats.telemetry) == (0, 0), stats
    assert uplink.refused == 1
    assert delivered == [(Priority.TELEMETRY, 2)], delivered  # the dropped command is not counted as sent


async def test_copies_for_missing_department_topics_are_dropped_and_the_rest_delivered(
    city: SecureCity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secured broker creates no topic on its own: alert copies for departments whose topics nobody
    created (the gateway may write `alerts.*`, so Kafka says "unknown topic", not "refused") are dropped
    and counted once each, even when the spool fails to remove them at first, instead of holding back the
    spool; the alert itself and the telemetry reach Kafka. Three missing topics in one batch, each of which
    aiokafka waits a whole request timeout on, do not add up to a stalled uplink."""
    delivered: list[tuple[Priority, int]] = []
    dropped: list[tuple[str, int]] = []
    options = city.kafka_options(B3)
    missing = [city.inventory.topic(f"alerts.nobody-{uuid.uuid4().hex[:6]}") for _ in range(3)]
    essential = {city.inventory.topic("alerts"), city.inventory.topic("events")}
    monkeypatch.setattr(uplink_module, "REMOVE_RETRY_S", (0.05, 0.2))
    with Spool(tmp_path / "spool", max_bytes=1 << 20) as spool:
        spool.append(
            [SpoolRecord(Priority.URGENT, topic, b"yuelu/c12/b3", b'{"copy":1}') for topic in missing]
            + [
                SpoolRecord(Priority.URGENT, city.inventory.topic("alerts"), b"yuelu/c12/b3", b'{"copy":0}'),
                SpoolRecord(Priority.TELEMETRY, city.inventory.topic("events"), b"yuelu/c12/b3", b'{"a":1}'),
            ]
        )
        remove = spool.remove
        failures = [SpoolWriteError("disk full")]
        removes: list[int] = []

        def flaky(ids: list[SpoolId]) -> None:
            removes.append(len(ids))
            if failures and len(removes) == 2:  # the first remove after the alert's: the dropped copies'
                raise failures.pop()
            remove(ids)

        monkeypatch.setattr(spool, "remove", flaky)
        uplink = Uplink(
            spool,
            bootstrap=options.pop("bootstrap_servers"),
            client_id=f"missing-{uuid.uuid4().hex[:6]}",
            security=options,
            request_timeout_ms=3000,  # how long aiokafka waits for a topic to appear in the metadata
            on_delivered=lambda priority, n: delivered.append((priority, n)),
            copies=lambda topic: topic not in essential,
            on_dropped=lambda reason, n: dropped.append((reason, n)),
        )
        await run_uplink_until(
            uplink, lambda: not spool.stats().urgent + spool.stats().telemetry, "the drain"
        )
    assert not failures
    assert {reason for reason, _ in dropped} == {"no_topic"}
    assert sum(n for _, n in dropped) == 3  # each counted once, though its first remove failed
    assert sorted(delivered) == [(Priority.URGENT, 1), (Priority.TELEMETRY, 1)], delivered


async def test_records_for_a_missing_topic_that_is_not_a_copy_stay_spooled(
    city: SecureCity, tmp_path: Path
) -> None:
    """A topic the agent cannot do without (here: one it does not count as a copy) is not dropped when
    Kafka lacks it: its records stay spooled and are sent again, with the topic named in the log."""
    failures: list[bool] = []
    options = city.kafka_options(B3)
    missing = city.inventory.topic(f"alerts.nobody-{uuid.uuid4().hex[:6]}")
    with Spool(tmp_path / "spool", max_bytes=1 << 20) as spool:
        spool.append([SpoolRecord(Priority.URGENT, missing, b"yuelu/c12/b3", b'{"copy":1}')])
        uplink = Uplink(
            spool,
            bootstrap=options.pop("bootstrap_servers"),
            client_id=f"missing-{uuid.uuid4().hex[:6]}",
            security=options,
            request_timeout_ms=2000,
            on_connected=lambda up: failures.append(up) if not up else None,
        )
        # two sends failed: the record was tried again, not dropped
        await run_uplink_until(uplink, lambda: len(failures) >= 2, "a second failed send")
        assert spool.stats().urgent == 1
    assert uplink.refused == 0
