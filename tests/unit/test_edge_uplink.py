"""The uplink's Kafka producer settings, without a broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import get_args

import pytest

from edge_agent.config import KafkaSettings
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink

COMPRESSIONS = get_args(KafkaSettings.model_fields["compression"].annotation)


@pytest.mark.parametrize("compression", COMPRESSIONS)
async def test_every_compression_the_config_accepts_makes_a_producer(
    tmp_path: Path, compression: str
) -> None:
    """`kafka.compression: none` passed the config and then crashed the uplink at every start (aiokafka
    takes None, not "none"): each accepted value must reach a connection attempt (here to a port where
    nothing listens) and the retry loop, not raise."""
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    attempts: list[bool] = []
    failed_once = asyncio.Event()

    def connected(up: bool) -> None:
        attempts.append(up)
        failed_once.set()

    uplink = Uplink(
        spool, bootstrap="127.0.0.1:2", client_id="t", compression=compression, on_connected=connected
    )
    stop = asyncio.Event()
    try:
        connecting = asyncio.create_task(uplink._connect(stop))
        waiting = asyncio.create_task(failed_once.wait())
        await asyncio.wait([connecting, waiting], timeout=20, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert not connecting.done(), f"the uplink stopped: {connecting.exception()!r}"
        assert attempts == [False]  # unreachable, reported, and retrying
        stop.set()
        assert await asyncio.wait_for(connecting, 10) is None
    finally:
        spool.close()
