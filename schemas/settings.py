"""Settings files: one loader for every Nerve process's YAML config, with errors that name the key.

`load_settings` reads a file (ruamel.yaml, safe loader, at most 1 MiB), lets the caller make its
relative paths absolute, builds the model (a pydantic-settings model also takes its environment
variables, which win key by key) and reports every problem as `file: key.path: message`: unknown keys
with a "did you mean" where one is close, values from the environment with "(set by VAR)".
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from schemas.fields import PATTERN_HINTS

MAX_SETTINGS_BYTES: Final = 1024 * 1024
"""Largest settings file read, in bytes."""

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config that cannot be used; `problems` holds one `file: key: message` line per problem."""

    retriable: ClassVar[bool] = False

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)


def load_settings(
    path: Path,
    model: type[T],
    *,
    env_prefix: str,
    resolve: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None,
    hints: dict[str, Callable[[str], str]] | None = None,
) -> T:
    """Load the YAML file at `path` into `model` and validate it.

    `env_prefix` is the prefix of the environment variables that override the file (the model's own,
    e.g. `NERVE_EDGE_`), used to name the variable behind a bad value; "" when nothing overrides it.
    `resolve(data, folder)` may rewrite the file's data first, e.g. to make relative paths relative to
    the file's folder. `hints` maps regex patterns to readable messages for values that miss them (the
    contract's own patterns are known already). Raises ConfigError listing every problem at once.
    """
    data = read_mapping(path)
    if resolve is not None:
        data = resolve(data, path.parent)
    try:
        return model(**data)
    except ValidationError as exc:
        raise ConfigError(_report(exc, path, model, env_prefix, {**PATTERN_HINTS, **(hints or {})})) from None


def read_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping at `path` (safe loader; an empty file is `{}`); raises ConfigError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_SETTINGS_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_SETTINGS_BYTES} bytes"])
    try:
        data = YAML(typ="safe", pure=True).load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})"]) from None
    except MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise ConfigError([f"{path}{line}: {exc.problem or exc}"]) from None
    except YAMLError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys, not a {type(data).__name__}"])
    if odd := [key for key in data if not isinstance(key, str)]:
        raise ConfigError([f"{path}: {key!r}: keys must be strings" for key in odd])
    return data


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _step(annotation: Any, part: int | str) -> Any:
    """The type found at `part` inside a value of type `annotation`, or None."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _step(get_args(annotation)[0], part)
    if origin is Union or origin is types.UnionType:
        found = (_step(arg, part) for arg in get_args(annotation))
        return next((inner for inner in found if inner is not None), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    args = get_args(annotation)
    if isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
        return args[1]  # any key of a mapping leads to its value type
    if isinstance(part, int) and isinstance(origin, type) and issubclass(origin, Sequence) and args:
        return args[0]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (model := _model_in(arg)) is not None:
            return model
    return None


def _keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the mapping at `loc` (a path into `model`), for "did you mean"."""
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    found = _model_in(annotation)
    return list(found.model_fields) if found is not None else []


def _env_sources(env_prefix: str, delimiter: str) -> dict[tuple[str, ...], str]:
    """Key paths set by the `env_prefix` variables, mapped to the variable's name."""
    if not env_prefix:
        return {}
    size = len(env_prefix)
    return {
        tuple(name[size:].lower().split(delimiter)): name
        for name in os.environ
        if name.upper().startswith(env_prefix.upper())
    }


def _report(
    exc: ValidationError,
    path: Path,
    model: type[BaseModel],
    env_prefix: str,
    hints: Mapping[str, Callable[[str], str]],
) -> list[str]:
    config: Mapping[str, Any] = model.model_config
    env = _env_sources(env_prefix, str(config.get("env_nested_delimiter") or "__"))
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        message = error["msg"]
        pattern = str((error.get("ctx") or {}).get("pattern"))
        if error["type"] == "string_pattern_mismatch" and pattern in hints:
            message = hints[pattern](str(error["input"]))
        elif error["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            close = difflib.get_close_matches(loc[-1], _keys_at(model, loc[:-1]), n=1)
            message = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
        elif error["type"] == "missing":
            message = "is required"
        names = tuple(str(p).lower() for p in loc if isinstance(p, str))
        origin = next((var for keys, var in env.items() if names[: len(keys)] == keys), None)
        where = f"{path}: {_dotted(loc)}: " if loc else f"{path}: "
        lines.append(where + message + (f" (set by {origin})" if origin else ""))
    return lines
