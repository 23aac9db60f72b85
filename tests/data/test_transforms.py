import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import resolve_model_data_config
from timm.data.auto_augment import RandAugment
from torchvision import transforms as T

from kcl_models.data import MultiViewTransform, build_eval_transform, build_train_transform, build_views

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8))


def _ops(t):
    return [type(op) for op in t.transforms]


def _check_view(x, size):
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (3, size, size)


def _ends_normalised(t):
    assert isinstance(t.transforms[-2], T.ToTensor) and isinstance(t.transforms[-1], T.Normalize)
    assert tuple(t.transforms[-1].mean) == MEAN and tuple(t.transforms[-1].std) == STD


def test_bcl_views(image):
    torch.manual_seed(0)
    mv = build_views("bcl", 64, MEAN, STD)
    for t in mv.transforms:
        _ends_normalised(t)
    views = mv(image)
    assert isinstance(views, list) and len(views) == 3
    for v in views:
        _check_view(v, 64)
    assert not torch.equal(views[1], views[2]) and not torch.equal(views[0], views[1])


@pytest.mark.parametrize("method,n", [("supcon", 2), ("kcl", 2), ("fcl", 2)])
def test_two_contrastive_views(image, method, n):
    torch.manual_seed(1)
    views = build_views(method, 96, MEAN, STD)(image)
    assert len(views) == n
    for v in views:
        _check_view(v, 96)
    assert not torch.equal(views[0], views[1])


@pytest.mark.parametrize("method", ["ce", "la", "crt"])
def test_single_view_is_a_tensor(image, method):
    _check_view(build_views(method, 80, MEAN, STD)(image), 80)


def test_view_recipes():
    small = build_train_transform("classifier", 32, MEAN, STD)
    ops = _ops(small)
    assert T.RandomCrop in ops and T.RandomResizedCrop not in ops
    assert small.transforms[1].padding == 4
    assert T.ColorJitter in ops and RandAugment in ops and T.Normalize in ops
    large = build_train_transform("classifier", 224, MEAN, STD, randaug=None)
    assert T.RandomResizedCrop in _ops(large) and RandAugment not in _ops(large)
    con = build_train_transform("contrastive", 224, MEAN, STD, randaug=None)
    jitter = [op for op in con.transforms if isinstance(op, T.RandomApply)][0]
    gray = [op for op in con.transforms if isinstance(op, T.RandomGrayscale)][0]
    assert jitter.p == 0.8 and gray.p == 0.2 and RandAugment not in _ops(con)
    stacked = build_views("bcl", 224, MEAN, STD, contrastive_randaug="rand-n2-m10-mstd0.5")
    assert RandAugment in _ops(stacked.transforms[1])
    plain = build_train_transform("plain", (3, 48, 48), MEAN, STD)
    assert _ops(plain) == [T.Resize, T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]


def test_small_input_from_digit_sized_image():
    img = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    x = build_train_transform("classifier", 32, MEAN, STD)(img)
    _check_view(x, 32)
    # plain view of a constant image: padded border is 0, the rest (200/255 - mean) / std
    y = build_train_transform("plain", 32, MEAN, STD)(img)
    expect = (200 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    centre = y[:, 12:20, 12:20]  # RandomCrop shifts by at most 4 px: the centre is never padding
    torch.testing.assert_close(centre, expect[:, None, None].expand_as(centre))


def test_multiview_transform():
    mv = MultiViewTransform([lambda x: x + 1, lambda x: x * 2])
    assert mv(3) == [4, 6] and len(mv) == 2
    with pytest.raises(ValueError):
        MultiViewTransform([])
    with pytest.raises(TypeError, match=r"transforms\[1\]"):
        MultiViewTransform([abs, 3])


def test_eval_transform_from_timm_config(image):
    cfg = resolve_model_data_config(timm.create_model("resnet18", pretrained=False))
    t = build_eval_transform(cfg)
    a, b = t(image), t(image)
    assert a.shape == (3, 224, 224) and a.dtype == torch.float32 and torch.equal(a, b)
    small = build_eval_transform({"input_size": (3, 32, 32), "interpolation": "bilinear", "mean": MEAN,
                                  "std": STD, "crop_pct": 1.0, "crop_mode": "center"})
    assert small(image).shape == (3, 32, 32)


def test_errors():
    with pytest.raises(ValueError, match="unknown method 'moco'"):
        build_views("moco", 32, MEAN, STD)
    with pytest.raises(ValueError, match="view must be one of"):
        build_train_transform("strong", 32, MEAN, STD)
    with pytest.raises(ValueError, match="std values must be > 0"):
        build_train_transform("plain", 32, MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="RandAugment string"):
        build_train_transform("classifier", 32, MEAN, STD, randaug="autoaug")
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['mean'\]"):
        build_eval_transform({"input_size": (3, 32, 32), "std": STD})
    with pytest.raises(ValueError, match="unexpected key"):
        build_eval_transform({"input_size": (3, 32, 32), "mean": MEAN, "std": STD, "num_classes": 3})
