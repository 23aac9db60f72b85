"""Batched views: same parameter distributions as the PIL pipeline, same pixels when replayed with PIL."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import auto_augment as aa
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from kcl_models.data import batched_ops as B
from kcl_models.data import build_train_transform, build_views
from kcl_models.data.batched_views import (
    ColorJitterStep,
    CropPadFlip,
    GrayscaleStep,
    RandAugmentStep,
    ResizedCropFlip,
    build_batched_train_view,
    build_batched_views,
)
from kcl_models.data.counter_rng import SampleKeys

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
N = 20000  # parameter draws per distribution check (parameters only: fast)


def _keys(n=N, seed=0, epoch=0, stream=0, start=0):
    return SampleKeys(seed, epoch, torch.arange(start, start + n), stream)


def _tv(hist_a, hist_b):
    a, b = np.asarray(hist_a, float), np.asarray(hist_b, float)
    return 0.5 * np.abs(a / a.sum() - b / b.sum()).sum()


def _ks(a, b):
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / a.size - np.searchsorted(b, grid, "right") / b.size).max())


def test_uniforms_are_uniform_and_keyed():
    u = _keys(50000).uniform(0, 4)
    assert u.dtype == torch.float64 and float(u.min()) >= 0 and float(u.max()) < 1
    hist = torch.histc(u.float(), bins=20, min=0, max=1)
    assert float((hist / hist.mean() - 1).abs().max()) < 0.05
    # draws of one sample are uncorrelated, and so are neighbouring samples
    assert abs(float(torch.corrcoef(torch.stack([u[:, 0], u[:, 1]]))[0, 1])) < 0.02
    assert abs(float(torch.corrcoef(torch.stack([u[:-1, 0], u[1:, 0]]))[0, 1])) < 0.02
    z = _keys(50000).normal(0, 1)
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    # a pure function of (seed, epoch, stream, position, draw)
    assert torch.equal(_keys(8, start=5).uniform(3, 2), _keys(20).uniform(3, 2)[5:13])
    for other in (_keys(8, seed=1), _keys(8, epoch=1), _keys(8, stream=1)):
        assert not torch.equal(other.uniform(0, 2), _keys(8).uniform(0, 2))
    big = SampleKeys(2**40 + 3, 7, torch.tensor([0, 2**33]))
    assert big.uniform(0, 1).shape == (2, 1)
    with pytest.raises(ValueError, match="non-negative"):
        SampleKeys(-1, 0, torch.arange(2))


def test_flip_rate_and_crop_offsets_match_torchvision():
    step = CropPadFlip((32, 32), 4, 0.5)
    p = step.draw(_keys(), 0, (32, 32))
    assert abs(float(p["flip"].float().mean()) - 0.5) < 0.015
    ours = [np.bincount(p[k].numpy(), minlength=9) for k in ("top", "left")]
    torch.manual_seed(0)
    img = torch.zeros(3, 40, 40)
    ref = np.array([T.RandomCrop.get_params(img, (32, 32)) for _ in range(N)])
    for k in range(2):
        assert ours[k].size == 9 and _tv(ours[k], np.bincount(ref[:, k], minlength=9)) < 0.03
    assert not CropPadFlip((32, 32), 4, 0.0).draw(_keys(100), 0, (32, 32))["flip"].any()
    assert CropPadFlip((32, 32), 4, 1.0).draw(_keys(100), 0, (32, 32))["flip"].all()
    with pytest.raises(ValueError, match="to_tensor_dataset"):
        step.draw(_keys(2), 0, (28, 28))


def test_resized_crop_scales_and_ratios_match_torchvision():
    step = ResizedCropFlip((64, 64), (0.08, 1.0), 0.5)
    n = 6000
    p = step.draw(_keys(n), 0, (96, 128))
    area = (p["height"] * p["width"]).double() / (96 * 128)
    ratio = (p["width"].double() / p["height"]).log()
    assert int((p["top"] + p["height"]).max()) <= 96 and int((p["left"] + p["width"]).max()) <= 128
    assert int(p["top"].min()) >= 0 and int(p["height"].min()) >= 1
    torch.manual_seed(0)
    img = torch.zeros(3, 96, 128)
    ref = np.array([T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(n)])
    assert _ks(area, ref[:, 2] * ref[:, 3] / (96 * 128)) < 0.04
    assert _ks(ratio, np.log(ref[:, 3] / ref[:, 2])) < 0.04
    # offsets uniform over the room left: compare the relative position
    rel = (p["top"].double() / (96 - p["height"] + 1)).numpy()
    assert _ks(rel, ref[:, 0] / (96 - ref[:, 2] + 1)) < 0.04
    # an extreme image falls back to torchvision's central crop
    tall = ResizedCropFlip((8, 8), (0.9, 1.0), 0.5).draw(_keys(200), 0, (200, 10))
    assert (tall["width"] == 10).all() and (tall["height"] == 13).all() and (tall["top"] == 93).all()


def test_jitter_ranges_order_and_probabilities_match_torchvision():
    tv = T.ColorJitter(0.4, 0.4, 0.4, 0.1)
    step = ColorJitterStep(0.4, 0.4, 0.4, 0.1, p=0.8)
    assert step.ranges == [tuple(tv.brightness), tuple(tv.contrast), tuple(tv.saturation), tuple(tv.hue)]
    assert ColorJitterStep(0.4, 0.4, 0.4, 0.0).ranges[3] is None and T.ColorJitter(0.4, 0.4, 0.4, 0).hue is None
    p = step.draw(_keys(), 0, (32, 32))
    f = p["factors"].double()
    for k, (lo, hi) in enumerate(step.ranges):
        assert lo <= float(f[:, k].min()) < lo + 0.01 and hi - 0.01 < float(f[:, k].max()) <= hi
        assert abs(float(f[:, k].mean()) - (lo + hi) / 2) < 0.01 * (hi - lo) * 10
    assert abs(float(p["apply"].float().mean()) - 0.8) < 0.015
    perms = (p["order"] * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = np.bincount(perms.numpy(), minlength=256)
    assert (counts > 0).sum() == 24 and counts.max() / counts[counts > 0].min() < 1.3
    assert abs(float(GrayscaleStep(0.2).draw(_keys(), 0, (32, 32))["apply"].float().mean()) - 0.2) < 0.015


def _timm_draws(n):
    """The ops timm's RandAugment applies to n images: (op name, argument, resample) per application."""
    from kcl_models.data.transforms import _randaug

    ra = _randaug("rand-n2-m10-mstd0.5", MEAN, (32, 32))
    record = []
    for op in ra.ops:
        def rec(img, *args, _name=op.name, **kw):
            resample = aa._interpolation(dict(kw)) if _name in ("Rotate", "ShearX", "ShearY", "TranslateXRel",
                                                                   "TranslateYRel") else None
            record[-1].append((_name, args[0] if args else None, resample))
            return img
        op.aug_fn = rec
    random.seed(0)
    np.random.seed(0)
    img = Image.new("RGB", (4, 4))
    for _ in range(n):
        record.append([])
        ra(img)
    return ra, record


