"""eval.py end to end on digits-LT with a tiny random resnet32_kcl, --compare, and bad input."""
import hashlib
import json

import pytest
import timm
import torch
import yaml
from PIL import Image

import kcl_models  # noqa: F401
from kcl_models.eval.cli import main
from kcl_models.eval.report import load_results

TRAIN_CFG = {"method": "kcl", "model": "resnet32_kcl.digits_lt", "data": "digits-lt", "seed": 0,
             "imbalance_factor": 100.0, "epochs": 3}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A trainer-like layout: <out>/config.yaml + <out>/model (save_for_hf), evaluated once."""
    root = tmp_path_factory.mktemp("evalcli")
    torch.manual_seed(0)
    model = timm.create_model("resnet32_kcl.digits_lt", num_classes=10)
    timm.models.save_for_hf(model, str(root / "train" / "model"), safe_serialization=True)
    (root / "train" / "config.yaml").write_text(yaml.safe_dump(TRAIN_CFG))
    (root / "ood.txt").write_text("# digits unseen in pre-training\n7\n8\n9\n")
    return root


@pytest.fixture(scope="module")
def evaluated(run_dir):
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(True)
    out = run_dir / "eval"
    rc = main(["--model", f"local-dir:{run_dir / 'train' / 'model'}", "--output",  # data from config.yaml
               str(out), "--workers", "0", "--batch-size", "256", "--probe", "linear", "knn",
               "--probe-epochs", "5", "--ood-split", str(run_dir / "ood.txt"), "--no-progress"])
    assert rc == 0
    return out


def test_end_to_end_digits(evaluated, run_dir, capsys):
    res = load_results(evaluated / "results.json")
    assert res["protocol"] == "classifier"
    assert res["data"]["num_samples"] == 500  # 50 test images x 10 digits, each counted once
    assert res["data"]["train_class_counts"] == [124, 74, 44, 26, 16, 9, 5, 3, 2, 1]
    assert res["shot_thresholds"]["relative"] is True  # digits-lt default
    assert res["per_class"]["group"].count("many") == 4
    assert res["model"]["architecture"] == "resnet32_kcl"
    weights = run_dir / "train" / "model" / "model.safetensors"
    assert res["model"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert res["config"] == TRAIN_CFG  # picked up from the trainer layout
    assert res["eval_settings"] == {"sigma": 0.01, "ece_bins": 15}
    assert set(res["probes"]) == {"linear_probe", "knn", "open_set"}
    assert res["probes"]["open_set"]["target_classes"] == [7, 8, 9]
    assert res["probes"]["open_set"]["target"]["classes"] == [7, 8, 9]
    assert len(res["probes"]["open_set"]["target"]["per_class"]["accuracy"]) == 3
    table = (evaluated / "results.md").read_text()
    assert "| classifier |" in table and "| linear_probe |" in table and "| open_set:target |" in table
    for png in ("per_class.png", "per_class_linear_probe.png", "per_class_knn.png"):
        assert (evaluated / png).stat().st_size > 10_000


def test_compare(evaluated, tmp_path, capsys):
    other = json.loads((evaluated / "results.json").read_text())
    other["model"]["name"] = "other-model"
    (tmp_path / "b.json").write_text(json.dumps(other))
    rc = main(["--compare", str(evaluated / "results.json"), str(tmp_path / "b.json"), "--output",
               str(tmp_path / "cmp")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "other-model" in printed and "local-dir:" in printed
    assert (tmp_path / "cmp" / "compare.md").read_text().count("| classifier |") == 2
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    del other["metrics"]["few"]
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert main(["--compare", str(tmp_path / "b.json")]) == 2
    assert "missing key 'metrics.few'" in capsys.readouterr().err


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    return err


def test_unknown_model_suggests_names(tmp_path, capsys):
    err = _err(capsys, ["--model", "resnet32_kcll", "--data", "digits-lt", "--output", str(tmp_path)])
    assert "unknown model 'resnet32_kcll'" in err and "resnet32_kcl" in err


def test_checkpoint_class_mismatch_names_both_numbers(tmp_path, capsys):
    model = timm.create_model("resnet32_kcl", num_classes=5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ck.pth")
    err = _err(capsys, ["--model", str(tmp_path / "ck.pth"), "--arch", "resnet32_kcl.digits_lt",
                        "--data", "digits-lt", "--output", str(tmp_path / "o")])
    assert "5-class classifier" in err and "10 classes" in err and "--skip-classifier" in err
    err = _err(capsys, ["--model", str(tmp_path / "ck.pth"), "--data", "digits-lt", "--output", str(tmp_path)])
    assert "needs --arch" in err


def test_checkpoint_safetensors_loads(tmp_path):
    from safetensors.torch import save_file

    from kcl_models.eval.cli import load_model
    model = timm.create_model("resnet32_bcl", num_classes=4)
    sd = model.state_dict()
    sd["fc.weight"] = sd["fc.weight"].t().contiguous()  # the authors' [D, C] cosine layout
    save_file(sd, str(tmp_path / "w.safetensors"))
    loaded = load_model(str(tmp_path / "w.safetensors"), arch="resnet32_bcl")
    assert loaded.model.num_classes == 4 and loaded.has_classifier
    assert torch.equal(loaded.model.fc.weight, model.fc.weight)
    torch.save({"fc.bogus": torch.zeros(1), **model.state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="1 unexpected key"):
        load_model(str(tmp_path / "bad.pt"), arch="resnet32_bcl")


def test_missing_files_and_empty_split(tmp_path, capsys):
    err = _err(capsys, ["--model", f"local-dir:{tmp_path / 'nope'}", "--data", "digits-lt", "--output",
                        str(tmp_path)])
    assert "model folder not found" in err
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8)).save(root / f"{i}.png")
    (tmp_path / "train.txt").write_text("0.png 0\n1.png 1\n")
    (tmp_path / "test.txt").write_text("\n")
    err = _err(capsys, ["--model", "resnet32_kcl", "--data", "split-file", "--data-root", str(root),
                        "--train-split", str(tmp_path / "train.txt"), "--test-split", str(tmp_path / "test.txt"),
                        "--output", str(tmp_path / "o")])
    assert "test.txt" in err and "no images" in err
    err = _err(capsys, ["--model", "resnet32_kcl", "--data", "split-file", "--data-root", str(root),
                        "--train-split", str(tmp_path / "train.txt"), "--test-split", str(tmp_path / "x.txt"),
                        "--output", str(tmp_path / "o")])
    assert "x.txt: split file not found" in err


def test_data_options_default_to_the_training_config():
    from kcl_models.eval.cli import build_parser, resolve_data_args
    cfg = {"data": "digits-lt", "seed": 3, "imbalance_factor": 10.0, "data_kwargs": {"test_per_class": 20},
           "train_split": None}
    args = build_parser().parse_args(["--model", "m", "--output", "o"])
    assert resolve_data_args(args, cfg) == {"test_per_class": 20}
    assert (args.data, args.data_seed, args.imbalance_factor, args.train_split) == ("digits-lt", 3, 10.0, "train")
    args = build_parser().parse_args(["--model", "m", "--output", "o", "--data-seed", "1"])
    resolve_data_args(args, cfg)
    assert args.data_seed == 1  # explicit wins
    args = build_parser().parse_args(["--model", "m", "--output", "o", "--data", "imagefolder:x"])
    assert resolve_data_args(args, cfg) == {}  # other data: nothing inherited
    assert (args.data_seed, args.imbalance_factor) == (0, 100.0)
    with pytest.raises(ValueError, match="--data is required"):
        resolve_data_args(build_parser().parse_args(["--model", "m", "--output", "o"]), {})


def test_hf_hub_model_from_offline_cache(run_dir, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants as hf_constants

    from kcl_models.eval.cli import load_model
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    shutil.copytree(run_dir / "train" / "model", snap)
    cfg = json.loads((snap / "config.json").read_text())
    cfg["kcl_models"] = {"train_config": {"data": "digits-lt", "seed": 2}}  # as kcl_models.hub writes
    (snap / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    loaded = load_model("hf-hub:org/tiny")
    assert loaded.architecture == "resnet32_kcl" and loaded.model.num_classes == 10
    assert loaded.weights_path is not None and loaded.weights_path.name == "model.safetensors"
    assert loaded.config == {"data": "digits-lt", "seed": 2}
    with pytest.raises(ValueError, match="cannot load 'hf-hub:org/missing'"):
        load_model("hf-hub:org/missing")
