"""Batched tensor ops against the PIL ops they replace, pixel for pixel for given parameters."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from timm.data import auto_augment as aa
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from kcl_models.data import batched_ops as B


def _images(n=6, size=(20, 28), seed=0):
    """Noise, smooth ramps, few-valued and constant images (histogram edge cases), H != W."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = [(rng.random((h, w, 3)) * 256).astype(np.uint8) for _ in range(n - 3)]
    ramp = np.stack([*np.meshgrid(np.linspace(0, 255, w), np.linspace(40, 200, h)), np.full((h, w), 90.0)], -1)
    out.append(ramp.astype(np.uint8))
    two = np.where(rng.random((h, w, 1)) < 0.5, 30, 220).astype(np.uint8).repeat(3, -1)
    two[..., 1] = 77  # one channel constant
    out.append(two)
    out.append(np.full((h, w, 3), 131, np.uint8))
    return [Image.fromarray(a) for a in out]


def _t(imgs):
    return torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in imgs]).float()


def _check_equal(batched, pil_imgs):
    expect = _t(pil_imgs)
    assert batched.dtype == torch.float32 and batched.shape == expect.shape
    diff = (batched - expect).abs()
    assert torch.equal(batched, expect), f"{int((diff > 0).sum())} pixels differ, max {float(diff.max())}"


@pytest.fixture(params=[True, False], ids=["subsets", "whole-batch"])
def mode(request, monkeypatch):
    """Run each test on both code paths: CPU subsets and the accelerator's whole-batch torch.where."""
    monkeypatch.setattr(B, "SUBSETS_ON_CPU", request.param)
    return request.param


def test_crop_pad_flip_matches_torchvision(mode):
    imgs = _images(size=(32, 32))
    top, left = torch.tensor([0, 8, 3, 5, 8, 1]), torch.tensor([8, 0, 4, 2, 8, 0])
    flip = torch.tensor([True, False, True, False, False, True])
    out = B.crop_pad_flip(_t(imgs).to(torch.uint8), top, left, flip, (32, 32), 4)
    ref = []
    for img, i, j, f in zip(imgs, top.tolist(), left.tolist(), flip.tolist()):
        c = TF.crop(TF.pad(img, 4), i, j, 32, 32)
        ref.append(TF.hflip(c) if f else c)
    _check_equal(out, ref)


def test_grayscale_matches_pil(mode):
    imgs = _images()
    _check_equal(B.grayscale(_t(imgs)).expand(-1, 3, -1, -1), [TF.rgb_to_grayscale(i, 3) for i in imgs])


@pytest.mark.parametrize("kind,enhancer", [(B.BRIGHTNESS, ImageEnhance.Brightness), (B.CONTRAST, ImageEnhance.Contrast),
                                           (B.COLOR, ImageEnhance.Color), (B.SHARPNESS, ImageEnhance.Sharpness)])
def test_enhance_blends_match_pil(mode, kind, enhancer):
    imgs = _images()
    factors = torch.tensor([0.6, 1.37, 0.1, 1.9, 1.0, 0.0], dtype=torch.float32)  # inside and outside [0, 1]
    out = B.blend(_t(imgs), factors, kind)
    _check_equal(out, [enhancer(i).enhance(float(f)) for i, f in zip(imgs, factors)])


def test_hue_matches_torchvision_pil(mode):
    imgs = _images(8) + _images(4, seed=1)
    factors = torch.linspace(-0.5, 0.5, len(imgs), dtype=torch.float64)
    out = B.adjust_hue(_t(imgs), factors)
    _check_equal(out, [TF.adjust_hue(i, float(f)) for i, f in zip(imgs, factors)])


def test_lut_ops_match_timm(mode):
    imgs = _images()
    x = _t(imgs)
    bits, thr, add = [1, 2, 3, 4, 8, 4], [0, 128, 230, 256, 1, 77], [0, 30, 99, 110, 128, 7]
    cases = [
        (B.lut_autocontrast(x), [aa.auto_contrast(i) for i in imgs]),
        (B.lut_equalize(x), [aa.equalize(i) for i in imgs]),
        (B.lut_invert(x), [aa.invert(i) for i in imgs]),
        (B.lut_posterize(x, torch.tensor(bits)), [aa.posterize(i, b) for i, b in zip(imgs, bits)]),
        (B.lut_solarize(x, torch.tensor(thr)), [aa.solarize(i, t) for i, t in zip(imgs, thr)]),
        (B.lut_solarize_add(x, torch.tensor(add)), [aa.solarize_add(i, a) for i, a in zip(imgs, add)]),
    ]
    for lut, ref in cases:
        _check_equal(B.apply_lut(x, lut), ref)


