"""`archbench datasets`: owns the listing of dataset kinds; the data registry answers."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the dataset kinds (`data.kind`): what each is and what it reads under `data.root`."""
    from rich.console import Console
    from rich.table import Table

    from archbench.data import describe_datasets

    rows = describe_datasets()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="archbench datasets (data.kind)")
    for col in ("kind", "what", "reads"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["kind"], r["description"], r["reads"])
    Console().print(table)
