"""Publish kcl-models weights on the Hugging Face Hub, and convert the authors' checkpoints.

- :func:`save_for_hub` (``save``) writes a Hub-ready folder: ``model.safetensors`` (backbone +
  classifier), timm's ``config.json`` with a ``kcl_models`` provenance block, the model card
  (``card``), ``results.json`` and ``per_class.png``; for the BCL ResNet-50 / ResNeXt-50 also a
  plain-timm export in ``timm/`` (the repo's ``timm`` branch).
- :func:`publish` (``upload``) creates the repo and uploads the folder (``dry_run`` lists it).
- :func:`convert_checkpoint` (``conversion``) wraps :mod:`kcl_models.models.convert` with
  provenance: file name, sha256, and the authors' release only when ``hub/manifest.yaml`` records
  that sha256.
- :func:`load_manifest` / :func:`zoo_table_markdown` (``manifest``): the zoo and README's table.
- :func:`main` (``cli``) is the ``kcl-hub`` console script.

The results JSON, its validation, the sha256 helper, the software versions and the per-class
plot are :mod:`kcl_models.eval.report`'s; this package only uses them.
"""
from ..models.convert import CheckpointLoadError, CheckpointMismatchError
from ._meta import CARD_FILE, CONFIG_FILE, PLOT_FILE, RESULTS_FILE, TIMM_EXPORT, WEIGHTS_FILE
from .card import ResultsMismatchError, card_metric_name, write_model_card
from .cli import main
from .conversion import convert_checkpoint
from .manifest import authors_release_for, default_manifest_path, load_manifest, zoo_table_markdown
from .save import save_for_hub, timm_export_model
from .upload import files_to_upload, publish

__all__ = [
    "WEIGHTS_FILE", "CONFIG_FILE", "CARD_FILE", "RESULTS_FILE", "PLOT_FILE", "TIMM_EXPORT",
    "save_for_hub", "timm_export_model", "write_model_card", "card_metric_name", "ResultsMismatchError",
    "publish", "files_to_upload", "convert_checkpoint", "load_manifest", "zoo_table_markdown",
    "default_manifest_path", "authors_release_for", "main", "CheckpointLoadError", "CheckpointMismatchError",
]
