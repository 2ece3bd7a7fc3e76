"""The efferent path into a building: Commands for this gateway's site, consumed from `nerve.commands`.

Every gateway reads the command topic in its own consumer group and keeps only the commands whose site lies
inside its own; commands are idempotent by id (see `CommandLedger`). At 10,000 gateways the fan-out of one
shared topic is the cost to watch — see the README's "Scaling the downlink".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from edge_agent.spool import LedgerEntry
from schemas import Command, SchemaError

log = logging.getLogger("nerve.edge.downlink")
# The most the command consumer may take to commit a batch, or to leave its group and close.
CONSUMER_STOP_S = 3.0
# How long a batch of commands may be held back with the consumer staying in its group. Settling waits for
# the local broker to take the batch's commands, for as long as Mosquitto is away; with aiokafka's default
# `max_poll_interval_ms` (5 min) the consumer left its group meanwhile and joined again after the commit.
# Nothing was lost or repeated (the group is empty then, so Kafka takes the commit), but each outage cost
# a rebalance; a gateway's consumer is alone in its group, and no other member would take over anyway.
HOLD_MAX_MS = 24 * 3600 * 1000


class CommandLedger:
    """The ids of the last `size` commands carried out, so that a redelivered command is not actuated twice.

    It outlives the agent in the spool: `restored` are the spool's entries. An id counts as carried out in
    this process from `first_time` on; it is stored once the local broker has taken the command
    (`delivered`: from then on the broker delivers it whatever happens to the agent), by the next spool
    write, which takes it from `take()`. Entry n goes to slot n % `size`, so the stored ledger holds the
    last `size` ids too. A command is carried out at least once, never lost: one the agent crashed
    before delivering is carried out again when its input comes again, and one delivered just before a
    crash, before its id was stored, may be too."""

    def __init__(self, size: int = 10_000, restored: Iterable[tuple[int, str]] = ()) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._next = 0
        for number, command_id in sorted(restored)[-size:]:
            self._ids[command_id] = None
            self._ids.move_to_end(command_id)
            self._next = number + 1
        self._unstored: deque[LedgerEntry] = deque(maxlen=size)  # the newest `size`: all the ring keeps
        self._writing: set[int] = set()  # numbers of the entries taken by writes not yet done

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def unstored(self) -> int:
        """How many entries wait to be taken by a write."""
        return len(self._unstored)

    @property
    def numbered(self) -> int:
        """How many entries have been numbered: every id delivered so far has a number below it."""
        return self._next

    def first_time(self, command_id: str) -> bool:
        """True (and remembered) the first time an id is seen."""
        if command_id in self._ids:
            return False
        self._ids[command_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def forget(self, command_id: str) -> None:
        """The command `command_id` was not carried out after all: a repeat of it is a first time."""
        self._ids.pop(command_id, None)

    def delivered(self, command_id: str) -> None:
        """The broker has taken the command `command_id`: its id is to be stored."""
        self._unstored.append((self._next % self.size, self._next, command_id))
        self._next += 1

    def take(self) -> list[LedgerEntry]:
        """The entries not yet stored, oldest first; the caller stores them, then says so (`stored`), or
        `give_back`s them."""
        entries = list(self._unstored)
        self._unstored.clear()
        self._writing.update(number for _, number, _ in entries)
        return entries

    def stored(self, entries: list[LedgerEntry]) -> None:
        """Entries taken by a write that has succeeded."""
        self._writing.difference_update(number for _, number, _ in entries)

    def give_back(self, entries: list[LedgerEntry]) -> None:
        """Entries whose write failed, to be stored with the next ones (the newest `size` are kept)."""
        self._writing.difference_update(number for _, number, _ in entries)
        self._unstored = deque([*entries, *self._unstored], maxlen=self.size)

    def stored_below(self, number: int) -> bool:
        """Whether every entry numbered below `number` has been stored (or left the ring)."""
        return all(n >= number for _, n, _ in self._unstored) and all(n >= number for n in self._writing)


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
        settle: Callable[[], Awaitable[bool]] | None = None,
        outside: Callable[[Command], None] | None = None,
        security: dict[str, Any] | None = None,
        hold_max_ms: int = HOLD_MAX_MS,
    ) -> None:
        """`actuate` carries out a command of `scope`; `outside` hears of the others. `settle`, awaited after
        each batch, makes what the batch's commands did durable (the agent waits for the broker to take
        them and stores its command ledger): only when it says so are the batch's offsets committed. While
        a batch is held back longer than `hold_max_ms`, the consumer leaves its group (and joins again)."""
        self.bootstrap, self.topic, self.group, self.scope = bootstrap, topic, group, scope
        self.hold_max_ms = hold_max_ms
        self.security = security or {}
        self.actuate = actuate
        self.settle = settle
        self.outside = outside
        self.received = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                auto_offset_reset="latest",  # a gateway that was away does not replay stale commands on first start
                # Committed after each batch is carried out, not by a timer: a stop then has nothing left to
                # commit (its last auto-commit retried for as long as the group coordinator was unsettled,
                # 15 s and more after a Kafka restart), and a restart delivers again only a batch whose
                # commit failed or was held back (and the ledger of carried-out ids, stored by `settle`,
                # keeps that from actuating them twice).
                enable_auto_commit=False,
                max_poll_interval_ms=self.hold_max_ms,
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
                    if batches and (self.settle is None or await self.settle()):
                        await self._commit(consumer)
            except (KafkaError, OSError) as e:
                log.warning(
                    "command consumer lost kafka; retrying", extra={"error": repr(e), "retry_in_s": delay}
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
            finally:
                await self._stop_consumer(consumer)

    @staticmethod
    async def _commit(consumer: AIOKafkaConsumer) -> None:
        try:
            await asyncio.wait_for(consumer.commit(), CONSUMER_STOP_S)
        except (TimeoutError, KafkaError) as e:  # the next batch's commit covers this one's offsets too
            log.warning("command offsets not committed", extra={"error": repr(e)})

    @staticmethod
    async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
        """Leave the group and close, within CONSUMER_STOP_S: neither a shutdown nor a reconnect waits longer
        for a coordinator that does not answer."""
        try:
            await asyncio.wait_for(consumer.stop(), CONSUMER_STOP_S)
        except TimeoutError:
            log.warning("command consumer did not stop in time", extra={"timeout_s": CONSUMER_STOP_S})

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
        elif self.outside is not None:
            self.outside(command)
