"""`BrainConfig`: a brain worker's one settings model, from a YAML file with `NERVE_BRAIN_*` overrides.

`load_config` reads the file through `schemas.settings.load_settings` (ruamel.yaml, safe loader),
resolves the file's relative paths (`rules`, `departments`, `datadir`) against its folder, lets
environment variables win key by key (`NERVE_BRAIN_KAFKA__BOOTSTRAP=kafka-1:9092`: prefix
`NERVE_BRAIN_`, `__` between nested keys) and validates everything at start. Every problem is reported
as `file: key.path: message`, unknown keys with a "did you mean" where one is close.
"""

from __future__ import annotations

import os
import re
import socket
import string
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.credentials import KafkaAuth, resolve_auth_paths
from schemas.fields import Name
from schemas.settings import ConfigError as ConfigError
from schemas.settings import load_settings

ENV_PREFIX: Final = "NERVE_BRAIN_"
ENV_DELIMITER: Final = "__"

_APP_ID_PATTERN: Final = r"^[a-z0-9._-]+$"
_WORKER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_PREFIX_PATTERN: Final = r"^[A-Za-z0-9._-]*$"
_WORKER_FIELDS: Final = ("host", "pid")

AppId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_APP_ID_PATTERN)]
"""The Faust app id, which is also the Kafka consumer group and the prefix of the brain's own topics."""

Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _problem(detail: str) -> PydanticCustomError:
    # A custom error keeps the message as written; a ValueError would gain a "Value error, " prefix.
    return PydanticCustomError("brain_config", "{detail}", {"detail": detail})


def _expand_worker(template: str) -> str:
    """The worker name from `template`: `{host}` → this host's name, `{pid}` → this process's id."""
    try:
        fields = [
            (name, spec, conv)
            for _, name, spec, conv in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise _problem(f"{template!r}: {exc}") from None
    for name, spec, conversion in fields:
        if name not in _WORKER_FIELDS:
            raise _problem(f"{template!r}: unknown placeholder {{{name}}}; allowed: {{host}}, {{pid}}")
        if spec or conversion:
            raise _problem(f"{template!r}: {{{name}}} takes no conversion or format spec")
    return template.replace("{host}", socket.gethostname()).replace("{pid}", str(os.getpid()))


class KafkaSettings(KafkaAuth):
    """The city's Kafka: bootstrap servers, the prefix of every Nerve topic and, in a secured city, the
    brain's principal (`security_protocol: SASL_SSL`, `username`, `password_file`, `ca_file`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap: Annotated[str, StringConstraints(min_length=1)] = "127.0.0.1:9092"
    prefix: Annotated[str, StringConstraints(pattern=_PREFIX_PATTERN)] = "nerve."


class BrainConfig(BaseSettings):
    """Everything one brain worker process needs; see `load_config`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    app_id: AppId = Field(default="nerve-brain", description="Faust app id = Kafka consumer group.")
    worker: str = Field(
        default="{host}",
        description="This worker's name in logs and its datadir; {host} and {pid} are expanded.",
    )
    rules: list[Path] = Field(
        default_factory=list,
        description="Initial rule files or folders, relative to the config file; may be empty when the "
        "rule set comes from the rules topic.",
    )
    rule_set: Name = Field(default="city", description="The rule set to follow on <prefix>rules.")
    departments: Path | None = Field(
        default=None, description="The departments file (routing); relative to the config file."
    )
    kafka: KafkaSettings = KafkaSettings()
    partitions: Annotated[int, Field(ge=1, le=256)] = Field(
        default=4, description="Partitions of <prefix>events and of the brain's tables."
    )
    replication: Annotated[int, Field(ge=1, le=16)] = Field(
        default=1, description="Replication factor of the topics the brain creates (3 in a city cluster)."
    )
    datadir: Path = Field(
        default=Path("var/brain/{worker}"),
        description="Local table state (RocksDB); {worker} is expanded. A value in the file is relative "
        "to the file; the default is relative to the working directory.",
    )
    lateness_margin_s: Seconds = Field(
        default=1.0, description="Idle margin: watermark = wall − lateness − this."
    )
    dedup_window: Annotated[int, Field(ge=0)] = Field(
        default=100_000, description="Recent event ids remembered; 0 disables."
    )
    web_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=0, description="Faust's web server port; 0 turns it off."
    )
    tick_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        default=0.2, description="How often the wall clock advances the watermark while idle, seconds."
    )
    session_timeout_s: Annotated[float, Field(ge=6, le=300, allow_inf_nan=False)] = Field(
        default=10.0,
        description="How long the group waits for a silent worker before its partitions move to the "
        "others, seconds: the failover time after a worker dies (Kafka's group.min.session.timeout.ms "
        "is 6 s by default).",
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

    @field_validator("worker")
    @classmethod
    def _worker_name(cls, value: str) -> str:
        worker = _expand_worker(value)
        if _WORKER_NAME.fullmatch(worker) is None:
            raise _problem(
                f"{worker!r} must be 1–128 letters, digits, '.', '_' or '-', starting with a letter or "
                "digit (it names the worker's data folder)"
            )
        return worker

    @model_validator(mode="after")
    def _derived(self) -> BrainConfig:
        # Frozen: expand {worker} through __dict__, as pydantic itself writes during validation.
        if "{worker}" in str(self.datadir):
            self.__dict__["datadir"] = Path(str(self.datadir).replace("{worker}", self.worker))
        return self

    def topic(self, name: str) -> str:
        """The Kafka topic `name` (`events`, `alerts`, `rules`, `acks`, …) with the prefix."""
        return self.kafka.prefix + name


_PATTERN_HINTS: Final[dict[str, Callable[[str], str]]] = {
    _APP_ID_PATTERN: lambda _text: (
        "must use only lowercase letters, digits, '.', '_' and '-' (e.g. 'nerve-brain')"
    ),
    _PREFIX_PATTERN: lambda _text: (
        "must use only letters, digits, '.', '_' and '-' (it starts every topic name)"
    ),
}


def load_config(path: Path) -> BrainConfig:
    """Load and validate the brain config at `path`; `NERVE_BRAIN_*` environment variables win.

    Raises ConfigError listing every problem, each naming the file and the key path.
    """
    return load_settings(
        path, BrainConfig, env_prefix=ENV_PREFIX, resolve=_resolve_paths, hints=_PATTERN_HINTS
    )


def _resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The file's data with relative `rules`, `departments`, `datadir` and credential files made relative
    to its folder."""
    out = dict(data)
    rules = out.get("rules")
    if isinstance(rules, list):
        out["rules"] = [str((folder / r).resolve()) if isinstance(r, str) else r for r in rules]
    for key in ("departments", "datadir"):
        if isinstance(out.get(key), str):
            out[key] = str((folder / out[key]).resolve())
    if "kafka" in out:
        out["kafka"] = resolve_auth_paths(out["kafka"], folder)
    return out
