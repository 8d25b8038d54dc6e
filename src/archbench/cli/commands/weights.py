"""`archbench weights [PATTERN]`: owns listing where each model's ImageNet weights go; never downloads.

For every registered model with published weights (or timm's, with `timm:PATTERN`): the expected file,
the folder it belongs in, whether it is present, and the URL to fetch it from on a machine with network.
Exit codes: 0 listed, 2 nothing matches the pattern.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def command(
    pattern: Annotated[
        str | None,
        typer.Argument(help="fnmatch pattern over model names (resnet*, vit_b_16), or timm:PATTERN"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON list instead of a table")] = False,
    missing: Annotated[bool, typer.Option("--missing", help="list only weights that are absent")] = False,
) -> None:
    """List the ImageNet weights archbench looks for (present/absent), where they go, and their URLs."""
    from rich.console import Console
    from rich.table import Table

    from archbench.models.catalog import list_weights

    found = list_weights(pattern)
    if not found:
        typer.echo(
            f"error: no model with ImageNet weights matches {pattern!r}; try `archbench weights` for all "
            "registered names or `archbench weights 'timm:vit_*'` for timm's",
            err=True,
        )
        raise typer.Exit(code=2)
    if missing:
        found = [w for w in found if w.found is None]
    if as_json:
        rows = [
            {
                "model": w.model,
                "source": w.source,
                "file": w.file,
                "expected": str(w.expected),
                "present": w.found is not None,
                "found": str(w.found) if w.found else None,
                "url": w.url,
                "fetch": w.fetch,
            }
            for w in found
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    console = Console()
    table = Table(title="ImageNet weights (archbench never downloads: fetch absent files elsewhere)")
    for col in ("model", "present", "file", "put it in", "url"):
        table.add_column(col, overflow="fold")
    for w in found:
        folder = w.expected if w.expected.name.startswith("models--") else w.expected.parent
        table.add_row(w.model, "yes" if w.found else "no", w.file, str(folder), w.url)
    console.print(table)
    have = sum(w.found is not None for w in found)
    console.print(f"{have} of {len(found)} present", highlight=False)
