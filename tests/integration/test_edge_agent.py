"""The edge agent on the real Mosquitto and Kafka: reflex latency, bad input, silence, uplink outage,
kill -9, a Mosquitto restart, and the brain's commands."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from edge_agent.spool import Spool
from schemas import Command
from tests.integration.edge_kit import Gateway, MqttProbe, free_port, launcher, read_topics, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(tmp_path: Path, kafka_bootstrap: str, mqtt_address: tuple[str, int]) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, kafka_bootstrap, *mqtt_address)
    gw.write_config()
    try:
        yield gw
    finally:
        gw.stop()
        gw.forget_session()


@pytest.fixture
def probe(gateway: Gateway) -> Iterator[MqttProbe]:
    p = MqttProbe(
        gateway.mqtt_host,
        gateway.mqtt_port,
        [f"{gateway.uid}/cmd/#", f"{gateway.uid}/alerts/#", f"{gateway.uid}/dead"],
    )
    try:
        yield p
    finally:
        p.close()


def event(i: int, value: float, ts: float | None = None) -> bytes:
    return orjson.dumps({"id": f"ev-{i}", "value": value, "ts": ts or time.time()})


async def test_gas_reading_closes_the_valve_in_milliseconds(
    gateway: Gateway, probe: MqttProbe, record_property: object
) -> None:
    gateway.start()
    uid = gateway.uid
    latencies = []
    for room in range(5):
        t0 = time.perf_counter()
        probe.publish(f"{uid}/f1/r{room}/gas-{room}/gas", b"12")
        topic = f"{uid}/cmd/{gateway.site}/f1/r{room}/gas_valve"
        wait_until(lambda t=topic: bool(probe.on(t)), 10, f"the command on {topic}")  # type: ignore[misc]
        latencies.append(probe.on(topic)[0][0] - t0)
    command = orjson.loads(probe.on(f"{uid}/cmd/")[0][2])
    assert (command["target"], command["command"], command["site"]) == (
        "gas_valve",
        "close",
        f"{gateway.site}/f1/r0",
    )
    alert = orjson.loads(probe.on(f"{uid}/alerts/fire")[0][2])
    assert (alert["reflex"], alert["tier"], alert["status"]) == ("gas-leak", "edge", "raised")
    assert not probe.on(f"{uid}/alerts/utilities")  # brain-tier reflexes do not run at the edge
    latencies.sort()
    print(
        f"edge reflex latency MQTT publish → command received: min {latencies[0] * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms"
    )
    record_property("reflex_latency_ms_max", round(latencies[-1] * 1e3, 2))  # type: ignore[operator]
    assert latencies[-1] < 0.5
    inside = gateway.site.encode() + b"/"  # the keys of commands to this gateway's rooms
    records = await read_topics(
        gateway.kafka,
        [gateway.prefix + t for t in ("events", "alerts", "commands", "edge-actuations")],
        lambda rs: (
            sum(1 for r in rs if r[0].endswith("edge-actuations") and (r[2] or b"").startswith(inside)) >= 5
            and sum(1 for r in rs if b'"gas"' in r[3]) >= 5
        ),
        30,
    )
    # its own actuations are logged (in the same spool writes as the alerts), but not on the downlink's
    # topic, which every gateway reads (and the prefix is this test's own: nobody else writes there)
    assert not [r for r in records if r[0].endswith(".commands")]
    gas = [r for r in records if r[0].endswith(".events") and b'"kind":"gas"' in r[3]]
    assert {r[2] for r in gas} == {gateway.site.encode()}  # keyed by the building path
    assert sum(1 for r in records if r[0].endswith(".alerts")) == 5
    fire = await read_topics(gateway.kafka, [gateway.prefix + "alerts.fire"], lambda rs: len(rs) >= 5, 30)
    assert {orjson.loads(r[3])["reflex"] for r in fire} == {"gas-leak"}  # the department hears it directly


BAD_PAYLOADS = {
    "malformed JSON": b'{"value": 3,',
    "wrong type": b'{"value": [1, 2]}',
    "NaN": b"NaN",
    "infinity": b'{"value": Infinity}',
    "oversized": b'{"value": 1, "tags": {"x": "' + b"a" * 70_000 + b'"}}',
    "invalid UTF-8": b"\xff\xfe\xfd",
    "unknown field": b'{"value": 1, "colour": "red"}',
    "empty": b"",
    "milliseconds as seconds": b'{"value": 1, "ts": 1765000000000}',
}


async def test_bad_input_is_dead_lettered_and_good_input_still_flows(
    gateway: Gateway, probe: MqttProbe
) -> None:
    gateway.start()
    uid = gateway.uid
    for n, payload in enumerate(BAD_PAYLOADS.values()):
        probe.publish(f"{uid}/f1/r1/bad-{n}/temperature", payload)
    probe.publish(f"{uid}/f1/r1/good-1/gas", b"15")
    wait_until(
        lambda: len(probe.on(f"{uid}/dead")) >= len(BAD_PAYLOADS), 10, "a dead letter for each bad payload"
    )
    letters = [orjson.loads(m[2]) for m in probe.on(f"{uid}/dead")]
    assert [x["source"] for x in letters] == [
        f"{uid}/f1/r1/bad-{n}/temperature" for n in range(len(BAD_PAYLOADS))
    ]
    assert all(x["reason"] for x in letters)
    assert "65536" in letters[4]["reason"]  # the oversized one names the limit
    assert "ahead of the gateway's clock" in letters[-1]["reason"]
    wait_until(lambda: bool(probe.on(f"{uid}/cmd/")), 10, "the good event's command")
    assert gateway.proc is not None and gateway.proc.poll() is None
    records = await read_topics(
        gateway.kafka, [gateway.prefix + "deadletter"], lambda rs: len(rs) >= len(BAD_PAYLOADS), 30
    )
    assert len(records) == len(BAD_PAYLOADS)
    assert gateway.metric("nerve_edge_dead_lettered_total") == len(BAD_PAYLOADS)


def test_a_silent_sensor_is_reported_within_for_plus_one_second(gateway: Gateway, probe: MqttProbe) -> None:
    gateway.start()
    uid = gateway.uid
    probe.publish(f"{uid}/f1/r1/hb-7/heartbeat", b"1")
    sent = time.perf_counter()
    wait_until(lambda: bool(probe.on(f"{uid}/alerts/building")), 10, "the silence alert")
    elapsed = probe.on(f"{uid}/alerts/building")[0][0] - sent
    alert = orjson.loads(probe.on(f"{uid}/alerts/building")[0][2])
    assert (alert["reflex"], alert["message"]) == ("sensor-silent", "hb-7 silent")
    assert 2.0 <= elapsed <= 3.0, f"silence of a 2 s `for` reported after {elapsed:.2f} s"


async def test_uplink_outage_spools_everything_and_sends_alerts_first(
    gateway: Gateway, probe: MqttProbe
) -> None:
    gateway.start()
    uid = gateway.uid
    probe.publish(f"{uid}/f1/r1/warm-up/temperature", event(-1, 20))
    wait_until(lambda: gateway.metric("nerve_edge_kafka_connected") == 1, 30, "the uplink to connect")
    launcher("stop", "kafka")
    try:
        wait_until(
            lambda: gateway.metric("nerve_edge_kafka_connected") == 0, 60, "the agent to notice the outage"
        )
        n = 20_000
        infos = [
            probe.publish(f"{uid}/f{i % 3}/r{i % 20}/t-{i % 50}/temperature", event(i, i % 30), wait=False)
            for i in range(n)
        ]
        for info in infos:
            info.wait_for_publish(30)
        for room in range(5):
            probe.publish(f"{uid}/f9/r{room}/gas-{room}/gas", event(n + room, 20))
        # local reflexes keep working while the uplink is down
        wait_until(lambda: len(probe.on(f"{uid}/cmd/")) >= 5, 30, "local actuation during the outage")
        wait_until(
            lambda: (gateway.metric("nerve_edge_spooled_total") or 0) >= n + 10,
            120,
            "everything to be spooled",
        )
    finally:
        launcher("start", "kafka")
    wanted = {f"ev-{i}" for i in range(n + 5)}

    def complete(rs: list[tuple[str, int, bytes | None, bytes]]) -> bool:
        ids = {orjson.loads(r[3])["id"] for r in rs if r[0].endswith(".events")}
        return wanted <= ids and sum(1 for r in rs if r[0].endswith(".alerts")) >= 5

    records = await read_topics(
        gateway.kafka, [gateway.prefix + "events", gateway.prefix + "alerts"], complete, 180
    )
    backlog = [r for r in records if r[0].endswith(".events") and orjson.loads(r[3])["id"] in wanted]
    alerts = [r for r in records if r[0].endswith(".alerts")]
    assert len({orjson.loads(r[3])["id"] for r in backlog}) == n + 5  # none missing; duplicates share ids
    assert max(r[1] for r in alerts) <= min(r[1] for r in backlog), (
        "alerts must go up before the telemetry backlog"
    )


async def test_kill_9_loses_nothing_the_agent_acknowledged(gateway: Gateway, probe: MqttProbe) -> None:
    gateway.start()
    uid = gateway.uid
    n = 6000
    infos = []
    for i in range(n):
        infos.append(
            probe.publish(f"{uid}/f1/r{i % 10}/k-{i % 40}/temperature", event(i, i % 40), wait=False)
        )
        if i == n // 3:
            wait_until(
                lambda: (gateway.metric("nerve_edge_spooled_total") or 0) > 500,
                30,
                "the agent to be mid-stream",
            )
            gateway.kill()
        if i == 2 * n // 3:
            gateway.start()  # the persistent session kept what the dead agent had not acknowledged
    for info in infos:
        info.wait_for_publish(30)
    wanted = {f"ev-{i}" for i in range(n)}
    records = await read_topics(
        gateway.kafka,
        [gateway.prefix + "events"],
        lambda rs: wanted <= {orjson.loads(r[3])["id"] for r in rs},
        120,
    )
    assert wanted <= {orjson.loads(r[3])["id"] for r in records}


async def test_ingest_resumes_after_a_mosquitto_restart(gateway: Gateway, probe: MqttProbe) -> None:
    gateway.start()
    uid = gateway.uid
    for i in range(300):
        probe.publish(f"{uid}/f1/r1/m-{i % 5}/temperature", event(i, 21), wait=False)
    wait_until(lambda: (gateway.metric("nerve_edge_events_in_total") or 0) >= 300, 30, "the first half")
    probe.close()
    launcher("stop", "mqtt")
    launcher("start", "mqtt")
    after = MqttProbe(gateway.mqtt_host, gateway.mqtt_port, [f"{uid}/cmd/#"])
    try:
        wait_until(
            lambda: (
                gateway.metric("nerve_edge_mqtt_connected") == 1
                and "mqtt connected" in gateway.log.read_text()
                and gateway.log.read_text().count('"mqtt connected"') >= 2
            ),
            30,
            "the agent to reconnect",
        )
        for i in range(300, 600):
            after.publish(f"{uid}/f1/r1/m-{i % 5}/temperature", event(i, 21), wait=False)
        after.publish(f"{uid}/f1/r2/gas-2/gas", b"30")
        wait_until(lambda: bool(after.on(f"{uid}/cmd/")), 30, "a reflex after the restart")
        wanted = {f"ev-{i}" for i in range(600)}
        records = await read_topics(
            gateway.kafka,
            [gateway.prefix + "events"],
            lambda rs: wanted <= {orjson.loads(r[3])["id"] for r in rs},
            60,
        )
        assert wanted <= {orjson.loads(r[3])["id"] for r in records}
    finally:
        after.close()


def test_a_deployed_rule_set_reaches_the_running_agent(
    gateway: Gateway, probe: MqttProbe, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.integration.edge_kit import RULES

    gateway.start()
    uid = gateway.uid
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "rules.yaml").write_text(
        RULES + "  - id: basement-water\n    tier: edge\n    when: {kind: water_level, value: '> 5'}\n"
        "    then: [{actuate: {kind: pump, command: start}}]\n"
    )
    command = [
        sys.executable,
        "-m",
        "nerve_cli",
        "rules",
        "deploy",
        str(deploy),
        "--prefix",
        gateway.prefix,
        "--bootstrap",
        gateway.kafka,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "version 1" in done.stdout
    wait_until(
        lambda: '"rules version received"' in gateway.log.read_text(), 20, "the agent to load version 1"
    )
    probe.publish(f"{uid}/f0/r1/w-1/water_level", b"9")
    wait_until(lambda: bool(probe.on(f"{uid}/cmd/{gateway.site}/f0/r1/pump")), 10, "the new reflex's command")
    (deploy / "rules.yaml").write_text(
        "version: 1\nreflexes:\n  - id: broken\n    tier: edge\n    when: {kind: [\n"
    )
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert "not deployed" in refused.stderr
    probe.publish(f"{uid}/f0/r2/w-2/water_level", b"9")  # the running version still acts
    wait_until(
        lambda: bool(probe.on(f"{uid}/cmd/{gateway.site}/f0/r2/pump")), 10, "the kept version's command"
    )


async def test_the_departments_file_routes_edge_alerts_too(gateway: Gateway, probe: MqttProbe) -> None:
    gateway.write_config(
        departments=f"""\
