"""Routing: the departments file, extra routes by severity/district/reflex/tier/status, topics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reflexes import load_rules
from schemas import Alert
from schemas.routing import Routing
from schemas.settings import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "brain" / "departments.yaml"

FILE = """\
departments:
  fire: {}
  police: {}
  health:
  emergency: {topic: nerve.alerts.emergency-centre}
  yuelu-ops: {}
routes:
  - when: {severity: emergency}
    to: [emergency]
  - when: {district: yuelu, severity: [critical, emergency]}
    to: [yuelu-ops]
"""


def alert(**changes: Any) -> Alert:
    base: dict[str, Any] = {
        "id": "a1",
        "reflex": "room-fire",
        "tier": "brain",
        "status": "raised",
        "severity": "warning",
        "departments": ["fire"],
        "site": "yuelu/c12/b3",
        "group": "yuelu/c12/b3",
        "message": "m",
        "ts": 1_795_593_600.0,
        "evidence": ["e1"],
        "first_event_ts": 1_795_593_590.0,
    }
    return Alert(**(base | changes))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "departments.yaml"
    path.write_text(text)
    return path


def routing(tmp_path: Path, routes: str, departments: str = "") -> Routing:
    return Routing.load(write(tmp_path, departments + "routes:\n" + routes))


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Routing.load(path)
    return caught.value.problems


def test_default_routes_to_the_alerts_own_departments_on_default_topics() -> None:
    default = Routing.default()
    assert default.departments_for(alert(departments=["fire", "health"])) == ("fire", "health")
    assert default.topic_for("fire", "nerve.") == "nerve.alerts.fire"
    assert default.topic_for("anything-at-all", "city7.") == "city7.alerts.anything-at-all"
    assert default.allows("anything-at-all")
    assert default.unknown(["fire", "transport"]) == []


def test_routes_by_severity_one_or_a_list(tmp_path: Path) -> None:
    routes = Routing.load(write(tmp_path, FILE))
    assert routes.departments_for(alert(severity="warning", site="furong/c1/b1")) == ("fire",)
    assert routes.departments_for(alert(severity="emergency", site="furong/c1/b1")) == ("fire", "emergency")
    assert routes.departments_for(alert(severity="critical", site="furong/c1/b1")) == ("fire",)


def test_routes_by_district_the_first_site_segment(tmp_path: Path) -> None:
    routes = Routing.load(write(tmp_path, FILE))
    assert routes.departments_for(alert(severity="critical")) == ("fire", "yuelu-ops")
    assert routes.departments_for(alert(severity="critical", site="yuelu")) == ("fire", "yuelu-ops")
    # A later segment named like the district, or a district that only starts with it, is not it.
    assert routes.departments_for(alert(severity="critical", site="furong/yuelu/b1")) == ("fire",)
    assert routes.departments_for(alert(severity="critical", site="yuelu2/c1")) == ("fire",)
    assert routes.departments_for(alert(severity="emergency")) == ("fire", "emergency", "yuelu-ops")


def test_a_list_of_districts_matches_any(tmp_path: Path) -> None:
    routes = routing(tmp_path, "  - when: {district: [yuelu, furong]}\n    to: [police]\n")
    assert routes.departments_for(alert(site="furong/c1")) == ("fire", "police")
    assert routes.departments_for(alert(site="yuelu/c1")) == ("fire", "police")
    assert routes.departments_for(alert(site="tianxin/c1")) == ("fire",)


def test_routes_by_status_reflex_and_tier(tmp_path: Path) -> None:
    routes = routing(
        tmp_path,
        "  - when: {status: escalated}\n    to: [police]\n"
        "  - when: {reflex: [gas-leak-cluster, room-fire], tier: edge}\n    to: [health]\n",
    )
    assert routes.departments_for(alert()) == ("fire",)
    assert routes.departments_for(alert(status="escalated")) == ("fire", "police")
    assert routes.departments_for(alert(status="cleared")) == ("fire",)
    assert routes.departments_for(alert(tier="edge")) == ("fire", "health")
    assert routes.departments_for(alert(tier="edge", reflex="other")) == ("fire",)


def test_every_key_of_when_must_match(tmp_path: Path) -> None:
    routes = routing(
        tmp_path, "  - when: {severity: info, district: yuelu, status: cleared}\n    to: [police]\n"
    )
    assert routes.departments_for(alert(severity="info", status="cleared")) == ("fire", "police")
    assert routes.departments_for(alert(severity="info")) == ("fire",)
    assert routes.departments_for(alert(status="cleared")) == ("fire",)


def test_a_route_without_when_takes_every_alert(tmp_path: Path) -> None:
    routes = routing(tmp_path, "  - to: police\n")
    assert routes.departments_for(alert()) == ("fire", "police")


def test_departments_are_deduplicated_in_order(tmp_path: Path) -> None:
    routes = routing(
        tmp_path,
        "  - when: {severity: emergency}\n    to: [police, fire, health]\n"
        "  - when: {district: yuelu}\n    to: [health, emergency, police]\n",
    )
    found = routes.departments_for(
        alert(severity="emergency", departments=["emergency", "fire", "emergency"])
    )
    assert found == ("emergency", "fire", "police", "health")


@given(
    own=st.lists(st.sampled_from(["fire", "police", "health"]), max_size=5),
    severity=st.sampled_from(["info", "warning", "critical", "emergency"]),
)
def test_the_alerts_own_departments_come_first_and_nothing_repeats(own: list[str], severity: str) -> None:
    routes = Routing.model_validate(
        {"routes": [{"when": {"severity": ["critical", "emergency"]}, "to": ["health", "emergency"]}]}
    )
    found = routes.departments_for(alert(departments=own, severity=severity))
    assert len(found) == len(set(found))
    assert found[: len(set(own))] == tuple(dict.fromkeys(own))
    assert ("emergency" in found) == (severity in ("critical", "emergency"))


def test_topics_default_to_prefix_alerts_name_unless_the_file_names_one(tmp_path: Path) -> None:
    routes = Routing.load(write(tmp_path, FILE))
    assert routes.topic_for("fire", "nerve.") == "nerve.alerts.fire"
    assert routes.topic_for("health", "city7.") == "city7.alerts.health"  # `health:` with no value
    assert routes.topic_for("emergency", "city7.") == "nerve.alerts.emergency-centre"


def test_known_departments_and_suggestions(tmp_path: Path) -> None:
    routes = Routing.load(write(tmp_path, FILE))
    assert routes.allows("fire")
    assert not routes.allows("transport")
    assert routes.unknown(["fire", "fier", "transport", "fier"]) == [
        "unknown department 'fier'; did you mean 'fire'?",
        "unknown department 'transport'; add it under departments",
    ]


def test_without_a_departments_section_every_department_is_allowed(tmp_path: Path) -> None:
    routes = routing(tmp_path, "  - to: [archive]\n")
    assert routes.allows("anything")
    assert routes.departments_for(alert()) == ("fire", "archive")


def test_an_empty_file_is_the_default(tmp_path: Path) -> None:
    assert Routing.load(write(tmp_path, "")) == Routing.default()


def test_the_example_departments_file() -> None:
    routes = Routing.load(EXAMPLE)
    city_departments = [
        "building",
        "emergency",
        "environment",
        "fire",
        "health",
        "police",
        "transport",
        "utilities",
    ]
    assert routes.unknown(city_departments) == []
    assert routes.departments_for(alert(severity="emergency")) == ("fire", "emergency", "yuelu-ops")
    assert routes.departments_for(alert(severity="warning", site="furong/c1")) == ("fire",)
    assert routes.topic_for("emergency", "nerve.") == "nerve.alerts.emergency"


def test_unknown_when_key_names_file_and_key_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "routes:\n  - when: {sevrity: emergency}\n    to: [fire]\n")
    assert problems(path) == [f"{path}: routes[0].when.sevrity: unknown key; did you mean 'severity'?"]


def test_unknown_keys_elsewhere_get_suggestions_too(tmp_path: Path) -> None:
    path = write(tmp_path, "departments:\n  fire: {topc: x}\nroute: []\n")
    assert sorted(problems(path)) == [
        f"{path}: departments.fire.topc: unknown key; did you mean 'topic'?",
        f"{path}: route: unknown key; did you mean 'routes'?",
    ]


def test_a_route_to_an_unknown_department_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "departments: {fire: {}}\nroutes:\n  - {when: {severity: info}, to: [fier]}\n")
    assert problems(path) == [f"{path}: routes[0].to[0]: unknown department 'fier'; did you mean 'fire'?"]


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("{when: {severity: urgent}, to: [fire]}", "routes[0].when.severity[0]: Input should be 'info',"),
        ("{when: {status: [raised, gone]}, to: [fire]}", "routes[0].when.status[1]: Input should be"),
        ("{when: {tier: cloud}, to: [fire]}", "routes[0].when.tier[0]: Input should be 'edge' or 'brain'"),
        ("{when: {district: yuelu/c12}, to: [fire]}", "routes[0].when.district[0]: must be one site segment"),
        ("{when: {reflex: Room_Fire}, to: [fire]}", "routes[0].when.reflex[0]: must use only lowercase"),
        ("{when: {severity: []}, to: [fire]}", "routes[0].when.severity: Value should have at least 1 item"),
        ("{when: {}, to: []}", "routes[0].to: Value should have at least 1 item"),
        ("{when: {}}", "routes[0].to: is required"),
        ("{to: ['fire dept']}", "routes[0].to[0]: must use only letters, digits"),
    ],
)
def test_bad_routes_name_the_file_and_key(tmp_path: Path, route: str, expected: str) -> None:
    path = write(tmp_path, f"routes:\n  - {route}\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: {expected}")


def test_a_bad_topic_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "departments:\n  fire: {topic: 'alerts for fire'}\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: departments.fire.topic: must use only letters")


def test_file_errors(tmp_path: Path) -> None:
    (missing,) = problems(tmp_path / "nope.yaml")
    assert missing.startswith(f"{tmp_path / 'nope.yaml'}: cannot read")
    (listed,) = problems(write(tmp_path, "- fire\n"))
    assert "the top level must be a mapping" in listed


def test_a_rule_set_naming_an_unknown_department_is_reported_with_its_reflexes(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        """\
version: 1
reflexes:
  - id: smoke
    tier: edge
    when: {kind: smoke, value: "== true"}
    then:
      - alert: {to: [fire, fier], severity: critical, message: "smoke"}
      - escalate: {after: 1m, to: [emergncy]}
  - id: heat
    tier: brain
    when: {kind: temperature, value: "> 57"}
    then: [{alert: {to: [fier], severity: warning, message: "heat"}}]
"""
    )
    rules = load_rules([rules_file])
    assert rules.departments() == {"fire": ["smoke"], "fier": ["smoke", "heat"], "emergncy": ["smoke"]}
    routing = Routing.load(write(tmp_path, FILE))
    assert routing.check(rules.departments()) == [
        "reflex smoke, heat: unknown department 'fier'; did you mean 'fire'?",
        "reflex smoke: unknown department 'emergncy'; did you mean 'emergency'?",
    ]
    assert Routing.default().check(rules.departments()) == []  # without a file every department is allowed
