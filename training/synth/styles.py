"""Domain renderers: draw an object's primitives in the style of one DomainNet domain.

Each renderer takes an :class:`~training.synth.objects.ObjectClass`, a per-image
``numpy.random.Generator`` and the output size, builds the object, poses and places it, and
returns a ``size x size`` RGB image. Shapes and strokes are drawn at ``SS`` times the output size
and box-downsampled (antialiasing); smooth things (backgrounds, textures, shading, blur) are
computed at the output size, which keeps the renderers fast. Stroke widths are given in pixels
*at 64 px output* and scale with the image size. All randomness comes from the generator passed
in; the fixed noise textures (:func:`_tiles`) are generated from a constant seed, so images are
reproducible across processes.

The styles differ the way DomainNet's domains do:

* ``real``: natural colours, shading and highlights, cast shadow, textured ground/sky scenes
  with distractors, background blur (depth of field), sensor noise, exposure and white balance.
* ``clipart``: flat saturated fills, thick dark outlines; white background about half the time,
  otherwise a flat pastel one, a pastel badge or a flat ground-and-sky scene.
* ``painting``: painterly background of brush strokes, brush strokes inside the object, blur,
  canvas texture, per-image palette shift (tint and saturation).
* ``sketch``: graphite outlines (sometimes doubled), hatching and tonal smudges inside shapes,
  paper grain; half are photographed (grey, unevenly lit paper); no colour.
* ``quickdraw``: thin black strokes on white, distorted proportions (random stretch and shear),
  simplified and strongly jittered geometry, most details and often a part dropped, open
  outlines, no fill: a doodle drawn from memory, the domain furthest from the others.
* ``infograph``: a small flat icon on a panel among title bars, text-like blocks and charts.

:func:`render_real_look` is the ``real`` style with a chosen colour and surface pattern
(:class:`Look`, :data:`PATTERNS`) on the object's main part, for attribute-object data
(:mod:`training.attributes`); without a look every renderer draws exactly what it drew before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .geometry import Placement, Prim, bounds, fit, place, pose
from .objects import ObjectClass

#: Supersampling factor: draw at ``SS * size`` and downsample with a box filter.
SS = 2

RGB = tuple[int, int, int]

_THIRDS = np.full(3, 1 / 3, np.float32)

#: Named principal colours (names appear in base captions).
NAMED_COLOURS: dict[str, RGB] = {
    "red": (200, 45, 40), "orange": (235, 125, 35), "yellow": (238, 198, 48),
    "green": (70, 160, 70), "blue": (45, 95, 200), "purple": (125, 65, 170),
    "pink": (232, 125, 170), "brown": (135, 85, 45), "black": (42, 42, 46),
    "white": (238, 238, 235), "grey": (135, 135, 140), "teal": (35, 150, 150),
}
_CHROMATIC = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "teal")

#: Colours of the fixed roles, and the words base captions use for them.
FIXED_COLOURS: dict[str, RGB] = {
    "dark": (45, 45, 50), "light": (226, 232, 238), "wood": (150, 100, 55),
    "leaf": (70, 150, 60), "metal": (160, 165, 172), "flame": (245, 175, 40),
    "red": (215, 45, 35), "amber": (245, 185, 35), "green": (50, 175, 75),
}
FIXED_COLOUR_NAMES: dict[str, str] = {
    "dark": "black", "light": "white", "wood": "brown", "leaf": "green", "metal": "grey",
    "flame": "yellow", "red": "red", "amber": "yellow", "green": "green",
}


@dataclass(frozen=True)
class Colours:
    """Per-image colour choice: role -> RGB, and the names of the principal colours."""

    roles: dict[str, RGB]
    main_name: str
    accent_name: str


def pick_colours(rng: np.random.Generator) -> Colours:
    """Random principal/accent colours plus the fixed roles."""
    names = list(NAMED_COLOURS)
    main = names[int(rng.integers(len(names)))]
    acc_choices = [c for c in _CHROMATIC if c != main]
    accent = acc_choices[int(rng.integers(len(acc_choices)))]
    roles = dict(FIXED_COLOURS)
    roles["main"] = NAMED_COLOURS[main]
    roles["accent"] = NAMED_COLOURS[accent]
    return Colours(roles, main, accent)


#: Surface patterns drawn into the object's main-colour fill (an attribute of AO images), in
#: the words captions use for them. ``plain`` is the main colour alone.
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted")


@dataclass(frozen=True)
class Look:
    """A chosen appearance of the object's main part (role ``"main"``).

    Attributes:
        colour: a :data:`NAMED_COLOURS` name; replaces the random principal colour.
        pattern: a :data:`PATTERNS` name, drawn into the main-colour fill.
    """

    colour: str
    pattern: str = "plain"

    def __post_init__(self) -> None:
        from ..util.validate import check_choice

        check_choice("colour", self.colour, list(NAMED_COLOURS))
        check_choice("pattern", self.pattern, PATTERNS)


def with_main_colour(col: Colours, colour: str) -> Colours:
    """``col`` with the principal colour set to ``colour`` (the accent moves to the next
    chromatic colour if it would be the same); draws no random numbers."""
    accent = col.accent_name
    if accent == colour:
        k = _CHROMATIC.index(accent)
        accent = next(c for c in _CHROMATIC[k + 1:] + _CHROMATIC[:k] if c != colour)
    roles = dict(col.roles, main=NAMED_COLOURS[colour], accent=NAMED_COLOURS[accent])
    return Colours(roles, colour, accent)


# --------------------------------------------------------------------------------------------
# small helpers


def _px(w64: float, W: int) -> int:
    """Stroke width given in pixels at 64 px output -> canvas pixels (at least 1)."""
    return max(1, int(round(w64 * W / 64)))


def _xy(p: np.ndarray, W: int) -> list[float]:
    return (p * W).ravel().tolist()



def _draw_primitives(d, prims, W: int, fills: dict, outline, outline_width: int, line) -> None:
    """Filled polygons in their role's colour with an outline; every other primitive the
    strokes, bottom first, that ``line(primitive)`` lists as (colour, width)."""
    for p in prims:
        if p.kind == "poly" and p.filled:
            d.polygon(_xy(p.pts, W), fill=fills[p.role])
            _stroke(d, p.pts, W, outline, outline_width, closed=True)
        else:
            for colour, width in line(p):
                _stroke(d, p.pts, W, colour, width, closed=p.kind == "poly")

def _stroke(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, fill: int | RGB, width: int,
            closed: bool = False, caps: bool = True) -> None:
    """Polyline with curved joints and (optionally) round caps."""
    q = np.concatenate([p, p[:1]]) if closed else p
    # Pillow draws rounded joints one by one (slow): use them on short polylines with sharp
    # corners; on long smooth ones the notches are invisible unless strokes are very thick
    joint = "curve" if width > 2 and len(q) <= 9 else None
    d.line(_xy(q, W), fill=fill, width=width, joint=joint)
    if joint is None and width > 6:
        r = width / 2 - 0.5
        for x, y in (q[1:-1] * W).tolist():
            d.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    if caps and not closed and width > 2:
        r = width / 2 - 0.5
        for x, y in (q[0] * W, q[-1] * W):
            d.ellipse(_box(x - r, y - r, x + r, y + r), fill=fill)


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """Corner-ordered box (Pillow rejects boxes with x1 < x0 or y1 < y0)."""
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip8(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0, 255).astype(np.uint8)


def _saturate(c: RGB, s: float, gain: float = 1.0) -> RGB:
    v = np.asarray(c, float)
    m = v.mean()
    out = (m + (v - m) * s) * gain
    return tuple(int(x) for x in np.clip(out, 0, 255))  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _tiles(W: int) -> dict[str, np.ndarray]:
    """Fixed noise textures (``2W x 2W`` float32, deterministic); images crop them at random."""
    g = np.random.default_rng(12345)
    T = 2 * W
    fine = g.standard_normal((T, T)).astype(np.float32)
    frac = np.zeros((T, T), np.float32)
    for k, amp in ((4, 1.0), (8, 0.6), (16, 0.4), (32, 0.3), (64, 0.2)):
        small = Image.fromarray(g.standard_normal((k, k)).astype(np.float32), mode="F")
        frac += amp * np.asarray(small.resize((T, T), Image.BICUBIC))
    frac /= frac.std()
    grain = fine * 2 + sum(np.roll(fine, s, axis=ax) for s in (-1, 1) for ax in (0, 1))
    grain = grain / grain.std()
    # directional streaks (brush / paper fibres): blur along x only
    streak_img = Image.fromarray(fine, mode="F").resize((T // 8, T), Image.BILINEAR)
    streak = np.asarray(streak_img.resize((T, T), Image.BICUBIC))
    streak = streak / streak.std()
    yy, xx = np.mgrid[0:W, 0:W].astype(np.float32) / W
    ground = 0.7 * frac + 0.3 * grain
    wood = 0.6 * streak.T + 0.4 * frac
    return {"fine": fine, "frac": frac, "grain": grain.astype(np.float32),
            "streak": streak.astype(np.float32), "ground": ground.astype(np.float32),
            "wood": wood.astype(np.float32), "xx": xx, "yy": yy,
            "x1": (np.arange(W, dtype=np.float32) + 0.5) / W}


def _crop(tile: np.ndarray, W: int, rng: np.random.Generator) -> np.ndarray:
    ox, oy = rng.integers(0, tile.shape[0] - W, 2)
    return tile[oy:oy + W, ox:ox + W]


def _finish(img: Image.Image, size: int) -> Image.Image:
    return img.reduce(img.width // size) if img.width != size else img


def _mask_of(prims: list[Prim], W: int, line_w: int) -> Image.Image:
    m = Image.new("L", (W, W), 0)
    d = ImageDraw.Draw(m)
    for p in prims:
        if p.kind == "poly" and p.filled:
            d.polygon(_xy(p.pts, W), fill=255)
        else:
            _stroke(d, p.pts, W, 255, max(1, int(line_w * p.width)), closed=p.kind == "poly")
    return m


# --------------------------------------------------------------------------------------------
# clipart


def render_clipart(cls: ObjectClass, rng: np.random.Generator, size: int) -> Image.Image:
    """Flat saturated fills, thick dark outlines, white, pastel or flat-scene background."""
    W = size * SS
    prims, plc = place(cls.build(rng), rng, extent=(0.62, 0.88), max_rot_deg=cls.max_rot_deg)
    col = pick_colours(rng)
    u = rng.random()
    pastel = _saturate(NAMED_COLOURS[_CHROMATIC[int(rng.integers(len(_CHROMATIC)))]], 0.5, 1.0)
    pastel = tuple(int(255 - (255 - c) * rng.uniform(0.3, 0.7)) for c in pastel)
    # clip art is as often set on a coloured background or a flat little scene as on white
    bg: RGB = (255, 255, 255) if u < 0.55 else pastel  # type: ignore[assignment]
    img = Image.new("RGB", (W, W), bg)
    d = ImageDraw.Draw(img)
    if 0.4 <= u < 0.55:  # a pastel badge behind the object
        r = plc.extent * W * 0.62
        cx, cy = plc.cx * W, plc.cy * W
        d.ellipse(_box(cx - r, cy - r, cx + r, cy + r), fill=pastel)
    elif u >= 0.8:  # flat ground under a flat sky
        ground = _saturate(NAMED_COLOURS[("green", "brown", "yellow")[int(rng.integers(3))]], 0.8, 1.1)
        d.rectangle(_box(0, W * rng.uniform(0.55, 0.8), W, W), fill=ground)
    ow = _px(rng.uniform(2.2, 3.2), W)
    lw = _px(2.4, W)
    ink = (int(rng.integers(15, 60)),) * 3
    sat = {k: _saturate(v, 1.35, 1.08) for k, v in col.roles.items()}

    def lines(p) -> list[tuple]:  # dark lines: ink only; others: an ink halo under the colour
        w = max(1, int(lw * p.width))
        return [(ink, w + ow // 2)] if p.role == "dark" else [(ink, w + ow), (sat[p.role], w)]

    _draw_primitives(d, prims, W, sat, ink, ow, lines)
    return _finish(img, size)


# --------------------------------------------------------------------------------------------
# sketch


def _jitter(p: np.ndarray, rng: np.random.Generator, sd: float) -> np.ndarray:
    return p + rng.normal(0, sd, p.shape)


def _hatch(S: int, angle: float, spacing: float, width: float) -> np.ndarray:
    """Antialiased parallel-line pattern in ``[0, 1]`` (1 on a line), ``(S, S)`` float32.

    ``spacing`` and ``width`` are in pixels of the ``S x S`` output.
    """
    t = _tiles(S)
    proj = (t["xx"] * np.cos(angle) + t["yy"] * np.sin(angle)) * (S / spacing)
    dist = np.abs(proj - np.floor(proj) - 0.5) * spacing  # distance to the nearest line, px
    return np.clip(width / 2 + 0.5 - dist, 0, 1)


def render_sketch(cls: ObjectClass, rng: np.random.Generator, size: int) -> Image.Image:
    """Graphite outlines with hatching and smudges on grainy (scanned or photographed) paper."""
    W = size * SS
    prims, _ = place(cls.build(rng), rng, extent=(0.6, 0.88), max_rot_deg=cls.max_rot_deg)
    ink = Image.new("L", (W, W), 0)
    hatch_m = Image.new("L", (W, W), 0)
    tone = Image.new("L", (W, W), 0)
    di, dh, dt = ImageDraw.Draw(ink), ImageDraw.Draw(hatch_m), ImageDraw.Draw(tone)
    w = _px(rng.uniform(2.1, 2.9), W)
    g = int(rng.uniform(175, 230))  # ink darkness of the main stroke
    sd = 0.004
    p_hatch = rng.uniform(0.3, 0.8)
    for p in prims:
        if p.detail and rng.random() < 0.15:
            continue
        if p.kind == "poly" and p.filled:
            xy = _xy(p.pts, W)
            for dd in (di, dh, dt):  # occlusion: erase what is behind this part
                dd.polygon(xy, fill=0)
            dark = p.role == "dark"
            if dark or rng.random() < p_hatch:
                dh.polygon(xy, fill=255 if dark else 170)
            elif rng.random() < 0.4:
                dt.polygon(xy, fill=int(rng.uniform(25, 60)))
            _stroke(di, _jitter(p.pts, rng, sd), W, g, w, closed=True)
            if rng.random() < 0.45:
                _stroke(di, _jitter(p.pts, rng, sd * 2), W, int(g * 0.55), max(1, w - 1),
                        closed=True)
        else:
            ww = max(_px(2.0, W), int(w * min(p.width, 1.5)))
            _stroke(di, _jitter(p.pts, rng, sd), W, g, ww, closed=p.kind == "poly")
    S = size
    t = _tiles(S)
    k = S / 64
    ang = rng.uniform(0.5, 1.1) * (1 if rng.random() < 0.5 else -1) + np.pi / 2
    hatch = _hatch(S, ang, spacing=5.0 * k, width=2.0 * k)
    hm = np.asarray(hatch_m.reduce(SS), np.float32) / 255
    cross = (hm > 0.9) * _hatch(S, ang + np.pi / 2.2, spacing=5.0 * k, width=1.8 * k)
    dark_ink = np.maximum(np.asarray(ink.reduce(SS), np.float32) / 255,
                          np.maximum(hm * np.maximum(hatch, cross) * 0.75,
                                     np.asarray(tone.reduce(SS), np.float32) / 255))
    paper = rng.uniform(228, 248)
    if rng.random() < 0.5:  # photographed rather than scanned: grey, unevenly lit paper
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
        ang = rng.uniform(0, 2 * np.pi)
        paper = rng.uniform(165, 215) + rng.uniform(15, 35) * (np.cos(ang) * xx + np.sin(ang) * yy - 0.5)
    grain = _crop(t["grain"], S, rng)
    pencil = 0.8 + 0.1 * np.clip(grain, -2, 2)
    out = paper + 3.0 * grain + 2.0 * _crop(t["streak"], S, rng) - dark_ink * pencil * (paper - 35)
    a = _clip8(out)
    rgb = np.stack([a, a, _clip8(out - 3)], axis=-1)  # very slightly warm paper
    return Image.fromarray(rgb, "RGB")


# --------------------------------------------------------------------------------------------
# quickdraw


def _simplify(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fewer vertices for smooth outlines (circles become crude polygons)."""
    n = len(p)
    if n > 20:
        k = max(6, int(n / rng.uniform(2.0, 3.5)))
        p = p[np.linspace(0, n - 1, k).round().astype(int)]
    return p


