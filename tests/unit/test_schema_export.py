"""The committed JSON Schema files match the models, and `nerve schemas export` writes and checks them."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from nerve_cli import schemas_cmd
from schemas.export import MODELS, SCHEMA_DIR, check, render_all, write_all

NAMES = {
    "sensor_event.schema.json",
    "alert.schema.json",
    "command.schema.json",
    "ack.schema.json",
    "dead_letter.schema.json",
}


def test_one_file_per_contract() -> None:
    assert set(render_all()) == NAMES == set(MODELS)


def test_committed_schema_files_are_current() -> None:
    """Fails when a model changed without `nerve schemas export` being run."""
    for name, text in render_all().items():
        path = SCHEMA_DIR / name
        assert path.is_file(), f"{path} is missing: run `nerve schemas export`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `nerve schemas export`"
    assert check() == []


def test_rendering_is_pretty_sorted_and_ends_with_a_newline() -> None:
    for name, text in render_all().items():
        schema = orjson.loads(text)
        assert text.endswith("}\n"), name
        assert text == orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False


def test_event_schema_says_what_the_contract_says() -> None:
    schema = orjson.loads(render_all()["sensor_event.schema.json"])
    assert schema["required"] == ["site", "sensor", "kind", "value", "ts"]
    properties = schema["properties"]
    assert "default" not in properties["id"]
    assert properties["kind"]["pattern"] == "^[a-z0-9_]+$"
    assert {"type": "string", "format": "date-time"} in properties["ts"]["anyOf"]
    assert properties["tags"]["maxProperties"] == 32


def test_write_all_then_check_is_clean(tmp_path: Path) -> None:
    target = tmp_path / "out"
    written = write_all(target)
    assert {path.name for path in written} == NAMES
    assert check(target) == []


def test_check_lists_stale_missing_and_left_over_files(tmp_path: Path) -> None:
    write_all(tmp_path)
    (tmp_path / "alert.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "ack.schema.json").unlink()
    (tmp_path / "old_thing.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a schema\n", encoding="utf-8")
    assert check(tmp_path) == ["alert.schema.json", "ack.schema.json", "old_thing.schema.json"]


def test_check_of_a_missing_directory_lists_everything(tmp_path: Path) -> None:
    assert set(check(tmp_path / "absent")) == NAMES


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nerve")
    schemas_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_export_writes_and_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schemas", "export", "--dir", str(tmp_path)]) == 0
    assert {path.name for path in tmp_path.iterdir()} == NAMES
    assert "wrote" in capsys.readouterr().out
    assert run(["schemas", "export", "--check", "--dir", str(tmp_path)]) == 0


def test_cli_check_exits_1_listing_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_all(tmp_path)
    (tmp_path / "command.schema.json").write_text("{}\n", encoding="utf-8")
    assert run(["schemas", "export", "--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "command.schema.json" in err
    assert "alert.schema.json" not in err
    # --check writes nothing
    assert (tmp_path / "command.schema.json").read_text(encoding="utf-8") == "{}\n"


def test_cli_group_without_action_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schemas"]) == 2
    assert "export" in capsys.readouterr().err
