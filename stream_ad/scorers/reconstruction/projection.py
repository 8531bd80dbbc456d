"""Iterative energy-based projection (Dehaene et al., "Iterative energy-based projection on a normal data manifold
for anomaly localization", ICLR 2020), as pure functions of a reconstruction function f.

    E(x) = L_r(x) + lambda * ||x - x_0||_1,      L_r(x) = ||x - f(x)||_2^2          (per image, summed over pixels)
    x_{t+1} = x_t - alpha * grad E(x_t) * (x_t - f(x_t))^2                          (elementwise)

The squared reconstruction error focuses the steps on the pixels f cannot explain, so a defect is painted over
while the normal rest of the image stays put; |x_0 - x_T| is then the anomaly map. Energies are sums (not means)
over pixels so that a pixel's step does not depend on the image size.

Each image stops on its own once its energy falls by less than `tolerance` (relative) in a step, or rises, which
means alpha overshot there; so a result never depends on which other images share the batch. Every step builds
and frees its own graph: memory is that of one forward and backward pass of the batch, whatever the step count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Reconstruct = Callable[[torch.Tensor], torch.Tensor]


def energy(x: torch.Tensor, x0: torch.Tensor, reconstruct: Reconstruct, lam: float) -> torch.Tensor:
    """E(x) per image (B,)."""
    return _energy(x, x0, reconstruct, lam)[0]


def _energy(
    x: torch.Tensor, x0: torch.Tensor, reconstruct: Reconstruct, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    recon = reconstruct(x)
    return (x - recon).square().flatten(1).sum(1) + lam * (x - x0).abs().flatten(1).sum(1), recon


@dataclass
class Projection:
    x: torch.Tensor  # (B, C, H, W) the projected images x_T
    energies: torch.Tensor  # (T + 1, B): E(x_0), E(x_1), ..., each image's value frozen once it stopped
    steps: torch.Tensor  # (B,) updates applied to each image


def project(
    x0: torch.Tensor, reconstruct: Reconstruct, steps: int, alpha: float, lam: float, tolerance: float = 0.0
) -> Projection:
    """Move x0 towards the normal manifold by at most `steps` focused gradient steps on E (see the module doc).

    Runs with autograd on even when called under torch.inference_mode() or no_grad(); returns detached tensors.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x0 = x0.detach().clone()  # a clone made here is an ordinary tensor even if x0 is an inference tensor

        def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = x.detach().requires_grad_(True)
            e, recon = _energy(x, x0, reconstruct, lam)
            (grad,) = torch.autograd.grad(e.sum(), x)
            return e.detach(), recon.detach(), grad

        x = x0.clone()
        e, recon, grad = evaluate(x)
        history = [e]
        active = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
        done = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        for _ in range(steps):
            if not bool(active.any()):
                break
            mask = active[:, None, None, None]
            candidate = torch.where(mask, x - alpha * grad * (x - recon).square(), x)
            e_new, recon_new, grad_new = evaluate(candidate)
            # An image whose energy rose keeps its previous x (alpha overshot there) and stops.
            accepted = active & (e_new <= e)
            settled = accepted & (e - e_new <= tolerance * e.abs())
            keep = accepted[:, None, None, None]
            x = torch.where(keep, candidate, x)
            recon = torch.where(keep, recon_new, recon)
            grad = torch.where(keep, grad_new, grad)
            e = torch.where(accepted, e_new, e)
            done += accepted.long()
            active = accepted & ~settled
            history.append(e)
    return Projection(x=x, energies=torch.stack(history), steps=done)
