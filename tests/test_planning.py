"""Everything checkable is checked at planning: data layouts per kind, weights files, the output folder —
exit 2 with one line per problem and nothing created; a run that still fails says why on the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from archbench.config import DataSpec
from archbench.data.registry import data_problems, dataset_kinds, dataset_layout
from conftest import tiny_sweep
from helpers import cli, random_png_folder, set_args

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]


def test_every_kind_states_its_layout() -> None:
    for kind in dataset_kinds():
        assert dataset_layout(kind) and "module docstring" not in dataset_layout(kind), kind
    assert "<root>/FashionMNIST/raw/" in dataset_layout("fashion_mnist")
    assert "<root>/cifar-10-batches-py/" in dataset_layout("cifar10")


def test_missing_files_are_listed_one_per_line_with_the_layout(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES:  # t10k-labels is missing
        (raw / f"{name}.gz").write_bytes(b"")
    problems = data_problems(DataSpec(kind="fashion_mnist", root=str(tmp_path)))
    assert len(problems) == 1
    assert "t10k-labels-idx1-ubyte[.gz] is missing" in problems[0]
    assert "<root>/FashionMNIST/raw/" in problems[0]
    # The MNIST layout is not the Fashion-MNIST one: the files sit in the wrong folder for mnist.
    assert data_problems(DataSpec(kind="fashion_mnist", root=str(tmp_path))) != []
    (tmp_path / "cifar-10-batches-py").mkdir()
    for name in CIFAR10_FILES[:3]:
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(b"")
    problems = data_problems(DataSpec(kind="cifar10", root=str(tmp_path)))
    assert [p.split(": ")[1].rsplit("/", 1)[1] for p in problems] == [
        f"{n} is missing; expected layout" for n in CIFAR10_FILES[3:]
    ]
    folder = tmp_path / "images"
    (folder / "train" / "cat").mkdir(parents=True)
    (folder / "train" / "dog").mkdir(parents=True)
    (folder / "test" / "cat").mkdir(parents=True)
    (folder / "train" / "cat" / "a.png").write_bytes(b"")
    problems = data_problems(DataSpec(kind="imagefolder", root=str(folder)))
    assert any("only in train/: ['dog']" in p for p in problems)
    assert any("without images in" in p and "dog" in p for p in problems)
    assert data_problems(DataSpec(kind="digits")) == []


def test_wrong_data_root_exits_2_naming_the_layout_and_creates_nothing(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, out=tmp_path / "out")
    res = cli(
        "run",
        str(sweep),
        "--set",
        "data.kind=fashion_mnist",
        "--set",
        f"data.root={tmp_path / 'fashion'}",
        "--set",
        f"model.pretrained={tmp_path / 'weights.pt'}",
        cwd=tmp_path,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2, res.stderr
    assert any("fashion: folder does not exist" in e and "<root>/FashionMNIST/raw/" in e for e in errors)
    assert any("weights.pt does not exist" in e for e in errors)
    assert len(res.stderr.strip().splitlines()) == 2  # one line per problem, nothing else
    assert not (tmp_path / "out").exists()
    # An output_dir that is a file: one more line, still nothing created.
    (tmp_path / "afile").write_text("x")
    res = cli("run", str(sweep), "--set", f"output_dir={tmp_path / 'afile' / 'r'}", cwd=tmp_path)
    assert res.returncode == 2
    assert "is not a folder" in res.stderr and (tmp_path / "afile").read_text() == "x"


def test_a_run_failing_at_run_time_prints_reason_and_fix(tmp_path: Path) -> None:
    root = random_png_folder(tmp_path / "imgs")
    (root / "b" / "broken.png").write_bytes(b"not a png")  # passes planning (layout), fails decoding
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    res = cli("run", str(sweep), *set_args("data.kind=imagefolder", f"data.root={root}"), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    # The run's own line (timestamped when not a terminal) and the sweep summary carry reason and fix.
    lines = [ln for ln in res.stdout.splitlines() if "BadImageFilesError" in ln]
    assert len(lines) == 2, res.stdout
    for line in lines:
        assert " failed " in line and "broken.png" in line and "on_bad_file: skip" in line, line


@pytest.mark.parametrize("kind", ["mnist", "kmnist", "cifar100"])
def test_no_root_is_one_line_naming_the_layout(kind: str) -> None:
    (problem,) = data_problems(DataSpec(kind=kind))
    assert "needs data.root" in problem and "expected layout: <root>/" in problem and "\n" not in problem
