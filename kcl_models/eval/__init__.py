"""Evaluation of long-tailed classifiers and representations.

- ``metrics``: top-k, per-class and many/medium/few accuracy, balancedness (KCL Eq. 3), confusion
  matrix, expected calibration error, ``compute_metrics``.
- ``evaluate``: ``predict`` / ``extract_features``, exact under multi-process Accelerate.
- ``probes``: linear probe (cRT protocol), weighted kNN, open-set protocol (KCL Table 4).
- ``report``: results JSON ``kcl-models/results/v1``, markdown tables, plots.
- ``cli``: ``eval.py`` / ``kcl-eval``; ``loading``: its model loading (every route, weights checked);
  ``flags``: the flag parser of the CLIs (dash/underscore spellings, "did you mean", no abbreviations).
"""
from .evaluate import extract_features, predict
from .metrics import (
    DEFAULT_SIGMA,
    accuracy_topk,
    balancedness,
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    shot_group_accuracy,
)
from .probes import fit_linear_classifier, knn_classify, linear_probe, open_set_probe, read_class_split
from .report import (
    SCHEMA,
    ResultsSchemaError,
    build_results,
    load_results,
    markdown_table,
    plot_compare,
    plot_per_class,
    save_results,
    validate_results,
)

__all__ = [
    "DEFAULT_SIGMA", "SCHEMA", "ResultsSchemaError", "accuracy_topk", "balancedness", "build_results",
    "compute_metrics", "confusion_matrix", "expected_calibration_error", "extract_features",
    "fit_linear_classifier", "knn_classify", "linear_probe", "load_results", "markdown_table",
    "open_set_probe", "per_class_accuracy", "plot_compare", "plot_per_class", "predict",
    "read_class_split", "save_results", "shot_group_accuracy", "validate_results",
]
