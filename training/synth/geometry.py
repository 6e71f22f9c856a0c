"""Geometric primitives that objects are built from, and the per-image pose transform.

An object is a list of :class:`Prim`. Builders (:mod:`training.synth.objects`) create them in
arbitrary local units (x right, y down); :func:`place` applies a random pose (flip, rotation,
stretch) and fits the result into a box of the unit square, so every renderer receives
primitives in normalised image coordinates ``[0, 1] x [0, 1]`` and draws them in its own style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Colour roles a primitive can have; each renderer maps them to colours in its own palette.
ROLES: tuple[str, ...] = (
    "main",    # the object's principal colour (random per image, named in base captions)
    "accent",  # a second random colour
    "dark",    # near-black parts: tyres, handles, hands of a clock
    "light",   # pale parts: windows, screens, snow
    "wood",    # browns
    "leaf",    # greens
    "metal",   # greys
    "flame",   # orange/yellow
    "red",     # fixed signal colours (traffic light)
    "amber",
    "green",
)


@dataclass(frozen=True)
class Prim:
    """One primitive of an object.

    Attributes:
        kind: ``"poly"`` (closed polygon; may be filled) or ``"line"`` (open polyline, stroke only).
        pts: ``(N, 2)`` float array of ``(x, y)`` vertices, y pointing down.
        role: colour role, one of :data:`ROLES`.
        width: stroke-width multiplier (1.0 = the style's normal width) for ``"line"`` primitives
            and for the outline of unfilled polygons.
        detail: True for small optional parts a crude drawer (quickdraw) may leave out.
        filled: False for polygons that are only an outline (rings, wheels, rims).
    """

    kind: str
    pts: np.ndarray
    role: str = "main"
    width: float = 1.0
    detail: bool = False
    filled: bool = True


# --------------------------------------------------------------------------------------------
# point-list helpers (local units)


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Axis-aligned rectangle -> ``(4, 2)`` points."""
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=float)


def pts(*xy: tuple[float, float]) -> np.ndarray:
    """Explicit vertices -> ``(N, 2)`` array."""
    return np.asarray(xy, dtype=float)


def ellipse(cx: float, cy: float, rx: float, ry: float | None = None, n: int = 28,
            a0: float = 0.0, a1: float = 2 * np.pi, closed: bool = True) -> np.ndarray:
    """Ellipse (or an arc of it, angles in radians, 0 = +x, clockwise on screen) -> points.

    For a closed full ellipse the last point is not repeated; for an arc both ends are included.
    """
    ry = rx if ry is None else ry
    if closed and np.isclose(a1 - a0, 2 * np.pi):
        a = np.linspace(a0, a1, n, endpoint=False)
    else:
        a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def star(cx: float, cy: float, r_out: float, r_in: float, k: int = 5,
         rot: float = -np.pi / 2) -> np.ndarray:
    """``k``-pointed star -> ``(2k, 2)`` points."""
    a = rot + np.arange(2 * k) * np.pi / k
    r = np.where(np.arange(2 * k) % 2 == 0, r_out, r_in)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def bar(p0: tuple[float, float], p1: tuple[float, float], w: float) -> np.ndarray:
    """A straight bar of width ``w`` from ``p0`` to ``p1`` as a 4-point polygon."""
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    d = b - a
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * (w / 2)
    return np.array([a + n, b + n, b - n, a - n])


def rotate(p: np.ndarray, angle: float, centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate points by ``angle`` radians about ``centre``."""
    c, s = np.cos(angle), np.sin(angle)
    q = p - centre
    return np.stack([c * q[:, 0] - s * q[:, 1], s * q[:, 0] + c * q[:, 1]], axis=1) + centre


# --------------------------------------------------------------------------------------------
# pose and placement


@dataclass(frozen=True)
class Placement:
    """Where an object ended up, in normalised image coordinates (for captions and layout)."""

    cx: float
    cy: float
    extent: float  # longest side of the placed bounding box, as a fraction of the image side


def bounds(prims: list[Prim]) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box ``(lo, hi)`` (each ``(2,)``) of all vertices."""
    allp = np.concatenate([p.pts for p in prims], axis=0)
    return allp.min(axis=0), allp.max(axis=0)


def _with_points(prims: list[Prim], allp: np.ndarray) -> list[Prim]:
    """Copies of ``prims`` whose vertices are consecutive rows of ``allp``."""
    out, k = [], 0
    for p in prims:
        n = len(p.pts)
        out.append(Prim(p.kind, allp[k:k + n], p.role, p.width, p.detail, p.filled))
        k += n
    return out


def pose(prims: list[Prim], rng: np.random.Generator, max_rot_deg: float = 15.0,
         flip: bool = True, stretch: float = 0.12) -> list[Prim]:
    """Random flip, anisotropic stretch and rotation about the object's centre."""
    allp = np.concatenate([p.pts for p in prims], axis=0)
    c = (allp.min(axis=0) + allp.max(axis=0)) / 2
    sx = float(np.exp(rng.uniform(-stretch, stretch)))
    sy = 1.0 / sx
    if flip and rng.random() < 0.5:
        sx = -sx
    ang = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
    cs, sn = np.cos(ang), np.sin(ang)
    m = np.array([[cs * sx, -sn * sy], [sn * sx, cs * sy]])
    return _with_points(prims, (allp - c) @ m.T)


def fit(prims: list[Prim], cx: float, cy: float, extent: float) -> list[Prim]:
    """Scale and move so the bounding box's longest side is ``extent``, centred at ``(cx, cy)``."""
    allp = np.concatenate([p.pts for p in prims], axis=0)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    s = extent / max(float((hi - lo).max()), 1e-9)
    return _with_points(prims, (allp - (lo + hi) / 2) * s + np.array([cx, cy]))


def place(prims: list[Prim], rng: np.random.Generator, extent: tuple[float, float] = (0.6, 0.85),
          box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
          max_rot_deg: float = 15.0, margin: float = 0.04) -> tuple[list[Prim], Placement]:
    """Pose the object at random and fit it into ``box`` = ``(x0, y0, x1, y1)`` (normalised).

    ``extent`` is the range of the longest side relative to the box's shorter side. The object is
    kept inside the box (with ``margin``); its centre is drawn uniformly among valid positions.
    """
    posed = pose(prims, rng, max_rot_deg=max_rot_deg)
    bw, bh = box[2] - box[0], box[3] - box[1]
    ext = rng.uniform(*extent) * min(bw, bh)
    lo, hi = bounds(posed)
    size = (hi - lo) / max(float((hi - lo).max()), 1e-9) * ext
    half = size / 2
    xs = (box[0] + margin + half[0], box[2] - margin - half[0])
    ys = (box[1] + margin + half[1], box[3] - margin - half[1])
    cx = rng.uniform(*xs) if xs[0] < xs[1] else (box[0] + box[2]) / 2
    cy = rng.uniform(*ys) if ys[0] < ys[1] else (box[1] + box[3]) / 2
    return fit(posed, cx, cy, ext), Placement(float(cx), float(cy), float(ext))
