"""``kcl-train`` / ``train.py`` entry point (``accelerate launch train.py --config ...``)."""
from __future__ import annotations

import sys

from .trainer import main_cli


def main() -> None:
    sys.exit(main_cli())


if __name__ == "__main__":
    main()