def test_randaugment_ops_and_magnitudes_match_timm():
    n = 12000
    ra, timm_record = _timm_draws(n)
    step = build_batched_train_view("classifier", 32, MEAN, STD).steps[-1]
    assert isinstance(step, RandAugmentStep)
    bra = step.ra
    assert bra.names == [op.name for op in ra.ops] and bra.num_layers == 2 and bra.prob == 0.5
    assert bra.magnitude == 10 and bra.magnitude_std == 0.5 and bra.bicubic is None
    assert torch.equal(bra.fill, torch.tensor([125.0, 123.0, 114.0], dtype=torch.float64))
    p = step.draw(_keys(n), 0, (32, 32))
    args = bra.level_args(p)
    # number of ops applied per image: 0, 1, 2 with probabilities 1/4, 1/2, 1/4
    ours_n = np.bincount((p["op"] >= 0).sum(1).numpy(), minlength=3)
    assert _tv(ours_n, np.bincount([len(r) for r in timm_record], minlength=3)) < 0.02
    timm_apps = [a for r in timm_record for a in r]
    names = bra.names
    ours_ops = p["op"][p["op"] >= 0].numpy()
    assert _tv(np.bincount(ours_ops, minlength=15), [sum(a[0] == nm for a in timm_apps) for nm in names]) < 0.03
    for k, name in enumerate(names):
        mine = args[p["op"] == k].numpy()
        theirs = [a[1] for a in timm_apps if a[0] == name]
        if name in ("AutoContrast", "Equalize", "Invert"):
            assert np.isnan(mine).all() and all(t is None for t in theirs)
            continue
        if name == "Posterize":  # 3 or 4 bits: the same values, same frequencies
            assert set(mine.tolist()) == set(theirs) == {3, 4}
            assert _tv([np.sum(mine == v) for v in (3, 4)], [theirs.count(v) for v in (3, 4)]) < 0.06
        elif name in ("Solarize", "SolarizeAdd"):  # integer thresholds / addends
            assert set(mine.tolist()) <= set(range(257)) and _ks(mine, theirs) < 0.08, name
        else:
            assert _ks(mine, theirs) < 0.08, name
            if name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"):
                assert abs(float(np.mean(mine > 0)) - 0.5) < 0.06
    # 50 % of the magnitudes hit the clip at 10 (gauss(10, 0.5) clipped to [0, 10])
    assert abs(float((p["magnitude"] == 10).double().mean()) - 0.5) < 0.02
    geo = [a[2] for a in timm_apps if a[2] is not None]
    ours_bic = p["bicubic"][(p["op"] >= 0) & torch.isin(p["op"], torch.tensor([3, 11, 12, 13, 14]))]
    assert abs(float(ours_bic.double().mean()) - np.mean([g == Image.BICUBIC for g in geo])) < 0.05


