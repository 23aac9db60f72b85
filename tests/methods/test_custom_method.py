"""A user's own method plugs in with no change to the project: the README's example, exactly as
written there, trains from a file outside the package and its export evaluates with eval.py."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kcl_models.methods import ENTRY_POINT_GROUP, Method, available_methods, get_method

ROOT = Path(__file__).parents[2]
FAST = ["--log_with", "none", "--eval_every", "0", "--warmup_epochs", "0", "--batch_size", "32"]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Your own method"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_readme_example_trains_and_evaluates(tmp_path):
    (tmp_path / "balanced_softmax.py").write_text(readme_example())
    out = tmp_path / "bsm"
    proc = _run([str(ROOT / "train.py"), "--config", str(ROOT / "configs/digits_ce.yaml"),
                 "--method", "balanced_softmax.py:BalancedSoftmax", "--prior_weight", "1.0", "--epochs", "2",
                 "--output_dir", str(out), *FAST], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["config"]["method"] == "balanced_softmax.py:BalancedSoftmax"
    assert saved["config"]["prior_weight"] == 1.0 and len(saved["loss_history"]) == 2 * 9
    proc = _run([str(ROOT / "eval.py"), "--model", f"local-dir:{out / 'model'}", "--data", "digits-lt",
                 "--output", str(out / "eval")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["data"]["num_samples"] == 500 and results["model"]["architecture"] == "resnet32_kcl"
    assert 10.0 < results["metrics"]["top1"] <= 100.0             # above chance after 18 steps
    assert results["data"]["train_class_counts"] == saved["class_counts"]


def test_a_wrong_option_of_a_user_method_is_named(tmp_path):
    (tmp_path / "balanced_softmax.py").write_text(readme_example())
    proc = _run([str(ROOT / "train.py"), "--config", str(ROOT / "configs/digits_ce.yaml"),
                 "--method", f"{tmp_path}/balanced_softmax.py:BalancedSoftmax", "--prior_wieght", "2"], cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1].startswith("train.py: error:")
    assert "unknown key 'prior_wieght' (did you mean prior_weight" in proc.stdout and "Traceback" not in proc.stderr


def test_entry_point_group_and_module_spec(tmp_path, monkeypatch):
    pkg = tmp_path / "my_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(readme_example())
    dist = tmp_path / "my_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-methods\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [{ENTRY_POINT_GROUP}]
        balanced_softmax = my_methods:BalancedSoftmax
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "balanced_softmax" in available_methods()
    cls = get_method("balanced_softmax")
    assert issubclass(cls, Method) and cls is get_method("my_methods:BalancedSoftmax")


@pytest.mark.parametrize(("spec", "message"), [
    ("nope", "unknown method 'nope'; expected one of ce, la"),
    ("no_such_module_x:Cls", "cannot import module 'no_such_module_x'"),
    ("kcl_models.methods:Nope", "has no attribute 'Nope'"),
    ("kcl_models.methods:option", "is not a kcl_models.methods.Method subclass"),
    ("missing/file.py:Cls", "file missing/file.py not found"),
])
def test_bad_method_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_method(spec)
