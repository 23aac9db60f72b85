"""Training methods as plug-ins: one file per method, a small interface, a registry.

Built in: ``ce``, ``la`` (:mod:`.ce`), ``supcon`` (+cRT, :mod:`.supcon`), ``kcl`` and ``fcl``
(+cRT, :mod:`.kcl`), ``bcl`` (:mod:`.bcl`), ``paco`` (:mod:`.paco`), ``gpaco`` (:mod:`.gpaco`),
``proco`` (:mod:`.proco`). A user's own method is a :class:`Method` subclass
named as ``module:Class``, ``path/to/file.py:Class`` or through the ``kcl_models.methods``
entry-point group (see :mod:`.registry` and the README).
"""
# registration order is the order users see (simplest first), hence unsorted
from . import ce, supcon, kcl, bcl, paco, gpaco, proco  # noqa: F401, I001
from .base import LossOutput, Method, MethodContext, NoOptions, check_range, option
from .registry import ENTRY_POINT_GROUP, available_methods, get_method, register_method

__all__ = ["ENTRY_POINT_GROUP", "LossOutput", "Method", "MethodContext", "NoOptions", "available_methods",
           "check_range", "get_method", "option", "register_method"]
