"""Durations of the reflex language: a number and a unit (`500ms`, `30s`, `5m`, `2h`, `1d`)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d{1,9}(?:\.\d{1,6})?)\s*(ms|s|m|h|d)\s*$")

#: The longest duration a rule may use (window, for, cooldown, timers): bounds state kept per group.
MAX_DURATION_S = 7 * 86400.0


def parse_duration(text: object) -> float:
    """Seconds in a duration string; raises ValueError naming the problem."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"a duration is a number and a unit such as '30s' or '5m', got {text!r}")
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a duration: use a number and one of ms, s, m, h, d (e.g. '30s')")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration '{text}' must be greater than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration '{text}' is longer than the 7d limit")
    return seconds
