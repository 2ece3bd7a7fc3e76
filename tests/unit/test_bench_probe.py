"""bench.edge's Probe: CPU shares over a phase shorter than its sampling period (a busy agent answers
/metrics slowly, so a short phase may hold one sample or none) come from the samples around it."""

from __future__ import annotations

from typing import Any, cast

from bench.edge import Probe, Sample


def probe_with(samples: list[tuple[float, float]]) -> Probe:
    """A probe (never started) holding agent samples (wall, CPU seconds) of one process, pid 7."""
    probe = Probe(cast(Any, None), period_s=0.2)
    probe.samples = [Sample(wall, {}, None, {"agent": (7, cpu)}) for wall, cpu in samples]
    return probe


def test_phase_with_no_sample_inside_takes_the_bracketing_ones() -> None:
    probe = probe_with([(10.0, 1.0), (11.0, 1.5), (14.0, 4.5), (15.0, 5.0)])
    assert probe.cores(12.0, 13.0)["agent"] == 1.0  # (4.5 − 1.5) CPU-s over 3 s between 11 and 14


def test_phase_with_samples_inside_uses_only_those() -> None:
    probe = probe_with([(10.0, 0.0), (11.0, 0.5), (12.0, 1.0), (13.0, 3.0)])
    assert probe.cores(10.5, 12.5)["agent"] == 0.5


def test_phase_after_the_last_sample_has_no_share() -> None:
    probe = probe_with([(10.0, 0.0)])
    assert probe.cores(11.0, 12.0)["agent"] is None


def test_metrics_of_a_phase_come_from_the_scraped_samples_around_it() -> None:
    """/metrics is scraped on fewer samples than /proc is read: a phase between two scrapes still gets the
    agent's ingest rate from the scrapes that bracket it."""
    probe = Probe(cast(Any, None), period_s=0.2)
    probe.samples = [
        Sample(10.0, {"nerve_edge_events_in_total": 100.0}, None, {}),
        Sample(10.2, {}, None, {}),
        Sample(10.4, {}, None, {}),
        Sample(11.0, {"nerve_edge_events_in_total": 1100.0}, None, {}),
    ]
    assert probe.ingest(10.1, 10.5)["mean_per_s"] == 1000.0
