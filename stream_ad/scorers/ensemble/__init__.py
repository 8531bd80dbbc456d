"""Ensembles of registered methods: `patchcore_vae`, PatchCore's map and the VAE's reconstruction error on one scale."""

from stream_ad.scorers.ensemble.patchcore_vae import PatchCoreVAE, PatchCoreVAEParams

__all__ = ["PatchCoreVAE", "PatchCoreVAEParams"]
