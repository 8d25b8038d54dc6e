"""`python -m archbench` runs the CLI."""

from .cli import main

main()
