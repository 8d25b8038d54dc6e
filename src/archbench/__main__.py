"""`python -m archbench` runs the CLI."""

from archbench.cli.app import main

main()
