"""Plain-timm fine-tuning of every ResNet-50 / ResNeXt-50 variant, KCL and BCL, trained or converted:
``timm.create_model('hf-hub:...', pretrained=True, num_classes=N)`` in a fresh interpreter that never
imports kcl_models, from an offline Hugging Face cache (HF_HUB_OFFLINE=1); the cards' usage
snippets run as written; publish sends the plain-timm export to the repo's ``timm`` branch."""
from __future__ import annotations

import json
import sys

import huggingface_hub
import pytest
import timm
import torch
from conftest import code_blocks, place_in_hf_cache, run_offline, write_image

import kcl_models  # noqa: F401
from kcl_models.hub import convert_checkpoint, publish, save_for_hub

NUM_CLASSES = 10


def _usage(folder) -> str:
    return (folder / "README.md").read_text().split("## Usage", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Three Hub repos in an offline cache: a trained BCL ResNeXt-50, a BCL ResNet-50 converted from
    the authors' checkpoint layout, a trained KCL ResNet-50; reference outputs of the originals."""
    tmp = tmp_path_factory.mktemp("plain_timm")
    x = torch.randn(2, 3, 64, 64)
    cache, refs, folders = tmp / "hub_cache", {}, {}

    torch.manual_seed(0)
    x50 = timm.create_model("resnext50_32x4d_bcl.imagenet_lt", num_classes=NUM_CLASSES).eval()
    folders["x50_bcl"] = (save_for_hub(x50, None, tmp / "x50_bcl"), x50)

    torch.manual_seed(1)
    r50 = timm.create_model("resnet50_bcl", num_classes=NUM_CLASSES).eval()
    state = {f"module.encoder.{k}": v for k, v in r50.state_dict().items() if not k.startswith("fc.")}
    state["module.fc.weight"] = r50.fc.weight.detach().t().contiguous()  # the authors' NormedLinear [D, C]
    state["module.head.0.weight"] = torch.zeros(4, 2048)  # contrastive head: training-time only
    torch.save({"state_dict": state, "epoch": 90, "arch": "resnet50"}, tmp / "bcl_r50.pth.tar")
    out, _ = convert_checkpoint(tmp / "bcl_r50.pth.tar", "resnet50_bcl.imagenet_lt", tmp / "r50_bcl")
    folders["r50_bcl"] = (out, r50)

    torch.manual_seed(2)
    k50 = timm.create_model("resnet50_kcl.imagenet_lt", num_classes=NUM_CLASSES).eval()
    folders["r50_kcl"] = (save_for_hub(k50, None, tmp / "r50_kcl"), k50)

    repos = {}
    for i, (name, (folder, model)) in enumerate(folders.items()):
        repo = json.loads((folder / "config.json").read_text())["kcl_models"]["repo_id"]  # what the card names
        repos[name] = repo
        place_in_hf_cache(folder, cache, repo, commit=f"{i}" * 40)
        if (folder / "timm").is_dir():
            place_in_hf_cache(folder / "timm", cache, repo, commit=f"{i + 5}" * 40, ref="timm")
        with torch.no_grad():
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            refs[name] = {"features": feats, "logits": model(x)}
    torch.save({"x": x, "refs": refs}, tmp / "ref.pt")
    write_image(tmp / "image.png")
    return tmp, cache, repos, {k: v[0] for k, v in folders.items()}


@pytest.fixture(scope="module")
def plain_run(zoo):
    """One interpreter without kcl_models: fine-tuning, plain-timm classifier, the cards' plain snippets."""
    tmp, cache, repos, folders = zoo
    # the card generator writes the same snippets for every plain-timm repo: run one card's (ResNet-50 size)
    snippets = [s for s in code_blocks(_usage(folders["x50_bcl"])) if "import kcl_models" not in s]
    code = f"""
import json, sys, torch, timm
data = torch.load({str(tmp / 'ref.pt')!r}, weights_only=True)
x, out = data["x"], {{}}
for name, repo in {repos!r}.items():
    ref = data["refs"][name]
    spec = "hf-hub:" + repo + ("" if name == "r50_kcl" else "@timm")
    ft = timm.create_model(spec, pretrained=True, num_classes=7).eval()
    clf = timm.create_model(spec, pretrained=True).eval()
    with torch.no_grad():
        feats = ft.forward_head(ft.forward_features(x), pre_logits=True)
        logits = clf(x)
    scale = 1.0 if name == "r50_kcl" else 30.0 / feats.norm(dim=1, keepdim=True)  # cosine = linear * 30 / |h|
    res = dict(arch=ft.pretrained_cfg["architecture"], num_classes=ft.num_classes,
               features=bool(torch.allclose(feats, ref["features"], atol=1e-5, rtol=1e-5)),
               top5=bool(torch.equal(logits.topk(5).indices, ref["logits"].topk(5).indices)),
               logits=bool(torch.allclose(logits * scale, ref["logits"], atol=1e-4, rtol=1e-4)))
    if name != "r50_kcl":
        try:
            timm.create_model("hf-hub:" + repo, pretrained=True)
            res["main_branch"] = "loaded"
        except RuntimeError as err:
            res["main_branch"] = str(err).split("(")[0].strip()
    out[name] = res
for i, snippet in enumerate({snippets!r}):
    exec(snippet, {{}})
    out["snippets"] = i + 1
out["imported_kcl_models"] = "kcl_models" in sys.modules
print("RESULT" + json.dumps(out))
"""
    proc = run_offline(code, cache, tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def test_every_resnet50_variant_fine_tunes_in_plain_timm(plain_run):
    assert plain_run["imported_kcl_models"] is False
    expect = {"x50_bcl": "resnext50_32x4d", "r50_bcl": "resnet50", "r50_kcl": "resnet50"}
    for name, arch in expect.items():
        res = plain_run[name]
        assert res["arch"] == arch and res["num_classes"] == 7, name
        assert res["features"], f"{name}: plain-timm backbone differs from the original"
        assert res["top5"] and res["logits"], f"{name}: plain-timm classifier does not rank like the original"
    # the main branch names the kcl-models architecture, as the card says
    assert plain_run["x50_bcl"]["main_branch"] == plain_run["r50_bcl"]["main_branch"] == "Unknown model"
    assert plain_run["snippets"] == 3  # feature maps, embeddings, fine-tuning


def test_cards_say_what_loads_where(zoo):
    _, _, _, folders = zoo
    usage = _usage(folders["r50_bcl"])
    assert "hf-hub:kcl-models/resnet50_bcl.imagenet_lt@timm\", pretrained=True, num_classes=N" in usage
    assert "timm only" in usage and "`import kcl_models` first" in usage
    assert "identical top-1/top-5 predictions" in usage
    provenance = (folders["r50_bcl"] / "README.md").read_text().split("## Provenance", 1)[1]
    assert "Converted from `bcl_r50.pth.tar`, sha256 " in provenance
    export_card = (folders["x50_bcl"] / "timm" / "README.md").read_text()
    assert "plain-timm `resnext50_32x4d` export" in export_card and "library_name: timm" in export_card
    assert json.loads((folders["x50_bcl"] / "timm" / "config.json").read_text())["architecture"] == "resnext50_32x4d"
    assert not (folders["r50_kcl"] / "timm").exists()
    kcl_usage = _usage(folders["r50_kcl"])  # the folder itself is plain timm: no import anywhere
    assert len(code_blocks(kcl_usage)) == 4 and "import kcl_models" not in kcl_usage and "@timm" not in kcl_usage


def test_kcl_snippet_loads_the_cosine_classifier(zoo):
    tmp, cache, repos, folders = zoo
    snippets = [s for s in code_blocks(_usage(folders["x50_bcl"])) if "import kcl_models" in s]
    assert len(snippets) == 1  # image classification with BCL's exact logits
    code = f"""
import json, torch, timm
for snippet in {snippets!r}:
    scope = {{}}
    exec(snippet, scope)
print("RESULT" + json.dumps(dict(cls=type(scope["model"].get_classifier()).__name__,
                                 shape=list(scope["probs"].shape))))
"""
    proc = run_offline(code, cache, tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.split("RESULT", 1)[1]) == {"cls": "CosineClassifier", "shape": [1, NUM_CLASSES]}


def test_publish_sends_the_export_to_the_timm_branch(zoo, monkeypatch, capsys, tmp_path):
    import os
    import shutil
    folder = shutil.copytree(zoo[3]["x50_bcl"], tmp_path / "x50_bcl", copy_function=os.link)  # publish edits it
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_branch",
                        lambda self, repo_id, **kw: calls.append(("branch", kw["branch"])))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)))
    files = publish(folder, "me/x50_bcl", dry_run=True)
    assert "timm/model.safetensors" in files and "to branch 'timm'" in capsys.readouterr().out
    assert not calls
    publish(folder, "me/x50_bcl")
    main_upload, branch, export_upload = calls
    assert main_upload[1]["ignore_patterns"] == ["timm/*"] and main_upload[1].get("revision") is None
    assert branch == ("branch", "timm")
    assert export_upload[1]["revision"] == "timm"
    assert export_upload[1]["folder_path"] == str(folder / "timm")
    assert "hf-hub:me/x50_bcl@timm" in (folder / "README.md").read_text()
    assert "hf-hub:me/x50_bcl@timm" in (folder / "timm" / "README.md").read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_export_files_get_the_default_mode(zoo):
    import os
    import stat
    _, _, _, folders = zoo
    mask = os.umask(0)
    os.umask(mask)
    for p in (folders["x50_bcl"] / "timm").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, p
