"""``heavy`` tests (TorchScript / FX of the 224-px architectures whose code paths a lighter
parameter already covers) run only with KCL_HEAVY_TESTS=1, to keep CI's total small."""
from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: slow repeat of a covered code path; run with KCL_HEAVY_TESTS=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KCL_HEAVY_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="heavy: set KCL_HEAVY_TESTS=1 to run")
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)
