"""Counter-based random numbers: every draw a pure function of ``(seed, epoch, stream, position, draw)``.

Batched augmentation draws per-sample parameters for a whole batch in one call. To keep mid-epoch
resume bit-exact (and the views independent of the batch size, the number of processes and what
was prefetched), a sample's parameters must not depend on the order in which samples are drawn,
so no stateful generator is used: each value is a hash of its coordinates. The hash is the
32-bit ``lowbias32`` integer mixer (C. Wellons, "Prospecting for hash functions", 2018:
``x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16``), a bijection of
32-bit words with full avalanche, applied in a chain to the coordinates. It runs on int64 tensors
holding 32-bit values; each 32x32-bit product is split in 16-bit halves so no intermediate
exceeds 2^48 (int64 overflow is never relied on), hence the same bits on every device.

``position`` is the sample's slot in the epoch's sequence (not its dataset index), so a sample
drawn twice in an epoch (class-balanced sampling draws with replacement) gets two different
views, as with a fresh per-call draw; ``stream`` tells apart the views of one sample.
"""
from __future__ import annotations

from functools import lru_cache

import torch

__all__ = ["SampleKeys", "mix32"]

_MASK32 = 0xFFFFFFFF
_M1, _M2 = 0x7FEB352D, 0x846CA68B
_GOLDEN = 0x9E3779B9


def _mul32_int(x: int, c: int) -> int:
    return (x * c) & _MASK32


def mix32_int(x: int) -> int:
    """The lowbias32 mixer on a Python int (taken modulo 2^32)."""
    x &= _MASK32
    x ^= x >> 16
    x = _mul32_int(x, _M1)
    x ^= x >> 15
    x = _mul32_int(x, _M2)
    x ^= x >> 16
    return x


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # (x * c) mod 2^32 without int64 overflow: x = hi * 2^16 + lo, both < 2^16
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """The lowbias32 mixer, elementwise on an int64 tensor of values in ``[0, 2^32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, _M1)
    x = x ^ (x >> 15)
    x = _mul32(x, _M2)
    return x ^ (x >> 16)


def _fold64(v: int) -> int:
    v = int(v)
    if v < 0:
        raise ValueError(f"seed, epoch and stream must be non-negative integers, got {v}")
    return (v & _MASK32) ^ mix32_int(v >> 32) if v >> 32 else v


@lru_cache(maxsize=256)
def _salts(first: int, count: int, device: torch.device) -> torch.Tensor:
    # cached per device: no host-to-device copy per batch
    return torch.tensor([mix32_int((d * _GOLDEN + 0x632BE5AB) & _MASK32) for d in range(first, first + count)],
                        dtype=torch.int64, device=device)


class SampleKeys:
    """Random coordinates of one batch: ``(seed, epoch, stream)`` and one position per sample.

    Args:
        seed: run seed.
        epoch: epoch number.
        positions: int64 tensor ``[B]``, each sample's slot in the epoch (on the batch's device).
        stream: which view (or other consumer) of the samples draws.
    """

    def __init__(self, seed: int, epoch: int, positions: torch.Tensor, stream: int = 0) -> None:
        if positions.dim() != 1 or positions.dtype != torch.int64:
            raise ValueError(f"positions must be a 1-d int64 tensor, got {positions.dtype} {tuple(positions.shape)}")
        self.seed, self.epoch, self.stream = int(seed), int(epoch), int(stream)
        self.positions = positions
        base = mix32_int(_fold64(seed) ^ 0x5BD1E995)
        base = mix32_int(base ^ _fold64(epoch))
        self._base = mix32_int(base ^ _fold64(stream))
        self._per_sample = mix32((positions & _MASK32) ^ self._base)

    def with_stream(self, stream: int) -> SampleKeys:
        """The same samples, another stream (e.g. the next view)."""
        return SampleKeys(self.seed, self.epoch, self.positions, stream)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def bits(self, first: int, count: int) -> torch.Tensor:
        """Draws ``first .. first + count - 1`` of every sample as 32-bit ints: int64 ``[B, count]``."""
        salts = _salts(first, count, self.positions.device)
        return mix32(mix32(self._per_sample[:, None] ^ salts[None, :]) ^ 0x6A09E667)

    def uniform(self, first: int, count: int) -> torch.Tensor:
        """Uniform float64 ``[B, count]`` in ``[0, 1)`` on a 2^-24 grid (24 random bits each)."""
        return (self.bits(first, count) >> 8).to(torch.float64) * (1.0 / (1 << 24))

    def normal(self, first: int, count: int) -> torch.Tensor:
        """Standard normal float64 ``[B, count]`` (inverse CDF of an open-interval uniform)."""
        u = ((self.bits(first, count) >> 8).to(torch.float64) + 0.5) * (1.0 / (1 << 24))
        return torch.special.ndtri(u)
