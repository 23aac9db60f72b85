"""eval.py end to end on digits-LT with a tiny random resnet32_kcl, --compare, and bad input."""
import hashlib
import json
from pathlib import Path

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


# --------------------------------------------------------------------------------------------
# same weights, same numbers, by every route (issue 14 item 5)
# --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _top1_and_per_class(out) -> tuple[float, list[float]]:
    res = load_results(out / "results.json")
    return res["metrics"]["top1"], res["per_class"]["accuracy"]


@pytest.mark.parametrize("variant", ["resnet32_bcl.digits_lt", "resnet32_kcl.digits_lt"])
def test_every_route_to_the_bundled_weights_gives_the_recorded_numbers(variant, tmp_path):
    recorded = json.loads((REPO / "hub" / "results" / f"{variant}.json").read_text())
    weights = kcl_models.models.WEIGHTS_DIR / variant / "model.safetensors"
    routes = {
        "registered": ["--model", variant, "--pretrained"],
        "local-dir": ["--model", f"local-dir:{REPO / 'hub' / 'models' / variant}"],
        "checkpoint": ["--model", str(weights), "--arch", variant],
    }
    for route, argv in routes.items():
        out = tmp_path / route
        rc = main(argv + ["--data", "digits-lt", "--output", str(out), "--workers", "0", "--no-progress"])
        assert rc == 0, route
        top1, per_class = _top1_and_per_class(out)
        assert (top1, per_class) == (recorded["metrics"]["top1"], recorded["per_class"]["accuracy"]), route
    res = load_results(tmp_path / "registered" / "results.json")
    assert res["model"]["weights_sha256"] == recorded["model"]["weights_sha256"]
    assert res["config"]["data_kwargs"] == {"img_size": 16}  # the bundled folder's training config


def test_eval_preprocessing_follows_the_model_cfg_and_the_training_config():
    from kcl_models.eval.cli import eval_preprocessing
    model = timm.create_model("resnet32_bcl.digits_lt")
    extra: dict = {}
    cfg = eval_preprocessing(model, {}, "digits-lt", extra)
    assert cfg["input_size"] == (3, 16, 16) and cfg["interpolation"] == "nearest" and extra == {"img_size": 16}
    extra = {}
    cfg = eval_preprocessing(model, {"input_size": 24}, "digits-lt", extra)
    assert cfg["input_size"] == (3, 24, 24) and extra == {"img_size": 24}
    extra = {"img_size": 8}
    eval_preprocessing(model, {}, "digits-lt", extra)
    assert extra == {"img_size": 8}  # the training config's digits size wins
    extra = {}
    eval_preprocessing(model, {}, "imagefolder:x", extra)
    assert extra == {}


# --------------------------------------------------------------------------------------------
# weights are never silently wrong (issue 13 item 8)
# --------------------------------------------------------------------------------------------

@pytest.fixture
def folder(run_dir, tmp_path):
    import shutil
    out = tmp_path / "model"
    shutil.copytree(run_dir / "train" / "model", out)
    return out


def _eval_err(capsys, folder, tmp_path) -> str:
    return _err(capsys, ["--model", f"local-dir:{folder}", "--data", "digits-lt", "--output", str(tmp_path / "o"),
                         "--workers", "0", "--no-progress"])


def test_folder_whose_num_classes_disagrees_with_the_weights_fails(folder, tmp_path, capsys):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_classes"] = 20
    (folder / "config.json").write_text(json.dumps(cfg))
    err = _eval_err(capsys, folder, tmp_path)
    assert f"{folder / 'config.json'}: num_classes is 20" in err and "has 10 classes" in err
    assert '"num_classes": 10' in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "results.json").exists()


def test_malformed_config_json_is_named(folder, tmp_path, capsys):
    (folder / "config.json").write_text('{"architecture": "resnet32_kcl", "num_classes": 10')
    err = _eval_err(capsys, folder, tmp_path)
    assert f"{folder / 'config.json'}: not valid JSON (line 1" in err


def test_truncated_weights_are_named(folder, tmp_path, capsys):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-1000])
    err = _eval_err(capsys, folder, tmp_path)
    assert f"{folder / 'model.safetensors'}: not a readable safetensors file" in err


def test_non_finite_weights_are_refused_by_every_route(folder, tmp_path, capsys):
    from safetensors.torch import load_file, save_file
    state = load_file(str(folder / "model.safetensors"))
    state["layer3.4.bn2.running_var"][0] = float("inf")
    save_file(state, str(folder / "model.safetensors"))
    err = _eval_err(capsys, folder, tmp_path)
    assert "tensor 'layer3.4.bn2.running_var' holds 1 non-finite value(s)" in err
    err = _err(capsys, ["--model", str(folder / "model.safetensors"), "--arch", "resnet32_kcl.digits_lt",
                        "--data", "digits-lt", "--output", str(tmp_path / "o")])
    assert "checkpoint" in err and "tensor 'layer3.4.bn2.running_var'" in err


def test_missing_hub_repo_fails_fast_without_network(monkeypatch, tmp_path):
    import socket

    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    from kcl_models.eval.cli import load_model

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    for target, name in ((socket.socket, "connect"), (socket, "getaddrinfo"), (socket, "create_connection")):
        monkeypatch.setattr(target, name, refuse)
    downloads = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: downloads.append(a) or 1 / 0)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", lambda *a, **k: downloads.append(a) or 1 / 0)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(kcl_models.PretrainedWeightsUnavailable, match="org/missing.*unreachable"):
        load_model("hf-hub:org/missing")
    assert downloads == []


# --------------------------------------------------------------------------------------------
# flags as users expect them (issue 14 item 10, eval half)
# --------------------------------------------------------------------------------------------

def test_flags_take_dashes_or_underscores():
    from kcl_models.eval.cli import build_parser
    for flag in ("--output", "--output-dir", "--output_dir"):
        args = build_parser().parse_args(["--model", "m", flag, "o", "--data_root=r", "--batch_size", "8",
                                          "--probe-epochs", "2", "--skip_classifier"])
        assert (args.output, args.data_root, args.batch_size, args.probe_epochs, args.skip_classifier) == \
            ("o", "r", 8, 2, True)


@pytest.mark.parametrize("flag,suggested", [("--outpt", "--output"), ("--probe-epoch", "--probe-epochs"),
                                            ("--out", "--output"), ("--batch", "--batch-size"),
                                            ("--data_rot", "--data-root")])
def test_unknown_or_abbreviated_flag_says_did_you_mean(flag, suggested, capsys):
    from kcl_models.eval.cli import build_parser
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--model", "m", "--output", "o", flag, "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized argument {flag}; did you mean {suggested}" in err


def test_skipped_test_images_are_counted_in_the_results(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), color=(40 * i, 0, 0)).save(root / f"{i}.png")
    (root / "bad.png").write_bytes(b"not an image")
    (tmp_path / "train.txt").write_text("0.png 0\n1.png 1\n")
    (tmp_path / "test.txt").write_text("2.png 0\n3.png 1\nbad.png 1\n")
    out = tmp_path / "o"
    rc = main(["--model", "resnet32_kcl", "--num-classes", "2", "--data", "split-file", "--data-root", str(root),
               "--train-split", str(tmp_path / "train.txt"), "--test-split", str(tmp_path / "test.txt"),
               "--on-error", "skip", "--workers", "0", "--output", str(out), "--no-progress"])
    assert rc == 0
    data = load_results(out / "results.json")["data"]
    assert data["num_samples"] == 2 and data["num_skipped"] == 1
