#!/usr/bin/env python
"""Train a long-tailed recipe: ``accelerate launch train.py --config configs/<recipe>.yaml [--key value]``."""
from kcl_models.train.cli import main

if __name__ == "__main__":
    main()
