"""Small helpers every layer may use (they import only the standard library, torch and timm
lazily): atomic, permission-correct file writes and the finiteness check of weights."""
from .io import (
    atomic_folder,
    atomic_write_bytes,
    atomic_write_text,
    default_file_mode,
    save_timm_folder,
)
from .tensors import NonFiniteWeightsError, check_finite, first_nonfinite

__all__ = [
    "atomic_folder", "atomic_write_bytes", "atomic_write_text", "default_file_mode", "save_timm_folder",
    "NonFiniteWeightsError", "check_finite", "first_nonfinite",
]
