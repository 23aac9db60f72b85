"""Round trip through an offline Hugging Face cache: save_for_hub -> HF cache layout ->
``pretrained=True`` / ``hf-hub:`` / ``local-dir:`` under HF_HUB_OFFLINE=1, in fresh interpreters
(huggingface_hub reads its environment variables at import)."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from conftest import make_results, place_in_hf_cache, run_offline

import kcl_models  # noqa: F401
from kcl_models.hub import save_for_hub


def _save_reference(model: torch.nn.Module, x: torch.Tensor, path) -> None:
    with torch.no_grad():
        torch.save({"x": x, "y": model.eval()(x)}, path)


@pytest.fixture(scope="module")
def bcl_cache(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bcl_roundtrip")
    torch.manual_seed(0)
    model = timm.create_model("resnet32_bcl.digits_lt").eval()
    folder = save_for_hub(model, make_results("resnet32_bcl.digits_lt", "resnet32_bcl", 10), tmp / "export")
    cache = tmp / "hub_cache"
    place_in_hf_cache(folder, cache, "kcl-models/resnet32_bcl.digits_lt")
    _save_reference(model, torch.randn(4, 3, 32, 32), tmp / "ref.pt")
    return tmp, cache, folder


@pytest.fixture(scope="module")
def offline_run(bcl_cache):
    """One fresh interpreter (HF_HUB_OFFLINE=1, cache = the tmp cache) runs every offline check."""
    tmp, cache, folder = bcl_cache
    code = f"""
import json, torch, timm, kcl_models
ref = torch.load({str(tmp / 'ref.pt')!r}, weights_only=True)
out = {{}}
# the registered name's Hub route (file=None: skip the weights bundled in the package), as a published tag uses it
hub_route = dict(pretrained_cfg_overlay=dict(file=None))
for spec in ("resnet32_bcl.digits_lt", "hf-hub:kcl-models/resnet32_bcl.digits_lt", "local-dir:{folder}"):
    model = timm.create_model(spec, pretrained=True, **(hub_route if ":" not in spec else {{}})).eval()
    with torch.no_grad():
        out[spec] = dict(equal=bool(torch.equal(model(ref["x"]), ref["y"])), num_classes=model.num_classes,
                         cls=type(model.get_classifier()).__name__)
try:
    timm.create_model("resnet32_kcl.digits_lt", pretrained=True, **hub_route)  # not in the cache
    out["missing"] = "no error"
except kcl_models.PretrainedWeightsUnavailable as err:
    out["missing"] = "PretrainedWeightsUnavailable: " + str(err).splitlines()[0]
print("RESULT" + json.dumps(out))
"""
    proc = run_offline(code, cache, tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def test_registered_name_hf_hub_and_local_dir_load_identical_weights_offline(offline_run):
    specs = [k for k in offline_run if k != "missing"]
    assert len(specs) == 3
    for spec in specs:
        assert offline_run[spec] == {"equal": True, "num_classes": 10, "cls": "CosineClassifier"}, spec


def test_pretrained_without_cache_names_the_repo(offline_run):
    assert offline_run["missing"].startswith("PretrainedWeightsUnavailable")
    assert "kcl-models/resnet32_kcl.digits_lt" in offline_run["missing"]


def test_standard_variant_loads_with_plain_timm(tmp_path):
    """resnet50_kcl's folder names timm's resnet50: hf-hub: loads it without kcl_models; after
    import kcl_models the registered name loads the same weights."""
    torch.manual_seed(1)
    model = timm.create_model("resnet50_kcl.imagenet_lt").eval()
    results = make_results("resnet50_kcl.imagenet_lt", "resnet50_kcl", 1000)
    results["data"]["name"] = "imagenet-lt"
    folder = save_for_hub(model, results, tmp_path / "export")
    cache = tmp_path / "hub_cache"
    place_in_hf_cache(folder, cache, "kcl-models/resnet50_kcl.imagenet_lt")
    _save_reference(model, torch.randn(2, 3, 64, 64), tmp_path / "ref.pt")
    code = f"""
import json, sys, torch, timm
ref = torch.load({str(tmp_path / 'ref.pt')!r}, weights_only=True)
plain = timm.create_model("hf-hub:kcl-models/resnet50_kcl.imagenet_lt", pretrained=True).eval()
assert "kcl_models" not in sys.modules, "plain timm path imported kcl_models"
with torch.no_grad():
    res = dict(plain_equal=bool(torch.equal(plain(ref["x"]), ref["y"])), plain_arch=type(plain).__name__,
               plain_cfg_arch=plain.pretrained_cfg["architecture"])
    import kcl_models
    # planned in the registry: give it the hf_hub_id it gets when published
    reg = timm.create_model("resnet50_kcl.imagenet_lt", pretrained=True,
                            pretrained_cfg_overlay=dict(hf_hub_id="kcl-models/resnet50_kcl.imagenet_lt")).eval()
    res["registry_equal"] = bool(torch.equal(reg(ref["x"]), ref["y"]))
print("RESULT" + json.dumps(res))
"""
    proc = run_offline(code, cache, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert res == {"plain_equal": True, "plain_arch": "ResNet", "plain_cfg_arch": "resnet50",
                   "registry_equal": True}
