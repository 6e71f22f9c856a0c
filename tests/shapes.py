"""A tiny learnable DomainNet-format dataset (class = shape drawn with PIL) and mixture writer.

Two domains that differ in style: ``real`` (filled, coloured shape on a coloured, noisy
background) and ``sketch`` (black outline on white paper). A tiny CLIP learns the shapes in
seconds, so tests can check that training works and that zero-shot accuracy beats chance.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES: tuple[str, ...] = ("circle", "cross", "square", "star", "triangle", "wide_bar")
SHAPE_HELDOUT: tuple[str, ...] = ("star", "triangle")
SHAPE_DOMAINS: tuple[str, ...] = ("real", "sketch")
TERMS = {"real": "photo", "sketch": "sketch"}

#: An even tinier OpenCLIP config than the presets, for tests (32 px, 2 layers, width 32).
TEST_MODEL_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                   "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


def _outline(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def poly(points):
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if shape == "circle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a))
                for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    if shape == "square":
        return poly([(-r, -r), (r, -r), (r, r), (-r, r)])
    if shape == "triangle":
        return poly([(0, -r), (r, r * 0.8), (-r, r * 0.8)])
    if shape == "wide_bar":
        return poly([(-r, -r * 0.35), (r, -r * 0.35), (r, r * 0.35), (-r, r * 0.35)])
    if shape == "cross":
        w = r * 0.35
        return poly([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r),
                     (-w, w), (-r, w), (-r, -w), (-w, -w)])
    if shape == "star":
        return poly([((r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                      (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5))
                     for k in range(10)])
    raise ValueError(shape)


def draw(shape: str, domain: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """One ``size`` x ``size`` RGB image of ``shape`` in ``domain``'s style."""
    r = size * rng.uniform(0.28, 0.38)
    cx, cy = (size / 2 + rng.uniform(-2, 2) for _ in range(2))
    points = _outline(shape, cx, cy, r, rng.uniform(-0.25, 0.25))
    if domain == "real":
        bg = tuple(int(v) for v in rng.integers(150, 255, 3))
        fg = tuple(int(v) for v in rng.integers(0, 120, 3))
        image = Image.new("RGB", (size, size), bg)
        ImageDraw.Draw(image).polygon(points, fill=fg)
        noise = rng.integers(-12, 13, (size, size, 3))
        array = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        return Image.fromarray(array)
    image = Image.new("RGB", (size, size), (250, 250, 245))
    ImageDraw.Draw(image).line(points + points[:1], fill=(20, 20, 20), width=2)
    return image


def make_shapes_root(root: Path, n_train: int = 20, n_test: int = 6, seed: int = 0) -> Path:
    """Write the shapes dataset in the DomainNet layout (PNG files, split files, held-out
    list). Labels index the sorted class list, as in DomainNet."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for domain in SHAPE_DOMAINS:
        for split, n in (("train", n_train), ("test", n_test)):
            lines = []
            for label, cls in enumerate(SHAPE_CLASSES):
                (root / domain / cls).mkdir(parents=True, exist_ok=True)
                for j in range(n):
                    rel = f"{domain}/{cls}/{domain}_{split}_{cls}_{j:03d}.png"
                    draw(cls, domain, rng).save(root / rel)
                    lines.append(f"{rel} {label}")
            (root / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "heldout_classes.txt").write_text("\n".join(SHAPE_HELDOUT) + "\n")
    return root


def write_mixture(
    root: Path,
    out: Path,
    domains: Sequence[str] = SHAPE_DOMAINS,
    name: str = "toy",
    test_domain: str = "sketch",
    heldout: Sequence[str] | None = None,
    limit: int | None = None,
) -> Path:
    """Write a mixture TSV (``filepath title domain label``) of the training split of
    ``domains`` with simple captions, and its manifest; returns the TSV path."""
    from training.domainnet import class_names, heldout_classes, load_index
    from training.domains import display_name

    index = load_index(root, domains=domains, splits=("train",))
    if limit is not None:
        index = index.groupby(["domain", "class_name"]).head(limit)
    terms = {**TERMS, "clipart": "clipart", "painting": "painting", "quickdraw": "doodle",
             "infograph": "infograph"}
    lines = ["filepath\ttitle\tdomain\tlabel"]
    for row in index.itertuples():
        title = f"a {terms[row.domain]} of a {display_name(row.class_name)}."
        lines.append(f"{row.path}\t{title}\t{row.domain}\t{row.label}")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = "\n".join(lines) + "\n"
    out.write_text(data)
    manifest = {
        "name": name,
        "spec": {"setup": "toy", "test_domain": test_domain, "seed": 0,
                 "heldout": list(heldout or heldout_classes(root)),
                 "data_root": str(root)},
        "classes": list(class_names(root)),
        "counts": {"total": len(index)},
        "content_hash": hashlib.sha256(data.encode()).hexdigest(),
    }
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def write_model_config(path: Path, cfg: dict | None = None) -> Path:
    """Write an OpenCLIP model config JSON (default :data:`TEST_MODEL_CONFIG`)."""
    path.write_text(json.dumps(cfg or TEST_MODEL_CONFIG))
    return path
