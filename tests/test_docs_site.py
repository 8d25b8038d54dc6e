"""The docs site: a reference generated from the code (every sweep key described, with its default and an
example that validates; every command and option; the record; the exit codes), committed up to date, and a
site that MkDocs builds strictly with no stylesheet, script or font fetched from elsewhere."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO

SCRIPT = REPO / "scripts" / "gen_reference.py"


def _gen() -> Any:
    spec = importlib.util.spec_from_file_location("gen_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reference"] = module
    spec.loader.exec_module(module)
    return module


gen = _gen()
REFERENCE = REPO / "docs" / "reference"


def test_every_sweep_key_has_a_description() -> None:
    keys = [key for key, _ in gen.sweep_keys()]
    assert len(keys) > 80 and "train.checkpoint.every_minutes" in keys and "tune.space.<key>.low" in keys
    assert gen.missing_descriptions() == []


def test_a_key_without_a_description_fails_the_generator() -> None:
    from pydantic import Field, create_model

    from archbench.config import SweepConfig

    undocumented = create_model("Undocumented", __base__=SweepConfig, new_key=(int, Field(0)))
    assert gen.missing_descriptions(undocumented) == ["new_key"]
    with pytest.raises(SystemExit, match="new_key"):
        gen.sweep_page(undocumented)


def test_committed_reference_is_what_the_code_generates() -> None:
    for name, text in gen.render_all().items():
        path = REFERENCE / name
        assert path.is_file(), f"{path} missing: run python scripts/gen_reference.py"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run python scripts/gen_reference.py"
        )
    res = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr


def _rows(page: str) -> dict[str, list[str]]:
    """`| <a id=…></a>`key` | type | default | description | example |` rows by key."""
    out = {}
    for line in page.splitlines():
        m = re.match(r"\| <a id=\"[^\"]+\"></a>`([^`]+)` \| (.*) \|$", line)
        if m:
            out[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return out


def test_reference_lists_every_sweep_key_with_type_default_description_and_example() -> None:
    rows = _rows((REFERENCE / "sweep-file.md").read_text(encoding="utf-8"))
    keys = [key for key, _ in gen.sweep_keys()]
    assert sorted(rows) == sorted(keys) and len(rows) == len(keys)
    for key, field in gen.sweep_keys():
        type_, default, description, example = rows[key]
        assert type_ and description and example, key
        assert gen.default_text(field) in default, key
    # The keys a newcomer asked about, with their defaults.
    expected = {
        "train.log_every": "`50`",
        "data.memory_budget": "`null`",
        "executor.resources.processes": "`null`",
        "tune.trials": "`6`",
        "train.checkpoint.every_minutes": "`null`",
    }
    for key, default in expected.items():
        assert rows[key][1] == default, (key, rows[key])


BASE_SWEEP = """
name: examples
data: {kind: digits}
grid: {model.name: [tiny_cnn, resnet50], model.pool: [avg, max]}
tune: {space: {train.lr: {type: loguniform, low: 0.01, high: 0.1}}}
tracking: {mlflow: {uri: "sqlite:///mlflow.db"}}
profile: {}
explain: {}
map: {}
"""


def test_every_example_is_valid() -> None:
    """Each example as the reference shows it: a `--set` argument (as the shell passes it), or for keys
    `--set` cannot change (grid, exclude, whole sections) the same value written in the file."""
    from archbench.sweep.expand import load_sweep_text

    checked = 0
    for key, field in gen.sweep_keys():
        if "<key>" in key:  # an entry of tune.space: checked as a whole through tune.space's example
            continue
        arg = shlex.split(gen.example(key, field))[0]
        text = arg.split("=", 1)[1]
        if gen.settable(key):
            cfg = load_sweep_text(BASE_SWEEP, [arg], path="examples.yaml")
        else:
            raw = yaml.safe_load(BASE_SWEEP) | {key: yaml.safe_load(text)}
            cfg = load_sweep_text(yaml.safe_dump(raw), path="examples.yaml")
        value = yaml.safe_load(text)
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if isinstance(value, str) and "/" in value:  # a relative path resolves against the sweep file
            assert str(node).endswith(value.split("/")[-1]), (key, node, value)
        elif not isinstance(value, dict | list) or key in ("grid", "exclude"):
            assert node == value or str(node) == str(value), (key, node, value)
        checked += 1
    assert checked > 70


def test_cli_reference_lists_every_command_and_option() -> None:
    import typer.main

    from archbench.cli.app import app

    page = (REFERENCE / "cli.md").read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    for path, cmd in gen._commands(root, "archbench"):
        assert f"## {path}\n" in page, path
        section = page.split(f"## {path}\n", 1)[1].split("\n## ", 1)[0]
        for p in getattr(cmd, "params", []):
            for opt in list(p.opts) + list(getattr(p, "secondary_opts", []) or []):
                if opt.startswith("-"):
                    assert f"`{opt}" in section or f" {opt}`" in section or f"/ {opt}" in section, (path, opt)
            if p.param_type_name == "argument":
                assert f"`{gen._cell((p.metavar or p.name).upper())}`" in section, (path, p.name)
    for opt in ("--debug", "--version"):
        assert f"`{opt}`" in page


def test_exit_codes_page_covers_every_code_a_sweep_gives() -> None:
    from archbench.cli.conventions import EXIT_CODES
    from archbench.execution.types import SweepSummary

    summaries = [
        SweepSummary(REPO, outcomes={"a": "trained"}),
        SweepSummary(REPO, outcomes={"a": "failed", "b": "busy"}),
        SweepSummary(REPO, outcomes={"a": "busy"}),
        SweepSummary(REPO, stopped=True),
    ]
    codes = {s.exit_code for s in summaries}
    assert codes == {0, 1, 3, 130} and codes | {2} <= set(EXIT_CODES)
    page = (REFERENCE / "exit-codes.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"| {code} |" in page
    for name in ("verify", "export", "report", "map"):
        assert f"`archbench {name}`" in page


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted((REPO / "docs").rglob("*.md")):
        rel = page.relative_to(REPO / "docs").as_posix()
        assert rel in nav, f"{rel} is not in mkdocs.yml's nav"


EXTERNAL = re.compile(r"""^(https?:)?//""", re.I)


