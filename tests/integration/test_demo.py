"""A short `nerve demo` on the real brokers: it exits 0 only when every expected alert arrived."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_short_demo_receives_every_expected_alert(
    kafka_bootstrap: str, mqtt_address: tuple[str, int]
) -> None:
    host, port = mqtt_address
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nerve_cli",
            "demo",
            "--only",
            "fire,power-outage",
            "--kafka",
            kafka_bootstrap,
            "--mqtt",
            f"{host}:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=420,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every expected alert arrived" in done.stdout
    assert "room-fire" in done.stdout
    assert "community-power-outage" in done.stdout or "communit" in done.stdout
