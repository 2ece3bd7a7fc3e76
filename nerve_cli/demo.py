"""`nerve demo`: the whole reflex arc on one machine — brokers, a brain worker, one edge agent per
building, the simulated city — with scenarios injected one by one and every arc shown as it fires.

Each expected alert is timed hop by hop: the sensor's MQTT publish (from the simulator's record of the
event that completed the pattern) → the edge agent's local alert over MQTT (edge tier) → the alert on its
department's Kafka topic. The run ends by itself with a summary and exits 1 if an expected alert is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from schemas import Alert, SchemaError
from simulator import scenarios as sc
from simulator.city import City, CityShape, build_city, gateway_config
from simulator.live import Published, Simulator
from simulator.publisher import MqttPublisher

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "scripts" / "brokers.sh"
CITY_RULES = REPO / "examples" / "city"
DEPARTMENTS = REPO / "examples" / "brain" / "departments.yaml"
QUICK = ("fire", "gas-leak-cluster", "door-forced", "power-outage")


@dataclass
class Arc:
    """One alert a scenario must cause, and when each hop of it was seen (perf_counter seconds)."""

    scenario: str
    reflex: str
    tier: str
    group: str
    deadline: float
    sensor_at: float | None = None
    edge_at: float | None = None
    department_at: float | None = None
    departments: tuple[str, ...] = ()
    alert_id: str | None = None

    @property
    def done(self) -> bool:
        return self.department_at is not None and (self.tier != "edge" or self.edge_at is not None)

    def hop(self, end: float | None) -> str:
        if end is None or self.sensor_at is None:
            return "…"
        return f"{(end - self.sensor_at) * 1e3:.1f} ms"


@dataclass
class Board:
    """Everything the live view shows; filled from the MQTT thread and the asyncio loop."""

    arcs: list[Arc] = field(default_factory=list)
    published: dict[str, Published] = field(default_factory=dict)
    alerts_seen: int = 0
    events_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.perf_counter)

    def match(self, alert: Alert) -> Arc | None:
        for arc in self.arcs:
            if arc.reflex == alert.reflex and arc.group == alert.group and alert.status == "raised":
                return arc
        return None

    def sensor_time(self, alert: Alert) -> float | None:
        times = [self.published[e].perf for e in alert.evidence if e in self.published]
        return max(times) if times else None


def _view(board: Board, title: str) -> Group:
    table = Table(title=title, expand=True)
    for column in (
        "scenario",
        "reflex",
        "tier",
        "group",
        "sensor → edge",
        "sensor → department",
        "departments",
    ):
        table.add_column(column)
    with board.lock:
        for arc in board.arcs:
            style = "green" if arc.done else ("red" if time.perf_counter() > arc.deadline else "yellow")
            table.add_row(
                arc.scenario,
                arc.reflex,
                arc.tier,
                arc.group,
                arc.hop(arc.edge_at) if arc.tier == "edge" else "—",
                arc.hop(arc.department_at),
                ",".join(arc.departments),
                style=style,
            )
        elapsed = time.perf_counter() - board.started
        stats = Table.grid(padding=(0, 3))
        stats.add_row(
            f"elapsed {elapsed:5.0f} s",
            f"events published {board.events_sent}",
            f"≈ {board.events_sent / max(elapsed, 1e-9):.0f} events/s",
            f"alerts on Kafka {board.alerts_seen}",
        )
    return Group(table, stats)


class Processes:
    """The child processes the demo started; all are stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> Path:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nerve_cli", *args], stdout=out, stderr=out, cwd=REPO
            )
        self.children.append((name, proc, log))
        return log

    async def wait_for(self, log: Path, marker: str, timeout_s: float, name: str) -> None:
        deadline = time.monotonic() + timeout_s
        while marker not in await asyncio.to_thread(log.read_text, errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within {timeout_s:.0f} s; see {log}")
            await asyncio.sleep(0.2)  # polling a log file for a ready line, bounded by the deadline above

    def stop(self, name: str | None = None) -> None:
        for child, proc, _ in self.children:
            if (name is None or child == name) and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for child, proc, _ in self.children:
            if name is None or child == name:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _brokers(action: str) -> None:
    subprocess.run(["bash", str(LAUNCHER), action], check=True, timeout=300)


def _brokers_running() -> bool:
    return subprocess.run(["bash", str(LAUNCHER), "status"], capture_output=True, check=False).returncode == 0


def _write_yaml(path: Path, data: object) -> Path:
    # JSON is YAML: the configs are written as JSON documents.
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path


async def run_demo(
    kafka: str, mqtt_host: str, mqtt_port: int, rate: float, only: tuple[str, ...] | None, console: Console
) -> int:
    stamp = str(int(time.time()))
    prefix = f"demo{stamp}."
    workdir = Path(tempfile.mkdtemp(prefix="nerve-demo-"))
    city = build_city(CityShape(communities=2, buildings=3, floors=2, rooms=2), seed=int(stamp) % 1000)
    procs = Processes(workdir)
    board = Board()
    brain_cfg = {
        "app_id": f"nerve-demo-{stamp}",
        "worker": "demo-brain",
        "rules": [str(CITY_RULES)],
        "departments": str(DEPARTMENTS),
        "kafka": {"bootstrap": kafka, "prefix": prefix},
        "datadir": str(workdir / "brain"),
        "lateness_margin_s": 0.5,
    }
    procs_ok = True
    try:
        console.print(f"[bold]Nerve demo[/] — workdir {workdir}, topic prefix {prefix}")
        brain_log = procs.start(
            "brain", "brain", "run", "--config", str(_write_yaml(workdir / "brain.yaml", brain_cfg))
        )
        gateways: dict[str, Path] = {}
        for building in city.buildings:
            cfg = gateway_config(
                building,
                rules=[str(CITY_RULES)],
                host=mqtt_host,
                port=mqtt_port,
                kafka={"bootstrap": kafka, "prefix": prefix},
                spool={"path": str(workdir / "spool" / building.gateway)},
                metrics_port=0,
                lateness_margin_s=0.5,
            )
            cfg["mqtt"]["alert_topic"] = f"{prefix}local/{building.gateway}/alerts/{{department}}"
            cfg["mqtt"]["command_topic"] = f"{prefix}local/{building.gateway}/cmd/{{site}}/{{target}}"
            cfg["mqtt"]["deadletter_topic"] = f"{prefix}local/{building.gateway}/dead"
            path = _write_yaml(workdir / f"{building.gateway}.yaml", cfg)
            gateways[building.gateway] = procs.start(building.gateway, "edge", "run", "--config", str(path))
        await procs.wait_for(brain_log, "[^Worker]: Ready", 90, "the brain worker")
        for name, log in gateways.items():
            await procs.wait_for(log, '"edge agent ready"', 60, name)
        console.print(f"brain worker and {len(gateways)} edge agents ready")
        return await _drive(city, board, procs, kafka, mqtt_host, mqtt_port, prefix, rate, only, console)
    except (RuntimeError, OSError) as e:
        procs_ok = False
        console.print(f"[red]demo failed:[/] {e}")
        return 1
    finally:
        procs.stop()
        if not procs_ok:
            console.print(f"logs kept in {workdir}")


async def _drive(
    city: City,
    board: Board,
    procs: Processes,
    kafka: str,
    mqtt_host: str,
    mqtt_port: int,
    prefix: str,
    rate: float,
    only: tuple[str, ...] | None,
    console: Console,
) -> int:
    plan = sc.all_scenarios(city, first_at_s=3.0, gap_s=3.0)
    if only is not None:
        plan = [(s, 0.0) for s, _ in plan if s.kind in only]
        at = 3.0
        placed = []
        for s, _ in plan:
            placed.append((s, at))
            at += max(s.span_s, s.fires_within_s) + 3.0
        plan = placed
    local = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"nerve-demo-view-{os.getpid()}")

    def on_local(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(SchemaError):
            alert = Alert.from_json(bytes(msg.payload))
            with board.lock:
                arc = board.match(alert)
                if arc is not None and arc.edge_at is None:
                    arc.edge_at = time.perf_counter()
                    arc.sensor_at = arc.sensor_at or board.sensor_time(alert)

    local.on_message = on_local
    local.connect(mqtt_host, mqtt_port)
    local.subscribe(f"{prefix}local/+/alerts/#", qos=1)
    local.loop_start()
    publisher = MqttPublisher(mqtt_host, mqtt_port, client_id=f"nerve-demo-city-{os.getpid()}")
    publisher.connect()

    def on_publish(p: Published) -> None:
        if p.message.event_id is not None:
            board.published[p.message.event_id] = p
            board.events_sent += 1

    sim = Simulator(city, publisher, rate=rate, seed=1, on_publish=on_publish)
    start_wall = time.time()
    for scenario, at in plan:
        sim.inject(scenario, at)
        for expected in scenario.expected_alerts(start_wall + at):
            if expected.status != "raised":
                continue
            board.arcs.append(
                Arc(
                    scenario.kind,
                    expected.reflex,
                    expected.tier,
                    expected.group,
                    deadline=time.perf_counter() + at + expected.after_s + expected.tolerance_s + 20.0,
                )
            )
    end_at = max(a.deadline for a in board.arcs) - time.perf_counter() if board.arcs else 10.0
    stop = asyncio.Event()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, group_id=None, auto_offset_reset="earliest", metadata_max_age_ms=1000
    )
    await consumer.start()
    consumer.subscribe(pattern=f"^{re.escape(prefix)}alerts\\..+")
    silenced = {s.gateway for s, _ in plan if s.silence and s.gateway}
    sim_task = asyncio.create_task(sim.run(stop))
    try:
        with Live(
            _view(board, "reflex arcs"), console=console, refresh_per_second=4, transient=False
        ) as live:
            deadline = time.perf_counter() + end_at
            while time.perf_counter() < deadline and not all(a.done for a in board.arcs):
                for records in (await consumer.getmany(timeout_ms=250)).values():
                    for record in records:
                        _on_department(board, record.topic, record.value, prefix)
                for gateway in list(silenced):
                    injection = next((i for i in sim.injections if i.scenario.gateway == gateway), None)
                    if injection is not None and time.time() >= injection.start_ts:
                        procs.stop(gateway)  # the silent-gateway scenario: its agent really goes quiet
                        silenced.discard(gateway)
                live.update(_view(board, "reflex arcs"))
    finally:
        stop.set()
        await sim_task
        await consumer.stop()
        local.loop_stop()
        local.disconnect()
        publisher.close()
    return _summary(board, console)


