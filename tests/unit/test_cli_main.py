"""The `nerve` entry point: every command listed, and only the command being run imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nerve_cli.main import COMMANDS, build_parser, main


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in COMMANDS:
        assert f"    {command} " in text, command


def test_version_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("nerve ")


def test_unknown_command_is_refused_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["edgy", "run"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "'edgy'" in err and "edge" in err


def test_an_edge_agent_loads_neither_the_brain_nor_the_terminal_ui() -> None:
    """A gateway's memory: `nerve edge …` imports the edge command alone, not the others' libraries."""
    probe = (
        "import sys\n"
        "from nerve_cli.main import main\n"
        "try:\n"
        "    main(['edge', 'run', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(out.splitlines()[-1].split())
    for heavy in ("rich", "brain_bridge", "simulator", "faust", "email"):
        assert heavy not in loaded, f"{heavy} imported by `nerve edge run`"
    assert "nerve_cli" in loaded
