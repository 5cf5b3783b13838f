"""``python -m relaykit`` is the ``relaykit`` command."""

from relaykit.cli import main

main()