def _pil(x):
    return Image.fromarray(x.permute(1, 2, 0).to(torch.uint8).numpy())


def _replay(img, view, params, bra_index=None):
    """Apply a traced batched view's parameters with the PIL/torchvision/timm ops, for one image."""
    for step, p in zip(view.steps, params):
        if isinstance(step, CropPadFlip):
            img = TF.crop(TF.pad(img, step.padding), int(p["top"]), int(p["left"]), *step.size)
            img = TF.hflip(img) if bool(p["flip"]) else img
        elif isinstance(step, ColorJitterStep):
            if not bool(p["apply"]):
                continue
            fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
            for j in p["order"].tolist():
                if step.ranges[j] is not None:
                    img = fns[j](img, float(p["factors"][j]))
        elif isinstance(step, GrayscaleStep):
            img = TF.rgb_to_grayscale(img, 3) if bool(p["apply"]) else img
        elif isinstance(step, RandAugmentStep):
            bra = step.ra
            args = bra.level_args({k: v[None] for k, v in p.items()})[0]
            for layer in range(bra.num_layers):
                k = int(p["op"][layer])
                if k < 0:
                    continue
                name = bra.names[k]
                kw = dict(fillcolor=tuple(int(v) for v in bra.fill),
                          resample=Image.BICUBIC if bool(p["bicubic"][layer]) else Image.BILINEAR)
                if name.endswith("Rel"):  # the pixels the batched op used (pct * size)
                    mat = bra._matrix(name, p["magnitude"][layer:layer + 1], p["negate"][layer:layer + 1])[0]
                    fn = aa.translate_x_abs if name == "TranslateXRel" else aa.translate_y_abs
                    img = fn(img, float(mat[2] if name == "TranslateXRel" else mat[5]), **kw)
                elif name in ("AutoContrast", "Equalize", "Invert"):
                    img = aa.NAME_TO_OP[name](img)
                else:
                    a = float(args[layer])
                    a = int(a) if name in ("Posterize", "Solarize", "SolarizeAdd") else a
                    img = aa.NAME_TO_OP[name](img, a, **kw)
    return T.Normalize(view.mean.tolist(), view.std.tolist())(T.ToTensor()(img))


@pytest.mark.parametrize("view_name,randaug", [("classifier", "rand-n2-m10-mstd0.5"), ("contrastive", None),
                                               ("contrastive", "rand-n2-m10-mstd0.5"), ("plain", None)])
