"""``python -m crayon_plugins``: the ``crayon`` command."""

from .cli import main

main()
