"""Capture the command output the README shows: `make readme-outputs` (or `python scripts/readme_outputs.py`).

Every output block of the README comes from here, so no number shown is older than the code that printed
it or was taken under conditions nobody wrote down. For each session below it lays out a scratch folder like
a checkout (`configs/`, `../shared` beside it, the sweep files the README gives with `<!-- file: NAME -->`),
runs the session's commands there exactly as the README shows them, and writes `docs/outputs/<name>.txt`:
a header line with the date, the commit, the machine and the load average before and after, then each
command after `$ ` and what it printed. The README's plain fence after each
`<!-- output: docs/outputs/<name>.txt -->` marker is then rewritten with that file, unchanged.

Run it on an idle machine: the header states the load, and the script warns when it exceeded the usable
cores. `--check` compares the README with the files and runs nothing (tests/test_profile_conditions.py).
The sessions use the README's own small examples; the whole script takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
OUTPUTS = REPO / "docs" / "outputs"
SHARED = REPO.parent / "shared"

# name -> the commands whose output one README block shows, in order, as the README writes them.
SESSIONS: dict[str, list[str]] = {
    "my_images": [
        "archbench run my_images.yaml > my_images.log",
        "grep -v ' step ' my_images.log",
        "archbench ls results/my_images",
        "archbench profile results/my_images",
        "archbench report results/my_images",
    ],
    "my_landcover": [
        "archbench run my_landcover.yaml > my_landcover.log",
        "grep -v ' step ' my_landcover.log",
        "archbench ls results/my_landcover",
        "archbench map results/my_landcover --scene my_scene.yaml --rf",
        "archbench map results/my_landcover --scene my_scene.yaml --rf",
        "archbench report results/my_landcover",
    ],
}
OUTPUT_MARKER = re.compile(r"^<!--\s*output:\s*(\S+)\s*-->\s*$")
FILE_MARKER = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")


def readme_files() -> dict[str, str]:
    """The README's `<!-- file: NAME -->` snippets: NAME -> the fenced block after the marker."""
    lines = README.read_text(encoding="utf-8").splitlines()
    files = {}
    for i, line in enumerate(lines):
        m = FILE_MARKER.match(line.strip())
        if m and i + 1 < len(lines) and lines[i + 1].startswith("```"):
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            files[m.group(1)] = "\n".join(lines[i + 2 : end]) + "\n"
    return files