def _external_assets(site: Path) -> list[str]:
    """Stylesheets, scripts, fonts and CSS imports a built page would fetch from another host."""
    found = []
    tag = re.compile(r"<(script|link)\b([^>]*)>", re.I)
    attr = re.compile(r"""\b(src|href|rel)\s*=\s*["']([^"']*)["']""", re.I)
    for page in site.rglob("*.html"):
        for m in tag.finditer(page.read_text(encoding="utf-8")):
            attrs = {k.lower(): v for k, v in attr.findall(m.group(2))}
            url = attrs.get("src") if m.group(1).lower() == "script" else attrs.get("href")
            rel = attrs.get("rel", "").lower()
            fetched = m.group(1).lower() == "script" or any(
                r in rel for r in ("stylesheet", "preload", "preconnect", "modulepreload", "icon", "manifest")
            )
            if url and fetched and EXTERNAL.match(url):
                found.append(f"{page.relative_to(site)}: {m.group(0)[:120]}")
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"""(@import\s+(url\()?|url\()\s*["']?((https?:)?//[^"') ]+)""", text, re.I):
            found.append(f"{css.relative_to(site)}: {m.group(3)}")
    return found


def test_site_builds_strictly_with_no_asset_from_another_host(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs, mkdocs-material) is not installed")
    pytest.importorskip("material", reason="the docs extra (mkdocs, mkdocs-material) is not installed")
    site = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in ("index.html", "reference/sweep-file.html", "reference/cli.html", "tutorials/mlflow.html"):
        assert page in pages
    assert _external_assets(site) == []
    html = (site / "reference" / "sweep-file.html").read_text(encoding="utf-8")
    assert 'id="key-train-log-every"' in html and "fonts.googleapis" not in html


def test_the_external_asset_check_sees_a_cdn(tmp_path: Path) -> None:
    """The check above can fail: a page with a CDN script, a stylesheet and a CSS import is caught."""
    (tmp_path / "a.html").write_text(
        '<script src="https://unpkg.com/x.js"></script><link rel="stylesheet" href="//cdn.example/a.css">'
        '<a href="https://example.org">a link is not an asset</a><link rel="next" href="b.html">'
    )
    (tmp_path / "a.css").write_text('@import url("https://fonts.googleapis.com/css?family=Roboto");')
    found = _external_assets(tmp_path)
    assert len(found) == 3, found
