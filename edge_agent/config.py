"""`EdgeConfig`: the edge agent's one settings model, from a YAML file with `NERVE_EDGE_*` overrides.

`load_config` reads the file through `schemas.settings.load_settings` (ruamel.yaml, safe loader),
resolves the file's relative paths against its folder, lets environment variables win
(`NERVE_EDGE_MQTT__PORT=1884`: prefix `NERVE_EDGE_`, `__` between nested keys) and validates everything
at start. Every problem is reported as `file: key.path: message`, unknown keys with a "did you mean"
where one is close.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edge_agent.ingest import SitePlan, TemplateError, TopicTemplate
from edge_agent.spool import WhenFull
from schemas.credentials import KafkaAuth, MqttAuth, resolve_auth_paths
from schemas.fields import Kind, Name, SitePath, Unit

# ConfigError is re-exported: callers of load_config catch it from here.
from schemas.settings import ConfigError as ConfigError
from schemas.settings import load_settings

ENV_PREFIX: Final = "NERVE_EDGE_"
ENV_DELIMITER: Final = "__"

_GATEWAY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
GatewayId = Annotated[str, StringConstraints(pattern=_GATEWAY_PATTERN)]
"""A gateway id: it names the MQTT and Kafka clients and the spool folder, so only safe characters."""

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _problem(detail: str) -> PydanticCustomError:
    # A custom error keeps the message as written; a ValueError would gain a "Value error, " prefix.
    return PydanticCustomError("edge_config", "{detail}", {"detail": detail})


def _publish_template(text: str, allowed: tuple[str, ...]) -> str:
    """Check an MQTT publish topic with `{placeholders}`: only `allowed` names, no wildcards."""
    if not text or "+" in text or "#" in text or "\x00" in text:
        raise _problem(f"{text!r} is not a topic to publish on: it must be non-empty, without + # or NUL")
    try:
        fields = [
            (name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None
        ]
    except ValueError as exc:
        raise _problem(f"{text!r}: {exc}") from None
    for name, spec, conversion in fields:
        if name not in allowed or spec or conversion:
            shown = ", ".join("{" + a + "}" for a in allowed) or "none"
            raise _problem(f"{text!r}: unknown placeholder {{{name}}}; allowed: {shown}")
    return text


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subscription(_Section):
    """One MQTT subscription: a topic template and how to read its payloads."""

    topic: str = Field(description="Topic template, e.g. sensors/+floor/+room/+sensor/+kind.")
    format: Literal["auto", "event", "senml", "number"] = Field(
        default="auto", description="auto: '{' → event, '[' → senml, anything else → number."
    )
    kind: Kind | None = Field(
        default=None, description="The kind of every reading, when the topic has no +kind."
    )
    unit: Unit | None = Field(
        default=None, description="The unit of bare readings (and events that give none)."
    )

    @field_validator("topic")
    @classmethod
    def _parse_topic(cls, value: str) -> str:
        try:
            TopicTemplate.parse(value)
        except TemplateError as exc:
            raise _problem(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _complete(self) -> Subscription:
        captures = self.template.captures
        if self.kind is not None and "kind" in captures:
            raise _problem(
                f"kind is fixed as {self.kind!r} but the topic {self.topic!r} captures +kind; keep one"
            )
        if self.format == "number":
            if "sensor" not in captures:
                raise _problem(
                    f"format 'number' needs the sensor from the topic: add +sensor to {self.topic!r}"
                )
            if self.kind is None and "kind" not in captures:
                raise _problem(f"format 'number' needs a kind: add +kind to {self.topic!r} or set kind")
        return self

    @property
    def template(self) -> TopicTemplate:
        """The parsed topic template."""
        return TopicTemplate.parse(self.topic)


class MqttSettings(MqttAuth):
    """The building's MQTT broker: where sensors publish and actuators listen; TLS and the gateway's user
    (`tls`, `ca_file`, `username`, `password` or `password_file`) when the broker is secured."""

    host: Annotated[str, StringConstraints(min_length=1)] = "127.0.0.1"
    port: Port = 1883
    client_id: str = Field(
        default="{gateway}", min_length=1, description="{gateway} is replaced by the gateway id."
    )
    keepalive: Annotated[int, Field(ge=0, le=65535)] = 30
    subscriptions: list[Subscription] = Field(min_length=1)
    command_topic: str = Field(
        default="nerve/cmd/{site}/{target}", description="Placeholders: {site}, {target}."
    )
    alert_topic: str = Field(default="nerve/alerts/{department}", description="Placeholders: {department}.")
    deadletter_topic: str = "nerve/deadletter"

    # Exactly what the agent fills in when it publishes; any other name would fail at the first publish.
    _COMMAND_FIELDS: ClassVar = ("site", "target")
    _ALERT_FIELDS: ClassVar = ("department",)

    @field_validator("command_topic")
    @classmethod
    def _command_topic(cls, value: str) -> str:
        return _publish_template(value, cls._COMMAND_FIELDS)

    @field_validator("alert_topic")
    @classmethod
    def _alert_topic(cls, value: str) -> str:
        return _publish_template(value, cls._ALERT_FIELDS)

    @field_validator("deadletter_topic")
    @classmethod
    def _deadletter_topic(cls, value: str) -> str:
        return _publish_template(value, ())

    @model_validator(mode="after")
    def _distinct_filters(self) -> MqttSettings:
        first: dict[str, int] = {}
        for index, subscription in enumerate(self.subscriptions):
            mqtt_filter = subscription.template.filter
            if (
                mqtt_filter in first
                and subscription.template.segments == self.subscriptions[first[mqtt_filter]].template.segments
            ):
                raise _problem(
                    f"subscriptions[{index}] repeats subscriptions[{first[mqtt_filter]}] ({subscription.topic!r}); "
                    "the first takes every message"
                )
            first.setdefault(mqtt_filter, index)
        return self


class KafkaSettings(KafkaAuth):
    """The uplink to the city: Kafka bootstrap servers, producer tuning and, in a secured city, the
    gateway's principal (`security_protocol: SASL_SSL`, `username`, `password_file`, `ca_file`)."""

    bootstrap: Annotated[str, StringConstraints(min_length=1)] = "127.0.0.1:9092"
    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]*$")] = "nerve."
    client_id: str = Field(
        default="{gateway}", min_length=1, description="{gateway} is replaced by the gateway id."
    )
    linger_ms: Annotated[int, Field(ge=0)] = 5
    # zstd: the smallest batches here, for ~1/60 of gzip's CPU (about 0.5 µs an event against 31 µs)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    request_timeout_ms: Annotated[int, Field(ge=1)] = 10_000
    actuation_log: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+$")] | None = Field(
        default="edge-actuations",
        description="Topic (after the prefix) where the agent logs the commands it actuated itself; null: "
        "none. Not `commands`: every gateway reads that one, and would receive the whole city's local "
        "actuations (its own included), and in a secured city only the brain may write it.",
    )