def quoted_blocks(text: str) -> dict[str, tuple[int, int]]:
    """Output file (relative to the repository) -> (first, end) line indices of the fence body after its
    `<!-- output: FILE -->` marker."""
    lines = text.splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = OUTPUT_MARKER.match(line.strip())
        if m:
            if i + 1 >= len(lines) or lines[i + 1].strip() != "```":
                raise SystemExit(f"README.md:{i + 1}: an output marker must be followed by a plain ``` fence")
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            out[m.group(1)] = (i + 2, end)
    return out


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def commit() -> str:
    """The commit the outputs were made with (`-dirty` when the working tree has changes to tracked files)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short=10", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "configs", "pyproject.toml")
    return head + ("-dirty" if dirty else "")


def relative(text: str, prefix: str) -> str:
    """`text` with the scratch folder's path taken off the paths it prints; in a table row the cell keeps
    its width (the prefix's length moves behind the path), so the borders still line up."""
    out = []
    for line in text.splitlines(keepends=True):
        if "│" in line:
            line = re.sub(re.escape(prefix) + r"(\S*)", lambda m: m.group(1) + " " * len(prefix), line)
        out.append(line.replace(prefix, ""))
    return "".join(out)


def run_session(name: str, commands: list[str], ws: Path, env: dict[str, str]) -> tuple[str, float | None]:
    """Run one session's commands in `ws`; its captured text (header included) and the worst load seen."""
    before = load_average()
    started = time.monotonic()
    body = []
    for cmd in commands:
        res = subprocess.run(
            ["bash", "-c", 'archbench() { "$ARCHBENCH_PYTHON" -m archbench "$@"; }\n' + cmd],
            cwd=ws,
            env=env,
            capture_output=True,
            text=True,
        )
        shown = relative(res.stdout + res.stderr, str(ws) + os.sep).rstrip("\n")
        body.append(f"$ {cmd}" + (f"\n{shown}" if shown else ""))
        if res.returncode not in (0, 1):
            raise SystemExit(f"{name}: `{cmd}` exited {res.returncode}:\n{shown[-3000:]}")
    after = load_average()
    header = (
        f"# `make readme-outputs` {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
        f"{usable_cores()} usable cores ({platform.machine()}), load average (1 min) {before} before, "
        f"{after} after; {time.monotonic() - started:.0f} s"
    )
    worst = max((x for x in (before, after) if x is not None), default=None)
    return header + "\n" + "\n".join(body) + "\n", worst


def workspace(tmp: Path) -> Path:
    """A folder laid out like a checkout (configs/, ../shared) holding the README's sweep files."""
    ws = tmp / "repo"
    ws.mkdir()
    (ws / "configs").symlink_to(REPO / "configs")
    (tmp / "shared").symlink_to(SHARED)
    for name, text in readme_files().items():
        (ws / name).write_text(text, encoding="utf-8")
    return ws


def quote_in_readme(captured: dict[str, str]) -> None:
    """Rewrite each marked README block with its file's text (blocks for other files are left alone)."""
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    spans = quoted_blocks(text)
    for rel, (first, end) in sorted(spans.items(), key=lambda kv: -kv[1][0]):
        if rel in captured:
            lines[first:end] = captured[rel].rstrip("\n").splitlines()
    README.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check() -> int:
    """0 when every marked README block equals its file; else name the ones that differ."""
    spans = quoted_blocks(README.read_text(encoding="utf-8"))
    lines = README.read_text(encoding="utf-8").splitlines()
    bad = []
    for rel, (first, end) in spans.items():
        path = REPO / rel
        if (
            not path.is_file()
            or path.read_text(encoding="utf-8").rstrip("\n").splitlines() != lines[first:end]
        ):
            bad.append(rel)
    for rel in bad:
        print(
            f"README.md: the block after <!-- output: {rel} --> differs from {rel}; run make readme-outputs"
        )
    missing = sorted(f"docs/outputs/{n}.txt" for n in SESSIONS if f"docs/outputs/{n}.txt" not in spans)
    for rel in missing:
        print(f"README.md: no <!-- output: {rel} --> block")
    return 1 if bad or missing else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare the README with docs/outputs; run nothing")
    ap.add_argument(
        "sessions", nargs="*", help=f"sessions to capture (default: all of {', '.join(SESSIONS)})"
    )
    args = ap.parse_args()
    if args.check:
        return check()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: the README's examples read ../shared/data")
    unknown = [s for s in args.sessions if s not in SESSIONS]
    if unknown:
        raise SystemExit(f"unknown session(s) {', '.join(unknown)}; sessions: {', '.join(SESSIONS)}")
    env = {
        **os.environ,
        "ARCHBENCH_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO / "src"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    captured: dict[str, str] = {}
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    for name in args.sessions or list(SESSIONS):
        with tempfile.TemporaryDirectory(prefix="readme-outputs-") as tmp:
            env["ARCHBENCH_CACHE"] = str(Path(tmp) / "cache")  # cold, like a new user's first run
            text, worst = run_session(name, SESSIONS[name], workspace(Path(tmp)), env)
        rel = f"docs/outputs/{name}.txt"
        (REPO / rel).write_text(text, encoding="utf-8")
        captured[rel] = text
        print(text.splitlines()[0])
        if worst is not None and worst > usable_cores():
            print(f"warning: {name} ran at load {worst} on {usable_cores()} cores: not an idle machine")
    quote_in_readme(captured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
