"""The hub knows every method the trainer has: the method a folder was trained with, its paper in
the card and citation, and which classifiers are cosine ones."""
from __future__ import annotations

import pytest
import timm
import torch
from conftest import make_results, write_results
from safetensors.torch import save_file

import kcl_models
from kcl_models.eval.report import file_sha256
from kcl_models.hub import save_for_hub
from kcl_models.hub._meta import METHODS, PAPERS, has_cosine_head, method_of, method_suffix
from kcl_models.hub.card import write_model_card
from kcl_models.methods import available_methods


def test_every_trainer_method_has_a_card_entry_and_a_paper():
    assert set(available_methods()) <= set(METHODS)
    for method, (paper, name, text) in METHODS.items():
        if method != "unknown":
            assert paper in PAPERS and name in text, method
    for key, paper in PAPERS.items():
        assert paper["bibtex"].lstrip().startswith("@") and paper["title"] in paper["bibtex"], key
        assert paper["arxiv"] is None or paper["arxiv"] in paper["url"], key


@pytest.mark.parametrize("arch", kcl_models.list_kcl_models())
def test_the_method_named_by_an_architecture(arch):
    suffix = arch.rsplit("_", 1)[-1]
    assert method_suffix(arch) == suffix == method_of(arch, None)
    assert method_suffix(f"{arch}.some_tag") == suffix


def test_the_training_config_and_a_converted_source_outrank_the_name():
    assert method_of("resnet50_paco", {"method": "gpaco"}) == "gpaco"
    assert method_of("resnet32_bcl", {"train": {"method": "ProCo"}}) == "proco"
    released = {"kind": "converted", "authors_release": {"variant": "x"}}
    for layout, method in (("paco", "paco"), ("gpaco", "gpaco"), ("proco", "proco"), ("bcl", "bcl"),
                           ("kcl-stage1", "kcl"), ("kcl-stage2", "kcl")):
        assert method_of("resnet50_kcl", None, {**released, "layout": layout}) == method
    # a checkpoint whose origin is not confirmed claims no method, whatever its layout
    assert method_of("resnet50_proco", None, {"kind": "converted", "layout": "proco"}) == "unknown"
    assert method_suffix("resnet50") is None and method_of("resnet50", None) == "kcl"


@pytest.mark.parametrize("arch, cosine", [
    ("resnet50_bcl", True), ("resnext50_32x4d_bcl", True), ("resnet32_bcl", True),
    ("resnet50_proco", True), ("resnext50_32x4d_proco", True), ("resnet32_proco", False),
    ("resnet50_paco", False), ("resnet50_gpaco", False), ("resnet50_kcl", False), ("resnet32_kcl", False),
    ("not_a_model", False)])
def test_cosine_classifier_is_read_off_the_model(arch, cosine):
    assert has_cosine_head(arch) is cosine


@pytest.mark.parametrize("variant, method", [("resnet32_proco.cifar100_lt_if100", "proco"),
                                             ("resnet32_paco.cifar100_lt_if100", "paco")])
def test_card_names_and_cites_the_method(variant, method, tmp_path):
    torch.manual_seed(0)
    model = timm.create_model(variant).eval()
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    results = make_results(variant, variant.split(".")[0], model.num_classes, weights_sha256=file_sha256(weights))
    results["config"]["method"] = method
    out = save_for_hub(model, write_results(tmp_path / "r.json", results), tmp_path / "out",
                       train_config={"method": method, "epochs": 200}, source_checkpoint=weights)
    card = (out / "README.md").read_text()
    paper = PAPERS[method]
    assert f"**{METHODS[method][2].split('**')[1]}**" in card
    assert paper["bibtex"] in card and PAPERS["kcl"]["bibtex"] in card  # KCL defines beta
    assert "linear classifier" in card and "cosine classifier" not in card  # ResNet-32 heads are linear
    assert f"- {method}\n" in card.split("---")[1]  # the method is a card tag
    write_model_card(out)  # re-rendering from the folder alone gives the same card
    assert (out / "README.md").read_text() == card
