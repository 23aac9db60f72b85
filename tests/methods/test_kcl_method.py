"""KCL's method-level state: the queue only ever receives full global batches."""
from __future__ import annotations

import timm
import torch
from accelerate import Accelerator

from kcl_models.methods import MethodContext, get_method
from kcl_models.methods.base import build_options


def test_a_batch_shortened_by_skipped_images_trains_but_is_not_enqueued():
    said = []
    ctx = MethodContext(Accelerator(cpu=True), 10, [5] * 10, lambda x: x, lambda x: x.detach(), log=said.append)
    cls = get_method("kcl")
    method = cls(build_options(cls, {"queue_size": 16, "feat_dim": 8}), ctx)
    method.check_data(global_batch=8)
    model = method.build(timm.create_model("resnet32_kcl", num_classes=10))
    method.queue.labels.fill_(3)     # a filled queue
    full = ([torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)], torch.arange(8))
    short = ([torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8)], torch.arange(5))   # 3 images unreadable
    out = method.loss(model, short, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and out.num_images == 10
    assert int(method.queue.ptr) == 0 and any("are not enqueued" in s for s in said)
    method.loss(model, full, torch.Generator().manual_seed(0))
    assert int(method.queue.ptr) == 8 and method.queue.labels[:8].tolist() == list(range(8))
