"""predict / extract_features: one row per sample, in one and in two processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

import kcl_models  # noqa: F401  (registers resnet32_kcl)
from kcl_models.eval.evaluate import extract_features, predict

HERE = Path(__file__).parent


def _data(n=21):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 10)


def test_predict_single_process_matches_model_and_restores_mode():
    model = timm.create_model("resnet32_kcl", num_classes=10)
    model.train()
    ds = _data()
    logits, targets = predict(model, DataLoader(ds, batch_size=8), progress=False)
    assert model.training  # mode restored for the trainer's periodic eval
    assert logits.shape == (21, 10) and logits.dtype == torch.float32
    assert torch.equal(targets, ds.tensors[1])
    with torch.no_grad():
        ref = model.eval()(ds.tensors[0])
    assert torch.allclose(logits, ref, atol=1e-5)
    feats, labels = extract_features(model, DataLoader(ds, batch_size=5), progress=False)
    assert feats.shape == (21, 64) and torch.equal(labels, targets)
    with torch.no_grad():
        assert torch.allclose(model.fc(feats), ref, atol=1e-5)


def test_predict_with_single_process_accelerator():
    from accelerate import Accelerator
    acc = Accelerator(cpu=True)
    model = timm.create_model("resnet32_kcl", num_classes=10)
    logits, targets = predict(model, DataLoader(_data(13), batch_size=4), accelerator=acc, progress=False)
    assert logits.shape == (13, 10)
    assert torch.equal(targets, torch.arange(13) % 10)


def test_predict_empty_loader_is_clear_error():
    model = timm.create_model("resnet32_kcl", num_classes=10)
    with pytest.raises(ValueError, match="no batch"):
        predict(model, DataLoader(_data(0), batch_size=4), progress=False)


@pytest.mark.slow
def test_two_processes_count_every_sample_once(tmp_path):
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "_mp_predict.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for out in outs:
        assert out["num_processes"] == 2  # really two ranks, not two independent runs
        assert sorted(out["targets"]) == list(range(37))  # each sample exactly once
        assert out["logits_match"]
        assert sorted(out["feat_labels"]) == list(range(37))
        assert out["feats"] == pytest.approx([float(i) for i in out["feat_labels"]])
    assert {o["rank"] for o in outs} == {0, 1}
