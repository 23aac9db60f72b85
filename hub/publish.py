#!/usr/bin/env python
"""Create a Hub repo and upload a folder written by ``kcl-hub save`` or ``hub/convert.py``.

    python hub/publish.py --folder hub_out/resnext50_32x4d_bcl.imagenet_lt \
        --results outputs/x50_eval/results.json --repo kcl-models/resnext50_32x4d_bcl.imagenet_lt --dry-run

``--results`` rewrites the model card with the measured numbers first; ``--dry-run`` prints the
files and card metadata without contacting the Hub. A ``timm/`` plain-timm export in the folder
goes to the repo's ``timm`` branch (``hf-hub:<repo>@timm``). The token comes from ``HF_TOKEN`` or
``hf auth login`` and is never printed. Thin wrapper over ``kcl-hub publish``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kcl_models.hub import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["publish", *sys.argv[1:]]))
