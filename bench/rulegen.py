"""Generated rule sets for the benchmarks: a realistic mix of every pattern type over the synthetic city.

`generate_rules(n)` writes YAML text (conditions and actions as JSON flow mappings, which YAML reads
natively), so the benchmark also exercises the loader. Thresholds sit between the city's normal and
incident readings (a few inside the normal range: noisy rules), sites are scoped with globs such as
`d1/c3/**`, and windows and durations range from seconds to minutes.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from bench.city import BUILDINGS, COMMUNITIES, DISTRICTS

# kind → (normal low, normal high, incident low, incident high); water_pressure is bad when low
NUMERIC: dict[str, tuple[float, float, float, float]] = {
    "smoke": (0.0, 0.03, 0.2, 0.9),
    "temperature": (19.0, 26.0, 60.0, 85.0),
    "gas": (0.0, 3.0, 12.0, 40.0),
    "co": (0.0, 9.0, 40.0, 120.0),
    "pm25": (15.0, 60.0, 90.0, 180.0),
    "water_level": (0.0, 3.0, 5.0, 40.0),
    "water_pressure": (1.5, 2.5, 4.0, 4.6),
    "people_in": (0.0, 5.0, 20.0, 40.0),
}
NUMERIC_WEIGHTS = {
    "smoke": 4,
    "temperature": 5,
    "gas": 2,
    "co": 1,
    "pm25": 1,
    "water_level": 2,
    "water_pressure": 1,
    "people_in": 1,
}
CATEGORICAL: dict[str, dict[str, Any]] = {
    "door": {"value": "== 'open'"},
    "elevator": {"value": "== 'stuck'"},
    "badge": {"value": "== 'denied'"},
    "power": {"in": [False, 0]},
    "motion": {"value": "== true"},
}
PATTERNS = {  # pattern → share of the rule set, in %
    "single": 25,
    "for": 10,
    "all": 10,
    "sequence": 5,
    "count": 12,
    "aggregate": 13,
    "change": 8,
    "absent": 5,
    "distinct": 7,
    "window_categorical": 5,
}
LEVELS = ("district", "community", "building", "floor", "room")
DEPARTMENTS = ("fire", "police", "health", "utilities", "building", "transport", "environment", "emergency")
SEVERITIES = ("info", "warning", "critical", "emergency")
ACTUATORS = (("gas_valve", "close"), ("ventilation", "start"), ("camera", "record"), ("sump_pump", "start"))


class _Gen:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def dur(self, lo: int, hi: int) -> str:
        s = self.rng.randint(lo, hi)
        return f"{round(s / 60)}m" if s >= 120 else f"{s}s"

    def site(self) -> dict[str, str]:
        r, rng = self.rng.random(), self.rng
        d, c, b = rng.randint(1, DISTRICTS), rng.randint(1, COMMUNITIES), rng.randint(1, BUILDINGS)
        if r < 0.2:
            return {}
        if r < 0.5:
            return {"site": f"d{d}/**"}
        if r < 0.8:
            return {"site": f"d{d}/c{c}/**"}
        if r < 0.9:
            return {"site": f"d{d}/c{c}/b{b}/**"}
        return {"site": "*/*/*/f*/**"}

    def numeric_kind(self) -> str:
        return self.rng.choices(list(NUMERIC_WEIGHTS), weights=list(NUMERIC_WEIGHTS.values()))[0]

    def threshold(self, kind: str) -> float:
        nl, nh, il, _ = NUMERIC[kind]
        if self.rng.random() < 0.1:  # a noisy rule: its threshold lies inside the normal range
            return round(nl + (nh - nl) * self.rng.uniform(0.5, 0.95), 3)
        return round(nh + (il - nh) * self.rng.uniform(0.1, 0.9), 3)

    def numeric(
        self, kind: str | None = None, *, predicate: bool = True, site: dict[str, str] | None = None
    ) -> dict[str, Any]:
        kind = kind or self.numeric_kind()
        cond: dict[str, Any] = {"kind": kind, **(self.site() if site is None else site)}
        if kind == "temperature" and self.rng.random() < 0.1:
            cond["tags"] = {"appliance": "freezer"}
        if kind == "water_level" and self.rng.random() < 0.3:
            cond["tags"] = {"gauge": self.rng.choice(["floor", "underpass", "river"])}
        if not predicate:
            return cond
        th, r = self.threshold(kind), self.rng.random()
        op = "<" if kind == "water_pressure" else ">"
        if r < 0.7:
            cond["value"] = f"{op} {th}"
        elif r < 0.85:
            hi = NUMERIC[kind][3] * 2
            cond["between"] = [min(th, hi), hi] if op == ">" else [0, th]
        else:
            cond["where"] = f"value {op} {th} and kind == '{kind}'"
        return cond

    def categorical(self, kind: str | None = None, site: dict[str, str] | None = None) -> dict[str, Any]:
        kind = kind or self.rng.choice(list(CATEGORICAL))
        return {"kind": kind, **(self.site() if site is None else site), **CATEGORICAL[kind]}

    def per(self, *choices: str) -> dict[str, str]:
        p = self.rng.choice(choices)
        return {} if p == "sensor" else {"per": p}

    def pattern(self, name: str) -> dict[str, Any]:
        """The reflex fields other than id, tier and then."""
        rng, dur = self.rng, self.dur
        if name == "single":
            cond = self.numeric() if rng.random() < 0.7 else self.categorical()
            return {"when": cond, **self.per("sensor", "room", "building")}
        if name == "for":
            cond = (
                self.numeric() if rng.random() < 0.7 else self.categorical(rng.choice(["door", "elevator"]))
            )
            return {"when": {**cond, "for": dur(5, 120)}, **self.per("sensor", "sensor", "room")}
        if name in ("all", "sequence"):
            combos = (
                [("smoke", "temperature"), ("gas", "co"), ("smoke", "co"), ("smoke", "temperature", "gas")]
                if name == "all"
                else [("badge", "door"), ("smoke", "temperature"), ("gas", "smoke")]
            )
            site = self.site()
            conds = [
                self.numeric(k, site=site) if k in NUMERIC else self.categorical(k, site)
                for k in rng.choice(combos)
            ]
            return {
                "when": {name: conds},
                "within": dur(10, 180),
                **self.per("room", "room", "floor", "building"),
            }
        if name == "count":
            return {
                "when": {**self.numeric(), "count": f">= {rng.randint(2, 20)}"},
                "within": dur(10, 300),
                **self.per("sensor", "room", "building", "community"),
            }
        if name == "window_categorical":
            return {
                "when": {**self.categorical(), "count": f">= {rng.randint(2, 10)}"},
                "within": dur(10, 600),
                **self.per("room", "building", "community"),
            }
        if name == "aggregate":
            kind = self.numeric_kind()
            fn = "sum" if kind == "people_in" else rng.choice(["avg", "avg", "max", "min"])
            if fn == "sum":
                test = f">= {rng.randint(100, 600)}"
            else:
                test = f"{'<' if kind == 'water_pressure' else '>'} {self.threshold(kind)}"
            return {
                "when": {**self.numeric(kind, predicate=False), fn: test},
                "within": dur(10, 600),
                **self.per("sensor", "room", "building", "community"),
            }
        if name == "change":
            kind, key, lo, hi = rng.choice(
                [
                    ("water_level", "rise", 5, 60),
                    ("temperature", "rise", 10, 40),
                    ("smoke", "rise", 0.1, 0.5),
                    ("water_pressure", "fall", 1, 2),
                ]
            )
            amount = round(rng.uniform(lo, hi), 2)
            return {
                "when": {**self.numeric(kind, predicate=False), key: f">= {amount}"},
                "within": dur(30, 1800),
                **self.per("sensor", "sensor", "building"),
            }
        if name == "absent":
            who = rng.choice(["gw-*", "smoke-*"])
            extra = {"repeat": dur(60, 1800)} if rng.random() < 0.2 else {}
            return {
                "when": {"absent": {"kind": "heartbeat", "sensor": who, **self.site()}, "for": dur(3, 900)},
                **(self.per("sensor", "building") if who == "smoke-*" else {"per": "building"}),
                **extra,
            }
        # distinct: several places at LEVEL inside a larger group
        level = rng.choice([2, 3, 4])  # building, floor, room
        cond = self.numeric() if rng.random() < 0.7 else self.categorical()
        return {
            "when": {**cond, "distinct": LEVELS[level], "count": f">= {rng.randint(2, 5)}"},
            "within": dur(30, 600),
            "per": LEVELS[rng.randint(max(0, level - 2), level - 1)],
        }

    def actions(self, absent: bool) -> list[dict[str, Any]]:
        rng = self.rng
        out: list[dict[str, Any]] = [
            {
                "alert": {
                    "to": rng.sample(DEPARTMENTS, rng.randint(1, 2)),
                    "severity": rng.choice(SEVERITIES),
                    "message": "{reflex} at {site}: {sensor} reads {value}",
                }
            }
        ]
        if rng.random() < 0.2:
            kind, command = rng.choice(ACTUATORS)
            out.append({"actuate": {"kind": kind, "command": command}})
        if rng.random() < 0.05:
            out.append({"clear": {"after": self.dur(30, 600)}})
        elif rng.random() < 0.03 and not absent:
            out.append({"escalate": {"after": self.dur(60, 600), "to": ["emergency"]}})
        return out


def _yaml_value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else str(v)


def generate_rules(n: int, seed: int = 3) -> tuple[str, Counter[str]]:
    """YAML text of `n` reflexes, and how many of each pattern type it holds."""
    rng = random.Random(seed)
    gen = _Gen(rng)
    mix: Counter[str] = Counter()
    lines = ["version: 1", "lateness: 5s", "reflexes:"]
    names, weights = list(PATTERNS), list(PATTERNS.values())
    for i in range(n):
        name = rng.choices(names, weights=weights)[0]
        mix[name] += 1
        fields = gen.pattern(name)
        if rng.random() < 0.7 and "repeat" not in fields:
            fields["cooldown"] = gen.dur(30, 1800)
        lines.append(f"  - id: gen-{i:04d}-{name.replace('_', '-')}")
        lines.append(f"    tier: {rng.choice(['edge', 'brain'])}")
        lines.extend(f"    {key}: {_yaml_value(value)}" for key, value in fields.items())
        lines.append("    then:")
        lines.extend(f"      - {json.dumps(a, ensure_ascii=False)}" for a in gen.actions(name == "absent"))
    return "\n".join(lines) + "\n", mix
