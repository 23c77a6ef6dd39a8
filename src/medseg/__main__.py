"""``python -m medseg ...``: the command line, as torchrun starts it (``torchrun ... -m medseg train ...``)."""

from medseg.apps.cli.app import main

main()
