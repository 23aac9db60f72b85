"""Round trip through an offline Hugging Face cache: save_for_hub -> HF cache layout ->
``pretrained=True`` / ``hf-hub:`` / ``local-dir:`` under HF_HUB_OFFLINE=1, in fresh interpreters
(huggingface_hub reads its environment variables at import)."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from conftest import code_blocks, make_results, place_in_hf_cache, run_offline, write_image

import kcl_models  # noqa: F401
from kcl_models.eval.report import file_sha256
from kcl_models.hub import save_for_hub, write_model_card


def _save_reference(model: torch.nn.Module, x: torch.Tensor, path) -> None:
    with torch.no_grad():
        torch.save({"x": x, "y": model.eval()(x)}, path)


@pytest.fixture(scope="module")
def bcl_cache(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bcl_roundtrip")
    torch.manual_seed(0)
    model = timm.create_model("resnet32_bcl.digits_lt").eval()
    folder = save_for_hub(model, None, tmp / "export")
    write_model_card(folder, make_results("resnet32_bcl.digits_lt", "resnet32_bcl", 10,
                                          weights_sha256=file_sha256(folder / "model.safetensors")))
    cache = tmp / "hub_cache"
    place_in_hf_cache(folder, cache, "kcl-models/resnet32_bcl.digits_lt")
    _save_reference(model, torch.randn(4, 3, 32, 32), tmp / "ref.pt")
    return tmp, cache, folder


@pytest.fixture(scope="module")
def offline_run(bcl_cache):
    """One fresh interpreter (HF_HUB_OFFLINE=1, cache = the tmp cache) runs every offline check."""
    tmp, cache, folder = bcl_cache
    write_image(tmp / "image.png")
    snippets = code_blocks((folder / "README.md").read_text().split("## Usage", 1)[1].split("\n## ", 1)[0])
    code = f"""
import json, torch, timm, kcl_models
ref = torch.load({str(tmp / 'ref.pt')!r}, weights_only=True)
out = {{}}
for i, snippet in enumerate({snippets!r}):  # the card's usage, as written
    scope = {{}}
    exec(snippet, scope)
    out["snippet%d" % i] = sorted(k for k in ("probs", "maps", "embedding", "model") if k in scope)
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
    specs = [k for k in offline_run if k != "missing" and not k.startswith("snippet")]
    assert len(specs) == 3
    for spec in specs:
        assert offline_run[spec] == {"equal": True, "num_classes": 10, "cls": "CosineClassifier"}, spec


def test_card_usage_snippets_run_as_written_offline(offline_run):
    ran = {k: v for k, v in offline_run.items() if k.startswith("snippet")}
    assert list(ran.values()) == [["model", "probs"], ["maps", "model"], ["embedding", "model"], ["model"]]


def test_pretrained_without_cache_names_the_repo(offline_run):
    assert offline_run["missing"].startswith("PretrainedWeightsUnavailable")
    assert "kcl-models/resnet32_kcl.digits_lt" in offline_run["missing"]
