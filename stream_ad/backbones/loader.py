"""Build a torchvision model, load its weights without touching the network, and tap its mid-level features.

Weights come from `backbone.weights_path` or from torchvision's weights enum resolved in the torch hub cache. A
missing file is an error that names the file and how to get it: never a silent random initialisation.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from stream_ad.errors import BackboneError, located
from stream_ad.settings import BackboneSettings

if TYPE_CHECKING:
    import torchvision

log = logging.getLogger(__name__)

RANDOM = "random"
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class WeightsSource:
    path: Path | None  # None only for random weights
    sha256: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _weights_enum(cfg: BackboneSettings) -> torchvision.models.WeightsEnum:
    # torchvision is imported where a network or its weights enum is built: its import (torch._dynamo through
    # torchvision.ops) costs about 3 s of CPU, which the stages that only read an artefact's settings need not pay.
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(cfg.name)
    except (KeyError, ValueError):
        raise BackboneError(f"torchvision has no pretrained weights for backbone.name={cfg.name!r}") from None
    try:
        return enum.DEFAULT if cfg.weights == "DEFAULT" else enum[cfg.weights]
    except KeyError:
        choices = ", ".join(["DEFAULT", RANDOM, *(w.name for w in enum)])
        raise BackboneError(f"backbone.weights={cfg.weights!r} is not one of: {choices}") from None


def resolve_weights(cfg: BackboneSettings) -> WeightsSource:
    """Where the weights file is (checked to exist) and its sha256; random weights are named by their seed."""
    if cfg.weights_path is not None:
        path = cfg.weights_path.expanduser()
        if not path.is_file():
            raise BackboneError(
                f"backbone weights file not found (setting backbone.weights_path, by default under shared_dir): "
                f"{located(path)}. Point it at a state dict for torchvision's {cfg.name}, or unset it to use "
                f"torchvision's weights enum from the torch hub cache."
            )
        return WeightsSource(path, sha256_file(path))
    if cfg.weights == RANDOM:
        return WeightsSource(None, f"{RANDOM}:seed{RANDOM_WEIGHTS_SEED}")
    weights = _weights_enum(cfg)
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise BackboneError(
            f"weights {type(weights).__name__}.{weights.name} for backbone {cfg.name!r} are not in the torch hub cache: "
            f"looked for {path}. This program never downloads. On a machine with internet, fetch {weights.url} "
            f"and copy it to that path (or set TORCH_HOME), or set backbone.weights_path to a local state dict."
        )
    return WeightsSource(path, sha256_file(path))


def resolve_normalisation(cfg: BackboneSettings) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if cfg.mean is not None and cfg.std is not None:
        return tuple(cfg.mean), tuple(cfg.std)
    if cfg.weights == RANDOM:
        raise BackboneError("backbone.weights is 'random': set backbone.mean and backbone.std explicitly")
    transform = _weights_enum(cfg).transforms()
    return tuple(transform.mean), tuple(transform.std)


class Backbone(nn.Module):
    """Feature taps of a frozen, eval-mode torchvision model: forward(x) -> [tap tensors in configured order]."""

    def __init__(self, cfg: BackboneSettings, extractor: nn.Module, weights: WeightsSource) -> None:
        super().__init__()
        self.cfg = cfg
        self.extractor = extractor
        self.weights = weights
        self.layers = list(cfg.layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Channels-last runs MobileNet's depthwise convolutions about 3x faster on the CPU (measured).
        feats = self.extractor(x.contiguous(memory_format=torch.channels_last))
        return [feats[name] for name in self.layers]

    def identity(self) -> dict[str, str]:
        return {"name": self.cfg.name, "weights_sha256": self.weights.sha256, "layers": ",".join(self.layers)}


def fold_batch_norms(model: nn.Module) -> None:
    """Fold each BatchNorm that directly follows a Conv2d in a Sequential into that conv (in place, eval only).

    Exact in eval mode, and it saves a memory pass per layer. Node names stay as torchvision's.
    """
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()


def load_backbone(cfg: BackboneSettings, device: torch.device | str = "cpu") -> Backbone:
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    weights = resolve_weights(cfg)
    try:
        # Random weights are drawn from a fixed seed: the same network in every process, so an artefact fitted on
        # them loads the network it was fitted on (unseeded, a reload scored with another network, measured).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = torchvision.models.get_model(cfg.name, weights=None)
    except ValueError:
        raise BackboneError(f"unknown torchvision model backbone.name={cfg.name!r}") from None
    if weights.path is not None:
        try:
            state = torch.load(weights.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt or non-state-dict file: say which file
            raise BackboneError(f"cannot read backbone weights {weights.path}: {exc}") from exc
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise BackboneError(
                f"{weights.path} does not fit torchvision's {cfg.name}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
    model.eval()
    _, eval_nodes = get_graph_node_names(model)
    # A module name (e.g. features.6) stands for its last node, as in create_feature_extractor.
    unknown = [n for n in cfg.layers if n not in eval_nodes and not any(e.startswith(n + ".") for e in eval_nodes)]
    if unknown:
        stages = [n for n in eval_nodes if n.count(".") <= 1][:40]
        raise BackboneError(f"backbone.layers {unknown} are not nodes of {cfg.name}; e.g. {stages}")
    fold_batch_norms(model)
    extractor = create_feature_extractor(model, return_nodes={name: name for name in cfg.layers}).eval()
    for p in extractor.parameters():
        p.requires_grad_(False)
    backbone = Backbone(cfg, extractor, weights).to(device, memory_format=torch.channels_last)
    log.info("backbone %s (%s) taps %s", cfg.name, weights.path or "random weights", cfg.layers)
    return backbone.eval()
