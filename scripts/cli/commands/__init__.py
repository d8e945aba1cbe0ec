"""Subcommands of `gen3d`, one module each (see gen3d.cli.main)."""
