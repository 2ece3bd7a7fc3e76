"""Loading and checking rule files: every error located, all reported together, fuzzed for robustness."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflexes import RuleSetError, load_rules, load_rules_text
from reflexes.durations import parse_duration
from reflexes.model import Absent, AllOf, Change, Count, Distinct, Held, Single


def check(text: str) -> list[str]:
    try:
        load_rules_text(textwrap.dedent(text), "city.yaml")
    except RuleSetError as e:
        return [str(x) for x in e.errors]
    return []


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "5 minutes", "-1s", "0s", "8d", "", None, True, 30])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match=r"duration|'"):
        parse_duration(text)


def test_spec_example_compiles_to_the_right_plan() -> None:
    rules = load_rules_text(
        textwrap.dedent("""
        version: 1
        levels: [district, community, building, floor, room]
        lateness: 5s
        reflexes:
          - id: kitchen-fire
            tier: edge
            when:
              all:
                - {kind: smoke, value: "> 0.15"}
                - {kind: temperature, value: "> 57"}
            within: 30s
            per: room
            cooldown: 5m
            then:
              - alert: {to: [fire], severity: critical, message: "Fire suspected in {site}"}
              - actuate: {kind: gas_valve, command: close}
    """)
    )
    (r,) = rules.reflexes
    assert isinstance(r.pattern, AllOf) and len(r.pattern.conds) == 2
    assert (r.within, r.per_level, r.cooldown, r.tier) == (30.0, 4, 300.0, "edge")


@pytest.mark.parametrize(
    ("when", "within", "kind"),
    [
        ("{kind: smoke}", "", Single),
        ("{kind: door, value: \"== 'open'\", for: 5m}", "", Held),
        ("{kind: gas, count: '>= 3'}", "within: 1m", Count),
        ("{kind: water_level, rise: '> 0.5'}", "within: 10m", Change),
        ("{kind: gas, value: '> 50', distinct: building, count: '>= 3'}", "within: 10m", Distinct),
        ("{absent: {kind: heartbeat}, for: 2m}", "", Absent),
    ],
)
def test_each_pattern_shape_loads(when: str, within: str, kind: type) -> None:
    rules = load_rules_text(
        f"version: 1\nreflexes:\n  - id: r\n    tier: brain\n    when: {when}\n"
        f"    {within}\n    then: [{{alert: {{to: [fire]}}}}]\n"
    )
    assert isinstance(rules.reflexes[0].pattern, kind)


def test_all_errors_of_a_file_reported_together_with_lines_and_ids() -> None:
    errors = check("""\
        version: 1
        reflexes:
          - id: fire-one
            tier: edg
            when: {kind: smoke, valeu: "> 3"}
            then: [{alert: {to: [fire], message: "in {sit}"}}]
          - id: gas-two
            tier: brain
            when: {kind: gas, count: ">= 3"}
            then: [{alert: {to: [utilities]}}]
          - id: fire-one
            tier: edge
            when: {kind: smoke, where: "__import__('os')"}
            then: [{alert: {to: [fire], severity: critcal}}]
        """)
    assert (
        "city.yaml:4: fire-one: tier: must be 'edge' or 'brain', got 'edg' — did you mean 'edge'?" in errors
    )
    assert "city.yaml:5: fire-one: unknown key 'valeu' in when — did you mean 'value'?" in errors
    assert any(e.startswith("city.yaml:6: fire-one:") and "did you mean 'site'" in e for e in errors)
    assert "city.yaml:9: gas-two: when: 'count' needs 'within' on the reflex (the window length)" in errors
    assert any(
        e.startswith("city.yaml:11: fire-one: duplicate reflex id (first defined at city.yaml:3)")
        for e in errors
    )
    assert any(e.startswith("city.yaml:13: fire-one:") and "calls are not allowed" in e for e in errors)
    assert any(e.startswith("city.yaml:14: fire-one:") and "did you mean 'critical'" in e for e in errors)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("when: {kind: smoke}\n    within: 10s", "within: has no effect on a single condition"),
        ("when: {all: [{kind: smoke}, {kind: temperature}]}", "needs 'within'"),
        ("when: {all: [{kind: smoke}]}\n    within: 10s", "at least 2 conditions"),
        ("when: {absent: {kind: heartbeat}}", "absent: needs 'for'"),
        ("when: {kind: gas, distinct: block, count: '> 2'}\n    within: 1m", "'block' is not a level"),
        ("when: {kind: gas, distinct: building}\n    within: 1m", "needs 'count'"),
        ("when: {kind: gas, for: 1m, count: '> 2'}", "'for' cannot be combined"),
        ("when: {kind: gas, value: '> 1', between: [1, 2]}", "at most one predicate"),
        ("when: {kind: gas, between: [3, 1]}", "low ≤ high"),
        ("when: {kind: gas}\n    per: flat", "'flat' is not 'sensor' or a level"),
        ("when: {kind: gas}\n    repeat: 1m", "only an 'absent' pattern repeats"),
        ("when: {kind: gas}\n    within: 30d", "7d limit"),
        ("when: {kind: gas, count: '> many'}\n    within: 1m", "count:"),
        ("when: {kind: Gas}", "kind: expected a lowercase name"),
        ("when: {}", "a condition needs at least one"),
    ],
)
def test_rule_mistakes_are_named(snippet: str, message: str) -> None:
    errors = check(
        f"version: 1\nreflexes:\n  - id: r1\n    tier: edge\n    {snippet}\n    then: [{{alert: {{to: [fire]}}}}]\n"
    )
    assert errors and any(message in e for e in errors), errors
    assert all(e.startswith("city.yaml:") for e in errors)


def test_actions_are_checked() -> None:
    errors = check("""\
        version: 1
        reflexes:
          - id: r1
            tier: edge
            when: {kind: smoke}
            then:
              - alret: {to: [fire]}
              - actuate: {command: close}
              - escalate: {to: [police]}
              - clear: {after: soon}
        """)
    assert any("unknown action 'alret' — did you mean 'alert'?" in e for e in errors)
    assert any("exactly one of 'kind' or 'sensor'" in e for e in errors)
    assert any("needs 'after'" in e for e in errors)
    assert any("clear" in e and "not a duration" in e for e in errors)


def test_yaml_syntax_error_has_a_line() -> None:
    errors = check("version: 1\nreflexes:\n  - id: r1\n    when: {kind: [smoke\n")
    assert errors and errors[0].startswith("city.yaml:") and "YAML" in errors[0]


def test_folder_of_files_is_one_rule_set_and_ids_are_unique_across_files(tmp_path: Path) -> None:
    body = "version: 1\nreflexes:\n  - id: same\n    tier: edge\n    when: {kind: smoke}\n    then: [{alert: {to: [fire]}}]\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yaml").write_text(body)
    (tmp_path / "b.test.yaml").write_text("cases: []\n")  # test files are not rules
    with pytest.raises(RuleSetError) as info:
        load_rules([tmp_path])
    assert "b.yaml:3: same: duplicate reflex id (first defined at" in str(info.value)
    (tmp_path / "b.yaml").write_text(body.replace("same", "other"))
    assert {r.id for r in load_rules([tmp_path]).reflexes} == {"same", "other"}


def test_fingerprint_changes_only_with_the_definition() -> None:
    base = "version: 1\nreflexes:\n  - id: r1\n    tier: edge\n    when: {kind: smoke, value: '> 0.1'}\n    then: [{alert: {to: [fire]}}]\n"
    a = load_rules_text(base).reflexes[0].fingerprint
    assert load_rules_text(base + "# a comment\n").reflexes[0].fingerprint == a
    assert load_rules_text(base.replace("0.1", "0.2")).reflexes[0].fingerprint != a


_yaml_alphabet = st.sampled_from(list("abcdefgklmnoprstuvwxyz0123456789 :-_[]{}'\"\n>=<.,#&*!|%@`?/\\"))
_keys = st.sampled_from(
    [
        "version: 1",
        "reflexes:",
        "- id: a",
        "tier: edge",
        "when:",
        "kind: smoke",
        "then:",
        "- alert: {to: [fire]}",
        "within: 5s",
        "all:",
        "absent:",
        "for: 1m",
        "value: '> 3'",
        "count: '>= 2'",
        "per: room",
        "  ",
        "    ",
        "      ",
        "where: value > 1",
        "- {kind: x}",
    ]
)


def test_a_scalar_the_yaml_library_trips_on_is_a_located_error() -> None:
    with pytest.raises(RuleSetError) as caught:
        load_rules_text("-_", "odd.yaml")  # ruamel raises IndexError reading it as an int
    assert [(e.file, e.line) for e in caught.value.errors] == [("odd.yaml", 1)]


@settings(max_examples=300, deadline=None)
@given(st.text(_yaml_alphabet, max_size=200))
def test_fuzz_loader_random_text(text: str) -> None:
    try:
        load_rules_text(text, "fuzz.yaml")
    except RuleSetError as e:
        assert e.errors and all(err.file == "fuzz.yaml" and err.line >= 1 for err in e.errors)


@settings(max_examples=300, deadline=None)
@given(st.lists(_keys, max_size=25))
def test_fuzz_loader_rule_shaped_text(lines: list[str]) -> None:
    try:
        load_rules_text("\n".join(lines), "fuzz.yaml")
    except RuleSetError as e:
        assert e.errors and all(err.line >= 1 and str(err).startswith("fuzz.yaml:") for err in e.errors)
