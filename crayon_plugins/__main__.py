"""``python -m crayon_plugins``: the ``crayon`` command."""

from crayon_plugins.cli import main

main()
