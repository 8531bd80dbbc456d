from pathlib import Path

import pytest
import torch
import torchvision

from stream_ad.backbones import BackboneError, load_backbone
from stream_ad.settings import BackboneSettings
from tests.conftest import WEIGHTS
from tests.imports import imported_packages


def test_taps_equal_the_unfused_torchvision_model(shared: Path) -> None:
    """Folding batch norms and tapping by node name must not change the features."""
    backbone = load_backbone(BackboneSettings(weights_path=WEIGHTS))
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    reference.eval()
    x = torch.rand(2, 3, 96, 128) * 2 - 1
    with torch.inference_mode():
        taps = backbone(x)
        expected = [reference.features[:7](x), reference.features[:14](x)]
    for got, want in zip(taps, expected):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(BackboneError, match=rf"backbone.weights_path.*: {missing}\. "):
        load_backbone(BackboneSettings(weights_path=missing))


def test_enum_weights_missing_from_hub_cache_say_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = BackboneSettings(name="wide_resnet50_2", weights="IMAGENET1K_V1", weights_path=None, layers=["layer2"])
    with pytest.raises(BackboneError) as err:
        load_backbone(cfg)
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "wide_resnet50_2-95faca4d.pth") in msg
    assert "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth" in msg


def test_unknown_enum_member_lists_choices() -> None:
    with pytest.raises(BackboneError, match="IMAGENET1K_V1"):
        load_backbone(BackboneSettings(name="resnet18", weights="IMAGENET9K", weights_path=None, layers=["layer2"]))


def test_weights_of_another_model_are_refused(shared: Path) -> None:
    cfg = BackboneSettings(name="resnet18", weights_path=WEIGHTS, layers=["layer2", "layer3"])
    with pytest.raises(BackboneError, match="does not fit torchvision's resnet18"):
        load_backbone(cfg)


def test_corrupt_weights_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(BackboneError, match=f"cannot read backbone weights {bad}"):
        load_backbone(BackboneSettings(weights_path=bad))


def test_unknown_tap_is_named(shared: Path) -> None:
    with pytest.raises(BackboneError, match=r"features\.99"):
        load_backbone(BackboneSettings(weights_path=WEIGHTS, layers=["features.6", "features.99"]))


def test_random_weights_only_when_asked() -> None:
    cfg = BackboneSettings(name="resnet18", weights="random", weights_path=None, layers=["layer2", "layer3"])
    backbone = load_backbone(cfg)
    assert backbone.identity()["weights_sha256"].startswith("random")
    assert [t.shape[1] for t in backbone(torch.zeros(1, 3, 64, 64))] == [128, 256]


def test_random_weights_are_the_same_network_in_every_load() -> None:
    """An artefact fitted on random weights (speed benches) must load the network it was fitted on."""
    cfg = BackboneSettings(name="resnet18", weights="random", weights_path=None, layers=["layer2"])
    x = torch.randn(1, 3, 64, 64)
    first = load_backbone(cfg)(x)[0]
    torch.randn(1000)  # the caller's RNG moved on meanwhile
    assert torch.equal(load_backbone(cfg)(x)[0], first)


def test_reading_an_artefact_s_settings_imports_no_torchvision() -> None:
    """The supervisor, preprocess stage, console and CLI import these without building a network: torchvision's import
    (torch._dynamo through torchvision.ops, about 3 s of CPU) waits for load_backbone."""
    code = ("import stream_ad.artefact, stream_ad.backbones, stream_ad.scorers\n"
            "from stream_ad.settings import load_settings\n"
            "stream_ad.backbones.resolve_normalisation(load_settings().backbone)")
    assert "torchvision" not in imported_packages(code)
