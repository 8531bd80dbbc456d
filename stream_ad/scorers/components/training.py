"""The training loop every method that trains a network shares: seeded, resumable, with progress.

A method trains in named phases (e.g. "teacher", then "students"). Each phase is a number of epochs of a function
the method supplies (one epoch in, mean losses out; it calls `step()` after each optimiser step); this module owns
what is the same for all of them: seeding, a tqdm progress bar over the phase's steps (count, rate, ETA, the last
epoch's losses), a debug log line per epoch, and a checkpoint after every epoch (modules, optimisers, RNG state,
losses and steps so far: tensors and plain containers, read back with torch.load(weights_only=True), which runs no
pickled code) so an interrupted fit resumes at the next epoch and ends bit-identical on the CPU.

A checkpoint carries a fingerprint of what the phase trains on (method code, params, training data digest): one
left by other code, settings or images is never resumed, it is replaced (and the log says so).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from stream_ad.scorers.base import FitBatches

log = logging.getLogger(__name__)

Step = Callable[[], None]  # called by an epoch after each optimiser step: advances the progress bar
EpochFn = Callable[[int, Step], Mapping[str, float]]  # (epoch index, step) -> mean losses of that epoch


def stack_batches(batches: FitBatches) -> torch.Tensor:
    """All good images as one (N, 3, H, W) tensor: training methods sample crops and minibatches from it."""
    out = [b.detach().float().cpu() for b in batches]
    if not out:
        raise ValueError("no training images: the good-image set is empty")
    return torch.cat(out)


def fingerprint(method: type, params: Any, *tensors: torch.Tensor) -> str:
    """What a phase depends on: the method's code, JSON-able params and the training tensors' bytes.

    The code is the source of every module in the method's package and of this loop: a checkpoint written by older
    code with the same settings trained something else, and resuming it would pass as a finished phase."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    package = Path(inspect.getfile(method)).parent
    for source in [*sorted(package.glob("*.py")), Path(__file__)]:
        h.update(source.read_bytes())
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _seed_for(seed: int, phase: str) -> int:
    # Each phase gets its own stream, so resuming at phase 2 does not depend on how many draws phase 1 made.
    return (seed * 1_000_003 + int(hashlib.sha256(phase.encode()).hexdigest()[:8], 16)) % 2**63


class PhaseCheckpoint:
    """One phase's checkpoint file: written atomically (temp + rename) so a kill mid-write leaves the last one."""

    def __init__(self, directory: Path | None, method: str, phase: str, key: str) -> None:
        self.path = None if directory is None else Path(directory) / f"{method}-{phase}.pt"
        self.key = key

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.is_file():
            return None
        # weights_only: tensors and plain containers only, never arbitrary pickled objects (a checkpoint folder is
        # writable by the fit's user; what it holds must not run code when a fit resumes from it).
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            log.warning("checkpoint %s cannot be read (%s); training this phase afresh", self.path, exc)
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.key:
            log.info("checkpoint %s was written for other settings or images; training this phase afresh", self.path)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A temp file of this process's own: two fits training the same method at once (a tune beside a fit) each
        # rename theirs, never the other's half-written one; the last one written is the checkpoint, and the other
        # fit, should it resume, finds another fingerprint and trains afresh.
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        torch.save({**state, "fingerprint": self.key}, tmp)
        os.replace(tmp, self.path)


def train_phase(
    *,
    method: str,
    phase: str,
    epochs: int,
    steps: int,
    run_epoch: EpochFn,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    seed: int,
    checkpoint_dir: Path | None,
    key: str,
) -> list[dict[str, float]]:
    """Run `epochs` epochs of `run_epoch`, `steps` optimiser steps in all, resuming from a matching checkpoint;
    returns the losses per epoch.

    The modules are left in train mode at the end of each epoch as run_epoch leaves them; callers switch to eval.
    """
    if epochs < 1:
        raise ValueError(f"{method}: {phase} epochs must be >= 1, got {epochs}")
    ckpt = PhaseCheckpoint(checkpoint_dir, method, phase, key)
    history: list[dict[str, float]] = []
    start = done = 0
    torch.manual_seed(_seed_for(seed, phase))
    state = ckpt.load()
    if state is not None:
        _restore(state, modules, optimizers)
        history, done = state["history"], state["steps"]
        start = len(history)
        log.info("%s %s: resuming after epoch %d/%d from %s", method, phase, start, epochs, ckpt.path)
    # Minutes of steps between epochs (EfficientAD's chunks) must not look like a hang: the bar counts steps.
    with tqdm(desc=f"{method} {phase}", unit="step", initial=done, total=steps, mininterval=1.0) as bar:
        for epoch in range(start, epochs):
            losses = {k: float(v) for k, v in run_epoch(epoch, bar.update).items()}
            _check_finite(method, phase, epoch, losses)
            history.append(losses)
            text = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
            bar.set_postfix_str(f"epoch {epoch + 1}/{epochs} {text}")
            log.debug("%s %s epoch %d/%d: %s", method, phase, epoch + 1, epochs, text)
            ckpt.save(_snapshot(modules, optimizers, history, bar.n))
    return history


def _check_finite(method: str, phase: str, epoch: int, losses: Mapping[str, float]) -> None:
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(
            f"{method} {phase} epoch {epoch + 1}: loss {', '.join(bad)} is not finite; lower the learning rate"
        )


def _snapshot(
    modules: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer], history: Sequence[dict],
    steps: int,
) -> dict[str, Any]:
    return {
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "rng": torch.get_rng_state(),
        "history": list(history),
        "steps": steps,
    }


def _restore(
    state: dict[str, Any], modules: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer]
) -> None:
    for k, m in modules.items():
        m.load_state_dict(state["modules"][k])
    for k, o in optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    torch.set_rng_state(state["rng"])
