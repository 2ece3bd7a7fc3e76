"""EdgeConfig: one YAML file, environment overrides, errors that name the file and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from brain_bridge.config import BrainConfig
from brain_bridge.topics import brain_topics
from edge_agent.config import ConfigError, EdgeConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "edge" / "gateway.yaml"

MINIMAL = """\
gateway: gw-yuelu-c12-b3
site: yuelu/c12/b3
rules: [../city, /srv/rules/extra.yaml]
mqtt:
  host: broker.local
  subscriptions:
    - topic: sensors/+floor/+room/+sensor/+kind
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's or CI's own NERVE_EDGE_* settings must not leak into these tests.
    for name in list(os.environ):
        if name.upper().startswith("NERVE_EDGE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    folder = tmp_path / "edge"
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
    assert config.gateway == "gw-yuelu-c12-b3"
    assert config.site == "yuelu/c12/b3"
    assert config.mqtt.host == "broker.local"
    assert config.mqtt.port == 1883
    assert config.mqtt.client_id == "gw-yuelu-c12-b3"
    assert config.mqtt.subscriptions[0].format == "auto"
    assert config.mqtt.command_topic == "nerve/cmd/{site}/{target}"
    assert config.mqtt.alert_topic == "nerve/alerts/{department}"
    assert config.mqtt.deadletter_topic == "nerve/deadletter"
    assert config.kafka.bootstrap == "127.0.0.1:9092"
    assert config.kafka.client_id == "gw-yuelu-c12-b3"
    assert (config.kafka.linger_ms, config.kafka.compression, config.kafka.request_timeout_ms) == (
        5,
        "zstd",
        10000,
    )
    assert config.spool.path == Path("var/spool/gw-yuelu-c12-b3")
    assert (config.spool.max_bytes, config.spool.sync) == (256 * 1024 * 1024, True)
    assert config.spool.when_full == "drop_oldest_telemetry"
    assert config.sensors is None
    assert (config.lateness_margin_s, config.heartbeat_s) == (1.0, 10.0)
    assert (config.metrics_port, config.dedup_window) == (9464, 8_192)


def test_the_spool_policy_is_one_of_two(tmp_path: Path) -> None:
    chosen = load_config(write(tmp_path, MINIMAL + "spool: {when_full: drop_new_telemetry}\n"))
    assert chosen.spool.when_full == "drop_new_telemetry"
    [problem] = problems(write(tmp_path, MINIMAL + "spool: {when_full: drop_newest}\n"))
    assert "gateway.yaml: spool.when_full: " in problem
    assert "'drop_oldest_telemetry' or 'drop_new_telemetry'" in problem


def test_topic_adds_the_prefix(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert [config.topic(n) for n in ("events", "alerts", "deadletter", "commands")] == [
        "nerve.events",
        "nerve.alerts",
        "nerve.deadletter",
        "nerve.commands",
    ]
    custom = load_config(write(tmp_path, MINIMAL + "kafka: {prefix: 'city7.'}\n"))
    assert custom.topic("events") == "city7.events"


def test_own_actuations_are_logged_where_the_brain_creates_a_topic_and_no_gateway_reads(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.kafka.actuation_log is not None
    logged = config.topic(config.kafka.actuation_log)
    assert logged != config.topic("commands")  # the downlink's topic: every gateway would read them
    assert logged in brain_topics(BrainConfig(worker="w1"), None)
    assert (
        load_config(write(tmp_path, MINIMAL + "kafka: {actuation_log: null}\n")).kafka.actuation_log is None
    )


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "spool: {path: spool/here}\n")
    config = load_config(path)
    assert config.rules == [(tmp_path / "city").resolve(), Path("/srv/rules/extra.yaml")]
    assert config.spool.path == (tmp_path / "edge" / "spool" / "here").resolve()


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.site == "yuelu/c12/b3"
    assert config.rules == [(EXAMPLE.parent.parent / "city").resolve()]
    assert config.rules[0].is_dir()
    assert [s.format for s in config.mqtt.subscriptions] == ["auto", "auto", "senml", "number"]


def test_environment_overrides_win_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_EDGE_MQTT__PORT", "1884")
    monkeypatch.setenv("NERVE_EDGE_KAFKA__BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("nerve_edge_heartbeat_s", "2.5")  # names are case-insensitive
    monkeypatch.setenv("NERVE_EDGE_SENSORS", '["smoke-201", "temp-201"]')
    config = load_config(write(tmp_path, MINIMAL))
    assert config.mqtt.port == 1884
    assert config.mqtt.host == "broker.local"  # the rest of the file's mqtt section stays
    assert config.kafka.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert config.heartbeat_s == 2.5
    assert config.sensors == ["smoke-201", "temp-201"]


def test_environment_wins_over_a_value_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_EDGE_MQTT__HOST", "10.0.0.7")
    monkeypatch.setenv("NERVE_EDGE_GATEWAY", "gw-test")
    config = load_config(write(tmp_path, MINIMAL))
    assert config.mqtt.host == "10.0.0.7"
    assert config.gateway == "gw-test"
    assert config.mqtt.client_id == "gw-test"


def test_unknown_key_is_an_error_with_did_you_mean_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  host: broker.local", "  hots: broker.local") + "heartbeat: 5\n")
    found = problems(path)
    assert f"{path}: mqtt.hots: unknown key; did you mean 'host'?" in found
    assert f"{path}: heartbeat: unknown key; did you mean 'heartbeat_s'?" in found


def test_unknown_key_without_a_close_match_says_so_plainly(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "kafka: {zzz: 1}\n")
    assert problems(path) == [f"{path}: kafka.zzz: unknown key"]


def test_bad_type_names_the_key_path_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  host: broker.local", "  port: not-a-port"))
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: mqtt.port: Input should be a valid integer")
    assert problem.split(": ")[0].endswith("gateway.yaml")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "site: 'yuelu/c12 b3'\nrules: []\nmqtt: {port: 0, subscriptions: []}\nspool: {max_bytes: -1}\n",
    )
    found = "\n".join(problems(path))
    assert f"{path}: gateway: is required" in found
    assert f"{path}: site: " in found
    assert f"{path}: mqtt.port: Input should be greater than or equal to 1" in found
    assert f"{path}: mqtt.subscriptions: " in found
    assert f"{path}: spool.max_bytes: " in found


def test_a_bad_value_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERVE_EDGE_MQTT__PORT", "eighteen")
    path = write(tmp_path, MINIMAL)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: mqtt.port: Input should be a valid integer")
    assert problem.endswith("(set by NERVE_EDGE_MQTT__PORT)")


def test_a_misspelt_nested_environment_variable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERVE_EDGE_MQTT__PROT", "1884")
    (problem,) = problems(write(tmp_path, MINIMAL))
    assert "mqtt.prot: unknown key; did you mean 'port'?" in problem
    assert "NERVE_EDGE_MQTT__PROT" in problem


def test_password_is_a_secret_nowhere_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path, MINIMAL + "  username: gw\n  password: hunter2-secret\n"))
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "hunter2-secret"
    for shown in (
        repr(config),
        str(config),
        config.model_dump_json(),
        repr(config.mqtt),
        str(config.model_dump()),
    ):
        assert "hunter2-secret" not in shown
    monkeypatch.setenv("NERVE_EDGE_MQTT__PASSWORD", "from-env-secret")
    from_env = load_config(write(tmp_path, MINIMAL))
    assert from_env.mqtt.password is not None
    assert from_env.mqtt.password.get_secret_value() == "from-env-secret"
    assert "from-env-secret" not in repr(from_env) + from_env.model_dump_json()


