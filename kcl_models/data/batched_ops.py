"""Batched image ops on tensors, each with per-sample parameters, reproducing Pillow's arithmetic.

Images are float32 tensors ``[B, 3, H, W]`` holding integer values 0..255 (what a uint8 PIL
image holds); every op rounds as Pillow does, so for given parameters an op returns the same
pixels as the PIL op it replaces. What was checked against Pillow's C code (``libImaging``):

* ``Image.blend`` (ImageEnhance Brightness/Contrast/Color/Sharpness, torchvision's PIL
  ColorJitter): ``(uint8)(d + f * (x - d))`` in float32, clipped when ``f`` is outside [0, 1];
* ``convert('L')``: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``;
* the SMOOTH filter (Sharpness): float32 taps ``1/13, 5/13``, rows ``y+1, y, y-1``, ``+0.5``
  and truncation, border pixels copied;
* RGB <-> HSV (torchvision's PIL ``adjust_hue``), with its mix of float and double arithmetic;
* ``Image.transform(AFFINE)`` with BILINEAR and BICUBIC: double arithmetic, edge-clamped taps,
  fill colour where the sampling point leaves the image, truncation;
* LUT ops: autocontrast, equalize, invert, posterize, solarize, solarize-add (ImageOps / timm).

* ``Image.resize(BILINEAR)`` after a crop (torchvision's ``RandomResizedCrop`` on PIL): the
  triangle filter widened by the scale when shrinking, Pillow's coefficient normalisation and
  22-bit fixed point, horizontal pass first.

Samples an op does not touch: on a CPU an op runs only on the samples that need it (index, apply,
copy back); on an accelerator it runs on the whole batch and ``torch.where`` keeps the others, so
no host-device synchronisation is needed. Both give the same pixels.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "adjust_hue",
    "affine",
    "apply_lut",
    "blend",
    "crop_pad_flip",
    "degenerate",
    "grayscale",
    "lut_autocontrast",
    "lut_equalize",
    "lut_invert",
    "lut_posterize",
    "lut_solarize",
    "lut_solarize_add",
    "masked_apply",
    "normalize",
    "resized_crop",
]

BRIGHTNESS, CONTRAST, COLOR, SHARPNESS = 0, 1, 2, 3
_F32, _F64 = torch.float32, torch.float64
_K1 = torch.tensor(1.0, dtype=_F32) / 13.0  # the SMOOTH kernel, as Pillow divides it (float32)
_K5 = torch.tensor(5.0, dtype=_F32) / 13.0
SUBSETS_ON_CPU = True  # tests flip this to check that the whole-batch path gives the same pixels


def _subsets(x: torch.Tensor) -> bool:
    return SUBSETS_ON_CPU and x.device.type == "cpu"


def masked_apply(x: torch.Tensor, mask: torch.Tensor, fn: Callable[..., torch.Tensor],
                 *params: torch.Tensor) -> torch.Tensor:
    """``x`` with ``fn(x, *params)`` for the samples where ``mask`` ([B] bool) holds.

    ``params`` are per-sample tensors ``[B, ...]`` sliced with the batch; on the whole-batch path
    they must be valid (finite) for every sample. Modifies ``x`` in place on the subset path.
    """
    if _subsets(x):
        idx = mask.nonzero().squeeze(1)
        n = idx.numel()
        if n == 0:
            return x
        if n == x.shape[0]:
            return fn(x, *params)
        x.index_copy_(0, idx, fn(x.index_select(0, idx), *(p.index_select(0, idx) for p in params)))
        return x
    return torch.where(mask.view(-1, 1, 1, 1), fn(x, *params), x)


def _col(v: torch.Tensor, dtype: torch.dtype = _F32) -> torch.Tensor:
    return v.to(dtype).view(-1, 1, 1, 1)


# ---- geometry --------------------------------------------------------------------------------

def crop_pad_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
                  size: tuple[int, int], padding: int) -> torch.Tensor:
    """Zero-pad by ``padding``, crop ``size`` at (``top``, ``left``) of the padded image, then mirror
    where ``flip``: torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip``.

    Args:
        images: ``[B, C, H, W]`` (any dtype; uint8 from the dataset).
        top, left: int64 ``[B]`` offsets in the padded image.
        flip: bool ``[B]``.
    Returns:
        float32 ``[B, C, h, w]``.
    """
    b, c = images.shape[:2]
    h, w = size
    dev = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4) if padding else images
    pw = padded.shape[-1]
    rows = top[:, None] + torch.arange(h, device=dev)                                  # [B, h]
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + left[:, None]               # [B, w]
    idx = (rows[:, :, None] * pw + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, idx).view(b, c, h, w).to(_F32)


_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point resampling precision for 8-bit images


def _resample_matrix(offset: torch.Tensor, length: torch.Tensor, full: int, out: int) -> torch.Tensor:
    """Pillow's bilinear (triangle-filter) resampling coefficients of ``length`` pixels starting at
    ``offset`` (per sample) onto ``out`` pixels, as integers in Pillow's fixed point: ``[B, out, full]``."""
    dev = offset.device
    length = length.to(_F64)
    scale = length / out                                                           # [B]
    fscale = scale.clamp(min=1.0)
    support = fscale                                                               # bilinear support 1
    ksize = int(math.ceil(float(support.max()))) * 2 + 1
    centre = (torch.arange(out, device=dev, dtype=_F64) + 0.5)[None, :] * scale[:, None]       # [B, out]
    xmin = torch.trunc(centre - support[:, None] + 0.5).clamp(min=0)
    xmax = torch.minimum(torch.trunc(centre + support[:, None] + 0.5), length[:, None]) - xmin
    x = torch.arange(ksize, device=dev, dtype=_F64)
    w = 1.0 - ((x + xmin[..., None] - centre[..., None] + 0.5) * (1.0 / fscale)[:, None, None]).abs()
    w = w.clamp(min=0.0) * (x < xmax[..., None])                                  # [B, out, ksize]
    ww = w.cumsum(-1)[..., -1:]                                                    # Pillow sums in order
    k = torch.where(ww != 0, w / torch.where(ww != 0, ww, 1.0), w)
    k = torch.floor(0.5 + k * (1 << _PRECISION_BITS))                              # (int)(0.5 + k * 2^22)
    cols = offset[:, None, None] + xmin[..., None].long() + x.long()
    cols = torch.where(x < xmax[..., None], cols, full)  # unused taps (k = 0) go to a spare column
    mat = torch.zeros(offset.shape[0], out, full + 1, dtype=_F64, device=dev)
    return mat.scatter_(2, cols, k)[..., :full]  # the used columns are distinct: a plain, deterministic scatter


