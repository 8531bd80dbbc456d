"""The networks of the student-teacher scorers: Uninformed Students' patch nets, EfficientAD's PDN and autoencoder.

Patch nets (Bergmann et al., CVPR 2020, supplementary tables) map a p x p patch to one d-dim descriptor with valid
convolutions and 2x2 max pools. `dense()` is the fully convolutional form of the same weights (as FDFE, Bailer et
al. 2017): pools run at stride 1 and every later convolution and pool is dilated by the product of the strides
skipped so far, so one pass over an image gives the descriptor of the patch at every pixel, identical to running
the patch net on each crop (tests/scorers/student_teacher/test_student_teacher.py checks this).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_LEAK = 5e-3  # the paper's leaky ReLU slope


@dataclass(frozen=True)
class _Conv:
    kernel: int
    channels: float  # a multiple of the width


POOL = None  # a 2x2 max pool, stride 2 in patch mode

# Receptive field -> layers, as the paper's tables with its 128/256 channels written as width x 1 / x 2. The 33 and 65
# nets see 30 x 30 and 60 x 60 pixels of their 33 / 65 input: the floor of their pools drops the rest, as in the paper.
ARCHITECTURES: dict[int, Sequence[_Conv | None]] = {
    17: (_Conv(5, 1), _Conv(5, 2), _Conv(5, 2), _Conv(5, 1)),
    33: (_Conv(3, 1), POOL, _Conv(3, 2), POOL, _Conv(3, 2), _Conv(4, 2)),
    65: (_Conv(5, 1), POOL, _Conv(5, 1), POOL, _Conv(5, 1), POOL, _Conv(4, 2)),
}


class PatchNet(nn.Module):
    """Patch size p (17, 33 or 65) -> d-dim descriptor; `dense()` gives one descriptor per pixel of an image."""

    def __init__(self, patch_size: int, dim: int, width: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.layers = ARCHITECTURES[patch_size]
        convs, channels = [], 3
        for layer in self.layers:
            if layer is not POOL:
                out = int(layer.channels * width)
                convs.append(nn.Conv2d(channels, out, layer.kernel))
                channels = out
        convs.append(nn.Conv2d(channels, dim, 1))  # the paper's final 1x1 projection to d
        self.convs = nn.ModuleList(convs)
        self.field = self._effective_field()

    def _effective_field(self) -> int:
        """Pixels one output actually depends on (<= patch_size)."""
        field, jump = 1, 1
        for layer in self.layers:
            field += (1 if layer is POOL else layer.kernel - 1) * jump
            jump *= 2 if layer is POOL else 1
        return field

    def _run(self, x: torch.Tensor, dense: bool) -> torch.Tensor:
        convs, dilation = iter(self.convs), 1
        for layer in self.layers:
            if layer is POOL:
                x = F.max_pool2d(x, 2, stride=1, dilation=dilation) if dense else F.max_pool2d(x, 2)
                dilation *= 2 if dense else 1
            else:
                conv = next(convs)
                x = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, dilation=dilation), _LEAK)
        return next(convs)(x)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 3, p, p) -> (B, d)."""
        out = self._run(patches, dense=False)
        if out.shape[-2:] != (1, 1):
            raise ValueError(f"patch net {self.patch_size} takes {self.patch_size} px patches, got {patches.shape}")
        return out.flatten(1)

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """Reflect-pad so that every pixel has a whole patch centred on it: what `dense` sees, and so what the
        patches a net trains on must include (border patches hold reflected content)."""
        total = self.field - 1
        before = total // 2
        return F.pad(images, (before, total - before, before, total - before), mode="reflect")

    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, d, H, W): the descriptor of the patch centred on each pixel (reflected borders)."""
        return self._run(self.pad(images), dense=True)


def _conv_relu(cin: int, cout: int, kernel: int, padding: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.ReLU(inplace=True)]


class PDN(nn.Sequential):
    """EfficientAD-S's patch description network (Batzner et al., WACV 2024, Table 6): receptive field 33 px,
    output stride 4. `width` scales its 128/256/256 hidden channels.

    Unpadded, as in the authors' reference code and anomalib's default (`padding=False`): with Table 6's zero
    padding every output near the border sees zeros that no training image explains the same way to teacher and
    student, and the anomaly map peaked along the border (measured). The output therefore covers the input's
    stride-4 grid less MAP_PAD cells on every side (56 x 56 from 256 px); maps are padded back before upsampling."""

    RECEPTIVE_FIELD = 33
    MAP_PAD = 4  # cells lost on each side: (receptive field - 1) / 2 / stride

    def __init__(self, out_channels: int, width: float = 1.0) -> None:
        a, b = int(128 * width), int(256 * width)
        super().__init__(
            *_conv_relu(3, a, 4),
            nn.AvgPool2d(2, stride=2),
            *_conv_relu(a, b, 4),
            nn.AvgPool2d(2, stride=2),
            *_conv_relu(b, b, 3),
            nn.Conv2d(b, out_channels, 4),
        )

    @staticmethod
    def output_size(input_size: int) -> int:
        size = (input_size - 3) // 2  # conv 4, avg pool 2
        size = (size - 3) // 2  # conv 4, avg pool 2
        return size - 2 - 3  # conv 3, conv 4


class Autoencoder(nn.Module):
    """EfficientAD's autoencoder (Table 7) for logical anomalies: strided convolutions down to a 64-dim code, then
    bilinear upsampling + convolutions back to the PDN's output grid. The paper's 256 px layer sizes are scaled to
    the input size (its last encoder kernel, 8, becomes whatever is left: input / 32)."""

    _DECODER_SIZES = (3, 8, 15, 32, 63, 127)  # at 256 px input

    def __init__(self, out_channels: int, input_size: int) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        for cin, cout in ((3, 32), (32, 32), (32, 64), (64, 64), (64, 64)):
            enc += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        enc.append(nn.Conv2d(64, 64, max(1, input_size // 32)))
        self.encoder = nn.Sequential(*enc)
        self.sizes = [max(1, round(s * input_size / 256)) for s in self._DECODER_SIZES]
        self.out_size = PDN.output_size(input_size)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(64, 64, 4, padding=2), nn.ReLU(inplace=True), nn.Dropout(0.2)) for _ in self.sizes
        )
        self.head = nn.Sequential(*_conv_relu(64, 64, 3, 1), nn.Conv2d(64, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        for size, stage in zip(self.sizes, self.stages):
            x = stage(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return self.head(F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False))
