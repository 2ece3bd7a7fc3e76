"""Health of an edge agent: Prometheus metrics (one registry per agent) and structured JSON logs."""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily, Metric

REFLEX_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class EdgeMetrics:
    """The agent's counters and gauges; `serve(port)` exposes them in Prometheus text format."""

    def __init__(self, gateway: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("nerve_edge_events_in", "Events accepted from MQTT", registry=r)
        self.events_out = Counter(
            "nerve_edge_events_out", "Records delivered to Kafka", ["priority"], registry=r
        )
        self.duplicates = Counter(
            "nerve_edge_duplicates", "Events dropped as already seen (by id)", registry=r
        )
        self.dead_lettered = Counter(
            "nerve_edge_dead_lettered", "Inputs rejected to the dead letters", registry=r
        )
        self.spooled = Counter("nerve_edge_spooled", "Records written to the disk spool", registry=r)
        self.spool_bytes = Gauge("nerve_edge_spool_bytes", "Payload bytes waiting in the spool", registry=r)
        self.spool_records = Gauge(
            "nerve_edge_spool_records", "Records waiting in the spool", ["priority"], registry=r
        )
        self.spool_dropped = Gauge(
            "nerve_edge_spool_dropped_telemetry", "Telemetry dropped when full", registry=r
        )
        self.uplink_dropped = Counter(
            "nerve_edge_uplink_dropped",
            "Spooled records Kafka will never take, dropped: a topic this gateway may not write (refused) "
            "or a department's copy whose topic does not exist (no_topic)",
            ["reason"],
            registry=r,
        )
        self.alerts = Counter("nerve_edge_alerts", "Alerts raised by edge reflexes", ["status"], registry=r)
        self.commands = Counter("nerve_edge_commands", "Commands actuated over MQTT", ["origin"], registry=r)
        self.commands_ignored = Counter(
            "nerve_edge_commands_ignored",
            "Commands not actuated: a repeat of one carried out (by id), or the brain's for a site outside",
            ["reason"],
            registry=r,
        )
        self.late = Gauge(
            "nerve_edge_late_events", "Events older than the watermark (not applied)", registry=r
        )
        self.engine_groups = Gauge(
            "nerve_edge_engine_groups", "Groups the edge reflexes keep state for", registry=r
        )
        self.engine_readings = Gauge(
            "nerve_edge_engine_readings",
            "Readings held in the reflex engine's windows (its memory grows by ~20 bytes with each)",
            registry=r,
        )
        self.kafka_connected = Gauge(
            "nerve_edge_kafka_connected", "1 while the uplink reaches Kafka", registry=r
        )
        self.mqtt_connected = Gauge("nerve_edge_mqtt_connected", "1 while connected to MQTT", registry=r)
        self.reflex_seconds = LoopHistogram(
            "nerve_edge_reflex_seconds",
            "Time from a message's receipt off the MQTT socket to the engine's decision (time in the inbox included)",
            REFLEX_BUCKETS,
            registry=r,
        )
        self.address: tuple[str, int] | None = None
        self._server: Any = None
        """Where /metrics listens, once served."""
        info = Gauge("nerve_edge_info", "Constant 1, labelled with the gateway id", ["gateway"], registry=r)
        info.labels(gateway=gateway).set(1)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint on `host`; returns the bound port (useful with port 0)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        self.address = (str(server.server_address[0]), int(server.server_port))
        return self.address[1]

    def close(self) -> None:
        """Stop the /metrics endpoint, if it was started."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class LoopHistogram:
    """A Prometheus histogram observed from the agent's event loop only: a bisect and two additions per
    observation, no lock (prometheus_client's Histogram takes a lock per bucket and for the sum, about a
    tenth of the agent's own work per event). Exposed like any histogram (`_bucket`, `_sum`, `_count`)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry):
        self.name, self.documentation = name, documentation
        self._bounds = sorted(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        registry.register(self)  # a collector is anything with collect()

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterable[Metric]:
        counts, total = list(self._counts), self._sum  # a copy: the loop may observe meanwhile
        cumulative, buckets = 0, []
        for bound, n in zip(self._bounds, counts, strict=False):
            cumulative += n
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + counts[-1]))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, sum_value=total)
        return [family]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and any `extra={...}` fields."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(level: str = "INFO", json_logs: bool = True) -> None:
    """Route the root logger to stderr, as JSON lines unless `json_logs` is false."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
