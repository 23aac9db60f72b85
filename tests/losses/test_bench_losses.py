"""Smoke test of bench/losses.py on a tiny scale (timings are not checked)."""
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "losses.py"


def test_bench_runs_and_agrees_with_authors_reading(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_losses", BENCH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_losses", module)  # dataclasses look the module up
    spec.loader.exec_module(module)
    module.main(["--device", "cpu", "--scales", "tiny", "--repeats", "1", "--warmup", "0"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny |")]
    assert [r.split("|")[2].strip() for r in rows] == ["BCL", "KCL k=6", "FCL", "SupCon", "LA-CE", "PaCo", "ProCo"]
    for row in rows:  # BCL, SupCon and PaCo: ours equals the authors'-approach implementation
        diff = row.split("|")[-2].strip()
        assert diff == "-" or float(diff) < 1e-5
