"""Pretrained torchvision backbones by name, with their weights resolved offline and mid-level feature taps."""

from stream_ad.backbones.loader import Backbone, BackboneError, load_backbone, resolve_normalisation

__all__ = ["Backbone", "BackboneError", "load_backbone", "resolve_normalisation"]
