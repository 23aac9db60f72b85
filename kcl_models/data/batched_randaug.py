"""timm's RandAugment on a batch: per-sample ops, magnitudes and interpolation in one call.

The policy is read from the ``timm.data.rand_augment_transform`` object built from the same
config string and hparams as the PIL path (so ``rand-n2-m10-mstd0.5`` means exactly what timm
parses: the op list, ``num_layers``, per-op ``prob``, ``magnitude``, ``magnitude_std``,
``magnitude_max``, fill colour, interpolation). Per sample and layer, as ``timm.data.
auto_augment.RandAugment`` / ``AugmentOp`` do per image:

1. an op drawn uniformly from the list (with replacement across layers);
2. applied with probability ``prob`` (``random() > prob`` skips it);
3. magnitude ``gauss(m, mstd)`` (``uniform(0, m)`` for ``mstd = inf``), clipped to
   ``[0, magnitude_max or 10]``, mapped to the op's argument by timm's level function, negated
   with probability 1/2 for signed ops;
4. geometric ops resample with BILINEAR or BICUBIC drawn 50/50 (unless hparams fix it) and fill
   with ``img_mean``.

Weighted op choice (``t<weights>``) and the ops outside timm's ``_RAND_TRANSFORMS`` /
``_RAND_INCREASING_TRANSFORMS`` lists are not supported: the builder raises, naming them.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from . import batched_ops as B

__all__ = ["BatchedRandAugment", "DRAWS_PER_LAYER"]

DRAWS_PER_LAYER = 5  # op, apply, magnitude (normal or uniform), sign, interpolation
_LEVEL_DENOM = 10.0
_LUT_OPS = ("AutoContrast", "Equalize", "Invert", "Posterize", "PosterizeIncreasing", "PosterizeOriginal",
            "Solarize", "SolarizeIncreasing", "SolarizeAdd")
_ENHANCE = {"Color": B.COLOR, "Contrast": B.CONTRAST, "Brightness": B.BRIGHTNESS, "Sharpness": B.SHARPNESS}
_GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel")
SUPPORTED_OPS = _LUT_OPS + tuple(_ENHANCE) + tuple(f"{k}Increasing" for k in _ENHANCE) + _GEOMETRIC


def _interp_choice(hparams: dict) -> bool | None:
    """True/False: always BICUBIC / BILINEAR; None: drawn 50/50 (timm's default pair)."""
    if "interpolation" not in hparams:
        return None
    from PIL import Image

    interp = hparams["interpolation"]
    if isinstance(interp, (list, tuple)):
        if set(interp) == {Image.Resampling.BILINEAR, Image.Resampling.BICUBIC} and len(interp) == 2:
            return None
        raise NotImplementedError(f"RandAugment interpolation {interp} is not supported by the batched path")
    if interp == Image.Resampling.BICUBIC:
        return True
    if interp == Image.Resampling.BILINEAR:
        return False
    raise NotImplementedError(f"RandAugment interpolation {interp} is not supported by the batched path")


class BatchedRandAugment:
    """Batched twin of a timm ``RandAugment`` (from ``rand_augment_transform``).

    Args:
        timm_ra: the ``timm.data.auto_augment.RandAugment`` to mirror.
        size: ``(H, W)`` of the images it will see (translations are relative to it).
    """

    def __init__(self, timm_ra: Any, size: tuple[int, int]) -> None:
        if getattr(timm_ra, "choice_weights", None) is not None:
            raise NotImplementedError("weighted RandAugment op choice is not supported by the batched path; "
                                      "use data_pipeline pil")
        names = [op.name for op in timm_ra.ops]
        unsupported = sorted(set(names) - set(SUPPORTED_OPS))
        if unsupported:
            raise NotImplementedError(f"RandAugment op(s) {unsupported} are not supported by the batched path; "
                                      f"use data_pipeline pil")
        first = timm_ra.ops[0]
        for op in timm_ra.ops:  # rand_augment_ops gives every op the same settings
            if (op.prob, op.magnitude, op.magnitude_std, op.magnitude_max) != \
                    (first.prob, first.magnitude, first.magnitude_std, first.magnitude_max):
                raise NotImplementedError("RandAugment ops with different prob/magnitude are not supported")
        self.names = names
        self.num_layers = int(timm_ra.num_layers)
        self.prob = float(first.prob)
        self.magnitude = float(first.magnitude)
        self.magnitude_std = float(first.magnitude_std)
        self.magnitude_max = float(first.magnitude_max or _LEVEL_DENOM)
        self.hparams = dict(first.hparams)
        fill = first.kwargs.get("fillcolor", (128, 128, 128))
        self.fill = torch.tensor(fill if isinstance(fill, (tuple, list)) else (fill,) * 3, dtype=torch.float64)
        self._fills: dict[torch.device, dict[str, torch.Tensor]] = {}
        self.bicubic = _interp_choice(self.hparams)
        self.size = size
        self.num_draws = DRAWS_PER_LAYER * self.num_layers

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={self.num_layers}, p={self.prob}, m={self.magnitude}, "
                f"mstd={self.magnitude_std}, mmax={self.magnitude_max}, ops={self.names})")

    # ---- parameters ----------------------------------------------------------------------------
    def draw(self, u: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample parameters from uniforms ``u`` and normals ``z`` (both ``[B, num_draws]``).

        Returns ``op`` (int64 [B, L], -1 where the layer is skipped), ``magnitude`` (float64 [B, L],
        after noise and clipping), ``negate`` and ``bicubic`` (bool [B, L]).
        """
        u = u.view(-1, self.num_layers, DRAWS_PER_LAYER)
        z = z.view(-1, self.num_layers, DRAWS_PER_LAYER)
        k = len(self.names)
        op = (u[..., 0] * k).long().clamp(max=k - 1)
        applied = (u[..., 1] <= self.prob) if self.prob < 1.0 else torch.ones_like(op, dtype=torch.bool)
        m = torch.full_like(u[..., 2], self.magnitude)
        if self.magnitude_std == math.inf:
            m = u[..., 2] * self.magnitude
        elif self.magnitude_std > 0:
            m = m + self.magnitude_std * z[..., 2]
        m = m.clamp(0.0, self.magnitude_max)
        negate = u[..., 3] > 0.5
        bicubic = u[..., 4] < 0.5 if self.bicubic is None else torch.full_like(negate, self.bicubic)
        return {"op": torch.where(applied, op, -1), "magnitude": m, "negate": negate, "bicubic": bicubic}

    def _signed(self, v: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
        return torch.where(negate, -v, v)

    def _matrix(self, name: str, m: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
        h, w = self.size
        one, zero = torch.ones_like(m), torch.zeros_like(m)
        if name == "Rotate":
            deg = self._signed((m / _LEVEL_DENOM) * 30.0, negate)
            rad = -(deg * (math.pi / 180.0))                       # Image.rotate: -math.radians(angle)
            cos, sin = torch.round(torch.cos(rad), decimals=15), torch.round(torch.sin(rad), decimals=15)
            cx, cy = w / 2.0, h / 2.0
            c = cos * -cx + sin * -cy + 0.0 + cx
            f = -sin * -cx + cos * -cy + 0.0 + cy
            return torch.stack([cos, sin, c, -sin, cos, f], 1)
        if name in ("ShearX", "ShearY"):
            s = self._signed((m / _LEVEL_DENOM) * 0.3, negate)
            return torch.stack([one, s, zero, zero, one, zero] if name == "ShearX" else
                               [one, zero, zero, s, one, zero], 1)
        if name.endswith("Rel"):
            pct = self._signed((m / _LEVEL_DENOM) * float(self.hparams.get("translate_pct", 0.45)), negate)
            px = pct * (w if name == "TranslateXRel" else h)
        else:
            px = self._signed((m / _LEVEL_DENOM) * float(self.hparams["translate_const"]), negate)
        return torch.stack([one, zero, px, zero, one, zero] if name.startswith("TranslateX") else
                           [one, zero, zero, zero, one, px], 1)

    def _enhance_factor(self, name: str, m: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
        if name.endswith("Increasing"):
            return torch.clamp(1.0 + self._signed((m / _LEVEL_DENOM) * 0.9, negate), min=0.1)
        return (m / _LEVEL_DENOM) * 1.8 + 0.1

    def _lut(self, name: str, x: torch.Tensor, m: torch.Tensor, hist: torch.Tensor | None) -> torch.Tensor:
        if name == "AutoContrast":
            return B.lut_autocontrast(x, hist)
        if name == "Equalize":
            return B.lut_equalize(x, hist)
        if name == "Invert":
            return B.lut_invert(x)
        if name.startswith("Posterize"):
            bits = torch.trunc((m / _LEVEL_DENOM) * 4)
            bits = {"Posterize": bits, "PosterizeIncreasing": 4 - bits, "PosterizeOriginal": bits + 4}[name]
            return B.lut_posterize(x, bits)
        if name in ("Solarize", "SolarizeIncreasing"):
            thr = torch.clamp(torch.trunc((m / _LEVEL_DENOM) * 256), max=256)
            return B.lut_solarize(x, thr if name == "Solarize" else 256 - thr)
        add = torch.clamp(torch.trunc((m / _LEVEL_DENOM) * 110), max=128)  # SolarizeAdd
        return B.lut_solarize_add(x, add)

    def level_args(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The argument each applied op receives, as timm's op function gets it (float64 ``[B, L]``;
        NaN for skipped layers and argument-free ops): degrees (Rotate), bits (Posterize*), threshold
        (Solarize*), addend (SolarizeAdd), enhance factor, shear factor, translate fraction
        (``*Rel``) or pixels."""
        m, neg, op = params["magnitude"], params["negate"], params["op"]
        out = torch.full_like(m, float("nan"))
        for k, name in enumerate(self.names):
            sel = op == k
            if name in ("AutoContrast", "Equalize", "Invert"):
                continue
            if name == "Rotate":
                arg = self._signed((m / _LEVEL_DENOM) * 30.0, neg)
            elif name.startswith("Posterize"):
                bits = torch.trunc((m / _LEVEL_DENOM) * 4)
                arg = {"Posterize": bits, "PosterizeIncreasing": 4 - bits, "PosterizeOriginal": bits + 4}[name]
            elif name in ("Solarize", "SolarizeIncreasing"):
                thr = torch.clamp(torch.trunc((m / _LEVEL_DENOM) * 256), max=256)
                arg = thr if name == "Solarize" else 256 - thr
            elif name == "SolarizeAdd":
                arg = torch.clamp(torch.trunc((m / _LEVEL_DENOM) * 110), max=128)
            elif name.startswith(("Shear", "Translate")):
                mat = self._matrix(name, m.flatten(), neg.flatten()).view(*m.shape, 6)
                arg = mat[..., 1] if name == "ShearX" else mat[..., 3] if name == "ShearY" else \
                    mat[..., 2] if name.startswith("TranslateX") else mat[..., 5]
                if name.endswith("Rel"):
                    arg = arg / (self.size[1] if name == "TranslateXRel" else self.size[0])
            else:
                arg = self._enhance_factor(name, m, neg)
            out = torch.where(sel, arg, out)
        return out

    # ---- application ---------------------------------------------------------------------------
    # Ops are applied by family, one call per family and layer (fewer, larger calls): the LUT ops
    # as one per-sample lookup table, the geometric ops as one per-sample affine matrix, the
    # enhance ops one call per kind (each blends with another degenerate image).
    def _lut_family(self, x: torch.Tensor, op: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        ids = [k for k, n in enumerate(self.names) if n in _LUT_OPS]
        hist = None
        if any(self.names[k] in ("AutoContrast", "Equalize") for k in ids):
            hist = B.histogram(x)
        lut = B._levels(x)
        for k in ids:
            lut = torch.where((op == k).view(-1, 1, 1), self._lut(self.names[k], x, m, hist), lut)
        return B.apply_lut(x, lut)

    def _affine_family(self, x: torch.Tensor, op: torch.Tensor, m: torch.Tensor, neg: torch.Tensor,
                       bic: torch.Tensor) -> torch.Tensor:
        mat = self._consts(x.device)["identity"].expand(len(op), 6)
        for k, name in enumerate(self.names):
            if name in _GEOMETRIC:
                mat = torch.where((op == k)[:, None], self._matrix(name, m, neg), mat)
        return B.affine(x, mat, bic, self._fill_on(x.device))

    def _consts(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._fills:  # made once per device: no host-to-device copy per batch
            self._fills[device] = {
                "fill": self.fill.to(device),
                "identity": torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64, device=device),
                "lut_ids": torch.tensor([k for k, n in enumerate(self.names) if n in _LUT_OPS], device=device),
                "geo_ids": torch.tensor([k for k, n in enumerate(self.names) if n in _GEOMETRIC], device=device),
            }
        return self._fills[device]

    def _fill_on(self, device: torch.device) -> torch.Tensor:
        return self._consts(device)["fill"]

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply the drawn layers in order to a pixel tensor ``[B, 3, H, W]``."""
        if tuple(x.shape[-2:]) != tuple(self.size):
            raise ValueError(f"RandAugment was built for {self.size} images, got {tuple(x.shape[-2:])}")
        consts = self._consts(x.device)
        lut_ids, geo_ids = consts["lut_ids"], consts["geo_ids"]
        for layer in range(self.num_layers):
            op = params["op"][:, layer]
            m, neg, bic = params["magnitude"][:, layer], params["negate"][:, layer], params["bicubic"][:, layer]
            x = B.masked_apply(x, torch.isin(op, lut_ids), self._lut_family, op, m)
            for k, name in enumerate(self.names):
                base = name[:-len("Increasing")] if name.endswith("Increasing") else name
                if base in _ENHANCE:
                    x = B.masked_apply(x, op == k, lambda t, f, kind=_ENHANCE[base]: B.blend(t, f, kind),
                                       self._enhance_factor(name, m, neg))
            x = B.masked_apply(x, torch.isin(op, geo_ids), self._affine_family, op, m, neg, bic)
        return x
