"""Command-line conventions: `-h` beside `--help` on every command, `--version`, boolean options shown as
flags (never a `<bool>` value placeholder), and help texts that say what a command takes."""

from __future__ import annotations

import re
import tomllib

import pytest
import typer.main
from typer.testing import CliRunner

from archbench.cli.app import app
from conftest import REPO, run_cli

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _help(*args: str) -> str:
    res = runner.invoke(app, [*args, "-h"], env={"COLUMNS": "160", "NO_COLOR": "1"})
    assert res.exit_code == 0, (args, res.output)
    return ANSI.sub("", res.output)


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        paths += [[name, sub] for sub in getattr(cmd, "commands", {})]
    return paths


def test_h_and_version_exit_0_from_the_installed_entry_point() -> None:
    res = run_cli("-h")
    assert res.returncode == 0 and "Usage:" in res.stdout and "run" in res.stdout, res.stderr
    res = run_cli("--version")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert res.returncode == 0 and res.stdout.strip() == f"archbench {version}", (res.stdout, res.stderr)


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "archbench")
def test_every_command_takes_h_and_shows_flags_as_flags(path: list[str]) -> None:
    text = _help(*path)
    assert "Usage:" in text and "-h" in text and "--help" in text
    assert "<bool>" not in text, text  # a flag takes no value


def test_boolean_options_read_as_flags() -> None:
    run = _help("run")
    assert re.search(r"--dry-run\s+print the expanded runs", run), run
    profile = _help("profile")
    assert re.search(r"--memory\s+--no-memory\s+measure peak memory", profile), profile
    assert re.search(r"--json\s+print JSON", profile), profile


def test_help_texts_say_what_a_command_takes() -> None:
    profile = " ".join(_help("profile").split())
    assert "run folders or sweep folders" in profile and "timm:NAME" in profile
    assert "MODEL|RUN_DIR|SWEEP_DIR" in profile
    ls = " ".join(_help("ls").split())
    assert "--wide" in ls and "every column" in ls
    top = _help()
    assert "--version" in top and "--debug" in top
