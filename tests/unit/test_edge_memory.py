"""The agent's malloc settings (edge_agent.memory): glibc is the C library of our gateways and CI."""

from __future__ import annotations

from edge_agent.memory import is_glibc, tune_malloc


def test_glibc_takes_the_settings_and_other_c_libraries_are_left_alone() -> None:
    assert tune_malloc(2) is is_glibc()
