"""The shared training loop: an interrupted fit resumes and ends exactly where an uninterrupted one does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from stream_ad.scorers.components.training import PhaseCheckpoint, Step, fingerprint, train_phase


class Interrupted(Exception):
    pass


def _train(checkpoints: Path | None, stop_at: int | None = None, key: str = "k") -> tuple[nn.Module, list]:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 1.0

    def epoch(i: int, step: Step) -> dict[str, float]:
        if stop_at is not None and i == stop_at:
            raise Interrupted
        for _ in range(20):
            idx = torch.randperm(64)[:16]  # draws from the RNG, so a resume must restore it to match
            loss = ((model(x[idx]).squeeze(1) - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step()
        return {"mse": ((model(x).squeeze(1) - y) ** 2).mean().item()}

    history = train_phase(method="t", phase="fit", epochs=6, steps=120, run_epoch=epoch, modules={"m": model},
                          optimizers={"o": opt}, seed=3, checkpoint_dir=checkpoints, key=key)
    return model, history


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, straight_hist = _train(None)
    with pytest.raises(Interrupted):
        _train(tmp_path, stop_at=3)
    resumed, resumed_hist = _train(tmp_path)
    assert len(resumed_hist) == 6
    assert resumed_hist == straight_hist
    assert torch.equal(resumed.weight, straight.weight)
    assert straight_hist[-1]["mse"] < straight_hist[0]["mse"]


def test_progress_counts_steps_and_resumes_where_it_stopped(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Interrupted):
        _train(tmp_path, stop_at=3)
    first = capsys.readouterr().err
    assert "t fit:" in first and "60/120" in first and "120/120" not in first
    _train(tmp_path)
    resumed = capsys.readouterr().err.replace("\r", "\n").splitlines()
    bars = [line for line in resumed if "t fit:" in line]
    assert "60/120" in bars[0] and "120/120" in bars[-1]  # resumed at the steps already done, not at zero
    assert "epoch 6/6 mse" in bars[-1]  # the last epoch's losses as the bar's postfix
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+step/s", bars[-1]), bars[-1]  # elapsed<ETA, rate


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    with pytest.raises(Interrupted):
        _train(tmp_path, stop_at=3, key="other")
    _, hist = _train(tmp_path, key="k")
    straight = _train(None)[1]
    assert hist == straight


def test_fingerprint_changes_with_params_and_data() -> None:
    t = torch.arange(6.0)
    assert fingerprint(Interrupted, {"a": 1}, t) == fingerprint(Interrupted, {"a": 1}, t.clone())
    assert fingerprint(Interrupted, {"a": 1}, t) != fingerprint(Interrupted, {"a": 2}, t)
    assert fingerprint(Interrupted, {"a": 1}, t) != fingerprint(Interrupted, {"a": 1}, t + 1)


def test_fingerprint_changes_with_the_methods_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint of older code must not resume: any module of the method's package is part of the key."""
    package = tmp_path / "method_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scorer.py").write_text("class Method:\n    pass\n")
    (package / "networks.py").write_text("WIDTH = 16\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from method_pkg.scorer import Method  # type: ignore[import-not-found]

    t = torch.arange(6.0)
    before = fingerprint(Method, {"a": 1}, t)
    assert fingerprint(Method, {"a": 1}, t) == before
    (package / "networks.py").write_text("WIDTH = 32\n")
    assert fingerprint(Method, {"a": 1}, t) != before


class _Payload:
    """A pickled object that would create `marker` when unpickled: what weights_only=True must refuse to run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_checkpoint_with_pickled_code_is_not_run_and_the_phase_trains_afresh(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"fingerprint": "k", "history": [], "steps": 0, "payload": _Payload(marker)}, tmp_path / "t-fit.pt")
    with caplog.at_level("WARNING", logger="stream_ad.scorers.components.training"):
        _, hist = _train(tmp_path)
    assert not marker.exists()
    assert "checkpoint " + str(tmp_path / "t-fit.pt") + " cannot be read" in caplog.text
    assert hist == _train(None)[1]


SAVE_MANY = """
import sys, torch
from stream_ad.scorers.components.training import PhaseCheckpoint
ckpt = PhaseCheckpoint(sys.argv[1], "vae", "vae", sys.argv[2])
for step in range(300):
    ckpt.save({"steps": step, "weights": torch.zeros(250_000)})  # 1 MB: a write long enough to be overlapped
"""


def test_two_fits_training_one_method_at_once_never_trip_over_each_others_checkpoint(tmp_path: Path) -> None:
    """A tune training the VAE beside a fit training it (runs/checkpoints shared): each saves after every epoch. With
    one temp name for both, one's rename took the other's file away (FileNotFoundError, seen in a real run)."""
    fits = [subprocess.Popen([sys.executable, "-c", SAVE_MANY, str(tmp_path), key], stderr=subprocess.PIPE, text=True)
            for key in ("first", "second")]
    for fit in fits:
        _, err = fit.communicate(timeout=120)
        assert fit.returncode == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["vae-vae.pt"]  # no temp file left behind
    last = torch.load(tmp_path / "vae-vae.pt", weights_only=True)
    assert last["steps"] == 299 and last["fingerprint"] in ("first", "second")
    assert PhaseCheckpoint(tmp_path, "vae", "vae", last["fingerprint"]).load() is not None
