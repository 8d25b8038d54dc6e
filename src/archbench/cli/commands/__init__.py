"""CLI subcommands of later stages, one module each (`command` is the typer function); imports stay light."""
