"""Find a method class by name: built-in, ``module:Class``, ``path/to/file.py:Class``, or a
package's ``kcl_models.methods`` entry point.

A user's own method needs no change to this project::

    python train.py --config configs/digits_ce.yaml --method my_methods.py:BalancedSoftmax

or, from an installed package, an entry point in its ``pyproject.toml``::

    [project.entry-points."kcl_models.methods"]
    balanced_softmax = "my_package.methods:BalancedSoftmax"
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .base import Method

ENTRY_POINT_GROUP = "kcl_models.methods"
_BUILTIN: dict[str, type[Method]] = {}

__all__ = ["ENTRY_POINT_GROUP", "available_methods", "get_method", "register_method"]


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a built-in method available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no 'name'")
    _BUILTIN[cls.name] = cls
    return cls


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_methods() -> list[str]:
    """Built-in method names, then those installed packages provide through entry points."""
    return list(_BUILTIN) + sorted(set(_entry_points()) - set(_BUILTIN))


def _load_file(path: Path) -> object:
    # a stable, unique module name per file, so both ranks and a resumed run import it alike
    name = f"kcl_user_method_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"method file {path} cannot be imported (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


def _from_spec(spec: str) -> type:
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError(f"method {spec!r}: write it as module:Class or path/to/file.py:Class")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise ValueError(f"method {spec!r}: file {path} not found")
        module = _load_file(path)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as err:
            raise ValueError(f"method {spec!r}: cannot import module {where!r} ({err}); is it on PYTHONPATH?") \
                from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"method {spec!r}: {where} has no attribute {attr!r}") from None


def get_method(spec: str) -> type[Method]:
    """The method class for a built-in name, an entry-point name, or ``module:Class``."""
    if spec in _BUILTIN:
        cls = _BUILTIN[spec]
    elif ":" in spec:
        cls = _from_spec(spec)
    else:
        eps = _entry_points()
        if spec not in eps:
            raise ValueError(f"unknown method {spec!r}; expected one of {', '.join(available_methods())}, "
                             f"or module:Class / path/to/file.py:Class for your own")
        cls = eps[spec].load()
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ValueError(f"method {spec!r} is not a kcl_models.methods.Method subclass")
    return cls
