"""What aiokafka may hand to Faust: brain_bridge.faust_fixes._Deliverable (the race itself needs the real
brokers: tests/integration/test_brain.py::test_a_killed_worker_loses_no_alert)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from brain_bridge.faust_fixes import _Deliverable

A, B = TP("t", 0), TP("t", 1)


def test_an_empty_active_set_means_no_partition_not_all_of_them() -> None:
    # aiokafka's fetched_records reads a falsy set as "every partition": the cause of the lost changelog
    consumer = SimpleNamespace(flow_active=True)
    active: set[TP] = set()
    deliverable = _Deliverable(consumer, active)
    assert bool(deliverable) and A not in deliverable


def test_only_active_partitions_and_only_while_the_flow_runs() -> None:
    consumer = SimpleNamespace(flow_active=True)
    active = {A}
    deliverable = _Deliverable(consumer, active)
    assert A in deliverable and B not in deliverable
    active.add(B)  # the live set: a resume is seen at once
    assert B in deliverable
    consumer.flow_active = False  # a rebalance stopped the flow: nothing is taken from aiokafka
    assert A not in deliverable and B not in deliverable
