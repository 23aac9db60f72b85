"""The losses under torch.compile: one graph each (no graph break, no host sync) and the eager result.

``aot_eager`` traces forward and backward exactly as inductor does but runs the traced aten ops
without code generation, so this checks traceability in seconds on CPU; the GPU speed of the
inductor build is in BENCHMARKS.md (``bench/losses.py --compile``).
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from kcl_models.losses import BCLLoss, KCLLoss, LogitAdjustedLoss, PaCoLoss, ProCoLoss, SupConLoss, proco_logits


def _inputs():
    g = torch.Generator().manual_seed(0)
    b, d, k, c = 12, 8, 48, 5
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)  # noqa: E731
    data = dict(query=unit(b, d), key=unit(b, d), queue=unit(k, d), feats=unit(b, 2, d), protos=unit(c, d),
                logits=torch.randn(b, c, generator=g, dtype=torch.float64),
                labels=torch.randint(0, c, (b,), generator=g), queue_labels=torch.randint(-1, c, (k,), generator=g),
                kappa=torch.rand(c, generator=g, dtype=torch.float64) * 100)
    # PaCo's contrast set: [queries; keys; queue], anchors = the queries
    data["contrast"] = torch.cat([data["query"], data["key"], data["queue"]])
    data["contrast_labels"] = torch.cat([data["labels"], data["labels"], data["queue_labels"]])
    return data


CASES = {
    "bcl": (lambda: BCLLoss(5, validate_labels=False), ("feats", "labels", "protos"), ("feats", "protos")),
    "supcon": (lambda: SupConLoss(), ("feats", "labels"), ("feats",)),
    "la": (lambda: LogitAdjustedLoss([5, 4, 3, 2, 1], validate_labels=False), ("logits", "labels"), ("logits",)),
    "fcl": (lambda: KCLLoss(None, validate_labels=False), ("query", "key", "labels", "queue", "queue_labels"),
            ("query", "key", "queue")),
    "kcl": (lambda: KCLLoss(3, validate_labels=False), ("query", "key", "labels", "queue", "queue_labels"),
            ("query", "queue")),
    "paco": (lambda: PaCoLoss([5, 4, 3, 2, 1], alpha=0.3, smoothing=0.1, validate_labels=False),
             ("logits", "contrast", "contrast_labels"), ("logits", "contrast")),
    "proco_logits": (lambda: (lambda z, mu, kappa: proco_logits(z, mu, kappa, 0.1).square().mean()),
                     ("query", "protos", "kappa"), ("query", "protos", "kappa")),
}


def _run(fn, names, grad_names, **kw):
    data = _inputs()
    for n in grad_names:
        data[n].requires_grad_()
    loss = fn(*(data[n] for n in names), **kw)
    return loss, torch.autograd.grad(loss, [data[n] for n in grad_names])


@pytest.mark.parametrize("name", list(CASES))
def test_single_graph_matches_eager(name):
    make, names, grad_names = CASES[name]
    loss = make()
    torch._dynamo.reset()
    torch.manual_seed(3)  # KCL without a generator draws from the global RNG
    compiled, compiled_grads = _run(torch.compile(loss, backend="aot_eager", fullgraph=True), names, grad_names)
    torch.manual_seed(3)
    eager, eager_grads = _run(loss, names, grad_names)
    torch.testing.assert_close(compiled, eager, atol=1e-10, rtol=1e-10)
    for c, e in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(c, e, atol=1e-10, rtol=1e-10)


def test_kcl_with_generator_compiles_around_the_draw():
    # A Generator object cannot be traced: the uniforms are drawn eagerly, the rest is compiled.
    make, names, grad_names = CASES["kcl"]
    loss = make()
    torch._dynamo.reset()
    compiled, _ = _run(torch.compile(loss, backend="aot_eager"), names, grad_names,
                       generator=torch.Generator().manual_seed(9))
    eager, _ = _run(loss, names, grad_names, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(compiled, eager, atol=1e-10, rtol=1e-10)


def test_default_label_check_breaks_the_graph():
    # With the default validate_labels=True the range check reads labels on the host: a graph
    # break under fullgraph=True, which is why the trainer (labels checked at load) turns it off.
    make, names, grad_names = CASES["bcl"]
    torch._dynamo.reset()
    with pytest.raises(Exception, match="(?i)graph break|tolist|data-dependent|item"):
        _run(torch.compile(BCLLoss(5), backend="aot_eager", fullgraph=True), names, grad_names)


def test_kcl_rank_draw_is_one_graph(monkeypatch):
    # The running-count draw that CUDA takes at small sizes (forced here on CPU) traces too.
    from kcl_models.losses import kcl
    monkeypatch.setitem(kcl.RANK_DRAW_MAX_QUEUE, "cpu", 1 << 40)
    test_single_graph_matches_eager("kcl")


def test_proco_training_step_is_one_graph_with_its_statistics():
    # The estimators' in-place updates (module buffers) are part of the graph too.
    base = ProCoLoss([5, 4, 3, 2, 1], feature_dim=8, validate_labels=False).double()
    base.start_epoch(0)
    compiled_loss, eager_loss = copy.deepcopy(base), copy.deepcopy(base)
    torch._dynamo.reset()
    compiled = torch.compile(compiled_loss, backend="aot_eager", fullgraph=True)
    for _ in range(2):
        c_val, (c_grad,) = _run(compiled, ("feats", "labels"), ("feats",))
        e_val, (e_grad,) = _run(eager_loss, ("feats", "labels"), ("feats",))
        torch.testing.assert_close(c_val, e_val, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(c_grad, e_grad, atol=1e-10, rtol=1e-10)
        for key, value in compiled_loss.state_dict().items():
            torch.testing.assert_close(value, eager_loss.state_dict()[key], atol=1e-12, rtol=0)
