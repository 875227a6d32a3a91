"""``python -m app`` is the ``pimsync`` command."""

from app.cli import main

main()
