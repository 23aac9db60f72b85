"""hub/manifest.yaml agrees with the registry's pretrained cfgs, and README's zoo table with both."""
from __future__ import annotations

import json

import pytest
import timm
import yaml
from conftest import REPO_ROOT, make_results

import kcl_models
from kcl_models.eval.report import load_results
from kcl_models.hub import default_manifest_path, load_manifest, zoo_table_markdown

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_manifest_lists_every_registered_variant_once(manifest):
    names = [v["name"] for v in manifest["variants"]]
    assert sorted(names) == sorted(kcl_models.list_kcl_models(include_tags=True))
    assert default_manifest_path() == REPO_ROOT / "hub" / "manifest.yaml"


def test_manifest_agrees_with_registry_cfgs(manifest):
    for entry in manifest["variants"]:
        cfg = timm.models.get_pretrained_cfg(entry["name"])
        # a planned variant has no weight source in the registry (timm does not list it as pretrained)
        assert entry["repo"] == (cfg.hf_hub_id or kcl_models.models.hub_id(entry["name"])), entry["name"]
        assert bool(cfg.hf_hub_id) == (entry["status"] != "planned"), entry["name"]
        assert entry["num_classes"] == cfg.num_classes, entry["name"]
        arch = entry["name"].split(".")[0]
        assert entry["method"].lower() == arch.rsplit("_", 1)[1], entry["name"]


def test_ready_or_published_variants_have_matching_metrics(manifest):
    for entry in manifest["variants"]:
        if entry["status"] == "planned":
            continue
        results = load_results(REPO_ROOT / entry["metrics"])
        assert results["model"]["num_classes"] == entry["num_classes"], entry["name"]
        assert results["data"]["num_classes"] == entry["num_classes"], entry["name"]


def test_readme_zoo_table_matches_manifest():
    table = zoo_table_markdown()
    assert table.count("\n") == 2 + len(load_manifest()["variants"])
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert START in readme and END in readme, "README lost its zoo-table markers"
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == table.strip(), "README zoo table is stale: paste the output of `kcl-hub zoo-table`"


def test_zoo_table_takes_numbers_from_metrics_files(tmp_path):
    (tmp_path / "hub" / "results").mkdir(parents=True)
    results = make_results("resnet32_bcl.digits_lt", "resnet32_bcl", 10)
    (tmp_path / "hub" / "results" / "r.json").write_text(json.dumps(results))
    data = {"schema": "kcl-models/manifest/v1", "org": "kcl-models", "variants": [
        {"name": "resnet32_bcl.digits_lt", "repo": "kcl-models/resnet32_bcl.digits_lt", "method": "BCL",
         "dataset": "digits-LT", "num_classes": 10, "source": "trained", "metrics": "hub/results/r.json",
         "license": "apache-2.0", "paper_top1": None, "status": "published"}]}
    path = tmp_path / "hub" / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    row = zoo_table_markdown(path).splitlines()[2]
    assert "| 71.2 | 88.1 / 70.1 / 51.9 |" in row
    assert "[kcl-models/resnet32_bcl.digits_lt](https://huggingface.co/kcl-models/resnet32_bcl.digits_lt)" in row
    data["variants"][0]["status"] = "shipped"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="status 'shipped'"):
        load_manifest(path)