def _on_department(board: Board, topic: str, value: bytes | None, prefix: str) -> None:
    if value is None:
        return
    try:
        alert = Alert.from_json(value)
    except SchemaError:
        return
    now = time.perf_counter()
    with board.lock:
        board.alerts_seen += 1
        arc = board.match(alert)
        if arc is not None and arc.department_at is None:
            arc.department_at = now
            arc.alert_id = alert.id
            arc.departments = alert.departments
            arc.sensor_at = arc.sensor_at or board.sensor_time(alert)


def _summary(board: Board, console: Console) -> int:
    missing = [a for a in board.arcs if not a.done]
    table = Table(title="summary")
    for column in ("tier", "alerts expected", "received", "sensor → department p50", "p99"):
        table.add_column(column)
    for tier in ("edge", "brain"):
        arcs = [a for a in board.arcs if a.tier == tier]
        lat = sorted(
            (a.department_at - a.sensor_at) * 1e3
            for a in arcs
            if a.department_at is not None and a.sensor_at is not None
        )
        p50 = f"{statistics.median(lat):.1f} ms" if lat else "—"
        p99 = f"{lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]:.1f} ms" if lat else "—"
        table.add_row(tier, str(len(arcs)), str(sum(a.done for a in arcs)), p50, p99)
    console.print(table)
    scenarios = sorted({a.scenario for a in board.arcs})
    console.print(
        f"scenarios injected: {len(scenarios)} ({', '.join(scenarios)}); events published: {board.events_sent}"
    )
    for arc in missing:
        console.print(f"[red]missing:[/] {arc.reflex} ({arc.tier}) for {arc.group} from {arc.scenario}")
    console.print(
        "[green]every expected alert arrived[/]"
        if not missing
        else f"[red]{len(missing)} expected alert(s) missing[/]"
    )
    return 0 if not missing else 1
