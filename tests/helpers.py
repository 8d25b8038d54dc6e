"""Test helpers: the CLI called in this process, and waiting on observable state instead of sleeping.

`cli(...)` runs `archbench ...` as `python -m archbench` would (the same `main()`: exit codes, one-line
errors, output) without starting an interpreter (~3 s of imports each). Use `conftest.run_cli` (a real
subprocess) where the process is the point: signals, SIGKILL faults and resume, start-up imports, rlimits,
or environment read at import time.

`wait_until(predicate, timeout, what)` polls a predicate; the timeout only guards against a hang (a loaded
shared CPU is slow), it is never an assertion about speed. No pytest import: the Ray cluster scripts, run
in subprocesses with tests/ on PYTHONPATH, use it too.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str, *, every: float = 0.2, alive: Any = None
) -> T:
    """Call `predicate` until it returns something truthy, and return that; fail naming `what` after
    `timeout` seconds (a guard against a hang only). `alive`: a `subprocess.Popen` that must still be
    running while we wait (its early end fails at once, naming `what` and its exit code)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the process ended (exit {alive.returncode}) before {what}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class CliResult:
    """What `subprocess.run(..., capture_output=True, text=True)` gives: the same three attributes."""

    returncode: int
    stdout: str
    stderr: str


# What conftest.run_cli puts in the environment of its subprocess, and takes out of it.
CLI_ENV = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
CLI_ENV_REMOVED = ("ARCHBENCH_FAULT",)


@contextmanager
def _scoped_process_state(cwd: Path | None, env: dict[str, str]) -> Iterator[None]:
    """Working directory, environment (every variable: MLflow's client settings are set with setdefault),
    signal handlers, torch threads and the CLI's --debug flag as they were, whatever the command changed."""
    from archbench.cli import app as app_module
    from archbench.util.env import scoped_env

    saved_cwd = os.getcwd()
    saved_names = set(os.environ)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_debug = dict(app_module._debug)
    torch = sys.modules.get("torch")
    saved_threads = torch.get_num_threads() if torch is not None else None
    try:
        with scoped_env(restore=[*saved_names, *CLI_ENV_REMOVED, *env]):
            for k in CLI_ENV_REMOVED:
                os.environ.pop(k, None)
            os.environ.update(env)
            os.chdir(cwd or REPO)
            yield
    finally:
        for k in set(os.environ) - saved_names:  # set by the command (scoped_env put back the others)
            os.environ.pop(k, None)
        os.chdir(saved_cwd)
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
        app_module._debug.clear()
        app_module._debug.update(saved_debug)
        torch = sys.modules.get("torch")
        if torch is not None and saved_threads is not None:
            torch.set_num_threads(saved_threads)


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
    """`archbench *args` in this process: `main()` with argv, stdout and stderr captured, the exit code
    from its SystemExit. Same environment rules as `conftest.run_cli` (fault injection off unless `env`
    sets it; `env` must not ask for a fault that kills or signals the process)."""
    from archbench.cli.app import main

    fault = (env or {}).get("ARCHBENCH_FAULT", "")
    stopping = {"kill", "killonce", "term", "hang", "hangonce"}
    if {item.split("@")[0].strip() for item in fault.split(",")} & stopping:
        raise ValueError(f"ARCHBENCH_FAULT={fault} would stop this process: use conftest.run_cli")
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    saved_argv, saved_out, saved_err = sys.argv, sys.stdout, sys.stderr
    with _scoped_process_state(cwd, {**CLI_ENV, **(env or {})}):
        sys.argv, sys.stdout, sys.stderr = ["archbench", *args], out, err
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv, sys.stdout, sys.stderr = saved_argv, saved_out, saved_err
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, exit 1
        err.write(f"{code}\n")
        code = 1
    return CliResult(code, out.getvalue(), err.getvalue())


def one_line_error(res: Any) -> str:
    """The one `error: ...` line of a command that refused its input (exit 2, no traceback)."""
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return lines[0]


def files_under(path: Path) -> list[Path]:
    """Every file and folder below `path`, sorted: compare before/after to show nothing was written."""
    return sorted(p for p in path.rglob("*"))


def only_run(out: Path, sweep: str = "tiny") -> Path:
    """The run folder of a one-run sweep under the output folder `out`."""
    (run_dir,) = (out / sweep / "runs").iterdir()
    return run_dir


def set_args(*sets: str) -> list[str]:
    """`--set KEY=VALUE` command-line arguments, one pair per override."""
    return [a for s in sets for a in ("--set", s)]


def random_png_folder(root: Path, *, per_class: int = 6, palette: bool = False) -> Path:
    """An image folder root/a, root/b of `per_class` random 8×8 RGB PNGs each (seed 0). `palette`: saved as
    palette images with byte transparency, which Pillow warns about when it converts them to RGB."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            im = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
            if palette:
                im.convert("P").save(root / cls / f"{i}.png", transparency=bytes([0, 128, 255]))
            else:
                im.save(root / cls / f"{i}.png")
    return root
