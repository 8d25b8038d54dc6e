"""Source rules of the reliability catalogue that ruff's banned-api states (pyproject.toml): case 11 (a
DataLoader worker killed: it cannot happen, the data stays on the device as tensors and the package has no
DataLoader) and case 21 (no unpickling or YAML loading that can run code). `make lint` runs the rule on the
package; this test runs it too and shows it catches each breach in a file laid out like the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

RUFF = Path(sys.executable).parent / "ruff"


def _ruff(target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), "check", "--no-cache", "--select", "TID251", target],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@pytest.mark.reliability
def test_the_package_has_no_dataloader_and_no_unsafe_loading() -> None:
    res = _ruff("src/archbench", REPO)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("source", "case"),
    [
        ("from torch.utils.data import DataLoader\n", "case 11"),
        ("import torch.utils.data\n\nloader = torch.utils.data.DataLoader([], num_workers=2)\n", "case 11"),
        ("import pickle\n\npickle.loads(b'')\n", "case 21"),
        ("import yaml\n\nyaml.load('a: 1', Loader=yaml.Loader)\n", "case 21"),
    ],
)
def test_the_rule_catches_a_breach(tmp_path: Path, source: str, case: str) -> None:
    package = tmp_path / "src" / "archbench"
    package.mkdir(parents=True)
    (package / "bad.py").write_text(source)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    res = _ruff("src/archbench/bad.py", tmp_path)
    assert res.returncode == 1 and "TID251" in res.stdout and case in res.stdout, res.stdout + res.stderr