@pytest.mark.parametrize(
    ("subscription", "expected"),
    [
        (
            "{topic: 'sensors/+flor/+sensor'}",
            "mqtt.subscriptions[0].topic: topic template 'sensors/+flor/+sensor': unknown capture '+flor'; did you mean '+floor'?",
        ),
        ("{topic: 'a/#/b'}", "'#' must be the last level"),
        ("{topic: 'a/x+y'}", "mixes a wildcard with text"),
        ("{topic: 'a/+room/+room'}", "'+room' is captured twice"),
        ("{topic: 'a/+sensor', format: number}", "format 'number' needs a kind"),
        ("{topic: 'a/+kind', format: number}", "format 'number' needs the sensor"),
        ("{topic: 'a/+sensor/+kind', kind: smoke}", "captures +kind; keep one"),
        (
            "{topic: 'a/+room/+sensor/+kind'}",
            "mqtt.subscriptions[0].topic: topic template 'a/+room/+sensor/+kind' captures +room but not +floor",
        ),
        ("{topic: 'a/+sensor/+kind', format: xml}", "mqtt.subscriptions[0].format: Input should be"),
    ],
)
def test_bad_subscriptions_are_named(tmp_path: Path, subscription: str, expected: str) -> None:
    text = MINIMAL.replace("    - topic: sensors/+floor/+room/+sensor/+kind", f"    - {subscription}")
    found = "\n".join(problems(write(tmp_path, text)))
    assert expected in found
    assert "gateway.yaml" in found


def test_duplicate_subscriptions_are_an_error(tmp_path: Path) -> None:
    text = MINIMAL + "    - topic: sensors/+floor/+room/+sensor/+kind\n      format: senml\n"
    assert "subscriptions[1] repeats subscriptions[0]" in "\n".join(problems(write(tmp_path, text)))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("command_topic", "nerve/cmd/{gateway}", "unknown placeholder {gateway}; allowed: {site}, {target}"),
        ("alert_topic", "nerve/alerts/+", "is not a topic to publish on"),
        ("deadletter_topic", "nerve/{site}", "unknown placeholder {site}; allowed: none"),
    ],
)
def test_publish_topics_are_checked(tmp_path: Path, key: str, value: str, expected: str) -> None:
    text = MINIMAL.replace("  host: broker.local", f"  {key}: '{value}'")
    (problem,) = problems(write(tmp_path, text))
    assert f"mqtt.{key}: " in problem
    assert expected in problem


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
    (problem,) = problems(write(tmp_path, MINIMAL + "gateway: again\n"))
    assert "duplicate key" in problem


def test_missing_file(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path / "nope.yaml")
    assert problem.startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


def test_yaml_tags_are_not_constructed(tmp_path: Path) -> None:
    # Safe loading: a Python object tag is an error, never an object.
    path = write(tmp_path, MINIMAL + "extra: !!python/object/apply:os.system ['true']\n")
    assert problems(path)


def test_the_model_rejects_unknown_keys_when_built_directly() -> None:
    with pytest.raises(ValueError, match="extra"):
        EdgeConfig(
            gateway="gw-1",
            site="a/b",
            rules=[],
            mqtt={"subscriptions": [{"topic": "s/+sensor/+kind"}]},
            nonsense=1,  # type: ignore[call-arg]
        )
