"""The agent's lock-free reflex latency histogram exposes what prometheus_client's own Histogram would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from edge_agent.telemetry import REFLEX_BUCKETS, LoopHistogram


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]


def test_the_loop_histogram_exposes_the_same_buckets_count_and_sum_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = LoopHistogram("nerve_edge_reflex_seconds", "doc", REFLEX_BUCKETS, registry=ours)
    reference = Histogram("nerve_edge_reflex_seconds", "doc", buckets=REFLEX_BUCKETS, registry=theirs)
    rng = random.Random(7)
    values = [rng.lognormvariate(-7, 2) for _ in range(5000)] + list(REFLEX_BUCKETS) + [0.0, 5.0]
    for value in values:  # bucket bounds themselves included: `le` is "less than or equal"
        fast.observe(value)
        reference.observe(value)
    ours_lines = exposition(ours)
    theirs_lines = [line for line in exposition(theirs) if "_created" not in line]

    def counts(lines: list[str]) -> list[str]:
        return sorted(line for line in lines if "_sum" not in line)

    def total(lines: list[str]) -> float:
        (value,) = (float(line.split()[-1]) for line in lines if "_sum" in line)
        return value

    assert len(counts(ours_lines)) == len(REFLEX_BUCKETS) + 2  # the buckets, +Inf and the count
    assert counts(ours_lines) == counts(theirs_lines)
    assert abs(total(ours_lines) - total(theirs_lines)) <= 1e-9 * total(theirs_lines)


def test_metrics_listen_on_the_configured_address() -> None:
    """127.0.0.1 by default; `metrics_host: 0.0.0.0` for a Prometheus on another host or outside a container."""
    from urllib.error import URLError
    from urllib.request import urlopen

    from edge_agent.telemetry import EdgeMetrics

    for host in ("127.0.0.1", "0.0.0.0"):
        metrics = EdgeMetrics("gw-test")
        port = metrics.serve(0, host)
        try:
            assert metrics.address == (host, port)
            with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                assert b'nerve_edge_info{gateway="gw-test"} 1.0' in reply.read()
        finally:
            metrics.close()
        with pytest.raises(URLError):  # closed: the port no longer answers
            urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