class SpoolSettings(_Section):
    """The disk spool that holds outgoing records while the uplink is down."""

    path: Path = Field(
        default=Path("var/spool/{gateway}"), description="{gateway} is replaced by the gateway id."
    )
    max_bytes: Annotated[int, Field(gt=0)] = 256 * 1024 * 1024
    when_full: WhenFull = Field(
        default="drop_oldest_telemetry",
        description="What goes when the spool holds max_bytes: the oldest telemetry (the brain gets the "
        "latest readings when the uplink returns), or drop_new_telemetry: new readings that do not fit "
        "(it gets the first hours of the outage, without gaps). Alerts and commands are always kept; "
        "they make room by dropping the oldest telemetry. Dead letters count as telemetry.",
    )
    sync: bool = Field(default=True, description="fsync each write, so that a power cut loses nothing.")


class EdgeConfig(BaseSettings):
    """Everything one edge agent process needs; see `load_config`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    gateway: GatewayId = Field(description="This gateway's id, e.g. gw-yuelu-c12-b3.")
    site: SitePath = Field(description="The site this gateway serves, e.g. yuelu/c12/b3.")
    rules: list[Path] = Field(
        description="Rule files or folders; relative ones are relative to the config file."
    )
    departments: Path | None = Field(
        default=None,
        description="The departments file (SPEC §5 routing, as the brain's); relative to the config file. "
        "Omitted: each alert goes to the departments its reflex names, on <prefix>alerts.<department>.",
    )
    mqtt: MqttSettings
    kafka: KafkaSettings = KafkaSettings()
    spool: SpoolSettings = SpoolSettings()
    sensors: list[Name] | None = Field(
        default=None, description="If set, events of other sensors are dead-lettered."
    )
    max_ahead_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=300.0,
        description=(
            "An event time further than this ahead of the gateway's clock is dead-lettered (a device with "
            "a wrong clock, or milliseconds given as seconds): accepted, it would move the reflexes' "
            "watermark years ahead, make every later reading late and fire every silence timer. null: no "
            "limit."
        ),
    )
    lateness_margin_s: Seconds = Field(
        default=1.0, description="Idle margin: watermark = wall − lateness − this."
    )
    heartbeat_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9464, description="0 disables metrics."
    )
    metrics_host: Annotated[str, StringConstraints(min_length=1)] = Field(
        default="127.0.0.1",
        description="The address /metrics listens on: 0.0.0.0 (or the gateway's own) for a Prometheus on "
        "another host or outside the agent's container.",
    )
    dedup_window: Annotated[int, Field(ge=0)] = Field(
        default=8_192,
        description=(
            "Recent event ids remembered; 0 disables. Redeliveries come from the messages in flight at a "
            "reconnect: at most the 512 the link reads ahead of ingest plus the broker's in-flight window "
            "(1,000 in the shipped Mosquitto configs), so 8,192 (~1.8 MB with 36-character ids) covers them "
            "twice over; the engine itself ignores a reading it already holds."
        ),
    )
    rule_set: Name = Field(
        default="city", description="The rule set followed on <prefix>rules for hot reload (edge tier)."
    )
    malloc_arena_max: Annotated[int, Field(ge=0, le=64)] = Field(
        default=2,
        description="glibc malloc arenas at most, with memory returned after bursts (edge_agent.memory); "
        "0 keeps glibc's defaults.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides the file's values (passed as init kwargs), merged key by key.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _derived(self) -> EdgeConfig:
        for index, subscription in enumerate(self.mqtt.subscriptions):
            try:
                SitePlan(subscription.template, self.site)
            except TemplateError as exc:
                raise _problem(f"mqtt.subscriptions[{index}].topic: {exc}") from None
        # Frozen: expand {gateway} through __dict__, as pydantic itself writes during validation.
        gateway = self.gateway
        if "{gateway}" in self.mqtt.client_id:
            self.__dict__["mqtt"] = self.mqtt.model_copy(
                update={"client_id": self.mqtt.client_id.replace("{gateway}", gateway)}
            )
        if "{gateway}" in self.kafka.client_id:
            self.__dict__["kafka"] = self.kafka.model_copy(
                update={"client_id": self.kafka.client_id.replace("{gateway}", gateway)}
            )
        if "{gateway}" in str(self.spool.path):
            self.__dict__["spool"] = self.spool.model_copy(
                update={"path": Path(str(self.spool.path).replace("{gateway}", gateway))}
            )
        return self

    def topic(self, name: str) -> str:
        """The Kafka topic `name` (`events`, `alerts`, `deadletter`, `commands`, …) with the prefix."""
        return self.kafka.prefix + name


_PATTERN_HINTS: Final[dict[str, Callable[[str], str]]] = {
    _GATEWAY_PATTERN: lambda _text: (
        "must be 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    ),
}


def load_config(path: Path) -> EdgeConfig:
    """Load and validate the edge config at `path`; `NERVE_EDGE_*` environment variables win.

    Raises ConfigError listing every problem, each naming the file and the key path.
    """
    return load_settings(
        path, EdgeConfig, env_prefix=ENV_PREFIX, resolve=_resolve_paths, hints=_PATTERN_HINTS
    )


def _resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The file's data with relative `rules`, `departments`, `spool.path` and credential files made
    relative to its folder."""
    out = dict(data)
    rules = out.get("rules")
    if isinstance(rules, list):
        out["rules"] = [str((folder / r).resolve()) if isinstance(r, str) else r for r in rules]
    if isinstance(out.get("departments"), str):
        out["departments"] = str((folder / out["departments"]).resolve())
    spool = out.get("spool")
    if isinstance(spool, dict) and isinstance(spool.get("path"), str):
        out["spool"] = {**spool, "path": str((folder / spool["path"]).resolve())}
    for section in ("mqtt", "kafka"):
        if section in out:
            out[section] = resolve_auth_paths(out[section], folder)
    return out