def _resample_pass(x: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    # x [B, M, full] integer values, mat [B, out, full] -> [B, M, out]; float64 sums of integers below
    # 2^53 are exact, then Pillow's rounding ((ss + 2^21) >> 22) and clip to 0..255
    ss = torch.bmm(x, mat.transpose(1, 2)) + (1 << (_PRECISION_BITS - 1))
    return torch.floor(ss / (1 << _PRECISION_BITS)).clamp_(0, 255)


def _pillow_version() -> tuple[int, ...]:
    import PIL

    return tuple(int(v) for v in PIL.__version__.split(".")[:2] if v.isdigit())


# Pillow 13 runs the vertical pass first when the height shrinks by more than twice what the width
# does (src/libImaging/Resample.c); earlier versions always ran the horizontal pass first
_VERTICAL_FIRST_RULE = _pillow_version() >= (13, 0)


def _resize(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor, width: torch.Tensor,
            size: tuple[int, int], vertical_first: bool) -> torch.Tensor:
    b, c, full_h, full_w = x.shape
    out_h, out_w = size
    mat_w = _resample_matrix(left, width, full_w, out_w)                 # [B, out_w, W]
    mat_h = _resample_matrix(top, height, full_h, out_h)                 # [B, out_h, H]
    x = x.to(_F64)
    if not vertical_first:
        x = _resample_pass(x.reshape(b, c * full_h, full_w), mat_w)                            # [B, C*H, out_w]
        x = _resample_pass(x.view(b, c, full_h, out_w).transpose(2, 3).reshape(b, c * out_w, full_h), mat_h)
        return x.view(b, c, out_w, out_h).transpose(2, 3)
    x = _resample_pass(x.transpose(2, 3).reshape(b, c * full_w, full_h), mat_h)                # [B, C*W, out_h]
    x = _resample_pass(x.view(b, c, full_w, out_h).transpose(2, 3).reshape(b, c * out_h, full_w), mat_w)
    return x.view(b, c, out_h, out_w)


def resized_crop(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor,
                 width: torch.Tensor, size: tuple[int, int], flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop a box per sample and resize it to ``size`` with Pillow's antialiased bilinear resampling
    (torchvision's ``resized_crop`` on a PIL image: ``crop`` then ``resize``), mirrored where ``flip``.

    The two separable passes are batched matrix products with Pillow's fixed-point coefficients,
    each rounded to 8 bits, in Pillow's order (see ``_VERTICAL_FIRST_RULE``), so the pixels are
    Pillow's.
    """
    out_h, out_w = size
    if _VERTICAL_FIRST_RULE:
        dh, dw = height - out_h, width - out_w
        vfirst = (dh > 0) & (dh > 2 * dw)
    else:
        vfirst = torch.zeros_like(height, dtype=torch.bool)
    out = torch.empty(images.shape[0], images.shape[1], out_h, out_w, dtype=_F64, device=images.device)
    if _subsets(images):
        for want in (False, True):
            idx = (vfirst == want).nonzero().squeeze(1)
            if idx.numel():
                pick = [t.index_select(0, idx) for t in (images, top, left, height, width)]
                out.index_copy_(0, idx, _resize(*pick, size, want))
    else:
        out = torch.where(vfirst.view(-1, 1, 1, 1), _resize(images, top, left, height, width, size, True),
                          _resize(images, top, left, height, width, size, False))
    out = out.to(_F32)
    if flip is not None:
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    return out.contiguous()


def _gather(flat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, width: int) -> torch.Tensor:
    # flat [B, C, H*W]; rows, cols int64 [B, N] -> [B, C, N]
    idx = (rows * width + cols)[:, None, :].expand(-1, flat.shape[1], -1).contiguous()
    return flat.gather(2, idx)


def _affine_coords(matrix: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Pillow's affine_transform: input point of output pixel (x, y) = A @ (x + .5, y + .5, 1), double
    dev = matrix.device
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=_F64) + 0.5,
                            torch.arange(width, device=dev, dtype=_F64) + 0.5, indexing="ij")
    xs, ys = xs.reshape(1, -1), ys.reshape(1, -1)
    a = matrix.to(_F64)
    xin = a[:, 0:1] * xs + a[:, 1:2] * ys + a[:, 2:3]
    yin = a[:, 3:4] * xs + a[:, 4:5] * ys + a[:, 5:6]
    return xin, yin                                                                     # [B, H*W]


def _full(v: torch.Tensor, channels: int) -> torch.Tensor:
    # [B, N] -> contiguous [B, C, N]: a broadcast operand in the middle dim is several times slower on CPU
    return v[:, None, :].expand(-1, channels, -1).contiguous()


def _lerp_(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    # Pillow's BILINEAR(v, a, b, d): v = a + (b - a) * d, in place in b
    return b.sub_(a).mul_(d).add_(a)


def _bilinear(flat: torch.Tensor, xin: torch.Tensor, yin: torch.Tensor, height: int, width: int) -> torch.Tensor:
    c = flat.shape[1]
    xf, yf = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xf), torch.floor(yf)
    dx, dy = _full(xf - x0, c), _full(yf - y0, c)
    x0, y0 = x0.long(), y0.long()
    c0, c1 = x0.clamp(0, width - 1), (x0 + 1).clamp(0, width - 1)
    r0, r1 = y0.clamp(0, height - 1), (y0 + 1).clamp(0, height - 1)
    v1 = _lerp_(_gather(flat, r0, c0, width), _gather(flat, r0, c1, width), dx)
    v2 = _lerp_(_gather(flat, r1, c0, width), _gather(flat, r1, c1, width), dx)
    return _lerp_(v1, v2, dy).floor_()  # v >= 0: floor is Pillow's (UINT8) truncation


def _cubic(v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, v4: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    # Pillow's BICUBIC(v, v1, v2, v3, v4, d), same operations in the same order; overwrites v1, v3, v4
    p2 = v3 - v1                                   # -v1 + v3
    p3 = (v1 - v2).mul_(2).add_(v3).sub_(v4)       # 2 * (v1 - v2) + v3 - v4
    p4 = v1.neg_().add_(v2).sub_(v3).add_(v4)      # -v1 + v2 - v3 + v4
    return p4.mul_(d).add_(p3).mul_(d).add_(p2).mul_(d).add_(v2)  # p1 + d * (p2 + d * (p3 + d * p4))


def _bicubic(flat: torch.Tensor, xin: torch.Tensor, yin: torch.Tensor, height: int, width: int) -> torch.Tensor:
    c = flat.shape[1]
    xf, yf = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xf), torch.floor(yf)
    dx, dy = _full(xf - x0, c), _full(yf - y0, c)
    x0, y0 = x0.long(), y0.long()
    cols = [(x0 + k).clamp(0, width - 1) for k in (-1, 0, 1, 2)]
    rows = []
    for k in (-1, 0, 1, 2):
        r = (y0 + k).clamp(0, height - 1)
        rows.append(_cubic(*(_gather(flat, r, col, width) for col in cols), dx))
    v = _cubic(*rows, dy)
    return v.clamp_(0, 255).floor_()  # Pillow: 0 below 0, 255 above 255, else truncated


def affine(x: torch.Tensor, matrix: torch.Tensor, bicubic: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Pillow's ``Image.transform(size, AFFINE, data, resample, fillcolor)`` per sample.

    Args:
        x: pixel tensor ``[B, 3, H, W]``.
        matrix: ``[B, 6]`` (Pillow's ``data``: output pixel centre -> input point), any float dtype.
        bicubic: bool ``[B]``: BICUBIC where True, else BILINEAR.
        fill: ``[3]`` fill colour where the input point falls outside the image.
    """
    b, c, height, width = x.shape
    xin, yin = _affine_coords(matrix, height, width)
    flat = x.reshape(b, c, -1).to(_F64)
    outside = _full(((xin < 0) | (xin >= width) | (yin < 0) | (yin >= height)).to(_F64), c)
    fill = fill.to(device=x.device, dtype=_F64).view(1, c, 1)
    if _subsets(x):
        out = torch.empty_like(flat)
        for want, fn in ((False, _bilinear), (True, _bicubic)):
            idx = (bicubic == want).nonzero().squeeze(1)
            if idx.numel():
                out.index_copy_(0, idx, fn(flat.index_select(0, idx), xin.index_select(0, idx),
                                           yin.index_select(0, idx), height, width))
    else:
        out = torch.where(bicubic.view(-1, 1, 1), _bicubic(flat, xin, yin, height, width),
                          _bilinear(flat, xin, yin, height, width))
    out = (fill - out).mul_(outside).add_(out)  # exact: integer values, outside 0 or 1 (torch.where is slow on CPU)
    return out.view(b, c, height, width).to(_F32)


# ---- colour ----------------------------------------------------------------------------------

def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert('L')`` of a pixel tensor: ``[B, 1, H, W]`` (integer values, float32)."""
    xi = x.to(torch.int32)
    return ((xi[:, 0:1] * 19595 + xi[:, 1:2] * 38470 + xi[:, 2:3] * 7471 + 0x8000) >> 16).to(_F32)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    # Pillow's 3x3 SMOOTH filter in float32, same order of additions; borders copied
    def row(r: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        s = r[..., :-2] * _K1
        s = s + r[..., 1:-1] * centre
        return s + r[..., 2:] * _K1

    if x.shape[-1] < 3 or x.shape[-2] < 3:
        return x.clone()
    ss = row(x[:, :, 2:, :], _K1) + 0.5
    ss = ss + row(x[:, :, 1:-1, :], _K5)
    ss = ss + row(x[:, :, :-2, :], _K1)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = ss.clamp_(0, 255).floor_()
    return out


def degenerate(x: torch.Tensor, kind: int) -> torch.Tensor:
    """The image ImageEnhance blends with: black, the grey mean, the greyscale image, the smoothed image."""
    if kind == BRIGHTNESS:
        return torch.zeros((), dtype=_F32, device=x.device)
    if kind == CONTRAST:
        grey = grayscale(x).to(torch.int64)
        n = grey.shape[-1] * grey.shape[-2]
        mean = grey.sum(dim=(1, 2, 3)).to(_F64) / n  # ImageStat mean, then int(mean + 0.5)
        return torch.floor(mean + 0.5).to(_F32).view(-1, 1, 1, 1)
    if kind == COLOR:
        return grayscale(x)
    if kind == SHARPNESS:
        return _smooth(x)
    raise ValueError(f"unknown enhance kind {kind}")


def blend(x: torch.Tensor, factor: torch.Tensor, kind: int) -> torch.Tensor:
    """ImageEnhance ``kind`` with ``factor`` [B]: ``Image.blend(degenerate, x, factor)``."""
    f = _col(factor)  # Pillow takes the factor as a C float
    if kind == BRIGHTNESS:  # degenerate 0: 0 + f * (x - 0) is f * x exactly
        out = x * f
    else:
        d = degenerate(x, kind)
        out = (x - d).mul_(f).add_(d)
    return out.clamp_(0, 255).floor_()  # >= 0 after the clamp: floor is the C cast's truncation


def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    t = torch.floor(v)  # v >= 0 here, so C's round() is floor + (fraction >= 0.5)
    return t + (v - t >= 0.5).to(v.dtype)


def _pack2(codes: list[int]) -> int:
    # small lookup tables packed two bits per entry: entry i is (packed >> 2 i) & 3
    return sum(c << (2 * i) for i, c in enumerate(codes))


# rgb2hsv: with k the maximal channel (R, G, B), h = 2 k + a - b, a and b picked from (rc, gc, bc)
_HUE_A, _HUE_B = _pack2([2, 0, 1]), _pack2([1, 2, 0])
# hsv2rgb: per sector 0..5, which of (v, p, q, t) goes to R, G and B
_SECTOR_RGB = (_pack2([0, 2, 1, 1, 3, 0]), _pack2([3, 0, 0, 2, 1, 1]), _pack2([1, 1, 3, 0, 0, 2]))


def _pick(stack: torch.Tensor, packed: int, key: torch.Tensor) -> torch.Tensor:
    # stack [K, ...] planes, key int64 [...]: plane (packed >> 2 key) & 3 per element (no torch.where, no
    # table indexing: both are slow on CPU)
    return stack.gather(0, ((packed >> (2 * key)) & 3).unsqueeze(0)).squeeze(0)


def adjust_hue(x: torch.Tensor, hue_factor: torch.Tensor) -> torch.Tensor:
    """torchvision's PIL ``adjust_hue``: RGB -> HSV (Pillow), ``H += int(hue_factor * 255)`` modulo
    256, HSV -> RGB (Pillow). ``hue_factor`` [B] in [-0.5, 0.5].

    Pillow's float/double mix is kept where it changes the rounding; each rewrite below (branch
    selection by index, ``t - floor(t)`` for ``fmod(t, 1)``, no special case for grey pixels) gives
    the same values and avoids ``torch.where``, which is slow on CPU.
    """
    xi = x.to(torch.int32)
    r, g, b = xi[:, 0], xi[:, 1], xi[:, 2]
    maxc = torch.maximum(r, torch.maximum(g, b))
    delta = maxc - torch.minimum(r, torch.minimum(g, b))
    cr = delta.clamp(min=1).to(_F32)                     # grey pixels (delta 0) end with s = 0 anyway
    s = delta.to(_F32) / maxc.clamp(min=1).to(_F32)
    ratios = torch.stack([(maxc - c).to(_F32) / cr for c in (r, g, b)])             # rc, gc, bc [3, B, H, W]
    k = ((r != maxc) * (1 + (g != maxc))).long()                                    # Pillow's if / else if
    a, b_ = _pick(ratios, _HUE_A, k).to(_F64), _pick(ratios, _HUE_B, k).to(_F64)
    h = (2.0 * k.to(_F64) + a - b_).to(_F32)             # exact in double, then one float rounding as in C
    t = h.to(_F64) / 6.0 + 1.0
    h = (t - torch.floor(t)).to(_F32)                    # fmod(t, 1) for t > 0, exactly
    uh = torch.floor(h.to(_F64) * 255.0).clamp_(0, 255).to(torch.int64)
    us = torch.floor(s.to(_F64) * 255.0).clamp_(0, 255)
    shift = torch.trunc(hue_factor.to(_F64) * 255.0).to(torch.int64).view(-1, 1, 1)
    uh = (uh + shift) & 255                              # uint8 wrap-around
    # HSV -> RGB, Pillow's hsv2rgb (s = 0 gives p = q = t = v: grey stays grey)
    hd = uh.to(_F64) * 6.0 / 255.0
    i = torch.floor(hd)
    f = (hd - i).to(_F32)
    fs = (us / 255.0).to(_F32)
    v = maxc.to(_F64)
    p = _round_half_away(v * (1.0 - fs.to(_F64)))
    q = _round_half_away(v * (1.0 - (fs * f).to(_F64)))
    t = _round_half_away(v * (1.0 - fs.to(_F64) * (1.0 - f.to(_F64))))
    vals = torch.stack([v, p, q, t]).clamp_(0, 255).to(_F32)                       # [4, B, H, W]
    i = i.long()
    sector = i * (i < 6)                                 # i % 6 for i in 0..6
    return torch.stack([_pick(vals, code, sector) for code in _SECTOR_RGB], 1)


# ---- lookup tables -----------------------------------------------------------------------------

def apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel lookup: ``lut`` ``[B, 3, 256]`` (integer values)."""
    b, c, h, w = x.shape
    return lut.to(_F32).gather(2, x.reshape(b, c, -1).long()).view(b, c, h, w)


def _levels(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(256, device=x.device, dtype=torch.int64).expand(x.shape[0], x.shape[1], 256)


def histogram(x: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel histograms ``[B, 3, 256]`` (int64) of a pixel tensor."""
    b, c = x.shape[:2]
    offs = (torch.arange(b * c, device=x.device) * 256).view(b, c, 1)
    idx = (x.reshape(b, c, -1).long() + offs).flatten()
    return torch.bincount(idx, minlength=b * c * 256).view(b, c, 256)


def lut_invert(x: torch.Tensor) -> torch.Tensor:
    return 255 - _levels(x)


def lut_posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep ``bits`` [B] (0..8) most significant bits; 8 or more keeps the image."""
    keep = bits.to(torch.int64).clamp(0, 8).view(-1, 1, 1)
    mask = 255 - ((1 << (8 - keep)) - 1)
    return _levels(x) & mask


def lut_solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    v = _levels(x)
    return torch.where(v < threshold.to(torch.int64).view(-1, 1, 1), v, 255 - v)


def lut_solarize_add(x: torch.Tensor, add: torch.Tensor, threshold: int = 128) -> torch.Tensor:
    v = _levels(x)
    return torch.where(v < threshold, (v + add.to(torch.int64).view(-1, 1, 1)).clamp(max=255), v)


def lut_autocontrast(x: torch.Tensor, hist: torch.Tensor | None = None) -> torch.Tensor:
    """ImageOps.autocontrast (cutoff 0): each channel's [min, max] stretched to [0, 255]."""
    hist = histogram(x) if hist is None else hist
    present = hist > 0
    lo = present.to(torch.int64).argmax(2, keepdim=True)
    hi = 255 - present.flip(2).to(torch.int64).argmax(2, keepdim=True)
    span = (hi - lo).clamp(min=1).to(_F64)
    scale = 255.0 / span
    offset = -lo.to(_F64) * scale
    v = _levels(x)
    lut = (v.to(_F64) * scale + offset).clamp(0, 255).floor().to(torch.int64)  # int() then clip
    return torch.where(hi <= lo, v, lut)


def lut_equalize(x: torch.Tensor, hist: torch.Tensor | None = None) -> torch.Tensor:
    """ImageOps.equalize: each channel's cumulative histogram, Pillow's integer arithmetic."""
    hist = histogram(x) if hist is None else hist
    present = hist > 0
    last = 255 - present.flip(2).to(torch.int64).argmax(2, keepdim=True)
    total = hist.sum(2, keepdim=True)
    step = (total - hist.gather(2, last)) // 255
    safe = step.clamp(min=1)
    before = torch.cumsum(hist, 2) - hist                                    # pixels below each level
    lut = ((safe // 2 + before) // safe).clamp(max=255)
    identity = (present.sum(2, keepdim=True) <= 1) | (step == 0)
    return torch.where(identity, _levels(x), lut)


# ---- output ------------------------------------------------------------------------------------

def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``ToTensor`` + ``Normalize`` of a pixel tensor, the same float32 operations as torchvision."""
    return x.div(255).sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
