"""kcl-hub as users expect it: one line per user error (``--debug`` for the traceback), an unsafe
pickle refused for safety, flags with dashes or underscores, no abbreviations, "did you mean"."""
from __future__ import annotations

import os
import pickle

import pytest
import timm
import torch
from conftest import make_results, write_results
from safetensors.torch import save_file

import kcl_models  # noqa: F401
from kcl_models.eval.report import file_sha256
from kcl_models.hub import main

REPO = "kcl-models/resnet32_bcl.digits_lt"


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err  # exactly one line
    return err


def _convert(path, tmp_path) -> list[str]:
    return ["convert", "auto", "--arch", "resnet32_bcl", "--checkpoint", str(path), "--out", str(tmp_path / "o")]


def test_user_errors_are_one_line(tmp_path, capsys):
    err = _error(capsys, ["publish", "--folder", str(tmp_path / "missing"), "--repo", REPO, "--dry-run"])
    assert err.startswith("kcl-hub publish: error: folder not found")
    assert "checkpoint not found" in _error(capsys, _convert(tmp_path / "nope.pth.tar", tmp_path))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    assert "not a readable PyTorch checkpoint" in _error(capsys, _convert(junk, tmp_path))
    text = tmp_path / "notes.pth"
    text.write_text("hello world")  # torch.load raises a bare KeyError on it
    assert "notes.pth: not a readable PyTorch checkpoint" in _error(capsys, _convert(text, tmp_path))
    truncated = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(100)}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:60])
    results = write_results(tmp_path / "r.json", make_results("resnet32_kcl.digits_lt", "resnet32_kcl", 10))
    err = _error(capsys, ["save", "--model", "resnet32_kcl.digits_lt", "--weights", str(truncated), "--results",
                          str(results), "--out", str(tmp_path / "e")])
    assert "w.safetensors: not a readable safetensors file" in err
    err = _error(capsys, ["save", "--model", "resnet32_kcl.nope", "--weights", str(truncated), "--results",
                          str(results), "--out", str(tmp_path / "e")])
    assert "'resnet32_kcl.nope'" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": ')
    assert "broken.json:1: not valid JSON" in _error(capsys, ["save", "--model", "local-dir:x", "--results",
                                                              str(broken), "--out", str(tmp_path / "e")])
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"architecture": "resnet32_kcl", "num_classes": 10}')
    (folder / "model.safetensors").write_bytes(truncated.read_bytes())
    err = _error(capsys, ["save", "--model", f"local-dir:{folder}", "--results", str(results), "--out",
                          str(tmp_path / "e")])
    assert f"{folder / 'model.safetensors'}: not a readable" in err and "truncated" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


def test_unsafe_pickle_is_refused_for_safety(tmp_path, capsys):
    zipped = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": _RunsCode()}, zipped)
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps(_RunsCode(), protocol=4))
    for path in (zipped, raw):
        err = _error(capsys, _convert(path, tmp_path))
        assert "refused for safety" in err and "weights_only=True" in err and "system" in err, err
        assert "not a readable" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        main(["publish", "--folder", str(tmp_path / "missing"), "--repo", REPO, "--dry-run", "--debug"])
    with pytest.raises(FileNotFoundError, match="folder not found"):
        main(["--debug", "publish", "--folder", str(tmp_path / "missing"), "--repo", REPO, "--dry-run"])


def test_flags_take_dashes_or_underscores_and_no_abbreviations(tmp_path, capsys):
    torch.manual_seed(0)
    model = timm.create_model("resnet32_kcl", num_classes=10).eval()
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    results = write_results(tmp_path / "r.json", make_results("resnet32_kcl.digits_lt", "resnet32_kcl", 10,
                                                              weights_sha256=file_sha256(weights)))
    assert main(["save", "--model", "resnet32_kcl.digits_lt", "--weights", str(weights), "--results", str(results),
                 "--out_dir", str(tmp_path / "a")]) == 0
    assert main(["save", "--model", "resnet32_kcl.digits_lt", "--weights", str(weights), "--results", str(results),
                 "--out-dir", str(tmp_path / "b")]) == 0
    assert main(["publish", "--folder", str(tmp_path / "a"), "--repo", "me/x", "--dry_run"]) == 0
    assert "[dry run]" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a prefix is not a flag: --dry is not --dry-run
        main(["publish", "--folder", str(tmp_path / "a"), "--repo", "me/x", "--dry"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --dry" in err and "did you mean --dry-run" in err
    with pytest.raises(SystemExit):
        main(["publish", "--folder", str(tmp_path / "a"), "--repo", "me/x", "--dryrun"])
    assert "did you mean --dry-run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sav", "--model", "x"])
    assert "did you mean 'save'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: unknown layout
        main(["convert", "moco", "--arch", "x", "--checkpoint", "c", "--out", "o"])
    assert "invalid choice: 'moco'" in capsys.readouterr().err
