"""CIFAR-style ResNet-32 (He et al. 2016, Sec. 4.2) as a timm model.

Three stages of 16/32/64 channels with 5 basic blocks each (6n+2 = 32 layers), a 3x3 stem with no
max-pool, parameter-free "option A" shortcuts (stride-2 subsample + zero channel padding) as in the
long-tailed CIFAR literature (LDAM-DRW, BCL). The head is a linear classifier (KCL, CE) or BCL's
cosine classifier. Honours timm's contract: ``forward_features``, ``forward_head(pre_logits=)``,
``num_features``, ``head_hidden_size``, ``feature_info``, ``reset_classifier`` (``(0, '')`` gives the
unpooled map), ``forward_intermediates``, ``features_only=True``, ``pretrained_cfg``, and it scripts
(``torch.jit.script``, FX, FX then script).
"""
# No ``from __future__ import annotations`` here: FX copies the forward's annotations into the code
# it generates, and TorchScript cannot resolve them as strings ('_torch_Tensor_').
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from ._builder import (
    BCL_PAPER,
    BCL_PAPER_NAME,
    KCL_PAPER,
    KCL_PAPER_NAME,
    build_with_clear_errors,
    pretrained_filter_fn,
)
from ._zoo import Recipe, weights_fields
from .heads import create_classifier_layer

__all__ = ["CifarResNet"]

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
# Pixel statistics of scikit-learn's digits (values / 16), replicated to three channels.
DIGITS_MEAN, DIGITS_STD = (0.3053,) * 3, (0.3760,) * 3


