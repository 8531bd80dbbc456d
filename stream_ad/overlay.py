"""A picture of one scored frame that a person can read at a glance: the frame as the camera gave it, colour only
where the anomaly map is high, those regions outlined, a colour bar with its scale, and the score against the
threshold with the verdict written above. The alarm store (sinks), `stream-ad predict` and the evaluation report
draw with it: it imports nothing of stream_ad.

    draw_overlay(frame, amap, score, threshold, pixel_threshold=None) -> BGR uint8 (for cv2.imwrite)

The picture is the frame (enlarged by a whole factor when small, so the legend stays legible) under a header of two
text lines, with the colour bar on its right.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Without a calibrated pixel threshold the top 1 % of the map's own pixels is coloured, and the legend says so.
FALLBACK_QUANTILE = 0.99
MIN_SIDE = 384  # px: a smaller frame is enlarged (nearest neighbour, pixels kept) until its short side reaches this
COLOUR_WEIGHT = 0.5  # inside a region the colour covers the frame at this weight: the surface stays visible beneath
COLOURMAP = cv2.COLORMAP_AUTUMN  # red (just above the colour floor) to yellow (the map's maximum): no dark end
OUTLINE = (255, 255, 0)  # BGR cyan: stands out from the red/yellow regions and from grey or metal parts
HALO = (0, 0, 0)
BACKGROUND = (40, 40, 40)
TEXT = (235, 235, 235)
ALARM_TEXT = (80, 80, 255)
OK_TEXT = (120, 220, 120)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_overlay(frame: np.ndarray, amap: np.ndarray, score: float, threshold: float | None,
                 pixel_threshold: float | None = None) -> np.ndarray:
    """The frame (RGB (H, W, 3) as the sources and stream_ad.data.read_image give it, or grey (H, W) uint8) with its
    anomaly map drawn where the map exceeds `pixel_threshold`, else the map's 99th percentile; BGR uint8. A threshold
    of None (a model not calibrated yet) shows the score alone."""
    base = _bgr(frame)
    k = max(1, math.ceil(MIN_SIDE / min(base.shape[:2])))
    if k > 1:
        base = cv2.resize(base, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    h, w = base.shape[:2]
    amap = np.asarray(amap, dtype=np.float32)
    if amap.shape != (h, w):
        amap = cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)
    if pixel_threshold is not None:
        floor, rule = float(pixel_threshold), f"pixel threshold {pixel_threshold:.4g}"
    else:
        floor = float(np.quantile(amap, FALLBACK_QUANTILE))
        rule = f"{floor:.4g}, its {100 * FALLBACK_QUANTILE:g}th percentile (no pixel threshold calibrated)"
    top = max(float(amap.max()), floor + max(abs(floor), 1.0) * 1e-6)  # a flat map still gets a scale

    mask = amap > floor
    picture = base.copy()
    if mask.any():  # colour the masked pixels only (a large frame, a small region)
        heat = cv2.applyColorMap(_unit_u8(amap[mask], floor, top)[:, None], COLOURMAP)[:, 0]
        picture[mask] = np.rint(base[mask] * (1 - COLOUR_WEIGHT) + heat * COLOUR_WEIGHT).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    line = max(1, round(min(h, w) / 200))
    cv2.drawContours(picture, contours, -1, HALO, line + 2, cv2.LINE_AA)
    cv2.drawContours(picture, contours, -1, OUTLINE, line, cv2.LINE_AA)

    text_h = max(12, round(max(h, w) / 45))  # letter height, px: one size for the header and the scale
    body = np.hstack([picture, _colour_bar(h, floor, top, text_h)])
    return np.vstack([_header(body.shape[1], score, threshold, rule, text_h), body])


def _bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
    raise ValueError(f"a frame to draw must be (H, W) or (H, W, 3) uint8, got shape {frame.shape}")


def _unit_u8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((values - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)


def _font_scale(height_px: int) -> float:
    """The Hershey font scale whose capital letters are about height_px tall (scale 1 draws them 22 px tall)."""
    return height_px / 22.0


def _verdict_line(score: float, threshold: float | None) -> tuple[str, tuple[int, int, int]]:
    if threshold is None:
        return f"uncalibrated   score {score:.4g} (no threshold: run stream-ad calibrate)", TEXT
    alarm = score > threshold  # as the decide stage rules
    ratio = f"{score / threshold:.2f}x" if threshold > 0 else "ratio n/a"
    return (f"{'ANOMALY' if alarm else 'ok'}   score {score:.4g} / threshold {threshold:.4g} ({ratio})",
            ALARM_TEXT if alarm else OK_TEXT)


def _header(width: int, score: float, threshold: float | None, rule: str, text_h: int) -> np.ndarray:
    """Two lines: the verdict with score / threshold (ratio), then which pixels are coloured."""
    lines = [_verdict_line(score, threshold), (f"coloured: map > {rule}", TEXT)]
    pad = text_h // 2
    scale = _font_scale(text_h)
    widest = max(cv2.getTextSize(text, FONT, scale, 1)[0][0] for text, _ in lines)
    scale *= min(1.0, (width - 2 * pad) / widest)  # a narrow picture gets smaller letters, never a cut line
    thick = max(1, round(text_h / 12))
    row_h = round(text_h * 1.7)
    header = np.full((row_h * len(lines) + pad, width, 3), BACKGROUND, np.uint8)
    for i, (text, colour) in enumerate(lines):
        cv2.putText(header, text, (pad, row_h * (i + 1) - pad // 2), FONT, scale, colour, thick, cv2.LINE_AA)
    return header


def _colour_bar(height: int, floor: float, top: float, text_h: int) -> np.ndarray:
    """The colour scale from the colour floor (bottom) to the map's maximum (top), with three labelled ticks."""
    scale, thick = _font_scale(text_h), max(1, round(text_h / 12))
    labels = [f"{v:.4g}" for v in (top, (floor + top) / 2, floor)]
    label_w = max(cv2.getTextSize(t, FONT, scale, thick)[0][0] for t in labels)
    bar_w, pad = max(16, height // 25), text_h
    margin = text_h  # room above and below for the end labels
    panel = np.full((height, pad + bar_w + pad // 2 + label_w + pad, 3), BACKGROUND, np.uint8)
    y0, y1 = margin, height - margin
    ramp = np.linspace(255, 0, y1 - y0).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
    panel[y0:y1, pad:pad + bar_w] = cv2.applyColorMap(ramp, COLOURMAP)
    for label, y in zip(labels, (y0, (y0 + y1) // 2, y1 - 1)):
        cv2.line(panel, (pad + bar_w - bar_w // 3, y), (pad + bar_w + pad // 3, y), TEXT, thick)
        cv2.putText(panel, label, (pad + bar_w + pad // 2, y + text_h // 2), FONT, scale, TEXT, thick, cv2.LINE_AA)
    return panel