departments:
  fire: {{topic: {gateway.prefix}fire-dispatch}}
  building: {{}}
  utilities: {{}}
  emergency: {{}}
routes:
  - when: {{severity: critical, district: {gateway.uid}}}
    to: [emergency]
  - when: {{severity: info}}
    to: [building]
"""
    )
    gateway.start()
    probe.publish(f"{gateway.uid}/f1/r1/gas-1/gas", b"12")
    wait_until(lambda: bool(probe.on(f"{gateway.uid}/alerts/emergency")), 10, "the routed alert on MQTT")
    [fire] = [orjson.loads(m[2]) for m in probe.on(f"{gateway.uid}/alerts/fire")]
    assert fire["reflex"] == "gas-leak"
    assert fire["departments"] == ["fire"]  # the alert says whom its reflex named; routes add listeners
    records = await read_topics(
        gateway.kafka,
        [gateway.prefix + t for t in ("fire-dispatch", "alerts.emergency", "alerts.fire", "alerts.building")],
        lambda rs: len(rs) >= 2,
        30,
    )
    by_topic = {r[0].removeprefix(gateway.prefix): orjson.loads(r[3])["id"] for r in records}
    assert by_topic == {"fire-dispatch": fire["id"], "alerts.emergency": fire["id"]}


def test_an_edge_rule_naming_an_unknown_department_is_refused_at_start(gateway: Gateway) -> None:
    gateway.write_config(departments="departments: {fire: {}, buildings: {}}\n")
    config = gateway.tmp / "gateway.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "nerve_cli", "edge", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "departments.yaml: reflex " in done.stderr
    assert "unknown department 'building'; did you mean 'buildings'?" in done.stderr


async def test_an_agent_whose_uplink_fails_stops_and_exits_1_for_its_supervisor(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No half-alive agent: a task that fails (here the uplink) stops the agent as SIGTERM would, and
    `nerve edge run` exits with status 1 so that systemd or Docker restarts it."""
    from edge_agent.uplink import Uplink
    from nerve_cli.edge_cmd import _serve

    async def broken(self: Uplink, stop: object) -> None:
        raise RuntimeError("uplink bug")

    monkeypatch.setattr(Uplink, "run", broken)
    caplog.set_level("INFO", logger="nerve.edge")
    status = await asyncio.wait_for(_serve(gateway.tmp / "gateway.yaml"), 60)
    assert status == 1
    messages = [r.getMessage() for r in caplog.records]
    assert "uplink failed; the agent stops" in messages
    assert messages.index("uplink failed; the agent stops") < messages.index("edge agent stopped")


