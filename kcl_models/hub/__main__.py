"""``python -m kcl_models.hub``: the ``kcl-hub`` command line."""
import sys

from .cli import main

sys.exit(main())
