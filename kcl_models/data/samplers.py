"""Re-balancing samplers for long-tailed training (class-balanced for cRT, square-root).

Both samplers draw with replacement: first a class ``c`` with probability ``p_c``, then a sample
of that class uniformly. Class-balanced (Kang et al., "Decoupling Representation and Classifier",
ICLR 2020, used by cRT): ``p_c = 1 / C`` over the classes present. Square-root (Mahajan et al.
2018; Kang et al. 2020): ``p_c = sqrt(n_c) / sum_k sqrt(n_k)``.

Multiple processes: the sequence depends only on ``(seed, epoch)``, never on the rank, so every
process produces the same order; Accelerate's ``prepare`` then hands each process its own
batches. Without Accelerate pass ``num_replicas``/``rank``: each process gets every
``num_replicas``-th index of that common sequence, padded (by repeating its start) to equal
length like ``torch.utils.data.DistributedSampler``, so the shards are disjoint positions of the
sequence and together cover it. Call ``set_epoch(epoch)`` before each epoch for a new order.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ClassBalancedSampler", "SquareRootSampler", "build_sampler"]


class _ClassPowerSampler(Sampler[int]):
    """Draw class ``c`` with probability proportional to ``n_c ** power``, then a sample uniformly."""

    power: float = 0.0

    def __init__(self, targets: Sequence[int], num_samples: int | None = None, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        arr = np.asarray(targets)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"targets must be a non-empty 1-d sequence of labels, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"targets must hold integer labels, got dtype {arr.dtype}")
        if arr.min() < 0:
            i = int(np.argmin(arr))
            raise ValueError(f"label {int(arr[i])} at position {i} is negative")
        arr = arr.astype(np.int64)
        if num_samples is None:
            num_samples = int(arr.size)
        if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if (num_replicas is None) != (rank is None):
            raise ValueError("give both num_replicas and rank, or neither")
        if num_replicas is not None:
            if num_replicas < 1:
                raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
            if not 0 <= rank < num_replicas:
                raise ValueError(f"rank {rank} out of range [0, {num_replicas})")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0
        self.num_replicas = num_replicas
        self.rank = rank
        counts = np.bincount(arr)
        self.classes = np.flatnonzero(counts)  # classes present
        self.class_sizes = counts[self.classes]
        weights = self.class_sizes.astype(np.float64) ** self.power
        self.class_probs = weights / weights.sum()
        self._order = np.argsort(arr, kind="stable")  # sample indices grouped by class
        self._starts = np.concatenate([[0], np.cumsum(counts)])[self.classes]
        if num_replicas is None:
            self.total_size = self.num_samples
        else:
            self.total_size = math.ceil(self.num_samples / num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the sequence of this epoch (same on every process)."""
        self.epoch = int(epoch)

    def full_sequence(self) -> np.ndarray:
        """The common sequence of ``num_samples`` indices for the current seed and epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        which = rng.choice(self.classes.size, size=self.num_samples, p=self.class_probs)
        offsets = (rng.random(self.num_samples) * self.class_sizes[which]).astype(np.int64)
        offsets = np.minimum(offsets, self.class_sizes[which] - 1)  # guard float rounding at 1.0
        return self._order[self._starts[which] + offsets]

    def __iter__(self) -> Iterator[int]:
        seq = self.full_sequence()
        if self.num_replicas is not None:
            pad = self.total_size - seq.size
            if pad:
                seq = np.concatenate([seq, np.resize(seq, pad)])
            seq = seq[self.rank:self.total_size:self.num_replicas]
        return iter(seq.tolist())

    def __len__(self) -> int:
        if self.num_replicas is None:
            return self.num_samples
        return self.total_size // self.num_replicas

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(classes={self.classes.size}, num_samples={self.num_samples}, "
                f"seed={self.seed}, epoch={self.epoch}, num_replicas={self.num_replicas}, rank={self.rank})")


class ClassBalancedSampler(_ClassPowerSampler):
    """Class-balanced sampling: every class present equally likely, then uniform within the class.

    Args:
        targets: integer label of every sample of the dataset.
        num_samples: indices per epoch over all processes (default ``len(targets)``).
        seed: random seed; the sequence depends on ``(seed, epoch)`` only.
        num_replicas: number of processes to shard for (None: no sharding, e.g. with Accelerate).
        rank: this process's rank when ``num_replicas`` is given.
    """

    power = 0.0


class SquareRootSampler(_ClassPowerSampler):
    """Square-root sampling: class ``c`` drawn with probability ``sqrt(n_c) / sum_k sqrt(n_k)``.

    Arguments as for :class:`ClassBalancedSampler`.
    """

    power = 0.5


_SAMPLERS = {"class_balanced": ClassBalancedSampler, "sqrt": SquareRootSampler}


def build_sampler(name: str, targets: Sequence[int], seed: int = 0, num_samples: int | None = None,
                  num_replicas: int | None = None, rank: int | None = None) -> Sampler | None:
    """``'instance'`` -> None (plain shuffling by the DataLoader), ``'class_balanced'``, ``'sqrt'``."""
    if name == "instance":
        return None
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected 'instance', 'class_balanced' or 'sqrt'")
    return _SAMPLERS[name](targets, num_samples=num_samples, seed=seed, num_replicas=num_replicas, rank=rank)
