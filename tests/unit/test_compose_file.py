"""docker/docker-compose.yml is a valid compose file for one secured city (checked, not run: our machines
have Docker's client but no engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "docker-compose.yml"


def compose_command() -> list[str]:
    """`docker compose` when the plugin answers, else `docker-compose`; fails the test when neither exists."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    pytest.fail(
        "neither `docker compose` (the Compose plugin) nor `docker-compose` is installed: install one "
        "(Debian: apt-get install docker-compose) to check docker/docker-compose.yml",
        pytrace=False,
    )


def resolved() -> dict[str, Any]:
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"compose config failed:\n{result.stderr}"
    data: dict[str, Any] = YAML(typ="safe", pure=True).load(result.stdout)
    return data


def test_compose_config_passes_and_describes_one_secured_city() -> None:
    services: dict[str, Any] = resolved()["services"]
    assert {"kafka-1", "kafka-2", "kafka-3", "mosquitto", "brain-1", "brain-2", "simulator"} <= set(services)
    assert len([s for s in services if s.startswith("edge-")]) == 2
    for name, service in services.items():
        if name != "secure-provision":
            assert service.get("restart") == "unless-stopped", f"{name}: no restart policy"
        if name not in ("simulator", "secure-provision"):
            assert "healthcheck" in service, f"{name}: no health check"
    volumes = {name: [str(v) for v in s.get("volumes", [])] for name, s in services.items()}
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        assert any("/var/lib/kafka/data" in v for v in volumes[name]), f"{name}: Kafka data not on a volume"
    for name in ("brain-1", "brain-2"):
        assert any("/var/lib/nerve/brain" in v for v in volumes[name]), f"{name}: tables not on a volume"
    for name in ("edge-yuelu-c1-b1", "edge-yuelu-c1-b2"):
        assert any("/var/lib/nerve/spool" in v for v in volumes[name]), f"{name}: spool not on a volume"
    provision = " ".join(services["secure-provision"]["command"])
    assert "--replication=3" in provision


def test_kafka_cluster_replicates_three_ways_with_two_in_sync() -> None:
    text = (REPO / "docker" / "kafka" / "server.compose.properties").read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#") and "=" in line
    )
    assert settings["process.roles"] == "broker,controller"
    assert settings["controller.quorum.voters"].count("@") == 3
    assert settings["default.replication.factor"] == "3"
    assert settings["min.insync.replicas"] == "2"
    assert settings["allow.everyone.if.no.acl.found"] == "false"


def test_the_image_is_multi_stage_pinned_and_not_root() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert text.count("\nFROM ") >= 2
    assert "ARG PYTHON_IMAGE=python:3.11.11-" in text  # a patch release, not a moving tag
    assert "\nUSER nerve" in text
