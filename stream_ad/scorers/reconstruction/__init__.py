"""Reconstruction scorers: networks trained from scratch to reproduce good parts, for when no pretrained backbone
fits the images. `vae`: VAE + iterative energy-based projection; `daad`: UNet with block-wise memories + GAN."""

from stream_ad.scorers.reconstruction.daad import DAAD, DAADParams
from stream_ad.scorers.reconstruction.vae_scorer import VAEParams, VAEScorer

__all__ = ["DAAD", "DAADParams", "VAEParams", "VAEScorer"]