async def test_a_full_spool_that_drops_new_telemetry_keeps_the_first_readings_and_every_alert(
    gateway: Gateway, probe: MqttProbe
) -> None:
    """`spool.when_full: drop_new_telemetry` with Kafka unreachable from the start: the spool keeps the
    outage's first readings without a gap, refuses the later ones (counted), and keeps every alert."""
    config = gateway.tmp / "gateway.yaml"
    text = config.read_text()
    text = text.replace(f'bootstrap: "{gateway.kafka}"', f'bootstrap: "127.0.0.1:{free_port()}"')
    text = text.replace("spool:\n", "spool:\n  max_bytes: 40000\n  when_full: drop_new_telemetry\n")
    config.write_text(text)
    gateway.start()
    uid = gateway.uid
    for room in range(5):  # alerts and commands first; they are kept whatever comes after
        probe.publish(f"{uid}/f9/r{room}/gas-{room}/gas", event(10_000 + room, 20))
    wait_until(lambda: len(probe.on(f"{uid}/cmd/")) >= 5, 30, "local actuation without Kafka")
    n = 600  # some 250 bytes each: about 150 fit
    for i in range(n):
        probe.publish(f"{uid}/f1/r{i % 20}/t-{i % 50}/temperature", event(i, i % 30), wait=False)
    probe.publish(f"{uid}/f1/r0/t-0/temperature", event(n, 1)).wait_for_publish(30)

    def settled() -> bool:
        """Every reading taken, and stored or refused (the spool writes behind ingest)."""
        stored = gateway.metric("nerve_edge_spool_records", 'priority="telemetry"') or 0
        refused = gateway.metric("nerve_edge_spool_dropped_telemetry") or 0
        return (
            (gateway.metric("nerve_edge_events_in_total") or 0) >= n + 6
            and refused > 0
            and stored + refused >= n + 1
        )

    wait_until(settled, 60, "every reading to be taken, and stored or refused")
    dropped = gateway.metric("nerve_edge_spool_dropped_telemetry")
    spooled = gateway.metric("nerve_edge_spooled_total")
    assert gateway.stop() == 0
    with Spool(gateway.tmp / "spool" / "queue", max_bytes=40_000) as spool:
        stats = spool.stats()
        kept = [r for _, r in spool.peek(10 * n)]
    readings = [
        orjson.loads(r.value)["id"] for r in kept if r.topic.endswith(".events") and b"temperature" in r.value
    ]
    assert readings == [f"ev-{i}" for i in range(len(readings))]  # the first ones, without a gap
    assert 50 < len(readings) < n
    alerts = {orjson.loads(r.value)["evidence"][0] for r in kept if r.topic.endswith(".alerts")}
    assert alerts == {f"ev-{10_000 + room}" for room in range(5)}
    assert stats.bytes <= 40_000
    assert dropped is not None and dropped >= n - len(readings)
    assert (
        spooled is not None and spooled <= stats.urgent + stats.telemetry
    )  # refused records are not counted


