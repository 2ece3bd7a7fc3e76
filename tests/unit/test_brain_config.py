"""BrainConfig: one YAML file, environment overrides, `{worker}` expansion, errors that name file and key."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from brain_bridge.config import BrainConfig, ConfigError, load_config
from schemas.settings import MAX_SETTINGS_BYTES

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "brain" / "brain.yaml"
WORKER = socket.gethostname()

MINIMAL = """\
rules: [../city, /srv/rules/extra.yaml]
departments: departments.yaml
kafka:
  bootstrap: kafka-1:9092
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's or CI's own NERVE_BRAIN_* settings must not leak into these tests.
    for name in list(os.environ):
        if name.upper().startswith("NERVE_BRAIN_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "brain.yaml") -> Path:
    folder = tmp_path / "brain"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_loads_a_file_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.app_id == "nerve-brain"
    assert config.worker == WORKER
    assert config.rule_set == "city"
    assert config.kafka.bootstrap == "kafka-1:9092"
    assert config.kafka.prefix == "nerve."
    assert config.partitions == 4
    # The default datadir is relative to the working directory, like the edge's default spool.
    assert config.datadir == Path("var/brain") / WORKER
    assert (config.lateness_margin_s, config.dedup_window, config.web_port, config.tick_s) == (
        1.0,
        100_000,
        0,
        0.2,
    )


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.rules == []
    assert config.departments is None
    assert config.kafka.bootstrap == "127.0.0.1:9092"


def test_topic_adds_the_prefix(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert [config.topic(n) for n in ("events", "alerts", "rules", "acks")] == [
        "nerve.events",
        "nerve.alerts",
        "nerve.rules",
        "nerve.acks",
    ]
    custom = load_config(write(tmp_path, "kafka: {prefix: 'city7.'}\n"))
    assert custom.topic("events") == "city7.events"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + "datadir: state/{worker}\n"))
    assert config.rules == [(tmp_path / "city").resolve(), Path("/srv/rules/extra.yaml")]
    assert config.departments == (tmp_path / "brain" / "departments.yaml").resolve()
    assert config.datadir == (tmp_path / "brain" / "state").resolve() / WORKER


def test_absolute_paths_stay(tmp_path: Path) -> None:
    text = f"departments: {tmp_path / 'd.yaml'}\ndatadir: {tmp_path / 'data'}\n"
    config = load_config(write(tmp_path, text))
    assert config.departments == tmp_path / "d.yaml"
    assert config.datadir == tmp_path / "data"


def test_worker_placeholders_are_expanded_and_name_the_datadir(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "worker: brain-{host}\ndatadir: /srv/nerve/{worker}/tables\n"))
    assert config.worker == f"brain-{socket.gethostname()}"
    assert config.datadir == Path(f"/srv/nerve/brain-{socket.gethostname()}/tables")
    fixed = load_config(write(tmp_path, "worker: brain-a\n"))
    assert (fixed.worker, fixed.datadir) == ("brain-a", Path("var/brain/brain-a"))


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.rules == [(EXAMPLE.parent.parent / "city").resolve()]
    assert config.rules[0].is_dir()
    assert config.departments == EXAMPLE.parent / "departments.yaml"
    assert config.departments.is_file()
    assert config.datadir == (EXAMPLE.parents[2] / "var" / "brain").resolve() / WORKER


def test_environment_overrides_win_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_BRAIN_KAFKA__PREFIX", "city7.")
    monkeypatch.setenv("nerve_brain_partitions", "8")  # names are case-insensitive
    monkeypatch.setenv("NERVE_BRAIN_RULES", "[]")
    monkeypatch.setenv("NERVE_BRAIN_WORKER", "brain-b")
    config = load_config(write(tmp_path, MINIMAL + "partitions: 2\n"))
    assert config.kafka.prefix == "city7."
    assert config.kafka.bootstrap == "kafka-1:9092"  # the rest of the file's kafka section stays
    assert config.partitions == 8
    assert config.rules == []
    assert config.worker == "brain-b"
    assert config.datadir == Path("var/brain/brain-b")


