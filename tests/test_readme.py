"""The README and the docs site are tested: every ```bash command and every ```yaml snippet in README.md
and in docs/**/*.md (the generated docs/reference/ aside) runs here, on small data, so the docs cannot
drift from the code. A docs block identical to one already collected (same text, same files before it in
its section) runs once.

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
  when it is absent; a run that stops at planning (exit 2) only because pretrained weights or a dataset
  outside `../shared` are not on this machine skips with archbench's own message as the reason.
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
DOCS = REPO / "docs"
GENERATED = DOCS / "reference"  # made from the code by scripts/gen_reference.py; no runnable blocks
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
    doc: Path = README

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")[:30]
        page = "" if self.doc == README else self.doc.relative_to(DOCS).with_suffix("").as_posix() + "-"
        return f"{page}L{self.line}-{self.lang}-{slug}"

    @property
    def where(self) -> str:
        """`README.md line 12` or `docs/tutorials/mlflow.md line 7`, for messages."""
        return f"{self.doc.relative_to(REPO).as_posix()} line {self.line}"


def readme_blocks(doc: Path = README) -> list[Block]:
    blocks: list[Block] = []
    heading, marker_skip, marker_file = "", None, None
    lines = doc.read_text(encoding="utf-8").splitlines()
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
                blocks.append(
                    Block(f.group(1), start, heading, "\n".join(body), marker_skip, marker_file, doc)
                )
            marker_skip, marker_file = None, None
        elif line.strip():
            marker_skip, marker_file = None, None
        i += 1
    return blocks


def docs_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if GENERATED not in p.parents)


ALL_BLOCKS = readme_blocks() + [b for page in docs_pages() for b in readme_blocks(page)]


def _files_before(block: Block) -> list[Block]:
    """The `<!-- file: NAME -->` snippets before `block` in its section of its page."""
    return [
        b
        for b in ALL_BLOCKS
        if b.doc == block.doc and b.file and b.heading == block.heading and b.line < block.line
    ]


def _unique(blocks: list[Block]) -> list[Block]:
    """Each block once: a docs block that repeats an earlier one (text and the files it runs with) is the
    same test."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for b in blocks:
        key = (b.lang, b.text, b.file, b.skip, tuple((f.file, f.text) for f in _files_before(b)))
        if key not in seen:
            seen.add(key)
            out.append(b)
    return out


BLOCKS = _unique(ALL_BLOCKS)


def commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        out += [part.strip() for part in line.split("&&") if part.strip()]
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


def _configs_named(text: str) -> list[str]:
    """The text of every repository config a block's commands name (`configs/...yaml`)."""
    names = re.findall(r"configs/[A-Za-z0-9_/]+\.yaml", text)
    return [(REPO / n).read_text(encoding="utf-8") for n in names if (REPO / n).is_file()]


def is_scene_sweep(words: list[str]) -> bool:
    """A run of a sweep that reads raster patches (a whole scene is mapped later)."""
    return any("kind: raster_patches" in t for t in _configs_named(" ".join(words)))


def needs_shared(block: Block) -> bool:
    files = [b.text for b in _files_before(block)]
    texts = [block.text, *files, *_configs_named(block.text)]
    return any("../shared" in t or "shared/data" in t or "landcover_nc" in t for t in texts)


# What `archbench run` says (exit 2, at planning) when an input that is never committed or downloaded is not
# on this machine: pretrained weights, a dataset folder outside ../shared. Such a block is skipped with
# archbench's own first line as the reason.
MISSING_INPUT = re.compile(r"^error: (.*(never downloads|does not exist).*)$", re.MULTILINE)


def missing_input(stderr: str) -> str | None:
    lines = [m.group(1) for m in MISSING_INPUT.finditer(stderr)]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    if lines and len(lines) == len(errors):
        return lines[0][:300]
    return None


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
    for b in _files_before(block):
        (ws / b.file).write_text(b.text + "\n", encoding="utf-8")  # type: ignore[operator]


def _small(words: list[str]) -> list[str]:
    """The same command on small data."""
    if words[0] == "run" and "--dry-run" not in words:
        return words + SMALL_RUN + (SMALL_SCENE_RUN if is_scene_sweep(words) else [])
    if words[0] == "profile":
        out, skip = [], False
        for w in words:
            if skip:
                skip = False
                continue
            if w in ("--resolutions", "--batch-sizes", "--iters", "--warmup", "--budget"):
                skip = True
                continue
            out.append(w)
        small = [
            "--resolutions",
            "32",
            "--batch-sizes",
            "1,2",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--budget",
            "0",
        ]
        return out + small
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
        assert words[0] == "archbench", f"{block.where}: unknown command {cmd!r}"
        args = _small(words[1:])
        _ensure_sweeps(words, ws)
        # In this process, except a local Ray instance: it would start inside the test process.
        res = (run_cli if "ray" in args else cli)(*args, cwd=ws)
        if res.returncode == 2 and args[0] == "run" and (why := missing_input(res.stderr)):
            pytest.skip(f"{block.where}: {cmd}: not on this machine: {why}")
        ok = (0, 1) if args[0] == "profile" else (0,)
        assert res.returncode in ok, (
            f"{block.where}: {cmd}\n(ran: {' '.join(args)})\n" + res.stdout[-3000:] + res.stderr[-3000:]
        )
        if redirect:
            (ws / redirect).write_text(res.stdout)
        ran.append(cmd)
    return ran


def check_yaml_block(block: Block, ws: Path) -> None:
    from archbench.data.scene_file import SceneSpec
    from archbench.sweep.expand import expand_sweep, load_sweep_text

    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), f"{block.where}: a yaml block must be a mapping"
    where = f"{block.doc.relative_to(REPO).as_posix()}:{block.line}"
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
    docs = [b for b in ALL_BLOCKS if b.doc != README]
    assert {"bash", "yaml"} <= {b.lang for b in docs}, "docs pages have blocks to test"
    for page in docs_pages():
        fences = [ln for ln in page.read_text(encoding="utf-8").splitlines() if ln.startswith("```")]
        assert len(fences) % 2 == 0, f"{page} has an unclosed ``` fence"


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id, marks=_marks(b)) for b in BLOCKS])
def test_readme_block(block: Block, tmp_path: Path) -> None:
    if block.skip:
        pytest.skip(f"{block.where}: {block.skip}")
    if needs_shared(block) and not SHARED_DATA.is_dir():
        pytest.skip(f"{block.where} needs ../shared/data ({SHARED_DATA} is absent)")
    why = not_runnable_here(block) if block.lang == "bash" else None
    if why:
        pytest.skip(f"{block.where}: {why}")
    ws = _workspace(tmp_path)
    if block.lang == "yaml":
        check_yaml_block(block, ws)
        return
    _write_files_before(block, ws)
    ran = run_bash_block(block, ws)
    if not ran:
        pytest.skip(f"{block.where}: only make/pytest lines (the test suite itself)")
    shutil.rmtree(ws / "results", ignore_errors=True)
