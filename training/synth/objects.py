"""Parametric object classes: each class is a builder ``rng -> list[Prim]`` in local units.

Builders vary the proportions of their parts per image; :func:`training.synth.geometry.place`
adds pose, scale and position. Classes are told apart by shape: the principal colour is
random per image (role ``"main"``), and the fixed-colour roles (wood, leaf, metal, ...) are
shared by several classes.

The six-domain classes (:data:`SYNTH_CLASSES`), the declared held-out classes
(:data:`SYNTH_HELDOUT_CLASSES`) and the classes that only the natural base set has
(:data:`BASE_ONLY_CLASSES`) are declared here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .geometry import Prim, bar, ellipse, pts, rect, rotate, star

Builder = Callable[[np.random.Generator], list[Prim]]


def F(p: np.ndarray, role: str = "main", detail: bool = False) -> Prim:
    """Filled polygon."""
    return Prim("poly", p, role=role, detail=detail)


def O(p: np.ndarray, role: str = "main", width: float = 1.5, detail: bool = False) -> Prim:  # noqa: E743
    """Closed outline-only polygon (ring, wheel, rim)."""
    return Prim("poly", p, role=role, width=width, detail=detail, filled=False)


def L(p: np.ndarray, role: str = "dark", width: float = 1.0, detail: bool = False) -> Prim:
    """Open polyline."""
    return Prim("line", p, role=role, width=width, detail=detail)


def radial(cx: float, cy: float, rfun: Callable[[np.ndarray], np.ndarray], n: int = 40,
           sx: float = 1.0, sy: float = 1.0) -> np.ndarray:
    """Star-shaped outline ``r(theta)`` around ``(cx, cy)`` (theta 0 = +x, pi/2 = down)."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = rfun(a)
    return np.stack([cx + sx * r * np.cos(a), cy + sy * r * np.sin(a)], axis=1)


