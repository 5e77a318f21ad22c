"""``python -m heal`` is the ``heal`` command."""

from heal.cli.main import main

main()
