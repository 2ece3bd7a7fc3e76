"""The agent's malloc settings (edge_agent.memory): glibc is the C library of our gateways and CI."""

from __future__ import annotations

import platform
import sys

import pytest

from edge_agent.memory import tune_malloc

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


@glibc
def test_glibc_takes_the_settings() -> None:
    assert tune_malloc(2) is True
