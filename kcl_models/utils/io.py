"""Files that matter are complete or absent, and get the same permissions as every other file.

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: write to a temporary name in the same
  folder, ``fsync``, give it the mode a plain ``open()`` would (``0o666 & ~umask``), rename it
  into place, ``fsync`` the folder.
- :func:`atomic_folder`: build a whole folder under a temporary name and rename it into place
  when the block succeeds (files written by third-party code inside it, e.g. safetensors' 0600
  weights, are given the default mode and fsynced first). On error the partial folder is removed
  and an existing folder is left untouched.
- :func:`save_timm_folder`: ``timm.models.save_for_hf`` through :func:`atomic_folder`, for the
  trainer's ``model/`` export.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["default_file_mode", "default_dir_mode", "atomic_write_bytes", "atomic_write_text", "finish_tree",
           "fsync_dir", "atomic_folder", "save_timm_folder"]


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode ``open(path, 'w')`` gives a new file: ``0o666`` less the umask (``0o644`` for 022)."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """Mode ``mkdir`` gives a new folder: ``0o777`` less the umask."""
    return 0o777 & ~_umask()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary name + fsync + rename), mode as ``open()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), default_file_mode())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding``."""
    return atomic_write_bytes(path, text.encode(encoding))


def finish_tree(root: Path) -> None:
    """Default modes and fsync for everything under ``root`` (third-party writers differ)."""
    file_mode, dir_mode = default_file_mode(), default_dir_mode()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            os.chmod(p, file_mode)
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(dirpath, dir_mode)
        fsync_dir(Path(dirpath))


@contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``path`` in one rename.

    ``overwrite=False`` refuses an existing ``path`` (``FileExistsError``). With ``overwrite`` the
    old folder is moved aside, the new one renamed in, then the old one deleted: a crash between
    the two renames leaves the old folder under ``.<name>.old-*`` next to ``path``, never a mix.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield staging
        finish_tree(staging)
        if path.exists():
            backup = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            backup.rmdir()
            os.rename(path, backup)
            try:
                os.rename(staging, path)
            except BaseException:
                os.rename(backup, path)
                raise
            fsync_dir(path.parent)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(staging, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_timm_folder(model: Any, folder: str | Path, *, model_config: dict | None = None,
                     model_args: dict | None = None, overwrite: bool = True) -> Path:
    """``timm.models.save_for_hf(model, folder, safe_serialization=True)`` written atomically,
    weights with the default file mode (safetensors itself creates them 0600)."""
    from timm.models import save_for_hf

    with atomic_folder(folder, overwrite=overwrite) as staging:
        save_for_hf(model, staging, model_config=model_config, model_args=model_args, safe_serialization=True)
    return Path(folder)