def test_unknown_key_is_an_error_with_did_you_mean_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  bootstrap:", "  bootstrp:") + "partition: 3\n")
    found = problems(path)
    assert f"{path}: kafka.bootstrp: unknown key; did you mean 'bootstrap'?" in found
    assert f"{path}: partition: unknown key; did you mean 'partitions'?" in found


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("app_id: Nerve Brain", "app_id: must use only lowercase letters, digits, '.', '_' and '-'"),
        ("partitions: 0", "partitions: Input should be greater than or equal to 1"),
        ("partitions: 257", "partitions: Input should be less than or equal to 256"),
        ("tick_s: 0", "tick_s: Input should be greater than 0"),
        ("web_port: 70000", "web_port: Input should be less than or equal to 65535"),
        ("dedup_window: -1", "dedup_window: Input should be greater than or equal to 0"),
        ("lateness_margin_s: .nan", "lateness_margin_s: "),
        ("kafka: {prefix: 'a b'}", "kafka.prefix: must use only letters, digits"),
        (
            "worker: '{host}-{user}'",
            "worker: '{host}-{user}': unknown placeholder {user}; allowed: {host}, {pid}",
        ),
        ("worker: 'a/{pid}'", "worker: 'a/"),
        ("worker: '{pid!r}'", "worker: '{pid!r}': {pid} takes no conversion or format spec"),
        ("rule_set: 'two words'", "rule_set: must not contain whitespace"),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path, line + "\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: ")
    assert expected in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "partitions: 0\nkafka: {zzz: 1}\ntick_s: -1\n")
    assert sorted(problems(path)) == [
        f"{path}: kafka.zzz: unknown key",
        f"{path}: partitions: Input should be greater than or equal to 1",
        f"{path}: tick_s: Input should be greater than 0",
    ]


def test_a_bad_value_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERVE_BRAIN_PARTITIONS", "many")
    monkeypatch.setenv("NERVE_BRAIN_KAFKA__PERFIX", "x.")
    path = write(tmp_path, MINIMAL)
    found = problems(path)
    assert len(found) == 2
    assert any(
        p.startswith(f"{path}: partitions: Input should be a valid integer")
        and p.endswith("(set by NERVE_BRAIN_PARTITIONS)")
        for p in found
    )
    assert any(
        "kafka.perfix: unknown key; did you mean 'prefix'?" in p and "NERVE_BRAIN_KAFKA__PERFIX" in p
        for p in found
    )


def test_an_edge_variable_is_not_blamed_for_a_brain_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERVE_EDGE_PARTITIONS", "8")
    (problem,) = problems(write(tmp_path, "partitions: 0\n"))
    assert "set by" not in problem


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "kafka: [unclosed\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:")
    assert problem.split(":")[1].isdigit()


@pytest.mark.parametrize("text", ["- just\n- a list\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    (problem,) = problems(write(tmp_path, text))
    assert "the top level must be a mapping" in problem


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, MINIMAL + "departments: again.yaml\n"))
    assert "duplicate key" in problem


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path / "nope.yaml")
    assert problem.startswith(f"{tmp_path / 'nope.yaml'}: cannot read")
    big = write(tmp_path, "# " + "x" * MAX_SETTINGS_BYTES + "\n")
    assert problems(big) == [f"{big}: larger than {MAX_SETTINGS_BYTES} bytes"]


def test_yaml_tags_are_not_constructed(tmp_path: Path) -> None:
    # Safe loading: a Python object tag is an error, never an object.
    assert problems(write(tmp_path, "extra: !!python/object/apply:os.system ['true']\n"))


def test_the_model_is_frozen_and_rejects_unknown_keys_when_built_directly() -> None:
    config = BrainConfig(worker="w1")
    assert config.datadir == Path("var/brain/w1")
    with pytest.raises(ValueError, match="frozen"):
        config.partitions = 2  # type: ignore[misc]
    with pytest.raises(ValueError, match="extra"):
        BrainConfig(nonsense=1)  # type: ignore[call-arg]