class BasicBlockA(nn.Module):
    """3x3-3x3 basic block with the parameter-free option-A shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.stride = stride
        self.pad = out_chs - in_chs

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs. ``depth=32`` gives 5 blocks per stage.

    Args:
        depth: 6n + 2 layers.
        num_classes: classifier outputs; 0 gives pooled features (with ``global_pool=''`` the map).
        in_chans: input channels.
        widths: channels of the three stages.
        head: ``'linear'`` or ``'cosine'`` (BCL).
        cls_scale: scale ``s`` of the cosine classifier.
        global_pool: timm pool type.
        drop_rate: dropout before the classifier.
    """

    def __init__(self, depth: int = 32, num_classes: int = 10, in_chans: int = 3,
                 widths: tuple[int, int, int] = (16, 32, 64), head: str = "linear",
                 cls_scale: float = 30.0, global_pool: str = "avg", drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CifarResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.head_type = head
        self.cls_scale = cls_scale
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [dict(num_chs=widths[0], reduction=1, module="act1")]
        in_chs = widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlockA(in_chs, width, stride)] + [BasicBlockA(width, width) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=width, reduction=2 ** i, module=f"layer{i + 1}"))
            in_chs = width
        self.num_features = in_chs
        self._build_head(num_classes, global_pool)
        self._init_weights()

    def _build_head(self, num_classes: int, global_pool: str) -> None:
        # timm's rule: no pool type means no pooling and no flattening (the [B, C, H, W] map); the
        # head's input grows with the pool type (catavgmax concatenates avg and max: 2 * C)
        self.num_classes = num_classes
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.fc = create_classifier_layer(self.head_hidden_size, num_classes, self.head_type, self.cls_scale)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^conv1|^bn1", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New classifier of ``num_classes`` (0: none); ``global_pool`` None keeps the pool type,
        ``''`` removes pooling so that ``forward`` returns the feature map ``[B, C, H, W]``."""
        ref = self.conv1.weight
        self._build_head(num_classes, self.global_pool.pool_type if global_pool is None else global_pool)
        self.fc.to(device=ref.device, dtype=ref.dtype)
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq([self.layer1, self.layer2, self.layer3], x, flatten=True)
        else:
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
        return x  # [B, C_last, H/4, W/4]

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, list[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[list[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]:
        """timm's intermediate-feature API over the 4 taps of ``feature_info`` (stem, layer1-3).

        Args:
            x: input images ``[B, C_in, H, W]``.
            indices: last n taps if an int, all if None, else the taps listed (negative from the end).
            norm: accepted for timm compatibility (the taps have no separate norm).
            stop_early: stop after the last tap wanted (the returned final features are then that tap).
            output_fmt: only ``'NCHW'``.
            intermediates_only: return only the list of taps.

        Returns:
            ``(final features, [taps])`` or ``[taps]``; tap i is ``[B, feature_info[i].num_chs,
            H / reduction, W / reduction]``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take_indices:
            intermediates.append(x)
        stages = [self.layer1, self.layer2, self.layer3]
        if stop_early:
            stages = stages[:max_index]
        for i, stage in enumerate(stages, start=1):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(stage, x)
            else:
                x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last tap in ``indices`` (and the head); returns the taps kept."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in ("layer1", "layer2", "layer3")[max_index:]:
            setattr(self, name, nn.Sequential())  # empty: an identity that checkpoint_seq can iterate
        if max_index < len(self.feature_info) - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or max_index < len(self.feature_info) - 1:
            self.reset_classifier(0, "")
        return take_indices

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)  # [B, head_hidden_size], or [B, C, H, W] without pooling
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(variant: str, num_classes: int, mean: tuple, std: tuple, paper: str, paper_name: str,
         notes: str, recipe: Recipe, bundled: bool = False, input_size: tuple = (3, 32, 32),
         interpolation: str = "bilinear") -> dict[str, Any]:
    return dict(
        **weights_fields(variant, recipe, bundled=bundled), num_classes=num_classes, input_size=input_size,
        pool_size=(input_size[1] // 4, input_size[2] // 4), crop_pct=1.0, interpolation=interpolation,
        mean=mean, std=std, first_conv="conv1", classifier="fc", license="apache-2.0",
        paper_ids=paper, paper_name=paper_name, notes=notes,
    )


def _digits(variant: str, paper: str, paper_name: str, notes: str, config: str) -> dict[str, Any]:
    # digits-LT is made by nearest-neighbour up-sampling of 8x8 images (kcl_models.data.DigitsLT):
    # resizing with 'nearest' keeps timm's eval transform exact at any up-sampled size (32 -> 16
    # picks one pixel per 2x2 block, the same image as 8 -> 16 directly)
    return _cfg(variant, 10, DIGITS_MEAN, DIGITS_STD, paper, paper_name, notes, Recipe("train", config),
                bundled=True, input_size=(3, 16, 16), interpolation="nearest")


# Tag order matters: the first tag with weights is the default for `create_model(name, pretrained=True)`.
default_cfgs = generate_default_cfgs({
    "resnet32_bcl.cifar100_lt_if100": _cfg(
        "resnet32_bcl.cifar100_lt_if100", 100, CIFAR100_MEAN, CIFAR100_STD, BCL_PAPER, BCL_PAPER_NAME,
        "CIFAR-100-LT IF100, paper top-1 51.9 (ResNet-32); planned: train with configs/cifar100_lt_bcl.yaml.",
        Recipe("train", "configs/cifar100_lt_bcl.yaml")),
    "resnet32_bcl.cifar10_lt_if100": _cfg(
        "resnet32_bcl.cifar10_lt_if100", 10, CIFAR10_MEAN, CIFAR10_STD, BCL_PAPER, BCL_PAPER_NAME,
        "CIFAR-10-LT IF100 (BCL reports it; figure not in our checked reference table); planned: train "
        "with configs/cifar10_lt_bcl.yaml.", Recipe("train", "configs/cifar10_lt_bcl.yaml")),
    "resnet32_bcl.digits_lt": _digits(
        "resnet32_bcl.digits_lt", BCL_PAPER, BCL_PAPER_NAME,
        "digits-LT IF100 (scikit-learn digits, 8x8 up-sampled to 16x16 nearest), trained by this project "
        "with configs/digits_bcl.yaml; weights bundled with the package.", "configs/digits_bcl.yaml"),
    "resnet32_kcl.cifar100_lt_if100": _cfg(
        "resnet32_kcl.cifar100_lt_if100", 100, CIFAR100_MEAN, CIFAR100_STD, KCL_PAPER, KCL_PAPER_NAME,
        "CIFAR-100-LT IF100; the KCL paper reports no CIFAR number; planned: train with "
        "configs/cifar100_lt_kcl.yaml.", Recipe("train", "configs/cifar100_lt_kcl.yaml")),
    "resnet32_kcl.digits_lt": _digits(
        "resnet32_kcl.digits_lt", KCL_PAPER, KCL_PAPER_NAME,
        "digits-LT IF100 (scikit-learn digits, 8x8 up-sampled to 16x16 nearest), KCL + cRT trained by this "
        "project with configs/digits_kcl.yaml; weights bundled with the package.", "configs/digits_kcl.yaml"),
})


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return build_with_clear_errors(
        CifarResNet, variant, pretrained, pretrained_filter_fn=pretrained_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3)), **kwargs)


@register_model
def resnet32_bcl(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 with BCL's cosine classifier (scale 30)."""
    model_args = dict(depth=32, head="cosine", cls_scale=30.0)
    return _create_cifar_resnet("resnet32_bcl", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet32_kcl(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 with a linear classifier (KCL stage 2 / cRT, also CE and LA baselines)."""
    model_args = dict(depth=32, head="linear")
    return _create_cifar_resnet("resnet32_kcl", pretrained, **dict(model_args, **kwargs))
