"""Drawing primitives that several tasks share: the supersampled canvas and its downsampling,
colour helpers, unit polygons and their placement, a polygon drawn in one of the renditions, and
the layout grid.

Images are drawn at SUPERSAMPLE x resolution with PIL and downsampled with LANCZOS.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

SUPERSAMPLE = 4
# The layout grid: GRID x GRID cells of image_size / GRID pixels each.
GRID = 4
# What `mixture_cell_labels` calls a cell of the layout grid that holds nothing.
EMPTY_CELL = "empty"

RGB = tuple[int, int, int]


def darker(c: RGB, f: float = 0.55) -> RGB:
    return tuple(int(v * f) for v in c)


def lighter(c: RGB, f: float = 0.5) -> RGB:
    return tuple(int(v + (255 - v) * f) for v in c)


def jitter_color(rng, c: RGB, amount: int = 12) -> RGB:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)


def canvas(size: int, bg: RGB | Image.Image):
    S = size * SUPERSAMPLE
    img = bg if isinstance(bg, Image.Image) else Image.new("RGB", (S, S), bg)
    return img, ImageDraw.Draw(img), S


def finish(img: Image.Image, size: int) -> Image.Image:
    return img.resize((size, size), Image.Resampling.LANCZOS)


def vertical_gradient(S: int, top: RGB, bottom: RGB) -> Image.Image:
    t = np.linspace(0.0, 1.0, S, dtype=np.float32)[:, None]
    col = (np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (S, S, 3))), "RGB")


def _normalize(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    p = p - (p.min(0) + p.max(0)) / 2
    return p / np.abs(p).max()


def _ring(n: int, r: float = 1.0, start_deg: float = -90.0) -> np.ndarray:
    t = np.deg2rad(start_deg) + np.arange(n) * 2 * np.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


@functools.lru_cache(maxsize=None)
def unit_shape(name: str) -> np.ndarray:
    """The outline of a shape as a polygon centred on its bounding box, extent [-1, 1], y down."""
    if name == "circle":
        p = _ring(72)
    elif name == "square":
        p = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif name == "triangle":
        p = _ring(3)
    elif name == "star":
        p = _ring(10) * np.where(np.arange(10) % 2 == 0, 1.0, 0.45)[:, None]
    elif name == "cross":
        a = 0.34
        p = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]
    elif name == "diamond":
        p = [(0, -1), (0.62, 0), (0, 1), (-0.62, 0)]
    elif name == "hexagon":
        p = _ring(6, start_deg=0)
    elif name == "heart":
        t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
        p = np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1)
    elif name == "arrow":
        p = [(-1, -0.22), (0.15, -0.22), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.22), (-1, 0.22)]
    elif name == "moon":  # a crescent: the unit disc minus a disc of radius r shifted by d, opening right
        r, d = 0.82, 0.45
        xi = (d * d + 1 - r * r) / (2 * d)
        yi = math.sqrt(1 - xi * xi)
        t0, f0 = math.atan2(yi, xi), math.atan2(yi, xi - d)
        outer = np.linspace(t0, 2 * np.pi - t0, 40)
        inner = np.linspace(2 * np.pi - f0, f0, 40)
        p = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], 1),
                            np.stack([d + r * np.cos(inner), r * np.sin(inner)], 1)])
    else:
        raise ValueError(f"unknown shape {name!r}")
    p = _normalize(p)
    p.setflags(write=False)
    return p


def rotated(name: str, angle: float) -> np.ndarray:
    p = unit_shape(name)
    if angle:
        a = np.deg2rad(angle)
        c, s = math.cos(a), math.sin(a)
        p = p @ np.array([[c, s], [-s, c]])
        p = _normalize(p)
    return p


def place(p: np.ndarray, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    q = p * r + (cx, cy)
    return [tuple(v) for v in q.tolist()]


def _closed_line(draw: ImageDraw.ImageDraw, pts, color: RGB, width: int) -> None:
    pts = [tuple(v) for v in pts]
    draw.line(pts + pts[:2], fill=color, width=max(1, int(width)), joint="curve")


def _poly_mask(S: int, pts) -> Image.Image:
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).polygon(pts, fill=255)
    return mask


def _resample_closed(pts, step: float) -> np.ndarray:
    """Points at equal arc length along a closed polygon."""
    P = np.asarray(pts + pts[:1], dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(P, axis=0).T))])
    n = max(8, int(round(cum[-1] / step)))
    s = np.arange(n) * cum[-1] / n
    return np.stack([np.interp(s, cum, P[:, 0]), np.interp(s, cum, P[:, 1])], 1)


def texture(rng, size: int, S: int) -> Image.Image:
    """A light, blotchy, grainy background (the 'noisy' rendition)."""
    lum = rng.integers(165, 240, (4, 4, 1))
    tint = rng.integers(-25, 26, (4, 4, 3))
    low = Image.fromarray(np.clip(lum + tint, 0, 255).astype(np.uint8), "RGB")
    base = np.asarray(low.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-30, 31, (size, size, 1), dtype=np.int16)
    arr = np.clip(base + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((S, S), Image.Resampling.NEAREST)


def draw_rendition(img, draw, S, pts, rendition: str, color: RGB, bg: RGB, rng, color2: RGB | None = None,
                   stroke: float | None = None) -> None:
    """Draw the polygon `pts` in one rendition. For 'noisy' the caller has drawn the texture.
    `stroke` (supersampled px; default S/16, 4 px at 64 px) sets the outline width, the stripe
    width and the dots' diameter, thick enough to survive the downsampling."""
    w = S / 16 if stroke is None else stroke
    if rendition == "solid":
        draw.polygon(pts, fill=color)
    elif rendition == "outline":
        _closed_line(draw, pts, color, round(w))
    elif rendition == "striped":
        layer = Image.new("RGB", (S, S), bg)
        ld = ImageDraw.Draw(layer)
        period = 2 * w
        theta = np.deg2rad(rng.choice([0, 45, 90, 135]))
        d = np.array([math.cos(theta), math.sin(theta)])
        n = np.array([-d[1], d[0]])
        for k in range(-int(S / period) - 1, int(S / period) + 2):
            c = np.array([S / 2, S / 2]) + n * k * period
            ld.line([tuple(c - d * S), tuple(c + d * S)], fill=color, width=round(period / 2))
        img.paste(layer, (0, 0), _poly_mask(S, pts))
        _closed_line(draw, pts, color, round(w / 2))
    elif rendition == "dotted":
        rad = 0.5 * w
        for x, y in _resample_closed(pts, 3.4 * rad):
            draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=color)
    elif rendition == "sketch":
        base = _resample_closed(pts, 0.05 * S)
        for _ in range(2):
            noise = rng.normal(0, 0.012 * S, base.shape)
            noise = (noise + np.roll(noise, 1, 0) + np.roll(noise, -1, 0)) / 2
            _closed_line(draw, (base + noise + rng.normal(0, 0.006 * S, 2)).tolist(), color, round(0.7 * w))
    elif rendition == "noisy":
        draw.polygon(pts, fill=color)
        _closed_line(draw, pts, darker(color), round(w / 2))
    elif rendition == "twotone":
        draw.polygon(pts, fill=color)
        c = np.mean(np.asarray(pts), axis=0)
        theta = rng.uniform(0, 2 * np.pi)
        d = np.array([math.cos(theta), math.sin(theta)]) * 2 * S
        n = np.array([-d[1], d[0]])
        half = Image.new("L", (S, S), 0)
        ImageDraw.Draw(half).polygon([tuple(c - d), tuple(c + d), tuple(c + d + n), tuple(c - d + n)], fill=255)
        img.paste(color2, (0, 0, S, S), ImageChops.multiply(_poly_mask(S, pts), half))
        _closed_line(draw, pts, darker(color, 0.4), max(2, round(w / 3)))
    else:
        raise ValueError(f"unknown rendition {rendition!r}")


def light_bg(rng) -> RGB:
    return tuple(int(v) for v in rng.integers(228, 256, 3))
