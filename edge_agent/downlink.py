"""The efferent path into a building: Commands for this gateway's site, consumed from `nerve.commands`.

Every gateway reads the command topic in its own consumer group and keeps only the commands whose site lies
inside its own; commands are idempotent by id (see `CommandLedger`). At 10,000 gateways the fan-out of one
shared topic is the cost to watch — see the README's "Scaling the downlink".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from schemas import Command, SchemaError

log = logging.getLogger("nerve.edge.downlink")
CONSUMER_STOP_S = 3.0  # at shutdown, the most the command consumer may take to leave its group and close


class CommandLedger:
    """The ids of the last `size` commands carried out, so that a redelivered command is not actuated twice."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, command_id: str) -> bool:
        """True (and remembered) the first time an id is seen."""
        if command_id in self._ids:
            return False
        self._ids[command_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


def within(site: str, scope: str) -> bool:
    """True when `site` is `scope` or lies below it in the site path."""
    return site == scope or site.startswith(scope + "/")


class Downlink:
    """Consume commands for `scope` and hand each to `actuate` (with reconnects while Kafka is down)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        scope: str,
        actuate: Callable[[Command], None],
        security: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap, self.topic, self.group, self.scope = bootstrap, topic, group, scope
        self.security = security or {}
        self.actuate = actuate
        self.received = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                auto_offset_reset="latest",  # a gateway that was away does not replay stale commands on first start
                enable_auto_commit=True,
                **self.security,
            )
            try:
                await consumer.start()
                delay = 0.2
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=250)
                    for messages in batches.values():
                        for msg in messages:
                            self._handle(msg.value)
            except (KafkaError, OSError) as e:
                log.warning(
                    "command consumer lost kafka; retrying", extra={"error": repr(e), "retry_in_s": delay}
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
            finally:
                await self._stop_consumer(consumer, stop.is_set())

    @staticmethod
    async def _stop_consumer(consumer: AIOKafkaConsumer, shutting_down: bool) -> None:
        if not shutting_down:
            await consumer.stop()
            return
        # Its last offset commit retries for as long as the group coordinator is unsettled: after a restart
        # of Kafka that was 15 s and more, and the agent's shutdown waited for it. A commit lost here only
        # delivers a few commands again after the restart, and commands are idempotent by id.
        try:
            await asyncio.wait_for(consumer.stop(), CONSUMER_STOP_S)
        except TimeoutError:
            log.warning(
                "command consumer did not stop in time; its last offsets may be uncommitted",
                extra={"timeout_s": CONSUMER_STOP_S},
            )

    def _handle(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            command = Command.from_json(raw)
        except SchemaError as e:
            log.warning("malformed command ignored", extra={"error": str(e)})
            return
        if within(command.site, self.scope):
            self.received += 1
            self.actuate(command)
