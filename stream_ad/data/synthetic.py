"""Synthetic defects made from good images, to rank configurations where a line has no labelled defects yet.

Three kinds, each returning the altered image and its defect mask; the image differs from the original only inside
the mask. A cut-paste or Perlin mask covers a share of the image drawn log-uniformly in [MIN_AREA, MAX_AREA] (a
cut-paste a little less where its rotated corners leave the image or a patch side is clamped); a scratch is a few
lines about 1/150 of the image's side wide.

- cut_paste: a rectangle of another good image (scaled, rotated) pasted at a random place (CutPaste, Li et al.,
  CVPR 2021).
- scratch: thin random polylines in a colour far from the image's own there.
- perlin: a thresholded Perlin-noise blotch blending in a texture (another good image's negative, or the image's
  own) or an intensity change (DRAEM, Zavrtanik et al., ICCV 2021).

Deterministic given the numpy Generator. Grey (H, W) and colour (H, W, C) uint8 images alike. numpy and OpenCV only:
no stream_ad import, so it can be read apart from the package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MIN_AREA = 0.005  # share of the image a cut-paste or Perlin defect covers at least...
MAX_AREA = 0.15  # ...and at most: a visible defect, never the whole part
KINDS = ("cut_paste", "scratch", "perlin")


@dataclass(frozen=True)
class SyntheticDefect:
    image: np.ndarray  # uint8, the shape of the good image it was made from
    mask: np.ndarray  # bool (H, W): the altered pixels
    kind: str


def _area_fraction(rng: np.random.Generator) -> float:
    # Log-uniform: small defects are as likely as large ones per octave, as on a line.
    return float(np.exp(rng.uniform(np.log(MIN_AREA), np.log(MAX_AREA))))


def _paste(image: np.ndarray, other: np.ndarray, mask: np.ndarray, kind: str) -> SyntheticDefect:
    out = image.copy()
    out[mask] = other[mask]
    return SyntheticDefect(out, mask, kind)


def cut_paste(image: np.ndarray, source: np.ndarray, rng: np.random.Generator) -> SyntheticDefect:
    """A rectangle of `source` (another good image, resized to `image`'s size), scaled and rotated, pasted into
    `image` at a random place."""
    h, w = image.shape[:2]
    source = cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA) if source.shape[:2] != (h, w) else source
    scale = rng.uniform(0.8, 1.2)
    area = _area_fraction(rng) * h * w / scale**2  # the pasted area, after scaling, is the fraction drawn
    aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(3.3))))
    ph = int(np.clip(round(np.sqrt(area / aspect)), 2, h // 2))
    pw = int(np.clip(round(np.sqrt(area * aspect)), 2, w // 2))
    sy, sx = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)  # where the patch is cut
    cy, cx = rng.uniform(ph / 2, h - ph / 2), rng.uniform(pw / 2, w - pw / 2)  # where its centre goes
    # Source patch centre -> paste centre, rotated and scaled about it: one affine map for the pixels and the mask.
    matrix = cv2.getRotationMatrix2D((sx + pw / 2, sy + ph / 2), rng.uniform(-180, 180), scale)
    matrix[:, 2] += (cx - (sx + pw / 2), cy - (sy + ph / 2))
    rect = np.zeros((h, w), np.uint8)
    rect[sy:sy + ph, sx:sx + pw] = 1
    mask = cv2.warpAffine(rect, matrix, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
    moved = cv2.warpAffine(source, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return _paste(image, moved.reshape(image.shape), mask, "cut_paste")


def _contrasting(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per channel, dark where the masked pixels are bright and bright where they are dark."""
    mean = image[mask].mean(axis=0)
    return np.where(mean > 127, 0, 255).astype(np.uint8)


def scratch(image: np.ndarray, rng: np.random.Generator) -> SyntheticDefect:
    """One to three thin polylines of a few random segments each, in a colour contrasting with the image there."""
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    thickness = max(1, round(min(h, w) / 150))
    for _ in range(rng.integers(1, 4)):
        start = rng.uniform((0, 0), (w, h))
        steps = rng.normal(0, min(h, w) / 8, size=(int(rng.integers(2, 6)), 2))
        points = np.clip(start + np.cumsum(steps, axis=0), 0, (w - 1, h - 1))
        line = np.vstack([start, points]).round().astype(np.int32)
        cv2.polylines(mask, [line], isClosed=False, color=1, thickness=thickness, lineType=cv2.LINE_8)
    mask = mask.astype(bool)
    out = image.copy()
    out[mask] = _contrasting(image, mask)
    return SyntheticDefect(out, mask, "scratch")


def perlin_noise(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin gradient noise in about [-1, 1], `cells` lattice cells along (H, W). Neither numpy nor OpenCV
    has Perlin noise (DRAEM's own code is these few lines in torch), so it is written here."""
    ch, cw = cells
    gh, gw = -(-shape[0] // ch) * ch, -(-shape[1] // cw) * cw  # a multiple of the cells, cropped at the end
    angles = rng.uniform(0, 2 * np.pi, (ch + 1, cw + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y, x = np.meshgrid(np.arange(gh) * ch / gh, np.arange(gw) * cw / gw, indexing="ij")
    iy, ix = y.astype(int), x.astype(int)
    fy, fx = y - iy, x - ix

    def corner(dy: int, dx: int) -> np.ndarray:
        g = gradients[iy + dy, ix + dx]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    def fade(t: np.ndarray) -> np.ndarray:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    top = corner(0, 0) + fade(fx) * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + fade(fx) * (corner(1, 1) - corner(1, 0))
    return (np.sqrt(2) * (top + fade(fy) * (bottom - top)))[: shape[0], : shape[1]]


def perlin(image: np.ndarray, rng: np.random.Generator, texture: np.ndarray | None = None) -> SyntheticDefect:
    """A Perlin blotch: the noise thresholded at the quantile that leaves a random share of the image in
    [MIN_AREA, MAX_AREA], and inside it `texture` (else the image inverted, or brightened/darkened) blended in with
    an opacity in [0.5, 1]."""
    h, w = image.shape[:2]
    cells = (int(2 ** rng.integers(0, 4)), int(2 ** rng.integers(0, 4)))
    noise = perlin_noise((h, w), cells, rng)
    mask = noise > np.quantile(noise, 1.0 - _area_fraction(rng))
    if texture is not None:
        texture = cv2.resize(texture, (w, h), interpolation=cv2.INTER_AREA).reshape(image.shape)
    elif rng.random() < 0.5:
        texture = 255 - image
    else:
        texture = np.clip(image.astype(np.int16) + rng.choice([-1, 1]) * rng.integers(40, 100), 0, 255)
    opacity = rng.uniform(0.5, 1.0)
    blended = ((1 - opacity) * image + opacity * texture).round().astype(np.uint8)
    return _paste(image, blended, mask, "perlin")


def checked_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """`kinds` as a tuple, or a ValueError naming any that is not one of KINDS (or that none was given)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"synthetic defect kinds: {', '.join(map(repr, unknown)) or 'none given'}; the kinds are "
                         f"{', '.join(KINDS)}")
    return tuple(kinds)


def synthetic_defects(images: Sequence[np.ndarray], count: int, seed: int,
                      kinds: Sequence[str] = KINDS) -> list[SyntheticDefect]:
    """`count` defects, `kinds` in turn, each made from the next good image (cycling); cut-paste takes its patch
    from another of `images`, a Perlin blotch half the time its texture (that image's negative)."""
    if not images:
        raise ValueError("synthetic defects need at least one good image")
    kinds = checked_kinds(kinds)
    rng = np.random.default_rng(seed)

    def other(i: int) -> np.ndarray:
        return images[(i + 1 + int(rng.integers(0, max(1, len(images) - 1)))) % len(images)]

    makers: dict[str, Callable[[int, np.ndarray], SyntheticDefect]] = {
        "cut_paste": lambda i, image: cut_paste(image, other(i), rng),
        "scratch": lambda i, image: scratch(image, rng),
        # Another good image of the same part is no defect where it blends in: its negative is a foreign texture.
        "perlin": lambda i, image: perlin(image, rng, 255 - other(i) if rng.random() < 0.5 else None),
    }
    return [makers[kinds[i % len(kinds)]](i, images[i % len(images)]) for i in range(count)]
