"""Generated image folders for the data tests (tiny JPEG/PNG files, one corrupt file)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NUM_CLASSES = 4
TRAIN_PER_CLASS = 10
TEST_PER_CLASS = 3
CLASS_NAMES = [f"class{c}" for c in range(NUM_CLASSES)]


def _write_image(path: Path, rng: np.random.Generator, mode: str = "RGB", size: int = 16) -> None:
    arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/{train,test}/class{c}/img_XXX.{jpg,png}``, grey and RGBA files among them, plus
    ``root/broken.jpg`` (not a JPEG) and ``root/truncated.jpg`` (half a JPEG) at the top level,
    where folder scans do not look."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for c, name in enumerate(CLASS_NAMES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                ext = "jpg" if i % 2 == 0 else "png"
                mode = "L" if i == 1 else "RGBA" if i == 3 else "RGB"
                _write_image(d / f"img_{c}_{i:03d}.{ext}", rng, mode=mode)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(range(64)))
    good = (root / "train" / CLASS_NAMES[0] / "img_0_000.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture
def write_split(tmp_path: Path):
    """``write_split(lines, name='split.txt') -> Path`` writes a split file in a tmp dir."""

    def _write(lines: list[str], name: str = "split.txt") -> Path:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="session")
def train_lines(image_root: Path) -> list[str]:
    """ImageNet-LT style ``train/<class>/<file> <label>`` lines for every train image."""
    out = []
    for c, name in enumerate(CLASS_NAMES):
        for fn in sorted(os.listdir(image_root / "train" / name)):
            out.append(f"train/{name}/{fn} {c}")
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    """Data tests on small tensors: one intra-op thread (on a loaded machine a second OpenMP thread
    turns each small op into a wait for a descheduled thread)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
