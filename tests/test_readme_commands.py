"""Every README command runs as written: the offline ones are extracted from the README and run in
a temporary copy of the repository (``python`` and ``kcl-hub`` as a user's shell finds them, no
network: HF_HUB_OFFLINE=1 and an empty Hub cache). A command needing a training run's output gets
it from the committed digits-LT weights in ``hub/models/`` (the folder ``make demo`` would
write). Commands that need a training run, the network or data we do not ship are listed with the
reason they are not run here and where they are tested; a README command in neither list fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")

# command prefix -> why it is not run here (and what tests it instead)
SKIPPED = {
    "make demo": "trains for minutes (tests/train covers the trainer; this file runs the eval and save steps "
                 "on the committed weights it would produce)",
    "make test": "is this test suite",
    "accelerate launch train.py": "a training run (tests/train)",
    "accelerate launch --multi_gpu": "8 GPUs and ImageNet",
    "python train.py": "a training run (tests/train)",
    "python hub/convert.py bcl --arch resnext50_32x4d_bcl.imagenet_lt --checkpoint bcl_ckpt.best.pth.tar":
        "needs the authors' checkpoint, a download (conversion: tests/models/test_convert.py, tests/hub)",
    "python eval.py --model local-dir:hub_out/resnext50_32x4d_bcl.imagenet_lt --data split-file":
        "needs ImageNet-LT on disk",
    "python eval.py --model local-dir:outputs/bsm/model": "evaluates the custom-method run "
        "(tests/methods/test_custom_method.py trains the README example, then runs this eval)",
    "python hub/publish.py --folder hub_out/resnext50_32x4d_bcl.imagenet_lt": "uploads to the Hub "
        "(publish: tests/hub/test_publish.py with a patched HfApi)",
}
# command prefix -> it runs here
RUN = (
    "python eval.py --model local-dir:outputs/demo_bcl/model --data digits-lt --output outputs/eval",
    "python eval.py --model local-dir:hub/models/resnet32_bcl.digits_lt --data digits-lt --probe linear knn",
    "python eval.py --compare hub/results/resnet32_bcl.digits_lt.json hub/results/resnet32_kcl.digits_lt.json",
    "kcl-hub save --model local-dir:outputs/demo_bcl/model --results outputs/demo_bcl/eval/results.json",
    "kcl-hub zoo-table",
)


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _snippets() -> list[str]:
    """Python blocks run here: all but the custom-method file (tests/methods/test_custom_method.py runs it)."""
    return [b for b in _blocks("python") if not b.startswith("# balanced_softmax.py")]


def shell_commands() -> list[str]:
    """Each command of the README's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in _blocks("bash"):
        for cmd in re.sub(r"\\\n\s*", " ", block).splitlines():
            cmd = re.sub(r"(^|\s+)#.*$", "", cmd).strip()  # no '#' appears inside our commands' arguments
            if cmd:
                commands.append(re.sub(r"\s+", " ", cmd))
    return commands


def _kind(cmd: str) -> str:
    if any(cmd.startswith(p) for p in RUN):
        return "run"
    if any(cmd.startswith(p) for p in SKIPPED):
        return "skip"
    return "unknown"


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = shell_commands()
    assert len(commands) >= 12, commands
    unknown = [c for c in commands if _kind(c) == "unknown"]
    assert not unknown, f"README commands neither run nor skipped here (add them to RUN or SKIPPED): {unknown}"
    for prefix in RUN:
        assert sum(c.startswith(prefix) for c in commands) == 1, f"RUN entry without its README command: {prefix}"
    assert len(_snippets()) == 1, "a new README python block: run it below, or say why not"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the repository with what `make demo` leaves in outputs/demo_bcl (from hub/models), and a
    PATH whose `python` and `kcl-hub` are this interpreter and this package's console script."""
    tmp = tmp_path_factory.mktemp("readme")
    root = tmp / "repo"
    shutil.copytree(REPO_ROOT, root, ignore=shutil.ignore_patterns(
        ".git", ".venv", "outputs", "runs", "hub_out", "__pycache__", ".pytest_cache", "*.egg-info"))
    demo = root / "outputs" / "demo_bcl"
    (demo / "model").mkdir(parents=True)
    (demo / "eval").mkdir()
    for name in ("model.safetensors", "config.json"):  # the trainer's model/ holds these two
        shutil.copy(root / "hub" / "models" / "resnet32_bcl.digits_lt" / name, demo / "model" / name)
    shutil.copy(root / "hub" / "results" / "resnet32_bcl.digits_lt.json", demo / "eval" / "results.json")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, target in (("python", ""), ("kcl-hub", " -m kcl_models.hub")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}"{target} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(root), HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp / "hf_home"), HF_HUB_CACHE=str(tmp / "hf_cache"), MPLBACKEND="Agg")
    return root, env


def _run(cmd: str, root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", cmd], cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ran(checkout):
    """Every runnable README command and python block, as written, two at a time."""
    root, env = checkout
    (root / "readme_snippet.py").write_text(_snippets()[0])
    jobs = [c for c in shell_commands() if _kind(c) == "run"] + ["python readme_snippet.py"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = dict(zip(jobs, pool.map(lambda c: _run(c, root, env), jobs)))
    return root, procs


def test_readme_commands_run_as_written(ran):
    root, procs = ran
    failed = {c: (p.returncode, p.stderr[-1500:]) for c, p in procs.items() if p.returncode != 0}
    assert not failed, failed
    for proc in procs.values():
        assert "Traceback" not in proc.stderr


def test_eval_commands_reproduce_the_committed_numbers(ran):
    root, _ = ran
    committed = json.loads((root / "hub" / "results" / "resnet32_bcl.digits_lt.json").read_text())
    for out in ("outputs/eval", "outputs/eval_probes"):
        res = json.loads((root / out / "results.json").read_text())
        assert res["metrics"]["top1"] == committed["metrics"]["top1"], out  # same weights, same numbers
    probes = json.loads((root / "outputs" / "eval_probes" / "results.json").read_text())["probes"]
    assert {"linear_probe", "knn"} <= set(probes)
    assert (root / "outputs" / "compare" / "compare.md").is_file()


def test_hub_commands_write_what_the_readme_says(ran):
    root, procs = ran
    folder = root / "hub_out" / "resnet32_bcl.digits_lt"
    assert {"model.safetensors", "config.json", "README.md", "results.json", "per_class.png"} <= {
        p.name for p in folder.iterdir()}
    zoo = next(p for c, p in procs.items() if c.startswith("kcl-hub zoo-table")).stdout
    assert zoo.strip() == README.split("<!-- zoo-table:start -->")[1].split("<!-- zoo-table:end -->")[0].strip()
    snippet = procs["python readme_snippet.py"].stdout
    assert "resnet32_bcl" in snippet and "resnet32_bcl.digits_lt" in snippet
