"""torchvision's mobilenet_v2 weights in timm's mobilenetv2_100, checked logit for logit.

anomalib builds its backbones with timm, so the side-by-side needs stream_ad's torchvision state dict under timm's
key names. Only the bench's peer child and its tests import this module: timm is never a runtime dependency.
"""

from __future__ import annotations

from collections.abc import Mapping

import timm
import torch
import torchvision
from torch import nn

TIMM_NAME = "mobilenetv2_100"

# Sub-module names inside one block, torchvision -> timm. The first block has no expansion conv, so torchvision's
# conv.0.0 is its depthwise conv there and the expansion conv everywhere else.
_SEPARABLE = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_INVERTED = {
    "conv.0.0": "conv_pw",
    "conv.0.1": "bn1",
    "conv.1.0": "conv_dw",
    "conv.1.1": "bn2",
    "conv.2": "conv_pwl",
    "conv.3": "bn3",
}
_OUTSIDE_BLOCKS = {"features.0.0": "conv_stem", "features.0.1": "bn1", "classifier.1": "classifier"}
_HEAD = {"0": "conv_head", "1": "bn2"}


class WeightMappingError(RuntimeError):
    """The torchvision weights do not map onto timm's model, or the mapped model computes something else."""


def block_names(model: nn.Module) -> list[str]:
    """timm's blocks ("blocks.i.j") in network order: torchvision's features.1 ... features.17."""
    return [f"blocks.{i}.{j}" for i, stage in enumerate(model.blocks) for j in range(len(stage))]


def _timm_key(key: str, model: nn.Module, blocks: list[str]) -> str:
    module, _, param = key.rpartition(".")
    if module in _OUTSIDE_BLOCKS:
        return f"{_OUTSIDE_BLOCKS[module]}.{param}"
    parts = module.split(".")
    if parts[0] != "features" or len(parts) < 3:
        raise WeightMappingError(f"no timm counterpart for torchvision key {key!r}")
    index, inner = int(parts[1]), ".".join(parts[2:])
    if index == len(blocks) + 1:  # the 1x1 conv after the last block
        return f"{_HEAD[inner]}.{param}"
    block = blocks[index - 1]
    table = _INVERTED if hasattr(model.get_submodule(block), "conv_pwl") else _SEPARABLE
    if inner not in table:
        raise WeightMappingError(f"no timm counterpart for torchvision key {key!r} in {block}")
    return f"{block}.{table[inner]}.{param}"


def timm_state_dict(tv_state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision mobilenet_v2 state dict -> the same tensors under `model`'s (timm mobilenetv2_100) keys."""
    blocks = block_names(model)
    return {_timm_key(key, model, blocks): value for key, value in tv_state.items()}


def timm_from_torchvision(tv_state: Mapping[str, torch.Tensor]) -> nn.Module:
    """timm's full mobilenetv2_100 (classifier included) holding the torchvision weights, loaded strictly."""
    model = timm.create_model(TIMM_NAME, pretrained=False)
    model.load_state_dict(timm_state_dict(tv_state, model), strict=True)
    return model.eval()


def timm_tap(tv_layer: str, model: nn.Module) -> str:
    """The timm stage ("blocks.i") whose output is torchvision's `features.k`: features.6 -> blocks.2."""
    blocks = block_names(model)
    index = int(tv_layer.split(".")[1])
    if not 1 <= index <= len(blocks):
        raise WeightMappingError(f"{tv_layer} is not one of mobilenet_v2's inverted-residual blocks")
    stage, block = (int(p) for p in blocks[index - 1].split(".")[1:])
    # timm's features_only taps (what anomalib uses) are stage outputs, so a tap inside a stage has no counterpart.
    if block != len(model.blocks[stage]) - 1:
        raise WeightMappingError(f"{tv_layer} ends no stage of {TIMM_NAME}: timm can tap only stage outputs")
    return f"blocks.{stage}"


@torch.inference_mode()
def logits_error(tv_state: Mapping[str, torch.Tensor], timm_model: nn.Module, images: torch.Tensor) -> float:
    """Largest logit difference timm vs torchvision on `images`, relative to the largest torchvision logit."""
    tv_model = torchvision.models.mobilenet_v2()
    tv_model.load_state_dict(tv_state, strict=True)
    expected = tv_model.eval()(images)
    got = timm_model.eval()(images)
    return float((got - expected).abs().max() / expected.abs().max())


def check_logits(
    tv_state: Mapping[str, torch.Tensor], timm_model: nn.Module, images: torch.Tensor, rtol: float
) -> float:
    """Fail unless the mapped timm model reproduces torchvision's logits on `images` within `rtol`."""
    err = logits_error(tv_state, timm_model, images)
    if not err < rtol:  # also catches NaN
        raise WeightMappingError(
            f"timm {TIMM_NAME} with the mapped weights differs from torchvision's mobilenet_v2 by {err:.2e} "
            f"(relative, max over logits) on {len(images)} images; allowed {rtol:.0e}"
        )
    return err
