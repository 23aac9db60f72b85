"""Atomic writes with the default file mode, whole-folder replacement, and the finiteness check."""
from __future__ import annotations

import os
import stat

import pytest
import timm
import torch

import kcl_models  # noqa: F401
from kcl_models.utils import (
    NonFiniteWeightsError,
    atomic_folder,
    atomic_write_text,
    check_finite,
    first_nonfinite,
    save_timm_folder,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_has_the_mode_of_open_and_leaves_no_temp(tmp_path, umask_022):
    path = atomic_write_text(tmp_path / "a" / "f.txt", "hello")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert path.read_text() == "hello" and _mode(path) == _mode(plain) == 0o644
    assert os.listdir(tmp_path / "a") == ["f.txt"]


def test_timm_folder_weights_get_the_default_mode(tmp_path, umask_022):
    """timm.save_for_hf (safetensors) writes model.safetensors 0600: the trainer's export must not."""
    model = timm.create_model("resnet32_kcl", num_classes=3)
    folder = save_timm_folder(model, tmp_path / "model")
    assert {p.name: _mode(p) for p in folder.iterdir()} == {"model.safetensors": 0o644, "config.json": 0o644}
    assert _mode(folder) == 0o755
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_atomic_folder_is_complete_or_untouched(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target) as staging:
        (staging / "a.txt").write_text("old")
    with pytest.raises(FileExistsError):
        with atomic_folder(target):
            pass
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_folder(target, overwrite=True) as staging:
            (staging / "a.txt").write_text("new, half written")
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["export"] and (target / "a.txt").read_text() == "old"
    with atomic_folder(target, overwrite=True) as staging:
        (staging / "b.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    assert [p.name for p in target.iterdir()] == ["b.txt"]


def test_first_nonfinite_checks_buffers_and_names_the_first(tmp_path):
    model = timm.create_model("resnet32_kcl", num_classes=3)
    assert first_nonfinite(model) is None
    with torch.no_grad():
        model.layer3[2].bn2.running_var[:2] = float("inf")  # a buffer: a finite loss does not show it
        model.fc.weight[0, 0] = float("nan")
    assert first_nonfinite(model) == ("layer3.2.bn2.running_var", 2, 64)
    with pytest.raises(NonFiniteWeightsError, match=r"export: tensor 'layer3\.2\.bn2\.running_var' holds 2") as info:
        check_finite(model.state_dict(), "export")
    assert info.value.name == "layer3.2.bn2.running_var"
    assert first_nonfinite([("n", torch.tensor([1, 2]))]) is None  # integer tensors are always finite
