"""Evaluate a model on long-tailed data or compare results files: see `python eval.py --help`.

Thin wrapper over `kcl_models.eval.cli.main` (also installed as the `kcl-eval` console script);
works under `accelerate launch eval.py ...`.
"""
from kcl_models.eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
