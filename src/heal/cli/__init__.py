"""The ``heal`` command line (typer + rich). ``heal.cli.main:main`` is the entry point."""
