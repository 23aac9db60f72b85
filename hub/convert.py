#!/usr/bin/env python
"""Convert the authors' KCL / BCL checkpoints into a Hub-ready timm folder.

    python hub/convert.py bcl --arch resnext50_32x4d_bcl --checkpoint bcl_ckpt.best.pth.tar \
        --out hub_out/resnext50_32x4d_bcl.imagenet_lt

Layouts: kcl-stage1 (MoCo ``encoder_q``; gives a backbone, num_classes=0), kcl-stage2 (linear
classifier), bcl (``encoder`` + cosine ``fc``), auto. Thin wrapper over ``kcl-hub convert``
(``kcl_models.hub.main``); ``--help`` lists every option.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kcl_models.hub import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