@pytest.mark.parametrize("bicubic", [False, True], ids=["bilinear", "bicubic"])
def test_shear_and_translate_match_pil(mode, bicubic):
    imgs = _images() + _images(seed=2)
    rng = np.random.default_rng(1)
    mats = []
    for k in range(len(imgs)):
        v = float(rng.uniform(-0.3, 0.3)) if k % 3 else float(rng.uniform(-12.6, 12.6))
        mats.append([(1, v, 0, 0, 1, 0), (1, 0, 0, v, 1, 0), (1, 0, v, 0, 1, 0), (1, 0, 0, 0, 1, v)][k % 4])
    fill = (124, 116, 104)
    resample = Image.BICUBIC if bicubic else Image.BILINEAR
    out = B.affine(_t(imgs), torch.tensor(mats, dtype=torch.float64), torch.full((len(imgs),), bicubic),
                   torch.tensor(fill))
    _check_equal(out, [i.transform(i.size, Image.AFFINE, m, resample=resample, fillcolor=fill)
                       for i, m in zip(imgs, mats)])


def test_rotate_matches_pil_almost_everywhere(mode):
    # the matrix comes from torch's cos/sin (Pillow uses libm's): a last-bit difference can move a
    # truncation by one level, so here "almost": >= 99.5 % of pixels equal, none off by more than 1
    from kcl_models.data.batched_randaug import BatchedRandAugment
    from kcl_models.data.transforms import _randaug

    imgs = _images(6, size=(32, 32)) + _images(6, size=(32, 32), seed=3)
    ra = BatchedRandAugment(_randaug("rand-n2-m10-mstd0.5", (0.5, 0.5, 0.5), (32, 32)), (32, 32))
    m = torch.linspace(0.5, 10, len(imgs), dtype=torch.float64)
    neg = torch.arange(len(imgs)) % 2 == 0
    bic = torch.arange(len(imgs)) % 3 == 0
    out = B.affine(_t(imgs), ra._matrix("Rotate", m, neg), bic, ra.fill)
    ref = [aa.rotate(i, (-1 if n else 1) * float(mm) / 10 * 30, resample=Image.BICUBIC if b else Image.BILINEAR,
                     fillcolor=tuple(int(v) for v in ra.fill)) for i, mm, n, b in zip(imgs, m, neg, bic)]
    diff = (out - _t(ref)).abs()
    assert float(diff.max()) <= 1 and float((diff == 0).float().mean()) >= 0.995


def test_resized_crop_matches_torchvision_pil(mode):
    imgs = _images(6, size=(48, 40))
    # shrink both ways, enlarge, mixed, the whole image, and a 1-pixel-wide box
    top, left = torch.tensor([0, 10, 5, 0, 0, 7]), torch.tensor([0, 3, 20, 0, 0, 39])
    hh, ww = torch.tensor([48, 20, 30, 13, 48, 41]), torch.tensor([40, 30, 11, 9, 40, 1])
    flip = torch.tensor([False, True, False, True, False, False])
    out = B.resized_crop(_t(imgs), top, left, hh, ww, (24, 24), flip)
    ref = [TF.resized_crop(i, *map(int, p), [24, 24], antialias=True) for i, *p in zip(imgs, top, left, hh, ww)]
    _check_equal(out, [TF.hflip(r) if f else r for r, f in zip(ref, flip)])
    out = B.resized_crop(_t(imgs), top, left, hh, ww, (16, 20))  # non-square output
    _check_equal(out, [TF.resized_crop(i, *map(int, p), [16, 20], antialias=True) for i, *p in
                       zip(imgs, top, left, hh, ww)])
    # random boxes: Pillow 13 picks the pass order per image (vertical first when the height
    # shrinks more than twice as much as the width)
    g = torch.Generator().manual_seed(0)
    imgs = imgs * 3
    hh, ww = torch.randint(1, 49, (18,), generator=g), torch.randint(1, 41, (18,), generator=g)
    top = (torch.rand(18, generator=g) * (49 - hh)).long()
    left = (torch.rand(18, generator=g) * (41 - ww)).long()
    out = B.resized_crop(_t(imgs), top, left, hh, ww, (20, 12))
    _check_equal(out, [TF.resized_crop(i, *map(int, p), [20, 12], antialias=True) for i, *p in
                       zip(imgs, top, left, hh, ww)])


def test_normalize_is_bit_identical_to_totensor_normalize():
    imgs = _images()
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ref = torch.stack([T.Normalize(mean, std)(T.ToTensor()(i)) for i in imgs])
    out = B.normalize(_t(imgs), torch.tensor(mean), torch.tensor(std))
    assert torch.equal(out, ref)


def test_masked_apply_leaves_other_samples_alone(mode):
    x = _t(_images())
    mask = torch.tensor([True, False, True, False, False, True])
    out = B.masked_apply(x.clone(), mask, lambda t, f: t * 0 + f.view(-1, 1, 1, 1), torch.arange(6.0))
    assert torch.equal(out[~mask], x[~mask])
    assert torch.equal(out[mask], torch.tensor([0.0, 2.0, 5.0]).view(-1, 1, 1, 1).expand(3, 3, 20, 28))
