"""Subcommands of `gen3d`, one module each (see scripts/cli.py)."""