def render_quickdraw(cls: ObjectClass, rng: np.random.Generator, size: int) -> Image.Image:
    """Thin, crude black strokes on white: distorted, simplified, jittered, incomplete; no fill.

    Doodles are drawn from memory in seconds: proportions are off (a random shear and stretch of
    the whole object), lines wobble, and most details and often a structural part are missing.
    """
    W = size * SS
    prims, plc = place(cls.build(rng), rng, extent=(0.45, 0.95), max_rot_deg=2 * cls.max_rot_deg)
    c = np.array([plc.cx, plc.cy])
    a = np.array([[rng.uniform(0.6, 1.4), rng.uniform(-0.35, 0.35)],
                  [rng.uniform(-0.35, 0.35), rng.uniform(0.6, 1.4)]])
    prims = [replace(p, pts=(p.pts - c) @ a.T + c) for p in prims]
    img = Image.new("L", (W, W), 255)
    d = ImageDraw.Draw(img)
    w = _px(rng.uniform(1.2, 2.0), W)
    sd = plc.extent * rng.uniform(0.03, 0.06)
    # a structural part is often left out (at most one, of an object with four or more, never a
    # large one), details nearly always
    bbox = [float(np.prod(p.pts.max(0) - p.pts.min(0))) for p in prims]
    struct = [i for i, p in enumerate(prims) if not p.detail]
    small = sorted(struct, key=lambda i: bbox[i])[: len(struct) // 2] if len(struct) >= 4 else []
    drop = small[int(rng.integers(len(small)))] if small and rng.random() < 0.6 else -1
    for i, p in enumerate(prims):
        if i == drop or (p.detail and rng.random() < 0.85):
            continue
        closed = p.kind == "poly"
        q = _jitter(_simplify(p.pts, rng), rng, sd)
        if closed and len(q) >= 4 and rng.random() < 0.3:
            s = int(rng.integers(len(q)))
            q = np.roll(q, -s, axis=0)  # open outline: leave out the closing segment
            closed = False
        _stroke(d, q, W, 0, w, closed=closed)
    return _finish(img, size).convert("RGB")


# --------------------------------------------------------------------------------------------
# infograph

_SCHEMES: tuple[tuple[RGB, ...], ...] = (
    ((38, 70, 83), (42, 157, 143), (233, 196, 106), (244, 162, 97), (231, 111, 81)),
    ((0, 48, 73), (214, 40, 40), (247, 127, 0), (252, 191, 73), (234, 226, 183)),
    ((61, 64, 91), (129, 178, 154), (242, 204, 143), (224, 122, 95), (244, 241, 222)),
    ((17, 138, 178), (6, 214, 160), (255, 209, 102), (239, 71, 111), (7, 59, 76)),
    ((88, 24, 69), (144, 12, 63), (199, 0, 57), (255, 87, 51), (255, 195, 0)),
    ((35, 61, 77), (254, 127, 45), (252, 202, 70), (161, 193, 129), (97, 155, 138)),
)


def _text_block(d: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float,
                rng: np.random.Generator, W: int, colour: RGB) -> None:
    """Rows of short bars that read as lines of text."""
    h = _px(rng.uniform(1.6, 2.2), W)
    gap = int(h * rng.uniform(1.6, 2.2))
    y = y0
    while y + h <= y1:
        x = x0
        end = x1 - (x1 - x0) * rng.uniform(0, 0.35)
        while x < end:
            wlen = (x1 - x0) * rng.uniform(0.12, 0.35)
            d.rectangle(_box(x, y, min(x + wlen, end), y + (h - 1)), fill=colour)
            x += wlen + h * 1.2
        y += gap


def _chart(d: ImageDraw.ImageDraw, box: tuple[float, float, float, float],
           rng: np.random.Generator, W: int, scheme: tuple[RGB, ...], ink: RGB) -> None:
    x0, y0, x1, y1 = box
    kind = rng.integers(3)
    if kind == 0:  # bar chart with an axis
        k = int(rng.integers(3, 6))
        bw = (x1 - x0) / (k * 1.5)
        for i in range(k):
            h = (y1 - y0) * rng.uniform(0.2, 0.95)
            bx = x0 + bw * 0.3 + i * bw * 1.5
            d.rectangle(_box(bx, y1 - h, bx + bw, y1), fill=scheme[(i + 1) % len(scheme)])
        d.line((x0, y1, x1, y1), fill=ink, width=_px(1.2, W))
        d.line((x0, y0, x0, y1), fill=ink, width=_px(1.2, W))
    elif kind == 1:  # pie / donut
        r = min(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        cuts = np.sort(rng.uniform(0, 360, int(rng.integers(2, 5))))
        bounds_ = np.concatenate([cuts, [cuts[0] + 360]])
        for i in range(len(cuts)):
            d.pieslice(_box(cx - r, cy - r, cx + r, cy + r), float(bounds_[i]), float(bounds_[i + 1]),
                       fill=scheme[(i + 1) % len(scheme)])
        if rng.random() < 0.5:
            d.ellipse(_box(cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5), fill=(255, 255, 255))
    else:  # row of numbered dots with a connecting line
        k = int(rng.integers(3, 5))
        r = min((x1 - x0) / (2.6 * k), (y1 - y0) / 2)
        cy = (y0 + y1) / 2
        xs = np.linspace(x0 + r, x1 - r, k)
        d.line((xs[0], cy, xs[-1], cy), fill=ink, width=_px(1.0, W))
        for i, x in enumerate(xs):
            d.ellipse(_box(x - r, cy - r, x + r, cy + r), fill=scheme[(i + 1) % len(scheme)])


def render_infograph(cls: ObjectClass, rng: np.random.Generator, size: int) -> Image.Image:
    """Small flat icon on a panel among title bars, text blocks and charts."""
    W = size * SS
    scheme = _SCHEMES[int(rng.integers(len(_SCHEMES)))]
    order = rng.permutation(len(scheme))
    sch = tuple(scheme[i] for i in order)
    bg: RGB = (255, 255, 255) if rng.random() < 0.6 else tuple(  # type: ignore[assignment]
        int(255 - (255 - c) * 0.12) for c in sch[-1])
    img = Image.new("RGB", (W, W), bg)
    d = ImageDraw.Draw(img)
    text: RGB = (int(rng.integers(50, 110)),) * 3  # type: ignore[assignment]
    # title band
    th = W * rng.uniform(0.11, 0.17)
    top = rng.random() < 0.75
    ty0 = 0 if top else W - th
    d.rectangle(_box(0, ty0, W, ty0 + th), fill=sch[0])
    _text_block(d, W * 0.08, ty0 + th * 0.3, W * rng.uniform(0.55, 0.9), ty0 + th * 0.75, rng, W,
                (255, 255, 255))
    area = (0.0, th, W, W) if top else (0.0, 0.0, W, W - th)
    ay0, ay1 = area[1], area[3]
    # icon panel: left or right, occupying 48-60% of the width
    pw = W * rng.uniform(0.48, 0.6)
    left = rng.random() < 0.5
    px0 = W * 0.04 if left else W - pw - W * 0.04
    ph = min(pw, (ay1 - ay0) * 0.9)
    py0 = ay0 + (ay1 - ay0 - ph) * rng.uniform(0.1, 0.9)
    panel = _saturate(sch[int(rng.integers(1, len(sch)))], 0.6)
    panel = tuple(int(255 - (255 - c) * 0.35) for c in panel)
    shape = rng.integers(3)
    if shape == 0:
        d.rounded_rectangle(_box(px0, py0, px0 + pw, py0 + ph), radius=W * 0.05, fill=panel)
    elif shape == 1:
        d.ellipse(_box(px0, py0, px0 + pw, py0 + ph), fill=panel)
    else:
        d.rectangle(_box(px0, py0, px0 + pw, py0 + ph), fill=panel)
    # the icon, flat in scheme colours
    box = ((px0 + pw * 0.1) / W, (py0 + ph * 0.1) / W, (px0 + pw * 0.9) / W, (py0 + ph * 0.9) / W)
    prims, _ = place(cls.build(rng), rng, extent=(0.9, 1.0), box=box,
                     max_rot_deg=cls.max_rot_deg * 0.5, margin=0.0)
    roles = dict(FIXED_COLOURS)
    roles["main"], roles["accent"] = sch[1], sch[2]
    roles["dark"] = sch[0] if sum(sch[0]) < 300 else (40, 40, 50)
    ow = _px(rng.uniform(1.0, 1.6), W)
    outline = roles["dark"] if rng.random() < 0.6 else (255, 255, 255)
    _draw_primitives(d, prims, W, roles, outline, ow, lambda p: [(
        roles[p.role] if p.role != "light" else roles["dark"], max(1, int(_px(1.8, W) * p.width)))])
    # the other side: text and a chart
    sx0 = W * 0.06 if not left else px0 + pw + W * 0.06
    sx1 = px0 - W * 0.06 if not left else W * 0.95
    mid = ay0 + (ay1 - ay0) * rng.uniform(0.4, 0.6)
    chart_first = rng.random() < 0.5
    c_box = (sx0, ay0 + W * 0.05, sx1, mid - W * 0.04) if chart_first else \
        (sx0, mid + W * 0.03, sx1, ay1 - W * 0.05)
    t_box = (sx0, mid + W * 0.03, sx1, ay1 - W * 0.04) if chart_first else \
        (sx0, ay0 + W * 0.05, sx1, mid - W * 0.03)
    _chart(d, c_box, rng, W, sch, text)
    _text_block(d, *t_box, rng, W, text)
    # a few text lines under/over the panel
    if py0 + ph + W * 0.08 < ay1:
        _text_block(d, px0, py0 + ph + W * 0.03, px0 + pw, ay1 - W * 0.02, rng, W, text)
    return _finish(img, size)


# --------------------------------------------------------------------------------------------
# painting

_PAINT_PALETTE: tuple[RGB, ...] = (
    (222, 196, 140), (196, 120, 70), (120, 140, 170), (70, 95, 150), (150, 160, 90),
    (90, 120, 70), (210, 170, 120), (170, 90, 80), (230, 215, 180), (110, 90, 120),
    (200, 150, 90), (140, 170, 180),
)


def _brush_strokes(d: ImageDraw.ImageDraw, rng: np.random.Generator, S: int, xs: np.ndarray,
                   ys: np.ndarray, colours: np.ndarray, w64: tuple[float, float],
                   len64: tuple[float, float], angle: float) -> None:
    """Short thick strokes centred at ``(xs, ys)`` (pixels) with ``(n, 3)`` colours."""
    n = len(xs)
    k = S / 64
    ws = np.maximum(1, np.round(rng.uniform(*w64, n) * k)).astype(int).tolist()
    ls = rng.uniform(*len64, n) * k / 2
    angs = angle + rng.normal(0, 0.35, n)
    dx, dy = np.cos(angs) * ls, np.sin(angs) * ls
    seg = np.stack([xs - dx, ys - dy, xs + dx, ys + dy], 1).tolist()
    cols = [tuple(c) for c in _clip8(colours).tolist()]
    for i in range(n):
        d.line(seg[i], fill=cols[i], width=ws[i])


def _role_table(roles: dict[str, RGB], rng: np.random.Generator, sat: float, gain: float,
                sd: float) -> dict[str, RGB]:
    """Saturation/gain change plus per-role colour noise, in one vectorised step."""
    keys = list(roles)
    v = np.asarray([roles[k] for k in keys], np.float32)
    m = v.mean(axis=1, keepdims=True)
    v = (m + (v - m) * sat) * gain + rng.normal(0, sd, v.shape)
    return {k: tuple(c) for k, c in zip(keys, _clip8(v).tolist(), strict=True)}  # type: ignore[misc]


def render_painting(cls: ObjectClass, rng: np.random.Generator, size: int) -> Image.Image:
    """Brushy background and object, blur, canvas texture, palette shift (drawn at 1x)."""
    S = size
    t = _tiles(S)
    pal = np.asarray([_PAINT_PALETTE[i] for i in rng.permutation(len(_PAINT_PALETTE))[:4]],
                     np.float32)
    hz = rng.uniform(0.4, 0.75) * S
    grad = np.clip((t["x1"][:, None] * S - hz) / (0.5 * S) + 0.5, 0, 1)   # (S, 1)
    a = (pal[0] * (1 - grad) + pal[1] * grad)[:, None, :] + 10 * _crop(t["frac"], S, rng)[..., None]
    img = Image.fromarray(_clip8(a), "RGB")
    d = ImageDraw.Draw(img)
    ang = rng.uniform(-0.3, 0.3) + (0 if rng.random() < 0.7 else np.pi / 2)
    n = 34
    xs, ys = rng.uniform(0, S, n), rng.uniform(0, S, n)
    cols = np.where((ys < hz)[:, None], pal[0], pal[1]) + rng.normal(0, 16, (n, 3))
    _brush_strokes(d, rng, S, xs, ys, cols, (3.0, 6.0), (8, 20), ang)
    for _ in range(int(rng.integers(1, 4))):  # a few soft masses (trees, hills, clouds)
        c = pal[2 + int(rng.integers(2))]
        cx, cy, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0.08, 0.2) * S
        m = 10
        xs, ys = rng.uniform(cx - r, cx + r, m), rng.uniform(cy - r * 0.6, cy + r * 0.6, m)
        _brush_strokes(d, rng, S, xs, ys, c + rng.normal(0, 14, (m, 3)), (3.0, 5.0), (6, 14), ang)
    # object: wobbly flat shapes, then strokes that pick up the local colour
    prims, plc = place(cls.build(rng), rng, extent=(0.58, 0.85), max_rot_deg=cls.max_rot_deg)
    col = pick_colours(rng)
    roles = _role_table(col.roles, rng, rng.uniform(0.7, 1.15), 1.0, 12)
    obj = Image.new("RGB", (S, S), (0, 0, 0))
    do = ImageDraw.Draw(obj)
    lw = _px(2.4, S)
    sd = 0.006
    outline = rng.random() < 0.45
    for p in prims:
        q = _jitter(p.pts, rng, sd)
        c = roles[p.role]
        if p.kind == "poly" and p.filled:
            do.polygon(_xy(q, S), fill=c)
            if outline:
                _stroke(do, q, S, _saturate(c, 1.0, 0.45), _px(1.2, S), closed=True, caps=False)
        else:
            _stroke(do, q, S, c, max(1, int(lw * p.width)), closed=p.kind == "poly", caps=False)
    mask = _mask_of(prims, S * SS, lw * SS).reduce(SS)
    # keep the object readable: push its colours away from the background it covers
    inside = np.asarray(mask) > 128
    oa = np.asarray(obj, np.float32)
    if inside.any():
        diff = oa[inside].mean(axis=0) - np.asarray(img, np.float32)[inside].mean(axis=0)
        dist = float(np.linalg.norm(diff))
        if dist < 80:
            direction = diff / dist if dist > 1 else np.full(3, 0.577 * (1 if rng.random() < 0.5 else -1))
            oa = oa + (direction * (80 - dist)).astype(np.float32)
    oa = _clip8(oa)
    obj = Image.fromarray(oa, "RGB")
    do = ImageDraw.Draw(obj)
    inside = np.flatnonzero(inside)
    if len(inside):
        n = 24
        pick = inside[rng.integers(0, len(inside), n)]
        ys, xs = np.divmod(pick, S)
        cols = oa[ys, xs].astype(np.float32) + rng.normal(0, 18, (n, 3))
        _brush_strokes(do, rng, S, xs + 0.5, ys + 0.5, cols, (1.5, 3.0), (3, 7),
                       rng.uniform(0, np.pi))
    img.paste(obj, (0, 0), mask)
    img = img.filter(ImageFilter.BoxBlur(rng.uniform(0.5, 0.9) * S / 64))
    a = np.asarray(img, np.float32)
    canvas = 1 + 0.04 * _crop(t["grain"], S, rng) + 0.025 * _crop(t["streak"], S, rng)
    s = rng.uniform(0.75, 1.3)
    m = (a @ _THIRDS)[..., None]
    a = (m + (a - m) * s) * canvas[..., None] + rng.normal(0, 18, 3).astype(np.float32)
    return Image.fromarray(_clip8(a), "RGB")


# --------------------------------------------------------------------------------------------
# real (and the natural base set)

#: Background kinds of natural scenes, with the caption phrases that describe them.
SCENES: dict[str, tuple[str, ...]] = {
    "grass": ("on a grassy field", "on the grass", "in a green meadow"),
    "beach": ("on a sandy beach", "on the sand", "by the sea"),
    "snow": ("in the snow", "on snowy ground"),
    "street": ("on a city street", "on the pavement", "by the road"),
    "table": ("on a wooden table", "on a tabletop"),
    "room": ("in a room", "indoors against a wall", "in front of a plain wall"),
    "sky": ("against a blue sky", "in the sky", "under a clear sky"),
    "sunset": ("at sunset", "against an orange evening sky"),
}

# sky top, sky at horizon, ground, ground texture amplitude, horizon range
_SCENE_LOOK: dict[str, tuple[RGB, RGB, RGB, float, tuple[float, float]]] = {
    "grass": ((95, 150, 215), (180, 210, 235), (80, 135, 60), 0.16, (0.35, 0.6)),
    "beach": ((80, 150, 220), (175, 215, 240), (220, 200, 150), 0.08, (0.35, 0.55)),
    "snow": ((150, 175, 205), (215, 225, 235), (236, 240, 246), 0.04, (0.35, 0.6)),
    "street": ((150, 160, 175), (200, 205, 210), (105, 105, 110), 0.1, (0.3, 0.5)),
    "table": ((200, 185, 165), (215, 200, 180), (140, 95, 60), 0.12, (0.2, 0.45)),
    "room": ((205, 200, 185), (225, 220, 205), (165, 140, 110), 0.07, (0.55, 0.8)),
    "sky": ((60, 120, 210), (160, 200, 240), (160, 200, 240), 0.0, (1.0, 1.0)),
    "sunset": ((90, 70, 130), (245, 150, 80), (70, 60, 60), 0.1, (0.55, 0.75)),
}


def _scene_background(kind: str, rng: np.random.Generator, S: int) -> Image.Image:
    """Textured sky/ground (or wall/floor) with distractors, blurred (depth of field); 1x."""
    t = _tiles(S)
    top, hor, ground, amp, hz_rng = _SCENE_LOOK[kind]
    hz = float(rng.uniform(*hz_rng))
    y = t["x1"][:, None]                                   # (S, 1) row coordinate
    sky_t = np.clip(y / max(hz, 1e-3), 0, 1)
    sky = np.asarray(top, np.float32) * (1 - sky_t) + np.asarray(hor, np.float32) * sky_t  # (S, 3)
    gcol = np.asarray(ground, np.float32) + rng.normal(0, 12, 3).astype(np.float32)
    depth = np.clip((y - hz) / max(1 - hz, 1e-3), 0, 1)
    gnd = gcol * (0.85 + 0.3 * depth)                       # (S, 3)
    frac = _crop(t["frac"], S, rng)
    tex = _crop(t["wood"] if kind == "table" else t["ground"], S, rng)
    hr = min(S, max(0, int(round(hz * S))))
    a = np.empty((S, S, 3), np.float32)
    a[:hr] = sky[:hr, None, :] + 6 * frac[:hr, :, None]
    a[hr:] = gnd[hr:, None, :] * (1 + amp * tex[hr:, :, None])
    img = Image.fromarray(_clip8(a), "RGB")
    d = ImageDraw.Draw(img)
    hzp = hz * S
    n = int(rng.integers(3, 9))
    u = rng.random((n, 6))
    for i in range(n):  # distractors: clouds in the sky, bushes/rocks or furniture below
        x = (u[i, 0] * 1.2 - 0.1) * S
        if kind in ("sky", "sunset") or (u[i, 1] < 0.3 and hz < 0.95):
            y = (0.02 + u[i, 2] * max(0.03, hz - 0.12)) * S
            r = (0.05 + 0.09 * u[i, 3]) * S
            c = (245, 245, 248) if kind != "sunset" else (240, 170, 120)
            d.ellipse(_box(x - r, y - r * 0.45, x + r, y + r * 0.45), fill=c)
        else:
            y = hzp + u[i, 2] * (S * 1.05 - hzp)
            r = (0.03 + 0.07 * u[i, 3]) * S * (0.6 + 0.6 * (y - hzp) / max(S - hzp, 1))
            k = int(u[i, 4] * 3)
            if kind in ("room", "table"):
                c = ((120, 110, 100), (150, 60, 50), (60, 90, 130))[k]
                d.rectangle(_box(x - r, y - r * 1.4, x + r, y), fill=c)
            else:
                c = ((60, 110, 50), (120, 115, 105), (90, 80, 60))[k]
                d.ellipse(_box(x - r, y - r * 0.6, x + r, y + r * 0.3), fill=c)
    if kind in ("room", "street") and rng.random() < 0.7:  # a window / building edge
        x = rng.uniform(0, 0.8) * S
        y0 = rng.uniform(0.02, 0.2) * S
        y1 = max(y0 + 0.1 * S, hzp - rng.uniform(0.05, 0.2) * S)
        d.rectangle(_box(x, y0, x + rng.uniform(0.1, 0.3) * S, y1),
                    fill=(185, 195, 205) if kind == "room" else (150, 140, 130))
    return img.filter(ImageFilter.BoxBlur(rng.uniform(0.6, 1.4) * S / 64))


def _main_fill_mask(prims_list: list[list[Prim]], W: int, lw: int, edge: int) -> Image.Image:
    """``W x W`` mask, 255 where the visible surface is a main-role filled polygon (later parts,
    outlines and edges drawn over it removed, in the renderer's drawing order)."""
    m = Image.new("L", (W, W), 0)
    d = ImageDraw.Draw(m)
    for prims in prims_list:
        for p in prims:
            if p.kind == "poly" and p.filled:
                d.polygon(_xy(p.pts, W), fill=255 if p.role == "main" else 0)
                _stroke(d, p.pts, W, 0, edge, closed=True, caps=False)
            else:
                _stroke(d, p.pts, W, 0, max(1, int(lw * p.width)), closed=p.kind == "poly")
    return m


def _pattern_field(pattern: str, W: int, ext: float, rng: np.random.Generator) -> np.ndarray:
    """``(W, W)`` bool: where a surface pattern's ink goes, on a canvas of ``W`` pixels.

    The period follows the object's extent ``ext`` (in image units, about five stripes or four
    dots across the object) and is at least 4 (stripes) / 5 (dots) output pixels, so that the
    pattern survives at 32 px; orientation and phase are drawn from ``rng``.
    """
    S = W / SS
    yy, xx = (np.mgrid[0:W, 0:W].astype(np.float32) + 0.5) / SS  # output-pixel units
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if pattern == "striped":
        period = max(4.0, ext * S / 5)
        phase = rng.uniform(0, period)
        return np.mod(u + phase, period) < period * 0.45
    period = max(5.0, ext * S / 4)
    du, dv = rng.uniform(0, period, 2)
    fu = np.mod(u + du, period) - period / 2
    fv = np.mod(v + dv, period) - period / 2
    return fu * fu + fv * fv < (0.3 * period) ** 2


def _pattern_ink(c: RGB) -> RGB:
    """The pattern's colour on a fill of colour ``c``: a dark shade of a light colour, a
    light tint of a dark one (the fill's hue stays recognisable)."""
    v = np.asarray(c, np.float32)
    lum = float(v @ np.asarray([0.299, 0.587, 0.114], np.float32))
    out = v * 0.4 if lum > 100 else v + (255 - v) * 0.6
    return tuple(int(x) for x in np.clip(out, 0, 255))  # type: ignore[return-value]


def _draw_shaded(bg: Image.Image, prims_list: list[list[Prim]], roles: dict[str, RGB],
                 rng: np.random.Generator, shadow: bool,
                 pattern: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Composite objects (drawn at ``SS``x) onto ``bg`` with a shading ramp, texture,
    highlight and a soft cast shadow.

    ``pattern`` (a :data:`PATTERNS` name, or None for the generator's default images, which
    then draw exactly as before) is drawn into the main-role fill. Returns the ``(S, S, 3)``
    float32 image and, with a pattern, the ``(S, S)`` bool mask of the pixels entirely
    covered by the main fill (else None).
    """
    S = bg.width
    W = S * SS
    t = _tiles(S)
    obj = Image.new("RGB", (W, W), (0, 0, 0))
    do = ImageDraw.Draw(obj)
    lw = _px(2.2, W)
    edge = _px(0.6, W)
    for prims in prims_list:
        for p in prims:
            c = roles[p.role]
            if p.kind == "poly" and p.filled:
                do.polygon(_xy(p.pts, W), fill=c)
                _stroke(do, p.pts, W, _saturate(c, 1.0, 0.7), edge, closed=True, caps=False)
            else:
                _stroke(do, p.pts, W, c, max(1, int(lw * p.width)), closed=p.kind == "poly")
    main: np.ndarray | None = None
    if pattern is not None:
        fill = np.asarray(_main_fill_mask(prims_list, W, lw, edge)) > 0
        if pattern != "plain":
            lo, hi = bounds(prims_list[0])
            ink_at = fill & _pattern_field(pattern, W, float((hi - lo).max()), rng)
            pixels = np.array(obj)
            pixels[ink_at] = _pattern_ink(roles["main"])
            obj = Image.fromarray(pixels, "RGB")
        main = np.asarray(Image.fromarray(fill.astype(np.uint8) * 255, "L").reduce(SS)) == 255
    mask = _mask_of([p for ps in prims_list for p in ps], W, lw).reduce(SS)
    base = np.asarray(bg, np.float32)
    if shadow:
        sh = Image.new("L", (S, S), 0)
        ds = ImageDraw.Draw(sh)
        for prims in prims_list:
            lo, hi = bounds(prims)
            cx, by, hw = (lo[0] + hi[0]) / 2 * S, hi[1] * S, (hi[0] - lo[0]) / 2 * S
            dx = rng.uniform(-0.3, 0.3) * hw
            ds.ellipse(_box(cx - hw * 1.05 + dx, by - S * 0.035, cx + hw * 1.05 + dx, by + S * 0.035),
                       fill=150)
        sa = np.asarray(sh.filter(ImageFilter.BoxBlur(2.5 * S / 64)), np.float32) / 255
        base = base * (1 - 0.55 * sa[..., None])
    la = rng.uniform(0, 2 * np.pi)
    lx, ly = float(np.cos(la)), float(np.sin(la))
    x1 = t["x1"] - 0.5
    shade = (1.05 - 0.8 * (x1[None, :] * lx + x1[:, None] * ly)) * (1 + 0.04 * _crop(t["frac"], S, rng))
    lo, hi = bounds(prims_list[0])
    ext = float((hi - lo).max())
    cx = float((lo[0] + hi[0]) / 2 - lx * ext * 0.22)
    cy = float((lo[1] + hi[1]) / 2 - ly * ext * 0.22)
    k = -0.5 / (ext * float(rng.uniform(0.12, 0.2))) ** 2
    g = np.exp(k * (t["x1"] - cx) ** 2)[None, :] * np.exp(k * (t["x1"] - cy) ** 2)[:, None]
    o = np.asarray(obj.reduce(SS), np.float32) * shade[..., None] + (70 * g)[..., None]
    m = np.asarray(mask, np.float32)[..., None] * (1 / 255)
    return base + (o - base) * m, main


def _camera(a: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Exposure, white balance, vignetting and sensor noise."""
    S = a.shape[0]
    t = _tiles(S)
    gain = (rng.uniform(0.85, 1.12) * (1 + rng.normal(0, 0.04, 3))).astype(np.float32)
    x1 = t["x1"] - 0.5
    vig = 1 - float(rng.uniform(0.2, 0.7)) * (x1[None, :] ** 2 + x1[:, None] ** 2)
    a = a * gain * vig[..., None] + float(rng.uniform(2, 6)) * _crop(t["fine"], S, rng)[..., None]
    return Image.fromarray(_clip8(a), "RGB")


def _natural_roles(col: Colours, rng: np.random.Generator) -> dict[str, RGB]:
    return _role_table(col.roles, rng, 0.85, 1.0, 10)


def render_real(cls: ObjectClass, rng: np.random.Generator, size: int) -> Image.Image:
    """A shaded object in a textured natural scene with clutter and camera effects."""
    return _render_real(cls, rng, size, None)[0]


def render_real_look(cls: ObjectClass, rng: np.random.Generator, size: int,
                     look: Look) -> tuple[Image.Image, np.ndarray]:
    """:func:`render_real` with a chosen main colour and surface pattern.

    The random draws are those of :func:`render_real` (the chosen colour replaces the drawn
    one), plus the pattern's orientation and phase. Returns the ``size x size`` RGB image and
    the ``(size, size)`` bool mask of the pixels entirely covered by the main-colour fill.
    """
    img, main = _render_real(cls, rng, size, look)
    assert main is not None
    return img, main


def _render_real(cls: ObjectClass, rng: np.random.Generator, size: int,
                 look: Look | None) -> tuple[Image.Image, np.ndarray | None]:
    kind = list(SCENES)[int(rng.integers(len(SCENES)))]
    bg = _scene_background(kind, rng, size)
    prims, plc = place(cls.build(rng), rng, extent=(0.55, 0.85), max_rot_deg=cls.max_rot_deg)
    col = pick_colours(rng)
    if look is not None:
        col = with_main_colour(col, look.colour)
    a, main = _draw_shaded(bg, [prims], _natural_roles(col, rng), rng,
                           shadow=kind not in ("sky", "sunset"),
                           pattern=None if look is None else look.pattern)
    return _camera(a, rng), main


@dataclass(frozen=True)
class BaseScene:
    """What a base image shows, for its caption: everything here was actually rendered."""

    cls: str
    count: int
    scene: str
    colour: str          # colour word of the object's dominant part
    accent: str | None   # second colour word if the object has accent parts
    size_word: str | None  # "small", "large", or None
    position: str | None   # "on the left", ... or None (centred / several objects)
    closeup: bool


def _dominant_colour(prims: list[Prim], col: Colours) -> str:
    area: dict[str, float] = {}
    for p in prims:
        if p.kind == "poly" and p.filled:
            area[p.role] = area.get(p.role, 0.0) + _area(p.pts)
    role = max(area, key=lambda k: area[k]) if area else "main"
    if role == "main":
        return col.main_name
    if role == "accent":
        return col.accent_name
    return FIXED_COLOUR_NAMES[role]


def _position_word(plc: Placement) -> str | None:
    if plc.cx < 0.4:
        return "on the left"
    if plc.cx > 0.6:
        return "on the right"
    if plc.cy < 0.4:
        return "near the top"
    if plc.cy > 0.6:
        return "near the bottom"
    return None


def render_base(cls: ObjectClass, rng: np.random.Generator, size: int) -> tuple[Image.Image, BaseScene]:
    """Natural-style image for the base set: 1-3 objects or a close-up, with its description."""
    kind = list(SCENES)[int(rng.integers(len(SCENES)))]
    bg = _scene_background(kind, rng, size)
    col = pick_colours(rng)
    roles = _natural_roles(col, rng)
    u = rng.random()
    count = 1 if u < 0.6 else (2 if u < 0.85 else 3)
    closeup = count == 1 and rng.random() < 0.2
    objs: list[list[Prim]] = []
    size_word: str | None = None
    position: str | None = None
    if closeup:
        posed = pose(cls.build(rng), rng, max_rot_deg=cls.max_rot_deg)
        ext = rng.uniform(1.05, 1.35)
        objs.append(fit(posed, 0.5 + rng.uniform(-0.08, 0.08), 0.5 + rng.uniform(-0.08, 0.08), ext))
    elif count == 1:
        prims, plc = place(cls.build(rng), rng, extent=(0.3, 0.88), max_rot_deg=cls.max_rot_deg)
        objs.append(prims)
        size_word = "small" if plc.extent < 0.45 else ("large" if plc.extent > 0.75 else None)
        position = _position_word(plc) if plc.extent < 0.7 else None
    else:
        for i in range(count):
            box = (i / count, 0.1, (i + 1) / count, 0.95)
            prims, _ = place(cls.build(rng), rng, extent=(0.75, 0.95), box=box,
                             max_rot_deg=cls.max_rot_deg, margin=0.01)
            objs.append(prims)
    a, _ = _draw_shaded(bg, objs, roles, rng, shadow=kind not in ("sky", "sunset") and not closeup)
    has_accent = any(p.role == "accent" for p in objs[0])
    dom = _dominant_colour(objs[0], col)
    accent = col.accent_name if has_accent and col.accent_name != dom else None
    scene = BaseScene(cls.name, count, kind, dom, accent, size_word, position, closeup)
    return _camera(a, rng), scene


#: Renderer per domain name (the six DomainNet domains).
RENDERERS: dict[str, Callable[[ObjectClass, np.random.Generator, int], Image.Image]] = {
    "clipart": render_clipart,
    "infograph": render_infograph,
    "painting": render_painting,
    "quickdraw": render_quickdraw,
    "real": render_real,
    "sketch": render_sketch,
}

__all__ = ["NAMED_COLOURS", "PATTERNS", "RENDERERS", "SCENES", "BaseScene", "Look", "pick_colours",
           "render_base", "render_real_look", "with_main_colour"]
