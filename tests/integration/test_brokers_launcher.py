"""scripts/brokers.sh is idempotent and never touches a broker it did not start."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LAUNCHER = Path(__file__).resolve().parents[2] / "scripts" / "brokers.sh"


def launcher(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(LAUNCHER), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def launcher_env(kafka_bootstrap: str, mqtt_address: tuple[str, int]) -> dict[str, str]:
    """The environment that points the launcher at the brokers these tests use."""
    env = dict(os.environ)
    env["NERVE_KAFKA_PORT"] = kafka_bootstrap.split(",")[0].rsplit(":", 1)[1]
    env["NERVE_MQTT_PORT"] = str(mqtt_address[1])
    return env


@pytest.fixture
def foreign_listener() -> Iterator[int]:
    """A port held by a process the launcher did not start (this test process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def pids(status_output: str) -> dict[str, str]:
    """broker name → pid from the lines of `brokers.sh status`."""
    found = {}
    for line in status_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "up" and fields[2] == "pid":
            found[fields[0]] = fields[3]
    return found


def test_status_is_up_and_second_start_says_already_running(launcher_env: dict[str, str]) -> None:
    before = launcher("status", env=launcher_env)
    assert before.returncode == 0, before.stdout + before.stderr
    assert set(pids(before.stdout)) == {"kafka", "mqtt"}, before.stdout

    again = launcher("start", env=launcher_env)

    assert again.returncode == 0, again.stdout + again.stderr
    assert "kafka already running" in again.stdout
    assert "mqtt already running" in again.stdout
    after = launcher("status", env=launcher_env)
    assert pids(after.stdout) == pids(before.stdout), "a second start must not restart anything"


def test_start_refuses_a_port_held_by_another_process(foreign_listener: int, tmp_path: Path) -> None:
    env = dict(os.environ, NERVE_VAR=str(tmp_path), NERVE_MQTT_PORT=str(foreign_listener))

    result = launcher("start", "mqtt", env=env)

    assert result.returncode == 1
    assert f"port {foreign_listener}" in result.stderr
    assert "did not start" in result.stderr
    assert not (tmp_path / "brokers" / "mosquitto" / "mosquitto.pid").exists()


def test_stop_and_status_leave_brokers_of_another_state_dir_alone(
    launcher_env: dict[str, str], tmp_path: Path
) -> None:
    # Same ports, but a state dir without pid files: these brokers were not started from here.
    foreign = dict(launcher_env, NERVE_VAR=str(tmp_path))

    status = launcher("status", env=foreign)
    stop = launcher("stop", env=foreign)

    assert status.returncode == 3, status.stdout
    assert "not a broker this launcher started" in status.stdout
    assert stop.returncode == 0, stop.stderr
    assert "left alone" in stop.stdout
    still = launcher("status", env=launcher_env)
    assert still.returncode == 0, still.stdout


def test_status_warns_of_a_large_mosquitto_persistence_file(tmp_path: Path) -> None:
    data = tmp_path / "brokers" / "mosquitto" / "data"
    data.mkdir(parents=True)
    env = dict(os.environ, NERVE_VAR=str(tmp_path))

    (data / "mosquitto.db").write_bytes(b"\0" * 1000)
    small = launcher("status", "mqtt", env=env)
    (data / "mosquitto.db").write_bytes(b"\0" * 3_000_000)
    large = launcher("status", "mqtt", env=env)

    assert "persistence file" not in small.stdout, small.stdout
    assert f"persistence file {data / 'mosquitto.db'} is 3 MB" in large.stdout, large.stdout
    assert "delivers nothing meanwhile" in large.stdout
