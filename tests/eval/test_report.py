"""Results JSON schema round trip, validation errors, markdown table and plots."""
import hashlib
import json

import pytest
import torch

from kcl_models.eval.metrics import compute_metrics
from kcl_models.eval.probes import knn_classify, open_set_probe
from kcl_models.eval.report import (
    SCHEMA,
    ResultsSchemaError,
    build_results,
    file_sha256,
    load_results,
    markdown_table,
    plot_compare,
    plot_per_class,
    results_mismatch,
    save_results,
)

COUNTS = [150, 60, 30, 12, 3]


def _metrics(seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(5).repeat(8)
    logits = torch.randn(40, 5, generator=g) + 3 * torch.nn.functional.one_hot(targets, 5)
    return compute_metrics(logits, targets, COUNTS)


def _results(tmp_path, seed=0, name="resnet32_kcl", probes=None):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"fake weights")
    return build_results(_metrics(seed), model_name=name, data_name="digits-lt", split="test",
                         num_samples=40, train_class_counts=COUNTS, class_names=list("abcde"),
                         weights_path=weights, probes=probes, config={"lr": 0.1})


def test_round_trip(tmp_path):
    feats = torch.randn(40, 8)
    labels = torch.arange(5).repeat(8)
    probes = {"knn": knn_classify(feats, labels, feats, labels, 5, k=3, device="cpu"),
              "open_set": open_set_probe(feats, labels, feats, labels, [0, 4], 5, epochs=2, device="cpu",
                                         include_source=False)}
    res = _results(tmp_path, probes=probes)
    assert res["schema"] == SCHEMA == "kcl-models/results/v1"
    assert res["model"]["weights_sha256"] == hashlib.sha256(b"fake weights").hexdigest()
    assert set(res["software"]) == {"kcl_models", "torch", "timm", "huggingface_hub", "safetensors", "python"}
    assert res["per_class"]["group"] == ["many", "medium", "medium", "few", "few"]
    assert set(res["probes"]["open_set"]) == {"target_classes", "target", "all"}
    path = save_results(res, tmp_path / "out" / "results.json")
    assert load_results(path) == json.loads(json.dumps(res))


def test_validation_names_missing_key(tmp_path):
    res = _results(tmp_path)
    del res["metrics"]["top1"]
    with pytest.raises(ResultsSchemaError, match=r"missing key 'metrics.top1'"):
        save_results(res, tmp_path / "bad.json")
    good = _results(tmp_path)
    path = tmp_path / "r.json"
    save_results(good, path)
    data = json.loads(path.read_text())
    del data["data"]["train_class_counts"]
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsSchemaError, match=r"r.json: missing key 'data.train_class_counts'"):
        load_results(path)
    data["data"]["train_class_counts"] = [1, 2]
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsSchemaError, match="has 2 entries, data.num_classes is 5"):
        load_results(path)
    path.write_text(json.dumps({**good, "schema": "other/v0"}))
    with pytest.raises(ResultsSchemaError, match="expected 'kcl-models/results/v1'"):
        load_results(path)
    path.write_text('{"schema": \n')
    with pytest.raises(ResultsSchemaError, match=r"r.json:2: not valid JSON"):
        load_results(path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_results(tmp_path / "nope.json")


def test_empty_group_stored_as_null(tmp_path):
    targets = torch.arange(3).repeat(4)
    m = compute_metrics(torch.randn(12, 3), targets, [500, 300, 200])  # every class is many-shot
    res = build_results(m, model_name="m", data_name="d", split="test", num_samples=12,
                        train_class_counts=[500, 300, 200])
    path = save_results(res, tmp_path / "r.json")
    loaded = load_results(path)
    assert loaded["metrics"]["medium"] is None and loaded["metrics"]["few"] is None
    assert "| - | - |" in markdown_table(loaded)


def test_sha256(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 3_000_000)
    assert file_sha256(f, chunk_size=1 << 16) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        file_sha256(tmp_path / "missing.bin")


def test_markdown_and_plots(tmp_path):
    feats = torch.randn(40, 8)
    labels = torch.arange(5).repeat(8)
    a = _results(tmp_path, probes={"knn": knn_classify(feats, labels, feats, labels, 5, device="cpu")})
    b = _results(tmp_path, seed=1, name="resnet32_bcl")
    table = markdown_table([a, b])
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 3  # header, rule, a classifier, a knn, b classifier
    assert f"{a['metrics']['top1']:.2f}" in lines[2] and "| knn |" in lines[3]
    assert "resnet32_bcl" in lines[4]
    p1 = plot_per_class(a, tmp_path / "plots" / "per_class.png")
    p2 = plot_per_class(a, tmp_path / "knn.png", protocol="knn")
    p3 = plot_compare([a, b], tmp_path / "compare.png")
    for p in (p1, p2, p3):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no probe 'linear_probe'"):
        plot_per_class(a, tmp_path / "x.png", protocol="linear_probe")


def test_non_finite_metrics_are_refused(tmp_path):
    """A NaN/inf metric (json.loads accepts NaN) must not reach a card or a table as a number."""
    path = save_results(_results(tmp_path), tmp_path / "r.json")
    for bad in ("NaN", "Infinity"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(data).replace(f'"top1": {data["metrics"]["top1"]}', f'"top1": {bad}', 1))
        with pytest.raises(ResultsSchemaError, match="'metrics.top1' must be a finite number"):
            load_results(path)


def test_load_results_validates_a_dict_too(tmp_path):
    res = _results(tmp_path)
    copy = load_results(res, where="given results")
    assert copy == json.loads(json.dumps(res)) and copy is not res
    del res["per_class"]
    with pytest.raises(ResultsSchemaError, match="given results: missing key 'per_class'"):
        load_results(res, where="given results")


def test_results_mismatch_names_architecture_and_weights(tmp_path):
    res = _results(tmp_path)
    sha = res["model"]["weights_sha256"]
    assert results_mismatch(res, ["resnet32_kcl"], [sha]) == []
    assert results_mismatch(res, ["resnet32_kcl.digits_lt", "resnet32"], ["0" * 64, sha]) == []
    problems = results_mismatch(res, ["resnet50_bcl"], ["1" * 64])
    assert len(problems) == 2 and "'resnet32_kcl'" in problems[0] and sha in problems[1]
    res["model"]["weights_sha256"] = None
    assert "record no weights sha256" in results_mismatch(res, ["resnet32_kcl"], [sha])[0]


def test_files_are_written_atomically_with_the_default_mode(tmp_path, monkeypatch):
    import os
    import stat
    res = _results(tmp_path)
    old = os.umask(0o022)
    try:
        path = save_results(res, tmp_path / "out" / "results.json")
        plot = plot_per_class(res, tmp_path / "out" / "per_class.png")
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (path, plot)} == {0o644}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["per_class.png", "results.json"]
    before = path.read_bytes()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_results(_results(tmp_path, seed=3), path)
    assert path.read_bytes() == before  # the earlier results survive a failed write
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["per_class.png", "results.json"]
