"""The brain's hot reload from the rules topic, without a broker: what it takes and what it refuses."""

from __future__ import annotations

from pathlib import Path

from brain_bridge.config import load_config
from brain_bridge.worker import Brain
from reflexes import load_rules_text
from reflexes.deployment import Deployment, digest
from schemas.routing import DepartmentEntry, Routing

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "brain" / "brain.yaml"
RULES = """\
version: 1
reflexes:
  - id: city-smoke
    tier: brain
    when: {kind: smoke, value: "> 0.5"}
    per: building
    then: [{alert: {to: [fire], severity: critical}}]
"""


async def test_a_rule_set_naming_an_unknown_department_is_refused_on_reload() -> None:
    """As at start (`nerve brain run` exits 2), a deployed rule set whose alerts go to a department the
    departments file does not know, with no topic to page, is refused: the running rules stay."""
    config = load_config(EXAMPLE)
    brain = Brain(config, load_rules_text(RULES), Routing(departments={"fire": DepartmentEntry()}), version=1)

    def deployment(version: int, to: str) -> bytes:
        files = [("rules.yaml", RULES.replace("to: [fire]", f"to: [{to}]"))]
        return Deployment(config.rule_set, version, tuple(files), digest(files), 0.0).to_json()

    key = config.rule_set.encode()
    brain._consider(key, deployment(2, "fyre"))
    assert brain.version == 1 and list(brain.rules.departments()) == ["fire"]
    brain._consider(key, deployment(3, "fire"))
    assert brain.version == 3
