"""JSON Schema files for every contract, generated from the models and kept in `schemas/json/`.

The files are committed so that producers in other languages can validate against them; a test and
`nerve schemas export --check` fail when they no longer match the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import orjson

from schemas.alert import Ack, Alert, Command, DeadLetter
from schemas.event import SensorEvent
from schemas.wire import WireModel

SCHEMA_DIR: Final = Path(__file__).resolve().parent / "json"
"""Where the committed schema files live."""

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

MODELS: Final[dict[str, type[WireModel]]] = {
    "sensor_event.schema.json": SensorEvent,
    "alert.schema.json": Alert,
    "command.schema.json": Command,
    "ack.schema.json": Ack,
    "dead_letter.schema.json": DeadLetter,
}
"""File name → model, one file per contract."""

_SUFFIX: Final = ".schema.json"


def render(model: type[WireModel]) -> str:
    """The JSON Schema of `model` (validation side) as pretty-printed text with sorted keys."""
    schema = {"$schema": DIALECT, **model.model_json_schema()}
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
    return orjson.dumps(schema, option=option).decode("utf-8")


def render_all() -> dict[str, str]:
    """File name → schema text for every contract."""
    return {name: render(model) for name, model in MODELS.items()}


def write_all(directory: Path | str = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into `directory` (created if missing); returns the paths written."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = target / name
        path.write_bytes(text.encode("utf-8"))  # bytes: "\n" line ends on every platform
        written.append(path)
    return written


def check(directory: Path | str = SCHEMA_DIR) -> list[str]:
    """Names of schema files in `directory` that are missing, differ from the models, or are left over
    from a model that no longer exists; empty when everything is current."""
    target = Path(directory)
    expected = render_all()
    stale = []
    for name, text in expected.items():
        path = target / name
        if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
            stale.append(name)
    if target.is_dir():
        stale.extend(sorted(path.name for path in target.glob(f"*{_SUFFIX}") if path.name not in expected))
    return stale
