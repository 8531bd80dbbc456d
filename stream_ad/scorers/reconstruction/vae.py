"""A convolutional VAE: stride-2 conv encoder -> Gaussian latent vector -> mirrored transposed-conv decoder.

Dehaene et al. do not prescribe an architecture beyond "convolutional VAE"; this one is small enough to train on
two CPU cores (four stride-2 stages, then a dense latent of `latent_dim`), so the input side must be a multiple of 16.
"""

from __future__ import annotations

import torch
from torch import nn

STAGES = 4
DOWNSAMPLING = 2**STAGES


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class ConvVAE(nn.Module):
    def __init__(self, input_size: int, base_channels: int, latent_dim: int) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(STAGES)]
        self.bottom = (widths[-1], input_size // DOWNSAMPLING, input_size // DOWNSAMPLING)
        flat = widths[-1] * self.bottom[1] * self.bottom[2]
        self.encoder = nn.Sequential(*(_down(a, b) for a, b in zip([3, *widths[:-1]], widths)), nn.Flatten())
        self.to_stats = nn.Linear(flat, 2 * latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, flat), nn.LeakyReLU(0.2))
        ups = [_up(a, b) for a, b in zip(widths[::-1], widths[-2::-1])]
        # The last stage maps straight to pixels: no norm or activation, since normalised pixels are unbounded.
        self.decoder = nn.Sequential(*ups, nn.ConvTranspose2d(widths[0], 3, 4, 2, 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each (B, latent_dim)."""
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z).view(-1, *self.bottom))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A sampled reconstruction (reparameterised), with the posterior's mean and log-variance."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """f_VAE(x): the decoded posterior mean; deterministic, so the projection's energy is a fixed function."""
        return self.decode(self.encode(x)[0])


def vae_loss(x: torch.Tensor, model: ConvVAE, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO per image, batch mean, and its two parts; the likelihood term is the summed squared error
    (a Gaussian of variance 1/2), the same L_r the projection descends."""
    recon, mu, logvar = model(x)
    rec = (recon - x).square().flatten(1).sum(dim=1).mean()
    kl = (0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)).sum(dim=1).mean()
    return rec + beta * kl, rec, kl