def test_views_replayed_with_pil_give_the_same_pixels(view_name, randaug):
    rng = np.random.default_rng(0)
    imgs = torch.from_numpy((rng.random((48, 3, 32, 32)) * 256).astype(np.uint8))
    imgs[:8] = torch.from_numpy(np.linspace(0, 255, 32).astype(np.uint8))[None, None, None, :]  # smooth images
    view = build_batched_train_view(view_name, 32, MEAN, STD, randaug)
    out, params = view.trace(imgs, _keys(48, seed=3))
    rotated = torch.zeros(48, dtype=torch.bool)
    for p, s in zip(params, view.steps):
        if isinstance(s, RandAugmentStep):
            rotated = (p["op"] == s.ra.names.index("Rotate")).any(1)
    for i in range(48):
        ref = _replay(_pil(imgs[i]), view, [{k: v[i] for k, v in p.items()} for p in params])
        if rotated[i]:  # torch's cos/sin vs libm's: within one level (see test_batched_ops)
            assert float((out[i] - ref).abs().max()) <= 1 / 255 / min(STD) + 1e-6
        else:
            assert torch.equal(out[i], ref), f"sample {i} differs"


def test_views_mirror_build_views_and_are_deterministic(monkeypatch):
    imgs = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    for method in ("ce", "la", "crt", "plain", "supcon", "kcl", "fcl", "simclr", "cl", "bcl"):
        pil = build_views(method, 32, MEAN, STD)
        bat = build_batched_views(method, 32, MEAN, STD)
        out = bat(imgs, _keys(16))
        if isinstance(pil, T.Compose):
            assert isinstance(out, torch.Tensor) and out.shape == (16, 3, 32, 32)
        else:
            assert isinstance(out, list) and len(out) == len(pil) and all(o.shape == (16, 3, 32, 32) for o in out)
            assert not torch.equal(out[-1], out[-2])  # two identical views draw from different streams
    bcl = build_batched_views("bcl", 32, MEAN, STD, hflip=0.0)
    assert [type(s).__name__ for s in bcl.views[0].steps] == ["CropPadFlip", "ColorJitterStep", "RandAugmentStep"]
    assert [type(s).__name__ for s in bcl.views[1].steps] == ["CropPadFlip", "ColorJitterStep", "GrayscaleStep"]
    assert [len(t.transforms) for t in build_views("bcl", 32, MEAN, STD, hflip=0.0).transforms] == [7, 7, 7]
    # a sample's views depend on (seed, epoch, position) only: not on the batch it is in ...
    whole = bcl(imgs, _keys(16))
    halves = [bcl(imgs[:8], _keys(8)), bcl(imgs[8:], _keys(8, start=8))]
    for v in range(3):
        assert torch.equal(whole[v], torch.cat([halves[0][v], halves[1][v]]))
    # ... nor on the code path (CPU subsets or the accelerator's whole-batch where)
    monkeypatch.setattr(B, "SUBSETS_ON_CPU", False)
    for v, w in zip(bcl(imgs, _keys(16)), whole):
        assert torch.equal(v, w)
    assert not torch.equal(bcl(imgs, _keys(16, epoch=1))[0], whole[0])
    large = build_batched_views("supcon", 72, MEAN, STD)(torch.randint(0, 256, (2, 3, 80, 76), dtype=torch.uint8),
                                                          _keys(2))
    assert large[0].shape == (2, 3, 72, 72)
    assert [type(s).__name__ for s in build_batched_train_view("plain", 96, MEAN, STD).steps] == ["ResizedCropFlip"]
    assert build_train_transform("plain", 96, MEAN, STD).transforms[0].__class__ is T.RandomResizedCrop


def test_unsupported_policies_are_refused():
    with pytest.raises(NotImplementedError, match="weighted"):
        build_batched_train_view("classifier", 32, MEAN, STD, randaug="rand-m9-tweights")
    with pytest.raises(NotImplementedError, match="bicubic"):
        build_batched_train_view("plain", 96, MEAN, STD, interpolation="bicubic")
    with pytest.raises(ValueError, match="unknown method"):
        build_batched_views("moco", 32, MEAN, STD)
    # the increasing-severity variants are supported
    view = build_batched_train_view("classifier", 32, MEAN, STD, randaug="rand-n3-m7-inc1")
    assert view.steps[-1].ra.names[5] == "SolarizeIncreasing" and view.steps[-1].ra.num_layers == 3
    assert view(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), _keys(6)).shape == (6, 3, 32, 32)
