"""`nerve demo` end to end on the real brokers, shortened to one edge and one brain scenario.

The demo starts a brain worker and six edge agents as its children. It runs in its own process group, so
whatever happens (a timeout included) the test can stop every process it started, and checks that none
is left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: seconds: worker start (≤ 90 s on a loaded machine), the fire (20 s) and gas-cluster (50 s) scenarios
TIMEOUT_S = 300


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(pgid: int) -> None:
    """SIGTERM the demo's process group (it stops its children), then SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, 40.0), (signal.SIGKILL, 10.0)):
        if not _group_alive(pgid):
            return
        os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the group to be gone, bounded by the deadline


def test_a_short_demo_receives_every_expected_alert(
    tmp_path: Path, kafka_bootstrap: str, mqtt_address: tuple[str, int]
) -> None:
    host, port = mqtt_address
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nerve_cli",
                "demo",
                "--kafka",
                kafka_bootstrap,
                "--mqtt",
                f"{host}:{port}",
                "--only",
                "fire,gas-leak-cluster",
            ],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ | {"COLUMNS": "160", "TERM": "dumb"},
        )
    pgid = proc.pid
    try:
        code = proc.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _stop_group(pgid)
    text = out.read_text(errors="replace")
    assert code == 0, f"nerve demo exited with {code}:\n{text[-4000:]}"
    assert "every expected alert arrived" in text
    assert re.search(r"scenarios injected: 2 \(fire, gas-leak-cluster\)", text), text[-2000:]
    rows = {
        m[1]: (int(m[2]), int(m[3]))
        for m in re.finditer(r"│\s*(edge|brain)\s*│\s*(\d+)\s*│\s*(\d+)\s*│", text)
    }
    assert rows["brain"][0] >= 1 and rows["edge"][0] >= 1, rows
    assert all(expected == received for expected, received in rows.values()), rows
    assert not _group_alive(pgid), "the demo left processes behind"
