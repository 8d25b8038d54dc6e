"""`archbench models [PATTERN]`: owns the listing's arguments and printing; the registry answers.

Like timm's `list_models('resnet*')`: fnmatch patterns over archbench's names, `timm:PATTERN` over timm's.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def command(
    pattern: Annotated[
        str, typer.Argument(help="fnmatch pattern, e.g. 'resnet*'; timm:PATTERN for timm")
    ] = "*",
    params: Annotated[
        bool, typer.Option("--params/--no-params", help="parameters at 224 px (built on the meta device)")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the models the registry holds: name, family, params at 224 px, local ImageNet weights."""
    from rich.console import Console
    from rich.table import Table

    from archbench.models.catalog import CATALOG_SIZE, list_models

    rows = list_models(pattern, params=params and not pattern.startswith("timm:"))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        Console(stderr=True).print(f"no model matches {pattern!r}", markup=False, highlight=False)
        raise typer.Exit(code=1)
    table = Table(title=f"archbench models {pattern}")
    table.add_column("name")
    table.add_column("family")
    if "params_224" in rows[0]:
        table.add_column(f"params ({CATALOG_SIZE} px, 1000 classes)", justify="right")
    table.add_column("ImageNet weights here")
    for r in rows:
        weights = {True: "yes", False: "no", None: "none published"}[r["imagenet_weights_local"]]
        cells = [r["name"], r["family"]]
        if "params_224" in r:
            cells.append("" if r["params_224"] is None else f"{r['params_224']:,}")
        table.add_row(*cells, weights)
    Console().print(table)
