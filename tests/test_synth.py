"""Tests of the procedural DomainNet-format generator (``training.synth``).

Small and fast: 32 px images, a few classes, 2-3 images per class.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.domains import DOMAIN_TERMS, DOMAINS, NEUTRAL_TERMS
from training.synth import (
    BASE_ONLY_CLASSES,
    FORBIDDEN_WORDS,
    OBJECT_CLASSES,
    RENDERERS,
    SYNTH_CLASSES,
    SYNTH_HELDOUT_CLASSES,
    SynthConfig,
    base_caption,
    contact_sheet,
    generate_dataset,
    image_rng,
    render_base,
)
from training.synth import generate as gen_mod
from training.synth.generate import SHEET_HEADER_H, SHEET_LABEL_W, SHEET_PAD

# two held-out classes and two others, deliberately not in sorted order
CLASSES = ("sun", "axe", "house", "candle")
HELDOUT_IN = ("axe", "candle")


def small_cfg(**kw: object) -> SynthConfig:
    args: dict = dict(image_size=32, n_train=2, n_test=1, n_base=2, seed=0, classes=CLASSES)
    args.update(kw)
    return SynthConfig(**args)


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "data"
    summary = generate_dataset(root, small_cfg(), workers=2, progress=False)
    return root, summary


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# declarations


def test_class_declarations() -> None:
    assert len(SYNTH_CLASSES) >= 40
    assert list(SYNTH_CLASSES) == sorted(SYNTH_CLASSES)
    for c in SYNTH_CLASSES + BASE_ONLY_CLASSES:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", c), c
    assert set(SYNTH_HELDOUT_CLASSES) <= set(SYNTH_CLASSES)
    assert 0.15 <= len(SYNTH_HELDOUT_CLASSES) / len(SYNTH_CLASSES) <= 0.25
    assert 10 <= len(BASE_ONLY_CLASSES) <= 20
    assert not set(BASE_ONLY_CLASSES) & set(SYNTH_CLASSES)
    assert set(OBJECT_CLASSES) == set(SYNTH_CLASSES) | set(BASE_ONLY_CLASSES)


def test_every_class_builds_finite_geometry_in_every_domain() -> None:
    rng = np.random.default_rng(0)
    for name, cls in OBJECT_CLASSES.items():
        prims = cls.build(rng)
        assert prims, name
        for p in prims:
            assert p.kind in ("poly", "line") and p.pts.ndim == 2 and p.pts.shape[1] == 2, name
            assert len(p.pts) >= 2 and np.isfinite(p.pts).all(), name
    for d, render in RENDERERS.items():  # one image per domain for a few classes
        for name in ("bicycle", "star", "traffic_light"):
            im = render(OBJECT_CLASSES[name], image_rng(0, d, name, 0), 16)
            assert im.mode == "RGB" and im.size == (16, 16)


# --------------------------------------------------------------------------------------------
# layout and index files


def test_layout_and_split_files(ds: tuple[Path, dict]) -> None:
    root, summary = ds
    classes = sorted(CLASSES)
    for d in DOMAINS:
        for split, idx in (("train", [0, 1]), ("test", [2])):
            lines = (root / f"{d}_{split}.txt").read_text().splitlines()
            expected = [f"{d}/{c}/{d}_{classes.index(c):03d}_{i:06d}.png {classes.index(c)}"
                        for c in classes for i in idx]
            assert lines == expected
            for line in lines:
                rel, label = line.split(" ")
                assert (root / rel).is_file()
                assert rel.split("/")[1] == classes[int(label)]
        # nothing else in the domain folder
        assert sorted(p.name for p in (root / d).iterdir()) == classes
        for c in classes:
            names = sorted(p.name for p in (root / d / c).iterdir())
            assert names == [f"{d}_{classes.index(c):03d}_{i:06d}.png" for i in range(3)]
    with Image.open(root / "sketch" / "sun" / "sketch_003_000000.png") as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)
    assert summary["counts"]["train"] == {d: 8 for d in DOMAINS}
    assert summary["counts"]["test"] == {d: 4 for d in DOMAINS}
    n_base = 2 * (len(CLASSES) + len(BASE_ONLY_CLASSES))
    assert summary["counts"]["base"] == n_base
    assert summary["counts"]["total"] == summary["images"] == 6 * 4 * 3 + n_base
    assert summary["images_per_second"] > 0 and summary["images_per_cpu_second"] > 0


def test_heldout_file_and_metadata(ds: tuple[Path, dict]) -> None:
    root, _ = ds
    assert (root / "heldout_classes.txt").read_text().splitlines() == sorted(HELDOUT_IN)
    meta = json.loads((root / "synth.json").read_text())
    assert meta["classes"] == sorted(CLASSES)
    assert meta["heldout_classes"] == sorted(HELDOUT_IN)
    assert meta["base_only_classes"] == list(BASE_ONLY_CLASSES)
    assert meta["config"]["image_size"] == 32 and meta["config"]["seed"] == 0
    assert meta["counts"]["base"] == 2 * (len(CLASSES) + len(BASE_ONLY_CLASSES))
    assert meta["version"]


def test_full_heldout_list_written_without_class_restriction(tmp_path: Path) -> None:
    cfg = SynthConfig(image_size=16, n_train=1, n_test=0, n_base=0, domains=("quickdraw",))
    generate_dataset(tmp_path, cfg, workers=1, progress=False)
    held = (tmp_path / "heldout_classes.txt").read_text().splitlines()
    assert held == sorted(SYNTH_HELDOUT_CLASSES)
    lines = (tmp_path / "quickdraw_train.txt").read_text().splitlines()
    assert [int(x.split()[1]) for x in lines] == list(range(len(SYNTH_CLASSES)))
    assert (tmp_path / "quickdraw_test.txt").read_text() == ""
    assert not (tmp_path / "sketch_train.txt").exists()


def test_base_tsv(ds: tuple[Path, dict]) -> None:
    root, _ = ds
    classes = sorted(CLASSES)
    with open(root / "base.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0]) == ["filepath", "title", "domain", "label"]
    assert len(rows) == 2 * (len(CLASSES) + len(BASE_ONLY_CLASSES))
    seen = set()
    for r in rows:
        p = Path(r["filepath"])
        assert p.is_absolute() and p.is_file()
        cls = p.parent.name
        seen.add(cls)
        assert re.fullmatch(r"base_\d{6}\.png", p.name)
        assert r["domain"] == "base"
        assert int(r["label"]) == (classes.index(cls) if cls in classes else -1)
        title = r["title"].lower()
        assert title and not any(w in title for w in FORBIDDEN_WORDS), title
        assert cls.replace("_", " ") in title or cls == "cactus"  # "cacti" in plural
    assert seen == set(CLASSES) | set(BASE_ONLY_CLASSES)


def test_forbidden_words_cover_domain_terms() -> None:
    words = {w for t in DOMAIN_TERMS.values() for term in t for w in term.split()}
    words |= set(NEUTRAL_TERMS) | {"photo", "sketch", "drawing", "painting", "art", "clipart",
                                   "illustration", "doodle", "quickdraw", "infograph", "chart",
                                   "snapshot", "image", "picture"}
    assert words <= set(FORBIDDEN_WORDS)


def test_base_captions_are_varied_natural_and_domain_free() -> None:
    caps = []
    for k, cls in enumerate(list(OBJECT_CLASSES) * 5):
        rng = np.random.default_rng(k)
        im, scene = render_base(OBJECT_CLASSES[cls], rng, 16)
        cap = base_caption(scene, rng)
        low = cap.lower()
        assert not any(w in low for w in FORBIDDEN_WORDS), cap
        if scene.count == 2:
            assert "two" in low or "pair" in low, cap
        if scene.count == 3:
            assert "three" in low, cap
        if scene.closeup:
            assert "close" in low or "filling the frame" in low, cap
        caps.append(cap)
    assert len(set(caps)) > 0.8 * len(caps)
    # captions are deterministic for the generator state
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    sa = render_base(OBJECT_CLASSES["car"], rng_a, 16)[1]
    sb = render_base(OBJECT_CLASSES["car"], rng_b, 16)[1]
    assert base_caption(sa, rng_a) == base_caption(sb, rng_b)


# --------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_bytes_any_worker_count(ds: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = ds
    generate_dataset(tmp_path, small_cfg(), workers=1, progress=False)
    a, b = _files(root), _files(tmp_path)
    assert a.keys() == b.keys()
    for k in a:
        if k == "base.tsv":  # absolute paths differ
            assert a[k].replace(str(root).encode(), b"") == b[k].replace(str(tmp_path).encode(), b"")
        else:
            assert a[k] == b[k], k


def test_different_seed_different_images(ds: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = ds
    generate_dataset(tmp_path, small_cfg(seed=1), workers=1, progress=False)
    pngs = [k for k in _files(root) if k.endswith(".png")]
    a, b = _files(root), _files(tmp_path)
    assert sum(a[k] != b[k] for k in pngs) == len(pngs)


def test_image_does_not_depend_on_other_classes(ds: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = ds
    cfg = small_cfg(classes=["house"], domains=("quickdraw",), n_base=0)
    generate_dataset(tmp_path, cfg, workers=1, progress=False)
    assert (tmp_path / "quickdraw/house/quickdraw_000_000001.png").read_bytes() == \
        (root / "quickdraw/house/quickdraw_002_000001.png").read_bytes()


# --------------------------------------------------------------------------------------------
# interrupted / repeated runs


def test_interrupted_run_does_not_look_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_cfg(domains=("clipart",), n_base=0)
    generate_dataset(tmp_path, cfg, workers=1, progress=False)
    assert (tmp_path / "synth.json").exists()

    def boom(task: object) -> tuple:
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen_mod, "_run_task", boom)
    with pytest.raises(RuntimeError):
        generate_dataset(tmp_path, cfg, workers=1, progress=False)
    assert not (tmp_path / "synth.json").exists()
    assert not (tmp_path / "clipart_train.txt").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_rerun_smaller_removes_stale_images(tmp_path: Path) -> None:
    generate_dataset(tmp_path, small_cfg(domains=("real",), n_train=3, n_base=2), workers=1,
                     progress=False)
    generate_dataset(tmp_path, small_cfg(domains=("real",), n_train=1, n_base=1), workers=1,
                     progress=False)
    assert sorted(p.name for p in (tmp_path / "real" / "sun").iterdir()) == [
        "real_003_000000.png", "real_003_000001.png"]
    assert sorted(p.name for p in (tmp_path / "base" / "sun").iterdir()) == ["base_000000.png"]


# --------------------------------------------------------------------------------------------
# the domains look different, the classes differ in shape


def _arr(domain: str, cls: str, i: int, size: int = 32) -> np.ndarray:
    im = RENDERERS[domain](OBJECT_CLASSES[cls], image_rng(0, domain, cls, i), size)
    return np.asarray(im, np.float32)


def _saturation(a: np.ndarray) -> np.ndarray:
    mx, mn = a.max(-1), a.min(-1)
    return (mx - mn) / np.maximum(mx, 1)


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


SAMPLE = SYNTH_CLASSES[::4]  # 12 classes of different kinds


def test_domain_statistics() -> None:
    imgs = {d: [_arr(d, c, i) for c in SAMPLE for i in range(2)] for d in DOMAINS}
    sat = {d: float(np.mean([_saturation(a).mean() for a in v])) for d, v in imgs.items()}
    ink = {d: float(np.mean([(255 - a.mean(-1)).mean() for a in v])) for d, v in imgs.items()}
    # sketch and quickdraw have (almost) no colour; the colour domains do
    assert sat["sketch"] < 0.03 and sat["quickdraw"] < 0.01
    for d in ("real", "painting", "infograph"):
        assert sat[d] > 0.1, (d, sat[d])
    # quickdraw: white background; clipart: white about half the time, else pastel or a scene
    white = {d: float(np.mean([(_border(a).min(-1) > 235).mean() for a in imgs[d]]))
             for d in ("clipart", "quickdraw")}
    assert white["quickdraw"] > 0.9 and 0.3 < white["clipart"] < 0.8, white
    # sketch: scanned (near-white) and photographed (grey) paper both occur
    paper = [float(np.median(_border(a).mean(-1))) for a in imgs["sketch"]]
    assert min(paper) < 215 < max(paper), paper
    # real and painting: textured, non-uniform backgrounds
    for d in ("real", "painting"):
        assert min(_border(a).std(0).mean() for a in imgs[d]) > 5, d
        assert np.mean([(_border(a).min(-1) > 235).mean() for a in imgs[d]]) < 0.05, d
    # quickdraw uses less ink than sketch (no hatching, no doubled strokes, no paper tone)
    assert ink["quickdraw"] < ink["sketch"]
    # infograph: white space and colour blocks in the same image
    white_frac = np.mean([(a.min(-1) > 235).mean() for a in imgs["infograph"]])
    assert 0.1 < white_frac < 0.9


def test_domains_separable_by_simple_statistics() -> None:
    def feats(a: np.ndarray) -> np.ndarray:
        g = a.mean(-1)
        b = _border(a)
        return np.array([_saturation(a).mean(), (b.min(-1) > 235).mean(), b.std(0).mean() / 50,
                         (255 - g).mean() / 255, (a.min(-1) > 235).mean(),
                         np.abs(np.diff(g, axis=1)).mean() / 51])

    train = {d: np.mean([feats(_arr(d, c, 0)) for c in SYNTH_CLASSES[::2]], 0) for d in DOMAINS}
    hits = [min(train, key=lambda k: np.linalg.norm(train[k] - feats(_arr(d, c, 1)))) == d
            for d in DOMAINS for c in SYNTH_CLASSES[1::4]]
    assert np.mean(hits) > 0.5  # chance is 1/6


def test_quickdraw_proportions_vary_more_than_other_drawings() -> None:
    """Doodles are stretched and sheared at random: the ink's aspect ratio of one class varies
    more across images than in clipart or sketch (same classes, same number of images)."""
    def log_aspect(domain: str, cls: str, i: int) -> float:
        ys, xs = np.nonzero(_arr(domain, cls, i, 64).mean(-1) < 128)
        return float(np.log((np.ptp(xs) + 1) / (np.ptp(ys) + 1)))

    spread = {d: np.mean([np.std([log_aspect(d, c, i) for i in range(12)]) for c in SAMPLE[::2]])
              for d in ("clipart", "sketch", "quickdraw")}
    assert spread["quickdraw"] > 1.3 * max(spread["clipart"], spread["sketch"]), spread


def test_strokes_at_least_two_pixels_wide_at_64px() -> None:
    for d in ("sketch", "quickdraw"):
        fracs = []
        for c in SAMPLE[::2]:
            g = _arr(d, c, 0, 64).mean(-1)
            m = g < np.median(g) - 50
            core = m & np.roll(m, 1, 0) & np.roll(m, 1, 1) & np.roll(np.roll(m, 1, 0), 1, 1)
            fracs.append(core.sum() / max(m.sum(), 1))
        # a 1-px line has no 2x2 block of ink; >= 2-px strokes do along their whole length
        assert np.median(fracs) > 0.3, (d, fracs)


def test_classes_differ_in_shape_in_quickdraw() -> None:
    classes = ["house", "sun", "ladder", "fish", "umbrella", "key"]

    def feat(a: np.ndarray) -> np.ndarray:
        ink = Image.fromarray((255 - a.mean(-1)).astype(np.uint8)).resize((8, 8), Image.BOX)
        return np.asarray(ink, np.float32).ravel()

    cent = {c: np.mean([feat(_arr("quickdraw", c, i)) for i in range(12)], 0) for c in classes}
    assert min(np.linalg.norm(cent[a] - cent[b]) for a in classes for b in classes if a < b) > 0
    hits = [min(cent, key=lambda k: np.linalg.norm(cent[k] - feat(_arr("quickdraw", c, i)))) == c
            for c in classes for i in range(12, 18)]
    assert np.mean(hits) > 0.4  # chance is 1/6


# --------------------------------------------------------------------------------------------
# contact sheet and config validation


def test_contact_sheet(ds: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = ds
    out = contact_sheet(root, tmp_path / "sheet.png")
    rows = len(DOMAINS) + 1  # plus the base set
    with Image.open(out) as im:
        assert im.size == (SHEET_LABEL_W + 4 * (32 + SHEET_PAD) + SHEET_PAD,
                           SHEET_HEADER_H + rows * (32 + SHEET_PAD) + SHEET_PAD)
        a = np.asarray(im.convert("RGB"))
    # the cell of (clipart, axe) is that image
    with Image.open(root / "clipart/axe/clipart_000_000000.png") as cell:
        x, y = SHEET_LABEL_W + SHEET_PAD, SHEET_HEADER_H + SHEET_PAD
        assert (a[y:y + 32, x:x + 32] == np.asarray(cell)).all()
    out2 = contact_sheet(root, tmp_path / "sheet2.png", n_classes=2)
    with Image.open(out2) as im:
        assert im.width == SHEET_LABEL_W + 2 * (32 + SHEET_PAD) + SHEET_PAD


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(image_size=8), ["image_size", "16"]),
        (dict(n_train=0), ["n_train", "1"]),
        (dict(n_test=-1), ["n_test"]),
        (dict(seed=-3), ["seed"]),
        (dict(domains=("clipart", "cartoon")), ["cartoon", "clipart", "sketch"]),
        (dict(domains=()), ["domains"]),
        (dict(classes=("house", "unicorn")), ["unicorn", "airplane"]),
        (dict(classes=("anchor",)), ["anchor", "base"]),
        (dict(classes=()), ["classes"]),
        (dict(classes=("house", "house")), ["duplicate"]),
        (dict(classes=("house", 3)), ["strings"]),
        (dict(image_size=64.0), ["image_size", "integer"]),
    ],
)
def test_bad_config(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        SynthConfig(**kwargs)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_good_config_normalises_and_bad_workers(tmp_path: Path) -> None:
    cfg = SynthConfig(classes=["traffic light", "house"], domains=["sketch", "clipart"])
    assert cfg.class_list == ("house", "traffic_light") and cfg.domains == ("clipart", "sketch")
    assert cfg.heldout == ("traffic_light",)
    assert SynthConfig().class_list == SYNTH_CLASSES
    with pytest.raises(ValueError, match="workers"):
        generate_dataset(tmp_path, small_cfg(), workers=0, progress=False)
