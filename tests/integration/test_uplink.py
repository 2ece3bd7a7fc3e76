"""The uplink on the real Kafka: a spool that fails to remove what Kafka took does not stop it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import uplink as uplink_module
from edge_agent.spool import Priority, Spool, SpoolId, SpoolRecord, SpoolWriteError
from edge_agent.uplink import Uplink
from tests.integration.conftest import NewTopicFactory
from tests.integration.edge_kit import run_uplink_until


async def test_a_failing_spool_remove_is_retried_and_stops_nothing(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full or failing disk at remove: the records Kafka took stay spooled and go again after a pause
    (ids make the repeats harmless) until the remove holds; the uplink runs on."""
    topic = await new_topic("uplink-remove", 1)
    monkeypatch.setattr(uplink_module, "REMOVE_RETRY_S", (0.05, 0.2))
    delivered: list[int] = []
    with Spool(tmp_path / "spool", max_bytes=1 << 20) as spool:
        spool.append([SpoolRecord(Priority.TELEMETRY, topic, b"k", b'{"n":%d}' % n) for n in range(3)])
        remove = spool.remove
        failures = [SpoolWriteError("disk full")] * 2

        def flaky(ids: list[SpoolId]) -> None:
            if failures:
                raise failures.pop()
            remove(ids)

        monkeypatch.setattr(spool, "remove", flaky)
        uplink = Uplink(
            spool,
            bootstrap=kafka_bootstrap,
            client_id="remove-test",
            on_delivered=lambda p, n: delivered.append(n),
        )
        await run_uplink_until(uplink, lambda: not spool.stats().telemetry, "the records' removal", 30)
    assert not failures and delivered == [3]  # counted once, when the remove held
