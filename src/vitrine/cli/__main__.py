"""``python -m vitrine.cli``: the ``vitrine`` command."""

from vitrine.cli import main

main()