async def test_brain_commands_are_carried_out_once_by_id_across_a_restart(
    gateway: Gateway, probe: MqttProbe
) -> None:
    """Commands from the brain on the real command topic reach the device of their site once per id: a
    repeat is ignored while the agent runs and after a restart (the ledger is kept in the spool), and a
    command for a site outside the gateway's is not carried out."""
    topic = gateway.prefix + "commands"
    room = gateway.site + "/f1/r1"
    device = f"{gateway.uid}/cmd/{room}/valve"

    def command(command_id: str, site: str = room, sensor: str | None = None) -> tuple[bytes, bytes]:
        """(key, value) as the brain sends it: keyed by site, so one site's commands keep their order."""
        value = Command(
            id=command_id,
            alert_id="a-1",
            site=site,
            target_by="kind" if sensor is None else "sensor",
            target=sensor or "valve",
            command="close",
            ts=time.time(),
        ).to_json()
        return site.encode(), value

    def seen(command_id: str) -> int:
        return sum(1 for _, _, payload in probe.on(device) if orjson.loads(payload)["id"] == command_id)

    def ignored(reason: str) -> float:
        return gateway.metric("nerve_edge_commands_ignored_total", f'reason="{reason}"') or 0.0

    async def send(command_id: str, site: str = room, sensor: str | None = None) -> None:
        key, value = command(command_id, site, sensor)
        await producer.send_and_wait(topic, value, key=key)

    producer = AIOKafkaProducer(bootstrap_servers=gateway.kafka)
    await producer.start()
    try:
        await send("before-start")  # the topic exists before the agent
        gateway.start()
        # A first start reads from the end of the topic once its consumer has joined: until then, send again.
        deadline = time.monotonic() + 60
        for n in itertools.count():
            await send(f"hello-{n}")
            if any(seen(f"hello-{i}") for i in range(n + 1)):
                break
            assert time.monotonic() < deadline, "no command reached the device within 60 s"
            await asyncio.sleep(0.5)  # pacing the hellos; the loop ends on a condition, with a deadline

        await send("x-1")
        await send("elsewhere", f"{gateway.uid}/c9/b9/f1/r1")
        await send("x-1")
        await send("wild", sensor="valve+1")  # MQTT refuses its topic: counted, and the agent goes on
        await send("x-2")
        await asyncio.to_thread(
            wait_until,
            lambda: (
                seen("x-2") == 1
                and ignored("repeat") == 1
                and ignored("outside") == 1
                and ignored("unpublishable") == 1
            ),
            30,
            "x-2 on the device; the repeat of x-1, the command for elsewhere and the wildcard one counted",
        )
        assert seen("x-1") == 1
        assert not [m for m in probe.on(f"{gateway.uid}/cmd/") if b'"elsewhere"' in m[2]]
        # a reflex's own command goes in the ledger too
        probe.publish(f"{gateway.uid}/f1/r1/gas-1/gas", b"12")
        valve = f"{gateway.uid}/cmd/{room}/gas_valve"
        await asyncio.to_thread(wait_until, lambda: bool(probe.on(valve)), 10, "the reflex's command")
        reflex_command = orjson.loads(probe.on(valve)[0][2])["id"]

        assert gateway.stop() == 0
        with Spool(gateway.tmp / "spool" / "queue", max_bytes=1 << 30) as spool:
            stored = [command_id for _, command_id in spool.ledger()]
        assert {"x-1", "x-2", reflex_command} <= set(stored)
        assert "elsewhere" not in stored
        assert len(stored) == len(set(stored))
        gateway.start()
        await send("x-1")  # sent again, e.g. by a brain that restarted
        await send("x-3")
        await asyncio.to_thread(
            wait_until,
            lambda: seen("x-3") == 1 and ignored("repeat") == 1,
            60,
            "x-3 on the device and x-1 counted as a repeat after the restart",
        )
        assert seen("x-1") == 1, "a command carried out before the restart was carried out again"
        assert seen("x-2") == 1
    finally:
        await producer.stop()
