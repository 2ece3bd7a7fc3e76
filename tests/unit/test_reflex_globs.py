"""Site and sensor globs select the same events whatever their memo of earlier answers holds."""

from __future__ import annotations

import itertools
import re

import pytest

from reflexes import conditions
from tests.unit.reflex_kit import alerts, engine, ev, run

RULES = """
- id: floor-smoke
  tier: edge
  when: {kind: smoke, site: "*/c1/b?/f*/**", sensor: "smoke-*", value: "> 0.1"}
  then: [{alert: {to: [fire], severity: critical, message: "smoke at {site}"}}]
- id: floor-smoke-too
  tier: edge
  when: {kind: smoke, site: "*/c1/b?/f*/**", value: "> 0.5"}
  then: [{alert: {to: [fire], severity: critical, message: "smoke at {site}"}}]
"""
SITE = re.compile(r"[^/]+/c1/b[^/]/f[^/]*(/[^/]+)*")
SENSOR = re.compile(r"smoke-.*")


def test_a_glob_is_checked_once_per_site_for_every_condition_that_names_it() -> None:
    assert conditions._site_check("*/c1/b?/f*/**") is conditions._site_check("*/c1/b?/f*/**")
    assert conditions._site_check("*/c1/b?/f*/**") is not conditions._site_check("*/c1/b?/**")


@pytest.mark.parametrize("memo", [1, 3, conditions.GLOB_MEMO_MAX])
def test_globs_select_the_same_events_when_their_memo_overflows(
    memo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conditions, "GLOB_MEMO_MAX", memo)
    e = engine(RULES)
    sites = [
        "/".join(p)
        for p in itertools.product(("d1", "d2"), ("c1", "c2"), ("b1", "b22"), ("f1", "g1"), ("r1",))
    ]
    sensors = ("smoke-1", "heat-1", "smoke-2")
    t = 1000.0
    expected: list[tuple[str, str]] = []
    got: list[tuple[str, str]] = []
    for rounds in range(2):  # the second round is answered from the memo, where it still holds them
        for (n, site), name in itertools.product(enumerate(sites), sensors):
            sensor = f"{name}-{n}"  # a device id is unique within the city
            t += 100.0  # past every cooldown
            value = 0.3 if rounds == 0 else 0.7
            fired = run(e, ev("smoke", value, t, sensor=sensor, site=site))
            got.extend((a.reflex, a.site) for a in alerts(fired))
            if SITE.fullmatch(site) and SENSOR.fullmatch(sensor):
                expected.append(("floor-smoke", site))
            if SITE.fullmatch(site) and value > 0.5:
                expected.append(("floor-smoke-too", site))
    assert got == expected
    # 2 sites match; floor-smoke: 2 sensors in both rounds, floor-smoke-too: 3 sensors in the second
    assert len(expected) == 2 * 2 * 2 + 2 * 3
