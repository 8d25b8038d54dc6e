"""The README is tested: every ```bash command and every ```yaml snippet in README.md runs here, on small
data, so the docs cannot drift from the code.

Rules (also stated in the README's "Tested docs" paragraph):
- Every ```yaml block is validated: a sweep (has `name:` and no `bands:`) with `load_sweep_text`, a scene
  file (has `bands:`) with the scene schema, any other snippet (a `profile:` / `explain:` section) merged
  into a small sweep and validated. A block preceded by `<!-- file: NAME -->` is also written to NAME in
  the workspace, for the commands after it.
- Every ```bash block runs, command by command (`\\` continuations joined, comments dropped), in one
  workspace per block that has `configs/` and `../shared` as in a checkout. Only `archbench …` commands
  run; others (`make …`, `mkdir`, `cp`) are run only when they are plain shell file operations, `make` and
  pytest lines are the test suite itself and are listed as not run.
- Small sizes are substituted: `archbench run` gets `--set train.epochs=1` and small per-class limits,
  `archbench profile` one timing iteration at 32 px; a command whose sweep folder `results/<name>` does not
  exist yet gets `configs/<name>.yaml` run small first.
- `<!-- doctest: skip REASON -->` right before a fence opts a block out (reported as skipped with REASON);
  a block with a command other than archbench/plain file operations (`ray start`, a Slurm script) or an
  archbench command that needs a cluster or server (`--address`, an http(s):// URI) is skipped with that
  reason, so other sections can show such commands without breaking this test.
- Blocks that train, map, profile or explain are `slow`; blocks that read `../shared` skip with a reason
  when it is absent.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, SHARED, SHARED_DATA, run_cli
from helpers import cli

README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(doctest:\s*skip|file:)\s*(.*?)\s*-->\s*$")
SMALL_RUN = [
    "--set",
    "train.epochs=1",
    "--set",
    "data.limit_per_class=6",
    "--set",
    "data.test_limit_per_class=4",
]
# Scene sweeps: one tiny net, few patches and no Random Forest (mapping a whole scene with four ResNets and a
# forest takes many minutes here; tests/test_maps.py covers the full map path on the same scene).
SMALL_SCENE_RUN = [
    "--set",
    "grid.model.name=[tiny_cnn]",
    "--set",
    "data.options.per_class=25",
    "--set",
    "data.options.test_per_class=25",
    "--set",
    "map.rf=false",
]
SHELL_OK = {"mkdir", "cp", "ls", "cat", "head"}
NOT_RUN = {"make", ".venv/bin/python", "python", "pytest"}


@dataclass
class Block:
    lang: str
    line: int
    heading: str
    text: str
    skip: str | None = None
    file: str | None = None

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")[:30]
        return f"L{self.line}-{self.lang}-{slug}"


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    heading, marker_skip, marker_file = "", None, None
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        m = MARKER.match(line.strip())
        if m:
            if m.group(1).startswith("doctest"):
                marker_skip = m.group(2) or "opted out"
            else:
                marker_file = m.group(2)
            i += 1
            continue
        f = FENCE.match(line)
        if f:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if f.group(1) in ("bash", "yaml"):
                blocks.append(Block(f.group(1), start, heading, "\n".join(body), marker_skip, marker_file))
            marker_skip, marker_file = None, None
        elif line.strip():
            marker_skip, marker_file = None, None
        i += 1
    return blocks


BLOCKS = readme_blocks()


def commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(line)
    return out


def is_expensive(block: Block) -> bool:
    for cmd in commands(block.text) if block.lang == "bash" else []:
        words = shlex.split(cmd)
        if words[:1] == ["archbench"] and len(words) > 1:
            if words[1] in ("map", "profile", "explain", "report"):
                return True
            if words[1] == "run" and "--dry-run" not in words:
                return True
    return False


def needs_shared(block: Block) -> bool:
    files = [b.text for b in BLOCKS if b.file and b.heading == block.heading and b.line < block.line]
    return any("../shared" in t or "landcover_nc" in t for t in [block.text, *files])


def _marks(block: Block) -> list[Any]:
    return [pytest.mark.slow] if is_expensive(block) else []


def _workspace(tmp_path: Path) -> Path:
    """A folder laid out like a checkout: configs/ from the repository and ../shared beside it."""
    ws = tmp_path / "repo"
    ws.mkdir()
    (ws / "configs").symlink_to(REPO / "configs")
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    return ws


def _write_files_before(block: Block, ws: Path) -> None:
    """Snippets marked `<!-- file: NAME -->` that come before this block in the same section."""
    for b in BLOCKS:
        if b.line >= block.line:
            break
        if b.file and b.heading == block.heading:
            (ws / b.file).write_text(b.text + "\n", encoding="utf-8")


def _small(words: list[str]) -> list[str]:
    """The same command on small data."""
    if words[0] == "run" and "--dry-run" not in words:
        return words + SMALL_RUN + (SMALL_SCENE_RUN if any("landcover_nc" in w for w in words) else [])
    if words[0] == "profile":
        out, skip = [], False
        for w in words:
            if skip:
                skip = False
                continue
            if w in ("--resolutions", "--batch-sizes", "--iters", "--warmup"):
                skip = True
                continue
            out.append(w)
        return out + ["--resolutions", "32", "--batch-sizes", "1,2", "--iters", "1", "--warmup", "0"]
    if words[0] == "explain":
        return [w if w != "8" else "2" for w in words]
    if words[0] == "map":
        return words + ["--window", "64"]
    return words


def _ensure_sweeps(words: list[str], ws: Path) -> None:
    """A command that reads results/<name> before any command of its block made it: run the config small."""
    for w in words[1:]:
        m = re.match(r"^results/([A-Za-z0-9_]+)/?$", w)
        if m and not (ws / w).exists() and (REPO / "configs" / f"{m.group(1)}.yaml").is_file():
            res = cli(*_small(["run", f"configs/{m.group(1)}.yaml"]), cwd=ws)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def not_runnable_here(block: Block) -> str | None:
    """Why a block cannot run in a test (a cluster, a remote server, a job script), else None."""
    for cmd in commands(block.text):
        if cmd.startswith("#!"):
            return "a job script (needs a scheduler)"
        words = shlex.split(cmd.split(">")[0])
        if not words or words[0] in NOT_RUN or words[0] in SHELL_OK:
            continue
        if words[0] != "archbench":
            return f"`{cmd}` needs a machine this test does not have (only archbench commands run here)"
        if "--address" in words or any(re.match(r"^https?://", w) for w in words):
            return f"`{cmd}` needs a cluster or a server"
    return None


def run_bash_block(block: Block, ws: Path) -> list[str]:
    ran = []
    for cmd in commands(block.text):
        redirect = None
        if ">" in cmd:
            cmd, _, target = cmd.partition(">")
            redirect = target.strip()
        words = shlex.split(cmd)
        if words[0] in NOT_RUN:
            continue  # make targets and pytest: the test suite itself
        if words[0] in SHELL_OK:
            subprocess.run(words, cwd=ws, check=True, capture_output=True)
            ran.append(cmd)
            continue
        assert words[0] == "archbench", f"README line {block.line}: unknown command {cmd!r}"
        args = _small(words[1:])
        _ensure_sweeps(words, ws)
        # In this process, except a local Ray instance: it would start inside the test process.
        res = (run_cli if "ray" in args else cli)(*args, cwd=ws)
        ok = (0, 1) if args[0] == "profile" else (0,)
        assert res.returncode in ok, (
            f"README line {block.line}: {cmd}\n(ran: {' '.join(args)})\n"
            + res.stdout[-3000:]
            + res.stderr[-3000:]
        )
        if redirect:
            (ws / redirect).write_text(res.stdout)
        ran.append(cmd)
    return ran


def check_yaml_block(block: Block, ws: Path) -> None:
    from archbench.data.scene_file import SceneSpec
    from archbench.sweep.expand import expand_sweep, load_sweep_text

    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), f"README line {block.line}: a yaml block must be a mapping"
    where = f"README.md:{block.line}"
    if "bands" in data:
        SceneSpec.model_validate(data)
    elif "name" in data:
        cfg = load_sweep_text(block.text, path=where)
        assert expand_sweep(cfg), where
    else:
        base = {"name": "snippet", "data": {"kind": "digits"}, **data}
        cfg = load_sweep_text(yaml.safe_dump(base), path=where)
        assert expand_sweep(cfg)
    if block.file:
        (ws / block.file).write_text(block.text + "\n", encoding="utf-8")


def test_the_readme_has_blocks_to_test() -> None:
    fences = [ln for ln in README.read_text(encoding="utf-8").splitlines() if ln.startswith("```")]
    assert len(fences) % 2 == 0, "README.md has an unclosed ``` fence"
    langs = {b.lang for b in BLOCKS}
    assert {"bash", "yaml"} <= langs and len(BLOCKS) >= 10


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id, marks=_marks(b)) for b in BLOCKS])
def test_readme_block(block: Block, tmp_path: Path) -> None:
    if block.skip:
        pytest.skip(f"README line {block.line}: {block.skip}")
    if needs_shared(block) and not SHARED_DATA.is_dir():
        pytest.skip(f"README line {block.line} needs ../shared/data ({SHARED_DATA} is absent)")
    why = not_runnable_here(block) if block.lang == "bash" else None
    if why:
        pytest.skip(f"README line {block.line}: {why}")
    ws = _workspace(tmp_path)
    if block.lang == "yaml":
        check_yaml_block(block, ws)
        return
    _write_files_before(block, ws)
    ran = run_bash_block(block, ws)
    if not ran:
        pytest.skip(f"README line {block.line}: only make/pytest lines (the test suite itself)")
    shutil.rmtree(ws / "results", ignore_errors=True)