def blob(circles: list[tuple[float, float, float]], n: int = 48,
         centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Outline of a union of circles ``(x, y, r)`` as seen from ``centre`` (star-shaped)."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    d = np.stack([np.cos(a), np.sin(a)], axis=1)
    c = np.asarray(circles, float)
    rel = c[:, :2] - np.asarray(centre)
    b = d @ rel.T                                   # (n, k)
    disc = b**2 - (rel**2).sum(1)[None, :] + c[:, 2][None, :] ** 2
    t = np.where(disc >= 0, b + np.sqrt(np.clip(disc, 0, None)), 0.0).max(axis=1)
    return np.asarray(centre) + d * t[:, None]


def capsule(x0: float, y0: float, x1: float, y1: float, n: int = 8) -> np.ndarray:
    """Rectangle with a rounded top (cactus arms, bulb necks)."""
    r = (x1 - x0) / 2
    top = ellipse((x0 + x1) / 2, y0 + r, r, r, n=n, a0=np.pi, a1=2 * np.pi, closed=False)
    return np.concatenate([pts((x0, y1)), top, pts((x1, y1))])


def crescent(r_out: float, r_in: float, off: float, n: int = 32) -> np.ndarray:
    """Crescent: outer circle minus a circle shifted right by ``off`` (opening to the right)."""
    # intersection angles of the two circles
    x = (r_out**2 - r_in**2 + off**2) / (2 * off)
    y = np.sqrt(max(r_out**2 - x**2, 1e-6))
    a_out = np.arctan2(y, x)
    outer = ellipse(0, 0, r_out, r_out, n=n, a0=a_out, a1=2 * np.pi - a_out, closed=False)
    a_in = np.arctan2(y, x - off)
    inner = ellipse(off, 0, r_in, r_in, n=n, a0=2 * np.pi - a_in, a1=a_in, closed=False)
    return np.concatenate([outer, inner])


# --------------------------------------------------------------------------------------------
# six-domain classes


def airplane(r: np.random.Generator) -> list[Prim]:
    """Top view: fuselage, swept wings, tailplane."""
    fl, fw = r.uniform(0.9, 1.1), r.uniform(0.09, 0.13)
    span, sweep = r.uniform(0.85, 1.05), r.uniform(0.15, 0.35)
    wy = r.uniform(-0.15, 0.05)
    wing = pts((0, wy - 0.12), (span, wy + sweep), (span, wy + sweep + 0.12), (0, wy + 0.18),
               (-span, wy + sweep + 0.12), (-span, wy + sweep), (0, wy - 0.12))
    tail = pts((0, fl * 0.7), (0.35, fl * 0.9), (0.35, fl * 0.98), (0, fl * 0.88),
               (-0.35, fl * 0.98), (-0.35, fl * 0.9))
    body = radial(0, 0, lambda a: np.ones_like(a), n=28, sx=fw, sy=fl)
    return [F(wing, "accent"), F(tail, "accent"), F(body, "main"),
            F(ellipse(0, -fl * 0.72, fw * 0.6, fw * 1.2, n=12), "light", detail=True)]


def apple(r: np.random.Generator) -> list[Prim]:
    """Round body with a dent on top, stem and leaf."""
    dent = r.uniform(0.18, 0.3)

    def rf(a: np.ndarray) -> np.ndarray:
        top = np.exp(-(((a - 1.5 * np.pi + np.pi) % (2 * np.pi) - np.pi) / 0.38) ** 2)
        bot = np.exp(-(((a - 0.5 * np.pi + np.pi) % (2 * np.pi) - np.pi) / 0.3) ** 2)
        return 1.0 - dent * top - 0.07 * bot

    body = radial(0, 0, rf, n=44, sx=r.uniform(0.95, 1.1))
    sl = r.uniform(0.3, 0.45)
    stem = L(pts((0, -0.75), (0.05, -0.75 - sl)), "wood", 1.3)
    leaf = rotate(ellipse(0.28, -0.95, 0.25, 0.1, n=14), r.uniform(-0.6, -0.2), (0.05, -0.95))
    return [F(body, "main"), stem, F(leaf, "leaf", detail=True)]


def axe(r: np.random.Generator) -> list[Prim]:
    """Long handle with a flared, curved-edged blade near the top."""
    hl = r.uniform(1.7, 2.1)
    bw, bh = r.uniform(0.6, 0.8), r.uniform(0.55, 0.75)
    yc = -hl + 0.3
    edge = ellipse(bw - 0.1, yc, 0.2, bh / 2, n=14, a0=-np.pi / 2, a1=np.pi / 2, closed=False)
    blade = np.concatenate([pts((-0.14, yc - 0.14), (0.25, yc - 0.1)), edge,
                            pts((0.25, yc + 0.1), (-0.14, yc + 0.14))])
    return [F(bar((0, 0.1), (0, -hl), r.uniform(0.11, 0.15)), "wood"), F(blade, "metal")]


def banana(r: np.random.Generator) -> list[Prim]:
    """Curved, tapered fruit with a stalk."""
    bend = r.uniform(0.45, 0.7)
    a = np.linspace(0.12 * np.pi, 0.88 * np.pi, 20)
    th = r.uniform(0.22, 0.3) * np.sin((a - 0.12 * np.pi) / 0.76)
    outer = np.stack([np.cos(a), bend * np.sin(a)], 1)
    inner = np.stack([np.cos(a) * (1 - th * 0.6), bend * np.sin(a) - th], 1)
    body = np.concatenate([outer, inner[::-1]])
    stalk = L(pts((outer[-1][0] + 0.02, outer[-1][1] - 0.05), (-1.0, 0.12)), "wood", 1.6)
    return [F(body, "main"), stalk,
            L(pts(tuple(outer[0]), tuple(outer[0] + [0.06, -0.02])), "dark", 1.4, detail=True)]


def bed(r: np.random.Generator) -> list[Prim]:
    """Side view: headboard, mattress, blanket, pillow, footboard."""
    ln, hh, mh = r.uniform(1.6, 2.0), r.uniform(0.7, 0.95), r.uniform(0.2, 0.3)
    fh = r.uniform(0.3, 0.5)
    top = -0.3
    return [
        F(rect(-0.12, -hh, 0.0, 0.25), "wood"),
        F(rect(ln, -fh, ln + 0.12, 0.25), "wood"),
        F(rect(0.0, top, ln, top + mh), "light"),
        F(rect(r.uniform(0.5, 0.7), top - 0.05, ln, top + mh + 0.12), "main"),
        F(ellipse(0.25, top - 0.05, 0.22, 0.1, n=16), "light", detail=True),
        F(rect(0.0, top + mh, ln, top + mh + 0.1), "wood"),
    ]


def bicycle(r: np.random.Generator) -> list[Prim]:
    """Two wheels, frame, saddle and handlebar."""
    wr = r.uniform(0.55, 0.7)
    wb = r.uniform(0.95, 1.15)
    seat = (-0.3 * wb, -0.95)
    crank = (0.0, 0.0)
    head = (0.75 * wb, -0.9)
    frame = [L(pts((-wb, 0), seat, crank, (-wb, 0)), "main", 1.3),
             L(pts(seat, head, crank), "main", 1.3),
             L(pts(head, (wb, 0)), "main", 1.3)]
    return [O(ellipse(-wb, 0, wr, wr, n=28), "dark", 1.6),
            O(ellipse(wb, 0, wr, wr, n=28), "dark", 1.6), *frame,
            L(pts(seat, (seat[0], seat[1] - 0.12)), "dark", 1.0),
            F(pts((seat[0] - 0.22, -1.1), (seat[0] + 0.15, -1.12), (seat[0] + 0.12, -1.02),
                  (seat[0] - 0.2, -1.02)), "dark"),
            L(pts(head, (head[0] - 0.05, -1.15), (head[0] - 0.3, -1.2)), "dark", 1.2),
            F(ellipse(0, 0, 0.1, 0.1, n=8), "dark", detail=True)]


def bowtie(r: np.random.Generator) -> list[Prim]:
    """Two triangles meeting at a knot."""
    h, w = r.uniform(0.5, 0.75), r.uniform(0.9, 1.1)
    k = r.uniform(0.14, 0.2)
    left = pts((0, -k * 0.8), (-w, -h), (-w * 0.9, 0), (-w, h), (0, k * 0.8))
    return [F(left, "main"), F(left * [-1, 1], "main"),
            F(ellipse(0, 0, k, k * 1.3, n=14), "accent")]


def bucket(r: np.random.Generator) -> list[Prim]:
    """Tapered pail with a rim and an arched handle."""
    tw, bw, h = r.uniform(0.8, 1.0), r.uniform(0.55, 0.7), r.uniform(0.9, 1.2)
    body = pts((-tw, 0), (tw, 0), (bw, h), (-bw, h))
    handle = ellipse(0, 0, tw * 0.95, r.uniform(0.6, 0.9), n=20, a0=np.pi, a1=2 * np.pi,
                     closed=False)
    return [L(handle, "metal", 1.4), F(body, "main"),
            F(ellipse(0, 0, tw, 0.12, n=20), "metal"),
            L(pts((-bw * 1.1, h * 0.5), (bw * 1.1, h * 0.5)), "dark", 0.8, detail=True)]


def butterfly(r: np.random.Generator) -> list[Prim]:
    """Four wings around a slim body, with antennae."""
    uw, lw = r.uniform(0.75, 0.95), r.uniform(0.45, 0.6)
    ua = r.uniform(-0.75, -0.45)
    up = rotate(ellipse(uw * 0.55, -0.2, uw * 0.6, uw * 0.42, n=22), ua, (0.05, -0.05))
    lo = rotate(ellipse(lw * 0.5, 0.35, lw * 0.55, lw * 0.42, n=18), 0.5, (0.05, 0.1))
    spot = ellipse(uw * 0.7, -0.5, 0.13, 0.13, n=10)
    out = [F(up, "main"), F(up * [-1, 1], "main"), F(lo, "accent"), F(lo * [-1, 1], "accent"),
           F(spot, "light", detail=True), F(spot * [-1, 1], "light", detail=True),
           F(ellipse(0, 0.05, 0.08, 0.6, n=16), "dark"),
           L(pts((0.02, -0.5), (0.25, -0.95)), "dark", 0.8),
           L(pts((-0.02, -0.5), (-0.25, -0.95)), "dark", 0.8)]
    return out


def cactus(r: np.random.Generator) -> list[Prim]:
    """Column with two bent arms and a pot."""
    w = r.uniform(0.26, 0.34)
    h = r.uniform(1.7, 2.1)
    la, ra = r.uniform(0.4, 0.9), r.uniform(0.3, 0.8)
    aw = w * 0.8
    trunk = capsule(-w / 2, -h, w / 2, 0)
    larm = [F(capsule(-w / 2 - 0.45, -la - 0.55, -w / 2 - 0.45 + aw, -la + 0.02), "leaf"),
            F(rect(-w / 2 - 0.45, -la - aw + 0.02, -w / 2 + 0.02, -la + 0.02), "leaf")]
    rarm = [F(capsule(w / 2 + 0.45 - aw, -ra - 0.7, w / 2 + 0.45, -ra), "leaf"),
            F(rect(w / 2 - 0.02, -ra - aw, w / 2 + 0.45, -ra), "leaf")]
    pot = pts((-0.45, 0), (0.45, 0), (0.35, 0.45), (-0.35, 0.45))
    return [*larm, *rarm, F(trunk, "leaf"), F(pot, "main")]


def candle(r: np.random.Generator) -> list[Prim]:
    """Wax stick, wick, flame and a holder plate."""
    w, h = r.uniform(0.3, 0.42), r.uniform(1.3, 1.8)
    fl = r.uniform(0.4, 0.55)
    flame = np.concatenate([
        ellipse(0, -h - 0.22, 0.16, 0.16, n=12, a0=0, a1=np.pi, closed=False),
        pts((0, -h - 0.22 - fl))])
    return [F(rect(-w / 2, -h, w / 2, 0), "main"), L(pts((0, -h), (0, -h - 0.12)), "dark", 1.0),
            F(flame, "flame"), F(ellipse(0, 0.02, 0.55, 0.1, n=20), "metal")]


def car(r: np.random.Generator) -> list[Prim]:
    """Side view: body, cabin with windows, two wheels."""
    ln, bh = r.uniform(1.9, 2.3), r.uniform(0.38, 0.5)
    cf, cb = r.uniform(0.35, 0.5), r.uniform(0.15, 0.3)
    ch = r.uniform(0.35, 0.45)
    x0, x1 = -ln / 2, ln / 2
    body = pts((x0, 0), (x0, -bh * 0.8), (x0 + 0.1, -bh), (x1 - 0.25, -bh), (x1, -bh * 0.6),
               (x1, 0))
    c0, c1 = x0 + ln * cb, x1 - ln * cf
    cabin = pts((c0, -bh), (c0 + 0.15, -bh - ch), (c1 - 0.15, -bh - ch), (c1, -bh))
    wy = r.uniform(0.0, 0.05)
    wr = r.uniform(0.2, 0.26)
    wx = ln * 0.3
    win = pts((c0 + 0.12, -bh - 0.04), (c0 + 0.2, -bh - ch + 0.07), (c1 - 0.2, -bh - ch + 0.07),
              (c1 - 0.12, -bh - 0.04))
    return [F(cabin, "main"), F(body, "main"), F(win, "light"),
            F(ellipse(-wx, wy, wr, wr, n=18), "dark"), F(ellipse(wx, wy, wr, wr, n=18), "dark"),
            F(ellipse(-wx, wy, wr * 0.45, wr * 0.45, n=10), "metal", detail=True),
            F(ellipse(wx, wy, wr * 0.45, wr * 0.45, n=10), "metal", detail=True)]


def _crenellated(x0: float, x1: float, y: float, k: int, d: float) -> list[tuple[float, float]]:
    xs = np.linspace(x0, x1, 2 * k + 2)
    out: list[tuple[float, float]] = []
    for i in range(2 * k + 1):
        yy = y - d if i % 2 == 0 else y
        out += [(xs[i], yy), (xs[i + 1], yy)]
    return out


def castle(r: np.random.Generator) -> list[Prim]:
    """Crenellated wall between two taller towers, arched gate, flag."""
    ww, wh = r.uniform(0.65, 0.9), r.uniform(0.7, 0.9)
    tw, th = r.uniform(0.32, 0.42), r.uniform(1.2, 1.5)
    d = 0.14
    wall = np.array([(-ww, 0.0)] + _crenellated(-ww, ww, -wh, 3, d) + [(ww, 0.0)])
    towers = []
    for sx in (-1, 1):
        x0, x1 = sx * ww - tw, sx * ww + tw
        towers.append(F(np.array([(x0, 0.0)] + _crenellated(x0, x1, -th, 1, d) + [(x1, 0.0)]),
                        "main"))
    gate = np.concatenate([pts((-0.22, 0)), ellipse(0, -0.38, 0.22, 0.2, n=10, a0=np.pi,
                                                      a1=2 * np.pi, closed=False), pts((0.22, 0))])
    fx = ww * r.choice([-1, 1])
    flag = [L(pts((fx, -th - d), (fx, -th - 0.55)), "dark", 0.9),
            F(pts((fx, -th - 0.55), (fx + 0.35, -th - 0.45), (fx, -th - 0.35)), "accent",
              detail=True)]
    return [F(wall, "main"), *towers, F(gate, "dark"), *flag]


def chair(r: np.random.Generator) -> list[Prim]:
    """Side view: backrest, seat, legs."""
    sh, bh, sd = r.uniform(0.8, 1.0), r.uniform(0.8, 1.1), r.uniform(0.75, 0.95)
    t = 0.09
    return [
        F(rect(0, -sh - bh, t, 0), "wood"),                    # back post + back leg
        F(rect(sd - t, -sh, sd, 0), "wood"),                    # front leg
        F(rect(0, -sh - 0.08, sd + 0.05, -sh + 0.05), "main"),  # seat
        F(rect(t, -sh - bh, t + 0.12, -sh - bh * 0.35), "main"),  # backrest panel
        L(pts((t, -sh * 0.4), (sd - t, -sh * 0.4)), "wood", 0.8, detail=True),
    ]


def clock(r: np.random.Generator) -> list[Prim]:
    """Round face with a rim, hour ticks and two hands."""
    rim = r.uniform(0.1, 0.16)
    out = [F(ellipse(0, 0, 1, 1, n=36), "main"), F(ellipse(0, 0, 1 - rim, 1 - rim, n=36), "light")]
    for k in range(12):
        a = k * np.pi / 6
        r0 = 0.72 if k % 3 else 0.6
        out.append(L(pts((r0 * np.cos(a), r0 * np.sin(a)),
                         (0.8 * np.cos(a), 0.8 * np.sin(a))), "dark", 0.7, detail=k % 3 != 0))
    ha, ma = r.uniform(0, 2 * np.pi), r.uniform(0, 2 * np.pi)
    out += [L(pts((0, 0), (0.42 * np.cos(ha), 0.42 * np.sin(ha))), "dark", 1.3),
            L(pts((0, 0), (0.62 * np.cos(ma), 0.62 * np.sin(ma))), "dark", 1.0)]
    return out


def cloud(r: np.random.Generator) -> list[Prim]:
    """Bumpy union of circles with a flat-ish bottom."""
    k = int(r.integers(3, 5))
    xs = np.linspace(-0.9, 0.9, k)
    circ = [(x, 0.1 - 0.25 * np.cos(x * 1.4) * r.uniform(0.8, 1.3), r.uniform(0.35, 0.5))
            for x in xs]
    circ.append((0.0, 0.15, 0.55))
    p = blob(circ, n=56, centre=(0.0, 0.1))
    p[:, 1] = np.minimum(p[:, 1], 0.45)
    return [F(p, "light")]


def cup(r: np.random.Generator) -> list[Prim]:
    """Mug with a ring handle and steam."""
    w, h = r.uniform(0.55, 0.7), r.uniform(0.9, 1.2)
    taper = r.uniform(0.0, 0.1)
    body = pts((-w, -h / 2), (w, -h / 2), (w - taper, h / 2), (-w + taper, h / 2))
    hd = O(ellipse(w + 0.05, 0, 0.32, h * 0.27, n=18), "main", 1.8)
    steam = [L(np.stack([np.full(8, x) + 0.08 * np.sin(np.linspace(0, 2 * np.pi, 8)),
                         np.linspace(-h / 2 - 0.15, -h / 2 - 0.55, 8)], 1), "metal", 0.8,
               detail=True) for x in (-0.2, 0.2)]
    return [hd, F(body, "main"), F(ellipse(0, -h / 2, w, 0.08, n=16), "dark", detail=True),
            *steam]


def door(r: np.random.Generator) -> list[Prim]:
    """Tall panelled door in a frame, with a knob."""
    w, h = r.uniform(0.45, 0.55), r.uniform(1.0, 1.2)
    f = 0.08
    return [F(rect(-w - f, -h - f, w + f, h), "dark"), F(rect(-w, -h, w, h), "wood"),
            O(rect(-w + 0.12, -h + 0.15, w - 0.12, -0.1), "dark", 0.7, detail=True),
            O(rect(-w + 0.12, 0.1, w - 0.12, h - 0.15), "dark", 0.7, detail=True),
            F(ellipse(w - 0.15, 0.02, 0.07, 0.07, n=10), "metal")]


def dumbbell(r: np.random.Generator) -> list[Prim]:
    """Bar with two stacks of plates."""
    ln, ph = r.uniform(0.9, 1.1), r.uniform(0.45, 0.6)
    pw = r.uniform(0.12, 0.17)
    out = [F(rect(-ln, -0.06, ln, 0.06), "metal")]
    for sx in (-1, 1):
        x = sx * (ln - 0.15)
        out.append(F(rect(x - pw, -ph, x + pw, ph), "main"))
        x2 = x + sx * 2 * pw
        out.append(F(rect(x2 - pw * 0.8, -ph * 0.75, x2 + pw * 0.8, ph * 0.75), "main"))
    return out


def envelope(r: np.random.Generator) -> list[Prim]:
    """Rectangle with a V-shaped flap and a stamp."""
    w, h = r.uniform(0.9, 1.1), r.uniform(0.55, 0.7)
    fy = r.uniform(0.0, 0.2)
    return [F(rect(-w, -h, w, h), "light"), F(pts((-w, -h), (w, -h), (0, fy)), "main"),
            L(pts((-w, h), (-0.25 * w, fy * 0.5 + 0.1)), "dark", 0.7, detail=True),
            L(pts((w, h), (0.25 * w, fy * 0.5 + 0.1)), "dark", 0.7, detail=True),
            F(rect(w - 0.35, h - 0.4, w - 0.12, h - 0.12), "accent", detail=True)]


def eyeglasses(r: np.random.Generator) -> list[Prim]:
    """Two lenses in rims, a bridge and temples."""
    lr, lh = r.uniform(0.38, 0.45), r.uniform(0.26, 0.36)
    gap = r.uniform(0.12, 0.2)
    cx = gap / 2 + lr
    out: list[Prim] = []
    for sx in (-1, 1):
        e = ellipse(sx * cx, 0, lr, lh, n=24)
        out += [F(e, "light"), O(e, "main", 1.6)]
    out += [L(ellipse(0, 0.0, gap / 2 + 0.02, 0.1, n=8, a0=np.pi, a1=2 * np.pi, closed=False),
              "main", 1.4),
            L(pts((-2 * lr - gap / 2, -0.05), (-2 * lr - gap / 2 - 0.3, -0.15)), "main", 1.2),
            L(pts((2 * lr + gap / 2, -0.05), (2 * lr + gap / 2 + 0.3, -0.15)), "main", 1.2)]
    return out


def fence(r: np.random.Generator) -> list[Prim]:
    """Row of pointed pickets on two rails."""
    k = int(r.integers(4, 7))
    pw, h = r.uniform(0.16, 0.22), r.uniform(1.0, 1.3)
    xs = np.linspace(-1, 1, k)
    out = [F(rect(-1.15, -h * 0.7, 1.15, -h * 0.58), "wood"),
           F(rect(-1.15, -h * 0.25, 1.15, -h * 0.13), "wood")]
    for x in xs:
        out.append(F(pts((x - pw / 2, 0), (x - pw / 2, -h), (x, -h - pw * 0.8), (x + pw / 2, -h),
                         (x + pw / 2, 0)), "main"))
    return out


def fish(r: np.random.Generator) -> list[Prim]:
    """Lens-shaped body, forked tail, fin and eye."""
    bl, bh = r.uniform(0.9, 1.1), r.uniform(0.4, 0.55)
    t = np.linspace(0, np.pi, 16)
    top = np.stack([bl * np.cos(t), -bh * np.sin(t) ** 0.8], 1)
    body = np.concatenate([top, top[::-1][1:-1] * [1, -1]])
    tl, th = r.uniform(0.4, 0.55), r.uniform(0.35, 0.5)
    tail = pts((-bl + 0.1, 0), (-bl - tl, -th), (-bl - tl * 0.7, 0), (-bl - tl, th))
    fin = pts((-0.1, -bh * 0.85), (0.2, -bh - 0.25), (0.35, -bh * 0.7))
    return [F(tail, "accent"), F(fin, "accent", detail=True), F(body, "main"),
            F(ellipse(bl * 0.6, -bh * 0.2, 0.08, 0.08, n=10), "dark", detail=True),
            L(pts((bl * 0.35, -bh * 0.6), (bl * 0.25, 0), (bl * 0.35, bh * 0.6)), "dark", 0.7,
              detail=True)]


def flower(r: np.random.Generator) -> list[Prim]:
    """Ring of petals around a disc, on a stem with a leaf."""
    k = int(r.integers(5, 9))
    pr, pl = r.uniform(0.18, 0.26), r.uniform(0.38, 0.5)
    cy = -1.0
    out: list[Prim] = [F(bar((0, cy), (0.05, 0.8), 0.1), "leaf"),
                       F(rotate(ellipse(0.3, 0.3, 0.3, 0.1, n=14), -0.5, (0.03, 0.35)), "leaf")]
    rot = r.uniform(0, np.pi)
    for i in range(k):
        a = rot + i * 2 * np.pi / k
        e = rotate(ellipse(pl * 0.75, 0, pl * 0.7, pr, n=16), a) + [0, cy]
        out.append(F(e, "main"))
    out.append(F(ellipse(0, cy, 0.22, 0.22, n=16), "flame"))
    return out


def hammer(r: np.random.Generator) -> list[Prim]:
    """Handle with a block head and a curved claw."""
    hl = r.uniform(1.6, 2.0)
    hw, hh = r.uniform(0.35, 0.45), r.uniform(0.18, 0.24)
    top = -hl
    claw = np.concatenate([pts((-hw * 0.4, top), (-hw * 0.4, top + hh * 2)),
                           ellipse(-hw * 0.4, top + hh * 2, hw * 1.5, hh * 2.5, n=10,
                                   a0=np.pi, a1=1.25 * np.pi, closed=False)])
    return [F(bar((0, 0.1), (0, top + 0.05), r.uniform(0.13, 0.17)), "wood"),
            F(rect(-0.05, top, hw, top + 2 * hh), "metal"),
            F(rect(hw, top - 0.04, hw + 0.1, top + 2 * hh + 0.04), "metal"),
            F(claw, "metal")]


def hot_air_balloon(r: np.random.Generator) -> list[Prim]:
    """Round envelope narrowing to a mouth, ropes and a basket."""
    rr = r.uniform(0.85, 1.0)
    env = np.concatenate([ellipse(0, 0, rr, rr, n=30, a0=np.pi - 0.7, a1=2 * np.pi + 0.7,
                                  closed=False),
                          pts((0.25, rr + 0.35), (-0.25, rr + 0.35))])
    stripe = np.concatenate([ellipse(0, 0, rr * 0.35, rr, n=16, a0=np.pi / 2, a1=1.5 * np.pi,
                                     closed=False),
                             ellipse(0, 0, rr * 0.35, rr, n=16, a0=1.5 * np.pi,
                                     a1=2.5 * np.pi, closed=False)])
    by = rr + r.uniform(0.7, 0.9)
    return [F(env, "main"), F(stripe, "accent", detail=True),
            L(pts((-0.25, rr + 0.35), (-0.18, by)), "dark", 0.7),
            L(pts((0.25, rr + 0.35), (0.18, by)), "dark", 0.7),
            F(rect(-0.22, by, 0.22, by + 0.3), "wood")]


def house(r: np.random.Generator) -> list[Prim]:
    """Walls, triangular roof, door, window, chimney."""
    w, h = r.uniform(0.8, 1.0), r.uniform(0.8, 1.1)
    rh, ov = r.uniform(0.55, 0.85), r.uniform(0.08, 0.18)
    dx = r.uniform(-0.4, 0.4) * w
    wx = -0.5 * w if dx > 0 else 0.5 * w
    out = [F(rect(0.5 * w, -h - rh * 0.8, 0.5 * w + 0.2, -h - 0.1), "dark", detail=True),
           F(rect(-w, -h, w, 0), "main"),
           F(pts((-w - ov, -h), (0, -h - rh), (w + ov, -h)), "accent"),
           F(rect(dx - 0.18, -0.55, dx + 0.18, 0), "wood"),
           F(rect(wx - 0.2, -h + 0.2, wx + 0.2, -h + 0.55), "light"),
           L(pts((wx, -h + 0.2), (wx, -h + 0.55)), "dark", 0.6, detail=True),
           L(pts((wx - 0.2, -h + 0.375), (wx + 0.2, -h + 0.375)), "dark", 0.6, detail=True)]
    return out


def ice_cream(r: np.random.Generator) -> list[Prim]:
    """Cone with waffle lines and one or two scoops."""
    cw, cl = r.uniform(0.4, 0.5), r.uniform(1.1, 1.4)
    cone = pts((-cw, 0), (cw, 0), (0, cl))
    out = [F(cone, "wood")]
    for t in (0.3, 0.6):
        out.append(L(pts((-cw * (1 - t), cl * t), (cw * (1 - t) * 0.2, 0.02)), "dark", 0.6,
                     detail=True))
        out.append(L(pts((cw * (1 - t), cl * t), (-cw * (1 - t) * 0.2, 0.02)), "dark", 0.6,
                     detail=True))
    sr = r.uniform(0.45, 0.55)
    scoop = np.concatenate([ellipse(0, -sr * 0.7, sr, sr, n=24, a0=np.pi * 0.95,
                                    a1=2.05 * np.pi, closed=False),
                            pts((sr * 0.95, 0.05), (sr * 0.5, 0.15), (0, 0.05), (-sr * 0.5, 0.15),
                                (-sr * 0.95, 0.05))])
    out.append(F(scoop, "main"))
    if r.random() < 0.5:
        out.append(F(ellipse(0, -sr * 1.9, sr * 0.75, sr * 0.7, n=20), "accent"))
    return out


def key(r: np.random.Generator) -> list[Prim]:
    """Ring bow, long shaft, teeth."""
    br = r.uniform(0.35, 0.45)
    ln = r.uniform(1.3, 1.6)
    t = 0.09
    out = [O(ellipse(-ln / 2 - br, 0, br, br, n=22), "main", 2.0),
           F(rect(-ln / 2, -t, ln / 2 + 0.6, t), "main")]
    for i in range(int(r.integers(2, 4))):
        x = ln / 2 + 0.55 - i * 0.2
        out.append(F(rect(x - 0.07, t, x + 0.07, t + r.uniform(0.15, 0.3)), "main"))
    return out


def ladder(r: np.random.Generator) -> list[Prim]:
    """Two rails and evenly spaced rungs."""
    w, h = r.uniform(0.35, 0.5), r.uniform(1.7, 2.1)
    k = int(r.integers(4, 7))
    t = 0.07
    out = [F(rect(-w - t, -h / 2, -w + t, h / 2), "wood"), F(rect(w - t, -h / 2, w + t, h / 2), "wood")]
    for y in np.linspace(-h / 2 + h / (k + 1), h / 2 - h / (k + 1), k):
        out.append(F(rect(-w, y - 0.04, w, y + 0.04), "wood"))
    return out


def light_bulb(r: np.random.Generator) -> list[Prim]:
    """Round glass narrowing into a threaded base, with a filament."""
    gr = r.uniform(0.6, 0.7)
    nw = r.uniform(0.24, 0.3)
    a = np.arcsin(nw / gr)
    glass = np.concatenate([ellipse(0, 0, gr, gr, n=30, a0=np.pi / 2 + a + 0.25,
                                    a1=2.5 * np.pi - a - 0.25, closed=False),
                            pts((nw, gr + 0.35), (-nw, gr + 0.35))])
    by = gr + 0.35
    out = [F(glass, "light"), F(rect(-nw, by, nw, by + 0.4), "metal"),
           F(pts((-nw * 0.6, by + 0.4), (nw * 0.6, by + 0.4), (0, by + 0.52)), "dark")]
    for y in (by + 0.13, by + 0.27):
        out.append(L(pts((-nw, y), (nw, y)), "dark", 0.6, detail=True))
    out.append(L(pts((-0.12, by), (-0.12, 0.1), (0, -0.05), (0.12, 0.1), (0.12, by)), "flame",
                 0.7, detail=True))
    return out


def lollipop(r: np.random.Generator) -> list[Prim]:
    """Candy disc with a spiral on a straight stick."""
    cr = r.uniform(0.55, 0.7)
    sl = r.uniform(1.1, 1.5)
    t = np.linspace(0, 4 * np.pi, 40)
    spiral = np.stack([cr * 0.85 * t / t[-1] * np.cos(t), cr * 0.85 * t / t[-1] * np.sin(t)], 1)
    return [F(rect(-0.06, 0, 0.06, cr + sl), "light"), F(ellipse(0, 0, cr, cr, n=30), "main"),
            L(spiral, "accent", 1.0)]


def moon(r: np.random.Generator) -> list[Prim]:
    """Crescent."""
    off = r.uniform(0.35, 0.55)
    return [F(crescent(1.0, r.uniform(0.85, 1.0), off, n=28), "flame")]


def mountain(r: np.random.Generator) -> list[Prim]:
    """Two or three peaks with a snow cap on the tallest."""
    h1 = r.uniform(1.2, 1.5)
    w1 = r.uniform(0.9, 1.1)
    x2, h2 = r.uniform(0.6, 0.9) * r.choice([-1, 1]), r.uniform(0.6, 0.9)
    peak2 = pts((x2 - 0.8, 0), (x2, -h2), (x2 + 0.8, 0))
    s = r.uniform(0.28, 0.38)
    snow = pts((-w1 * s, -h1 * (1 - s)), (0, -h1), (w1 * s, -h1 * (1 - s)), (w1 * s * 0.4, -h1 * (1 - s) + 0.1),
               (0, -h1 * (1 - s)), (-w1 * s * 0.4, -h1 * (1 - s) + 0.12))
    return [F(peak2, "accent"), F(pts((-w1, 0), (0, -h1), (w1, 0)), "main"), F(snow, "light")]


def mushroom(r: np.random.Generator) -> list[Prim]:
    """Dome cap with spots on a thick stem."""
    cw, ch = r.uniform(0.9, 1.1), r.uniform(0.55, 0.8)
    sw, sh = r.uniform(0.22, 0.32), r.uniform(0.6, 0.9)
    cap = np.concatenate([ellipse(0, 0, cw, ch, n=26, a0=np.pi, a1=2 * np.pi, closed=False),
                          pts((cw * 0.8, 0.12), (-cw * 0.8, 0.12))])
    out = [F(pts((-sw, 0.05), (sw, 0.05), (sw * 1.2, sh), (-sw * 1.2, sh)), "light"),
           F(cap, "main")]
    for x, y, s in ((-0.45, -0.3, 0.13), (0.2, -0.5, 0.11), (0.55, -0.15, 0.1)):
        out.append(F(ellipse(x * cw, y * ch / 0.7, s, s, n=10), "light", detail=True))
    return out


def sailboat(r: np.random.Generator) -> list[Prim]:
    """Hull, mast, main sail and jib."""
    hl, hh = r.uniform(1.0, 1.2), r.uniform(0.3, 0.4)
    mh = r.uniform(1.5, 1.9)
    mx = r.uniform(-0.15, 0.1)
    hull = pts((-hl, 0), (hl, 0), (hl * 0.7, hh), (-hl * 0.7, hh))
    main = pts((mx - 0.05, -mh), (mx - 0.05, -0.12), (mx - hl * r.uniform(0.7, 0.9), -0.12))
    jib = pts((mx + 0.05, -mh * 0.9), (mx + 0.05, -0.12), (mx + hl * r.uniform(0.55, 0.75), -0.12))
    return [F(hull, "wood"), L(pts((mx, 0), (mx, -mh - 0.05)), "dark", 1.2),
            F(main, "light"), F(jib, "main")]


def snowman(r: np.random.Generator) -> list[Prim]:
    """Three stacked balls, hat, eyes, carrot nose, stick arms."""
    r1, r2, r3 = r.uniform(0.55, 0.65), r.uniform(0.4, 0.48), r.uniform(0.28, 0.33)
    y1, y2 = 0.0, -r1 - r2 * 0.8
    y3 = y2 - r2 - r3 * 0.8
    out = [F(ellipse(0, y1, r1, r1, n=28), "light"), F(ellipse(0, y2, r2, r2, n=24), "light"),
           F(ellipse(0, y3, r3, r3, n=20), "light"),
           F(rect(-r3 * 0.75, y3 - r3 - 0.35, r3 * 0.75, y3 - r3 * 0.75), "dark"),
           F(rect(-r3 * 1.2, y3 - r3 * 0.85, r3 * 1.2, y3 - r3 * 0.7), "dark"),
           F(pts((0, y3 - 0.03), (0.3, y3 + 0.03), (0, y3 + 0.08)), "flame", detail=True),
           L(pts((r2 * 0.9, y2), (r2 + 0.5, y2 - 0.35)), "wood", 1.0),
           L(pts((-r2 * 0.9, y2), (-r2 - 0.5, y2 - 0.3)), "wood", 1.0)]
    for x in (-0.1, 0.1):
        out.append(F(ellipse(x, y3 - 0.09, 0.045, 0.045, n=8), "dark", detail=True))
    return out


def star_(r: np.random.Generator) -> list[Prim]:
    """Five-pointed star."""
    return [F(star(0, 0, 1.0, r.uniform(0.38, 0.5), 5), "main")]


def sun(r: np.random.Generator) -> list[Prim]:
    """Disc with triangular rays."""
    k = int(r.integers(8, 13))
    dr = r.uniform(0.45, 0.6)
    out: list[Prim] = []
    rot = r.uniform(0, np.pi)
    for i in range(k):
        a = rot + i * 2 * np.pi / k
        w = 0.16
        p = pts((0.65 * np.cos(a - w), 0.65 * np.sin(a - w)),
                ((dr + 0.55) * np.cos(a), (dr + 0.55) * np.sin(a)),
                (0.65 * np.cos(a + w), 0.65 * np.sin(a + w)))
        out.append(F(p, "flame"))
    out.append(F(ellipse(0, 0, dr + 0.05, dr + 0.05, n=30), "flame"))
    return out


def sword(r: np.random.Generator) -> list[Prim]:
    """Pointed blade, crossguard, grip, pommel."""
    bl, bw = r.uniform(1.5, 1.8), r.uniform(0.1, 0.14)
    gw = r.uniform(0.35, 0.45)
    blade = pts((-bw, 0), (-bw, -bl), (0, -bl - 0.25), (bw, -bl), (bw, 0))
    return [F(blade, "metal"), F(rect(-gw, -0.02, gw, 0.1), "main"),
            F(rect(-0.06, 0.1, 0.06, 0.5), "wood"), F(ellipse(0, 0.55, 0.1, 0.1, n=10), "main")]


def table(r: np.random.Generator) -> list[Prim]:
    """Front view: thick top on two legs, with a stretcher."""
    w, h = r.uniform(1.0, 1.2), r.uniform(0.7, 0.95)
    t = r.uniform(0.1, 0.15)
    lw = 0.08
    return [F(rect(-w, -h / 2, w, -h / 2 + t), "wood"),
            F(rect(-w * 0.85, -h / 2 + t, -w * 0.85 + 2 * lw, h / 2), "wood"),
            F(rect(w * 0.85 - 2 * lw, -h / 2 + t, w * 0.85, h / 2), "wood"),
            L(pts((-w * 0.8, h * 0.15), (w * 0.8, h * 0.15)), "wood", 0.8, detail=True)]


def television(r: np.random.Generator) -> list[Prim]:
    """Wide cabinet with a screen, antennae and feet."""
    w, h = r.uniform(0.9, 1.05), r.uniform(0.6, 0.75)
    f = r.uniform(0.08, 0.12)
    out = [F(rect(-w, -h, w, h), "main"), F(rect(-w + f, -h + f, w - 0.35, h - f), "dark"),
           F(ellipse(w - 0.18, -h * 0.3, 0.08, 0.08, n=10), "light", detail=True),
           F(ellipse(w - 0.18, h * 0.2, 0.08, 0.08, n=10), "light", detail=True),
           L(pts((-0.05, -h), (-0.45, -h - 0.55)), "dark", 0.8),
           L(pts((0.05, -h), (0.4, -h - 0.6)), "dark", 0.8),
           F(rect(-w * 0.7, h, -w * 0.55, h + 0.15), "dark"),
           F(rect(w * 0.55, h, w * 0.7, h + 0.15), "dark")]
    return out


def tent(r: np.random.Generator) -> list[Prim]:
    """Big triangle with a dark door opening and pole tips."""
    w, h = r.uniform(0.9, 1.1), r.uniform(0.9, 1.2)
    dw = r.uniform(0.2, 0.3)
    return [F(pts((-w, 0), (0, -h), (w, 0)), "main"),
            F(pts((-dw, 0), (0, -h * 0.55), (dw, 0)), "dark"),
            L(pts((0, -h), (-0.12, -h - 0.2)), "dark", 0.9),
            L(pts((0, -h), (0.12, -h - 0.2)), "dark", 0.9),
            L(pts((-w - 0.25, 0), (w + 0.25, 0)), "dark", 0.8, detail=True)]


def traffic_light(r: np.random.Generator) -> list[Prim]:
    """Tall housing with red, amber and green lamps on a pole."""
    w, h = r.uniform(0.3, 0.38), r.uniform(0.95, 1.1)
    lr = w * 0.72
    out = [F(rect(-0.05, h, 0.05, h + r.uniform(0.5, 0.8)), "metal"),
           F(rect(-w, -h, w, h), "dark")]
    for y, role in zip((-h * 0.64, 0.0, h * 0.64), ("red", "amber", "green"), strict=True):
        out.append(F(ellipse(0, y, lr, lr, n=18), role))
    return out


def tree(r: np.random.Generator) -> list[Prim]:
    """Tapered trunk under a bumpy round crown."""
    th, tw = r.uniform(0.8, 1.1), r.uniform(0.14, 0.2)
    cr = r.uniform(0.75, 0.95)
    cy = -th - cr * 0.6
    k = int(r.integers(5, 8))
    circ = [(0.0, cy, cr * 0.75)]
    for i in range(k):
        a = i * 2 * np.pi / k + r.uniform(-0.2, 0.2)
        circ.append((cr * 0.55 * np.cos(a), cy + cr * 0.5 * np.sin(a), cr * r.uniform(0.4, 0.5)))
    return [F(pts((-tw, 0), (-tw * 0.6, -th - 0.3), (tw * 0.6, -th - 0.3), (tw, 0)), "wood"),
            F(blob(circ, n=56, centre=(0.0, cy)), "leaf")]


def umbrella(r: np.random.Generator) -> list[Prim]:
    """Scalloped canopy, shaft and J-hook handle."""
    cw, ch = r.uniform(1.0, 1.15), r.uniform(0.55, 0.75)
    k = int(r.integers(3, 6))
    top = ellipse(0, 0, cw, ch, n=28, a0=np.pi, a1=2 * np.pi, closed=False)
    xs = np.linspace(cw, -cw, k + 1)
    scal = []
    for i in range(k):
        mid, half = (xs[i] + xs[i + 1]) / 2, (xs[i] - xs[i + 1]) / 2
        scal.append(ellipse(mid, 0, half, 0.16, n=8, a0=0, a1=-np.pi, closed=False)[1:] * [1, -1])
    canopy = np.concatenate([top] + scal)
    sl = r.uniform(1.0, 1.3)
    hook = ellipse(-0.15, sl, 0.15, 0.15, n=10, a0=0, a1=np.pi, closed=False)
    out = [L(np.concatenate([pts((0, -ch - 0.1), (0, sl)), hook]), "dark", 1.3), F(canopy, "main")]
    for x in xs[1:-1]:
        out.append(L(pts((0, -ch), (x, 0)), "dark", 0.5, detail=True))
    return out


def windmill(r: np.random.Generator) -> list[Prim]:
    """Tapered tower with four rectangular sails on a hub."""
    tw, th = r.uniform(0.35, 0.45), r.uniform(1.2, 1.5)
    bl = r.uniform(0.95, 1.15)
    hub = (0.0, -th)
    rot = r.uniform(0, np.pi / 2)
    out = [F(pts((-tw, 0), (-tw * 0.55, -th), (tw * 0.55, -th), (tw, 0)), "light"),
           F(pts((-tw * 0.65, -th), (0, -th - 0.35), (tw * 0.65, -th)), "accent"),
           F(rect(-0.1, -0.35, 0.1, 0), "wood", detail=True)]
    for i in range(4):
        a = rot + i * np.pi / 2
        sail = rotate(rect(0.12, -0.14, bl, 0.14), a) + hub
        out.append(F(sail, "main"))
    out.append(F(ellipse(*hub, 0.1, 0.1, n=10), "dark"))
    return out


def wine_glass(r: np.random.Generator) -> list[Prim]:
    """U-shaped bowl with wine, thin stem, flat foot."""
    bw, bh = r.uniform(0.45, 0.55), r.uniform(0.65, 0.8)
    sl = r.uniform(0.6, 0.9)
    bowl = ellipse(0, -bh, bw, bh, n=24, a0=0, a1=np.pi, closed=False)
    wl = r.uniform(0.35, 0.6)
    wine = ellipse(0, -bh, bw, bh, n=20, a0=np.arcsin(wl), a1=np.pi - np.arcsin(wl), closed=False)
    return [F(rect(-0.04, 0, 0.04, sl), "light"), F(ellipse(0, sl, bw * 0.8, 0.1, n=16), "light"),
            F(bowl, "light"), F(wine, "accent"), O(bowl, "dark", 0.6, detail=True)]


# --------------------------------------------------------------------------------------------
# base-only classes (natural base set only)


def anchor(r: np.random.Generator) -> list[Prim]:
    """Ring, shank, stock and curved arms with flukes."""
    h = r.uniform(1.6, 1.9)
    ar = r.uniform(0.75, 0.9)
    arm = ellipse(0, h / 2 - ar, ar, ar, n=20, a0=0.15 * np.pi, a1=0.85 * np.pi, closed=False)
    out = [O(ellipse(0, -h / 2 - 0.18, 0.16, 0.16, n=14), "main", 1.5),
           F(rect(-0.07, -h / 2, 0.07, h / 2), "main"),
           F(rect(-0.45, -h / 2 + 0.2, 0.45, -h / 2 + 0.32), "main"),
           L(arm, "main", 2.0)]
    for p in (arm[0], arm[-1]):
        out.append(F(pts(tuple(p), (p[0] * 1.05, p[1] - 0.3),
                         (p[0] + np.sign(p[0]) * 0.12, p[1] + 0.05)), "main"))
    return out


def arrow(r: np.random.Generator) -> list[Prim]:
    """Shaft with a triangular head and fletching."""
    ln = r.uniform(1.8, 2.2)
    hw = r.uniform(0.22, 0.3)
    return [F(rect(-ln / 2, -0.04, ln / 2 - 0.2, 0.04), "wood"),
            F(pts((ln / 2 - 0.3, -hw), (ln / 2 + 0.1, 0), (ln / 2 - 0.3, hw)), "metal"),
            F(pts((-ln / 2, 0), (-ln / 2 - 0.2, -0.2), (-ln / 2 + 0.2, -0.2), (-ln / 2 + 0.35, 0)),
              "main"),
            F(pts((-ln / 2, 0), (-ln / 2 - 0.2, 0.2), (-ln / 2 + 0.2, 0.2), (-ln / 2 + 0.35, 0)),
              "main")]


def balloon(r: np.random.Generator) -> list[Prim]:
    """Egg-shaped balloon, knot and a wavy string."""
    rx, ry = r.uniform(0.5, 0.6), r.uniform(0.65, 0.75)
    t = np.linspace(0, 1, 12)
    string = np.stack([0.1 * np.sin(t * 3 * np.pi), ry + 0.1 + t * r.uniform(0.9, 1.2)], 1)
    return [L(string, "dark", 0.8), F(ellipse(0, 0, rx, ry, n=28), "main"),
            F(pts((0, ry - 0.02), (0.1, ry + 0.12), (-0.1, ry + 0.12)), "main")]


def bell(r: np.random.Generator) -> list[Prim]:
    """Flared bell with a top loop and a clapper."""
    w, h = r.uniform(0.8, 0.95), r.uniform(1.0, 1.2)
    y = np.linspace(-h / 2, h / 2, 12)
    x = 0.3 + (w - 0.3) * ((y + h / 2) / h) ** 2.2
    right = np.stack([x, y], 1)
    body = np.concatenate([ellipse(0, -h / 2, 0.3, 0.25, n=10, a0=np.pi, a1=2 * np.pi,
                                   closed=False), right, right[::-1] * [-1, 1]])
    return [O(ellipse(0, -h / 2 - 0.35, 0.12, 0.12, n=10), "metal", 1.3),
            F(ellipse(0, h / 2 + 0.05, 0.14, 0.14, n=10), "dark"), F(body, "main"),
            F(rect(-w, h / 2 - 0.06, w, h / 2 + 0.04), "main")]


def bottle(r: np.random.Generator) -> list[Prim]:
    """Body, rounded shoulder, neck, cap and a label."""
    w, h = r.uniform(0.38, 0.48), r.uniform(1.0, 1.3)
    nw, nh = r.uniform(0.12, 0.16), r.uniform(0.4, 0.55)
    sh = np.stack([np.linspace(w, nw, 6), -h / 2 - np.sin(np.linspace(0, np.pi / 2, 6)) * 0.35], 1)
    right = np.concatenate([pts((w, h / 2)), sh, pts((nw, -h / 2 - 0.35 - nh))])
    body = np.concatenate([right, right[::-1] * [-1, 1]])
    top = -h / 2 - 0.35 - nh
    return [F(body, "main"), F(rect(-nw * 1.15, top - 0.15, nw * 1.15, top + 0.02), "dark"),
            F(rect(-w, -0.15, w, 0.25), "light")]


def crown(r: np.random.Generator) -> list[Prim]:
    """Band with pointed tips, each tipped with a jewel."""
    w, h = r.uniform(0.9, 1.05), r.uniform(0.7, 0.9)
    k = int(r.integers(3, 6))
    xs = np.linspace(-w, w, 2 * k - 1)
    top = [(x, -h if i % 2 == 0 else -h * 0.35) for i, x in enumerate(xs)]
    band = np.array([(-w, 0.3)] + top + [(w, 0.3)])
    out = [F(band, "flame")]
    for x, y in top[::2]:
        out.append(F(ellipse(x, y, 0.09, 0.09, n=8), "accent", detail=True))
    out.append(F(rect(-w, 0.05, w, 0.3), "accent"))
    return out


def kite(r: np.random.Generator) -> list[Prim]:
    """Diamond with cross spars and a tail of bows."""
    w, top, bot = r.uniform(0.6, 0.75), r.uniform(0.6, 0.75), r.uniform(1.0, 1.2)
    t = np.linspace(0, 1, 12)
    tail = np.stack([0.15 * np.sin(t * 4 * np.pi), bot + t * 0.9], 1)
    out = [F(pts((0, -top), (w, 0), (0, bot), (-w, 0)), "main"),
           L(pts((0, -top), (0, bot)), "dark", 0.6), L(pts((-w, 0), (w, 0)), "dark", 0.6),
           L(tail, "dark", 0.8)]
    for i in (4, 8):
        x, y = tail[i]
        out.append(F(pts((x - 0.15, y - 0.08), (x + 0.15, y + 0.08), (x + 0.15, y - 0.08),
                         (x - 0.15, y + 0.08)), "accent", detail=True))
    return out


def lighthouse(r: np.random.Generator) -> list[Prim]:
    """Tapered striped tower, lantern room, conical roof."""
    bw, tw, h = r.uniform(0.4, 0.5), r.uniform(0.25, 0.3), r.uniform(1.6, 1.9)
    out = [F(pts((-bw, 0), (-tw, -h), (tw, -h), (bw, 0)), "light")]
    for f in (0.2, 0.55):
        y0, y1 = -h * f, -h * (f + 0.17)
        w0, w1 = bw + (tw - bw) * f, bw + (tw - bw) * (f + 0.17)
        out.append(F(pts((-w0, y0), (-w1, y1), (w1, y1), (w0, y0)), "main"))
    out += [F(rect(-tw * 1.3, -h - 0.05, tw * 1.3, -h + 0.03), "dark"),
            F(rect(-tw * 0.8, -h - 0.35, tw * 0.8, -h - 0.05), "flame"),
            F(pts((-tw * 1.1, -h - 0.35), (0, -h - 0.65), (tw * 1.1, -h - 0.35)), "main")]
    return out


def shovel(r: np.random.Generator) -> list[Prim]:
    """Long handle, D-grip and a pointed spade blade."""
    hl = r.uniform(1.4, 1.7)
    bw, bh = r.uniform(0.3, 0.38), r.uniform(0.55, 0.7)
    blade = np.concatenate([pts((-bw, 0), (bw, 0)),
                            ellipse(0, 0, bw, bh, n=12, a0=0, a1=np.pi, closed=False)[1:-1]])
    return [F(rect(-0.05, -hl, 0.05, 0.02), "wood"),
            O(pts((-0.16, -hl - 0.25), (0.16, -hl - 0.25), (0.05, -hl), (-0.05, -hl)), "dark",
              1.3),
            F(blade, "metal")]


def spoon(r: np.random.Generator) -> list[Prim]:
    """Oval bowl on a slender handle."""
    bl, bw = r.uniform(0.45, 0.55), r.uniform(0.3, 0.36)
    hl = r.uniform(1.3, 1.6)
    handle = pts((-0.04, 0), (0.04, 0), (0.09, hl), (-0.09, hl))
    return [F(handle, "metal"), F(ellipse(0, -bl * 0.9, bw, bl, n=24), "metal"),
            F(ellipse(0, -bl * 0.85, bw * 0.6, bl * 0.65, n=18), "light", detail=True)]


def vase(r: np.random.Generator) -> list[Prim]:
    """Symmetric curved profile: foot, belly, narrow neck, lip."""
    h = r.uniform(1.4, 1.7)
    belly, neck = r.uniform(0.5, 0.65), r.uniform(0.16, 0.24)
    y = np.linspace(h / 2, -h / 2, 16)
    t = (h / 2 - y) / h
    x = neck + (belly - neck) * np.sin(np.clip(t / 0.7, 0, 1) * np.pi) ** 1.2
    x = np.where(t > 0.85, neck * 1.4, x)
    x[0] = belly * 0.55
    right = np.stack([x, y], 1)
    body = np.concatenate([right, right[::-1] * [-1, 1]])
    return [F(body, "main"), L(pts((-belly * 0.7, 0), (belly * 0.7, 0)), "accent", 1.0,
                               detail=True)]


def teapot(r: np.random.Generator) -> list[Prim]:
    """Round body, spout, ring handle, lid with a knob."""
    bw, bh = r.uniform(0.7, 0.85), r.uniform(0.5, 0.6)
    spout = pts((bw * 0.8, 0.05), (bw + 0.5, -bh - 0.05), (bw + 0.6, -bh - 0.05),
                (bw * 0.85, 0.25))
    return [F(spout, "main"), O(ellipse(-bw - 0.05, 0, 0.3, 0.3, n=16), "main", 1.8),
            F(ellipse(0, 0, bw, bh, n=30), "main"),
            F(ellipse(0, -bh, bw * 0.5, 0.12, n=16), "accent"),
            F(ellipse(0, -bh - 0.15, 0.09, 0.09, n=10), "accent")]


# --------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class ObjectClass:
    """A class: folder name, builder, and how much it may be rotated per image."""

    name: str
    build: Builder
    max_rot_deg: float = 15.0


_SIX = [
    ObjectClass("airplane", airplane, 35), ObjectClass("apple", apple),
    ObjectClass("axe", axe, 30), ObjectClass("banana", banana, 25),
    ObjectClass("bed", bed, 8), ObjectClass("bicycle", bicycle, 10),
    ObjectClass("bowtie", bowtie, 15), ObjectClass("bucket", bucket, 10),
    ObjectClass("butterfly", butterfly, 20), ObjectClass("cactus", cactus, 8),
    ObjectClass("candle", candle, 8), ObjectClass("car", car, 6),
    ObjectClass("castle", castle, 5), ObjectClass("chair", chair, 8),
    ObjectClass("clock", clock, 10), ObjectClass("cloud", cloud, 8),
    ObjectClass("cup", cup, 10), ObjectClass("door", door, 5),
    ObjectClass("dumbbell", dumbbell, 25), ObjectClass("envelope", envelope, 15),
    ObjectClass("eyeglasses", eyeglasses, 12), ObjectClass("fence", fence, 6),
    ObjectClass("fish", fish, 20), ObjectClass("flower", flower, 12),
    ObjectClass("hammer", hammer, 30), ObjectClass("hot_air_balloon", hot_air_balloon, 8),
    ObjectClass("house", house, 5), ObjectClass("ice_cream", ice_cream, 12),
    ObjectClass("key", key, 35), ObjectClass("ladder", ladder, 20),
    ObjectClass("light_bulb", light_bulb, 15), ObjectClass("lollipop", lollipop, 20),
    ObjectClass("moon", moon, 30), ObjectClass("mountain", mountain, 3),
    ObjectClass("mushroom", mushroom, 10), ObjectClass("sailboat", sailboat, 8),
    ObjectClass("snowman", snowman, 8), ObjectClass("star", star_, 20),
    ObjectClass("sun", sun, 20), ObjectClass("sword", sword, 35),
    ObjectClass("table", table, 5), ObjectClass("television", television, 6),
    ObjectClass("tent", tent, 5), ObjectClass("traffic_light", traffic_light, 5),
    ObjectClass("tree", tree, 5), ObjectClass("umbrella", umbrella, 15),
    ObjectClass("windmill", windmill, 4), ObjectClass("wine_glass", wine_glass, 10),
]

_BASE_ONLY = [
    ObjectClass("anchor", anchor, 15), ObjectClass("arrow", arrow, 35),
    ObjectClass("balloon", balloon, 15), ObjectClass("bell", bell, 12),
    ObjectClass("bottle", bottle, 15), ObjectClass("crown", crown, 10),
    ObjectClass("kite", kite, 20), ObjectClass("lighthouse", lighthouse, 4),
    ObjectClass("shovel", shovel, 30), ObjectClass("spoon", spoon, 35),
    ObjectClass("teapot", teapot, 8), ObjectClass("vase", vase, 6),
]

#: Every class the generator can draw, by folder name.
OBJECT_CLASSES: dict[str, ObjectClass] = {c.name: c for c in _SIX + _BASE_ONLY}

#: Classes of the six domains (DomainNet-style folder names, sorted).
SYNTH_CLASSES: tuple[str, ...] = tuple(sorted(c.name for c in _SIX))

#: Declared held-out classes (~20%), one or two per kind of object: tool, food, furniture,
#: animal, household item, landscape, vehicle, electronics, street furniture, accessory.
SYNTH_HELDOUT_CLASSES: tuple[str, ...] = (
    "axe", "banana", "bed", "butterfly", "candle", "eyeglasses", "mountain", "sailboat",
    "television", "traffic_light",
)

#: Classes only the natural base set has (the stand-in for ImageNet-Captions' extra classes).
BASE_ONLY_CLASSES: tuple[str, ...] = tuple(sorted(c.name for c in _BASE_ONLY))

#: Classes whose main-colour part (role ``"main"``) is most of the object (on average at least 60%
#: of its filled area, and on average 40 or more pixels at 32 px in the ``real`` style): on these a
#: chosen colour and surface pattern (:class:`~training.synth.styles.Look`) are visible, so
#: attribute-object mixtures (:mod:`training.attributes`) draw their objects from them. Thin
#: or mostly fixed-colour classes (banana, key, axe, ...) are left out.
ATTRIBUTE_CLASSES: tuple[str, ...] = (
    "apple", "bowtie", "bucket", "butterfly", "car", "castle", "cup", "fish", "hot_air_balloon",
    "house", "mountain", "mushroom", "star", "tent", "umbrella",
)
