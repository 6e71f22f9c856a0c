"""Write a DomainNet-format dataset of generated images, plus a natural base set.

Layout under ``root`` (a contract other code reads)::

    <domain>/<class>/<domain>_<label:03d>_<idx:06d>.png   six domains, RGB PNG, size x size
    <domain>_train.txt, <domain>_test.txt                 "<domain>/<class>/<file> <label>"
    heldout_classes.txt                                   declared held-out classes, sorted
    base/<class>/base_<idx:06d>.png                       natural-style base images
    base.tsv                                              OpenCLIP CSV-dataset TSV of the base set
    synth.json                                            config, class lists, counts, version

Labels are indices into the sorted list of the dataset's six-domain classes; base-only classes
have label -1 in ``base.tsv``. Image indices ``0 .. n_train-1`` are the train split and
``n_train .. n_train+n_test-1`` the test split. Every image has its own random generator seeded
from ``(seed, domain, class, index)``, so the bytes written do not depend on the number of worker
processes, nor on which other classes or domains are generated. Split files, ``base.tsv`` and
``synth.json`` are written last (``synth.json`` atomically), and removed first, so an interrupted
run never looks complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from ..domains import DOMAINS, check_domains
from ..util.files import write_text
from ..util.seeding import seeded_rng
from .base_captions import base_caption
from .objects import BASE_ONLY_CLASSES, OBJECT_CLASSES, SYNTH_CLASSES, SYNTH_HELDOUT_CLASSES
from .styles import RENDERERS, render_base

#: Bumped whenever the same config would produce different images (2.0: doodle quickdraw,
#: coloured clipart backgrounds, photographed sketches).
GENERATOR_VERSION = "2.0"

#: Images per unit of parallel work.
CHUNK = 32

BASE = "base"


def _norm_class(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Attributes:
        image_size: side of the square images in pixels (>= 16).
        n_train: train images per (domain, class) (>= 1).
        n_test: test images per (domain, class) (>= 0).
        n_base: base-set images per class, for the selected classes and all
            :data:`BASE_ONLY_CLASSES` (>= 0).
        seed: non-negative integer; the same seed gives byte-identical files.
        classes: six-domain classes to generate (folder names; spaces are accepted for
            underscores), or None for all :data:`SYNTH_CLASSES`.
        domains: which of the six DomainNet domains to generate (kept in ``DOMAINS`` order).
    """

    image_size: int = 64
    n_train: int = 64
    n_test: int = 24
    n_base: int = 48
    seed: int = 0
    classes: tuple[str, ...] | None = None
    domains: tuple[str, ...] = field(default=DOMAINS)

    def __post_init__(self) -> None:
        for name, lo in (("image_size", 16), ("n_train", 1), ("n_test", 0), ("n_base", 0),
                         ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {v!r}")
            if v < lo:
                raise ValueError(f"{name} must be >= {lo}, got {v}")
        if self.image_size > 1024:
            raise ValueError(f"image_size must be <= 1024, got {self.image_size}")
        domains = check_domains(self.domains)
        if not domains:
            raise ValueError(f"domains is empty; expected some of {list(DOMAINS)}")
        if len(set(domains)) != len(domains):
            raise ValueError(f"duplicate domains in {list(domains)}")
        object.__setattr__(self, "domains", tuple(d for d in DOMAINS if d in domains))
        if self.classes is not None:
            raw = (self.classes,) if isinstance(self.classes, str) else tuple(self.classes)
            not_str = [c for c in raw if not isinstance(c, str)]
            if not_str:
                raise ValueError(f"class names must be strings, got {not_str}")
            classes = tuple(_norm_class(c) for c in raw)
            if not classes:
                raise ValueError(f"classes is empty; expected None or some of {list(SYNTH_CLASSES)}")
            base_only = [c for c in classes if c in BASE_ONLY_CLASSES]
            if base_only:
                raise ValueError(f"classes {base_only} exist only in the base set; the six domains "
                                 f"have {list(SYNTH_CLASSES)}")
            unknown = [c for c in raw if _norm_class(c) not in SYNTH_CLASSES]
            if unknown:
                raise ValueError(f"unknown class(es) {unknown}; expected some of "
                                 f"{list(SYNTH_CLASSES)}")
            if len(set(classes)) != len(classes):
                raise ValueError(f"duplicate classes in {list(raw)}")
            object.__setattr__(self, "classes", classes)

    @property
    def class_list(self) -> tuple[str, ...]:
        """The dataset's six-domain classes, sorted (label = index in this tuple)."""
        return tuple(sorted(self.classes)) if self.classes is not None else SYNTH_CLASSES

    @property
    def heldout(self) -> tuple[str, ...]:
        """Declared held-out classes among the selected ones, sorted."""
        return tuple(c for c in sorted(SYNTH_HELDOUT_CLASSES) if c in self.class_list)

    def to_dict(self) -> dict:
        """JSON-ready form (lists instead of tuples)."""
        return {"image_size": int(self.image_size), "n_train": int(self.n_train),
                "n_test": int(self.n_test), "n_base": int(self.n_base), "seed": int(self.seed),
                "classes": None if self.classes is None else list(self.classes),
                "domains": list(self.domains)}


def image_rng(seed: int, domain: str, cls: str, index: int) -> np.random.Generator:
    """The generator for one image, from ``(seed, domain, class, index)`` only."""
    # The project's one seeding scheme: SeedSequence([seed, crc32(domain), crc32(cls), index]).
    return seeded_rng(int(seed), domain, cls, int(index))


def image_relpath(domain: str, cls: str, label: int, index: int) -> str:
    """``<domain>/<class>/<domain>_<label:03d>_<index:06d>.png`` (``base/<class>/base_<index>.png``)."""
    if domain == BASE:
        return f"{BASE}/{cls}/{BASE}_{index:06d}.png"
    return f"{domain}/{cls}/{domain}_{label:03d}_{index:06d}.png"


@dataclass(frozen=True)
class _Task:
    root: str
    domain: str  # one of DOMAINS or "base"
    cls: str
    label: int
    start: int
    stop: int
    size: int
    seed: int


def _save_png(img: Image.Image, path: str) -> None:
    img.save(path, format="PNG", compress_level=1)


def _run_task(task: _Task) -> tuple[list[tuple[str, int, str]], float]:
    """Render and write one chunk.

    Returns ``(class, index, caption)`` for base images and the CPU seconds spent.
    """
    t0 = time.process_time()
    cls = OBJECT_CLASSES[task.cls]
    out_dir = Path(task.root) / task.domain / task.cls
    out_dir.mkdir(parents=True, exist_ok=True)
    captions: list[tuple[str, int, str]] = []
    render = RENDERERS.get(task.domain)
    for i in range(task.start, task.stop):
        rng = image_rng(task.seed, task.domain, task.cls, i)
        path = os.path.join(task.root, image_relpath(task.domain, task.cls, task.label, i))
        if task.domain == BASE:
            img, scene = render_base(cls, rng, task.size)
            captions.append((task.cls, i, base_caption(scene, rng)))
        else:
            assert render is not None
            img = render(cls, rng, task.size)
        _save_png(img, path)
    return captions, time.process_time() - t0


def _mp_context() -> multiprocessing.context.BaseContext:
    """``fork`` where available: workers start at once and scripts need no ``__main__`` guard.

    The workers only use numpy and Pillow, so forking a parent that has imported torch is safe.
    """
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _chunks(n: int) -> Iterable[tuple[int, int]]:
    for s in range(0, n, CHUNK):
        yield s, min(n, s + CHUNK)


def _remove_stale(directory: Path, prefix: str, keep: set[str]) -> None:
    """Delete PNGs named like ours (``prefix*.png``) that this run did not write."""
    if not directory.is_dir():
        return
    for entry in os.scandir(directory):
        if entry.name.startswith(prefix) and entry.name.endswith(".png") and entry.name not in keep:
            os.unlink(entry.path)


def generate_dataset(root: str | Path, cfg: SynthConfig | None = None, workers: int = 2,
                     progress: bool = True) -> dict:
    """Generate the dataset described by ``cfg`` under ``root`` (see the module docstring).

    Args:
        root: output directory (created if missing). Files of an earlier run are overwritten;
            stale PNGs of an earlier, larger run in the same class folders are removed.
        cfg: what to generate (default: ``SynthConfig()``).
        workers: worker processes (1 = in this process).
        progress: show a tqdm progress bar.

    Returns:
        Summary: ``root``, ``images`` (total written), ``counts`` (train/test per domain, base,
        total), wall-clock ``seconds`` and ``images_per_second``, the rendering processes'
        ``cpu_seconds`` and ``images_per_cpu_second`` (per-core throughput, little affected by
        other load on the machine), ``workers``.
    """
    cfg = SynthConfig() if cfg is None else cfg
    if not isinstance(cfg, SynthConfig):
        raise ValueError(f"cfg must be a SynthConfig, got {type(cfg).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    t0 = time.perf_counter()
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    classes = cfg.class_list
    labels = {c: i for i, c in enumerate(classes)}
    base_classes = tuple(sorted(classes + BASE_ONLY_CLASSES))
    n_per = cfg.n_train + cfg.n_test

    # mark as incomplete: remove the files that declare a finished dataset
    for name in ["synth.json", "base.tsv", "heldout_classes.txt"] + [
            f"{d}_{s}.txt" for d in DOMAINS for s in ("train", "test")]:
        (root / name).unlink(missing_ok=True)

    tasks: list[_Task] = []
    for d in cfg.domains:
        for c in classes:
            tasks += [_Task(str(root), d, c, labels[c], a, b, cfg.image_size, cfg.seed)
                      for a, b in _chunks(n_per)]
    for c in base_classes:
        tasks += [_Task(str(root), BASE, c, labels.get(c, -1), a, b, cfg.image_size, cfg.seed)
                  for a, b in _chunks(cfg.n_base)]
    for t in tasks:
        (root / t.domain / t.cls).mkdir(parents=True, exist_ok=True)
    total = sum(t.stop - t.start for t in tasks)

    results: dict[int, list[tuple[str, int, str]]] = {}
    cpu = 0.0
    with tqdm(total=total, disable=not progress, unit="img", desc="synth", mininterval=0.5) as bar:
        if workers == 1 or total <= 2 * CHUNK:  # small jobs: a pool costs more than it saves
            for k, t in enumerate(tasks):
                results[k], c = _run_task(t)
                cpu += c
                bar.update(t.stop - t.start)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                                     mp_context=_mp_context()) as ex:
                futs = {ex.submit(_run_task, t): k for k, t in enumerate(tasks)}
                try:
                    for f in as_completed(futs):
                        k = futs[f]
                        results[k], c = f.result()
                        cpu += c
                        bar.update(tasks[k].stop - tasks[k].start)
                except BaseException:  # fail fast: do not render the rest of the queue
                    for f in futs:
                        f.cancel()
                    raise

    # stale files of an earlier, larger run
    for d in cfg.domains:
        for c in classes:
            keep = {Path(image_relpath(d, c, labels[c], i)).name for i in range(n_per)}
            _remove_stale(root / d / c, f"{d}_", keep)
    for c in base_classes:
        keep = {Path(image_relpath(BASE, c, -1, i)).name for i in range(cfg.n_base)}
        _remove_stale(root / BASE / c, f"{BASE}_", keep)

    # index files last
    counts: dict = {"train": {}, "test": {}}
    for d in cfg.domains:
        for split, lo, hi in (("train", 0, cfg.n_train), ("test", cfg.n_train, n_per)):
            lines = [f"{image_relpath(d, c, labels[c], i)} {labels[c]}\n"
                     for c in classes for i in range(lo, hi)]
            write_text(root / f"{d}_{split}.txt", "".join(lines))
            counts[split][d] = len(lines)
    caps = sorted(cap for k in results for cap in results[k])
    rows = ["filepath\ttitle\tdomain\tlabel\n"] + [
        f"{root / image_relpath(BASE, c, -1, i)}\t{text}\t{BASE}\t{labels.get(c, -1)}\n"
        for c, i, text in caps]
    write_text(root / "base.tsv", "".join(rows))
    write_text(root / "heldout_classes.txt", "".join(f"{c}\n" for c in cfg.heldout))
    counts["base"] = len(caps)
    counts["total"] = total
    meta = {
        "generator": "training.synth", "version": GENERATOR_VERSION, "config": cfg.to_dict(),
        "domains": list(cfg.domains), "classes": list(classes),
        "heldout_classes": list(cfg.heldout), "base_only_classes": list(BASE_ONLY_CLASSES),
        "base_classes": list(base_classes), "counts": counts,
    }
    write_text(root / "synth.json", json.dumps(meta, indent=2) + "\n")
    dt = time.perf_counter() - t0
    return {"root": str(root), "images": total, "counts": counts, "seconds": round(dt, 3),
            "images_per_second": round(total / dt, 1) if dt > 0 else float("inf"),
            "cpu_seconds": round(cpu, 3),
            "images_per_cpu_second": round(total / cpu, 1) if cpu > 0 else float("inf"),
            "workers": workers}


# --------------------------------------------------------------------------------------------
# contact sheet

#: Layout of :func:`contact_sheet` (pixels).
SHEET_LABEL_W = 84
SHEET_HEADER_H = 96
SHEET_PAD = 2
SHEET_MAX_TILE = 128


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _sheet_layout(root: Path) -> tuple[list[str], list[str]]:
    meta_path = root / "synth.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        domains, classes = list(meta["domains"]), list(meta["classes"])
    else:
        domains = [d for d in DOMAINS if (root / d).is_dir()]
        if not domains:
            raise ValueError(f"{root} holds none of the domain folders {list(DOMAINS)}")
        classes = sorted(p.name for p in (root / domains[0]).iterdir() if p.is_dir())
    if (root / BASE).is_dir():
        domains.append(BASE)
    return domains, classes


def contact_sheet(root: str | Path, out_png: str | Path, n_classes: int | None = None) -> Path:
    """One PNG overview: a row per domain (plus ``base`` if present), a column per class.

    Each cell is the first image (by file name) of that class in that domain; rows are labelled
    with domain names and columns with class names. Tiles are the dataset's image size (at most
    :data:`SHEET_MAX_TILE` pixels). The sheet is ``SHEET_LABEL_W + n*(tile+SHEET_PAD) + SHEET_PAD``
    wide and ``SHEET_HEADER_H + rows*(tile+SHEET_PAD) + SHEET_PAD`` high.

    Args:
        root: a dataset written by :func:`generate_dataset` (or any DomainNet-layout folder).
        out_png: where to write the sheet.
        n_classes: only the first ``n_classes`` classes (sorted); None for all.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset root {root} does not exist")
    domains, classes = _sheet_layout(root)
    if n_classes is not None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1 or None, got {n_classes}")
        classes = classes[:n_classes]
    if not classes:
        raise ValueError(f"no classes found under {root}")

    def first_image(d: str, c: str) -> Path | None:
        folder = root / d / c
        if not folder.is_dir():
            return None
        names = sorted(n for n in os.listdir(folder) if n.endswith((".png", ".jpg", ".jpeg")))
        return folder / names[0] if names else None

    probe = next((p for d in domains for c in classes if (p := first_image(d, c))), None)
    if probe is None:
        raise ValueError(f"no images found under {root}")
    with Image.open(probe) as im:
        tile = min(max(im.size), SHEET_MAX_TILE)
    W = SHEET_LABEL_W + len(classes) * (tile + SHEET_PAD) + SHEET_PAD
    H = SHEET_HEADER_H + len(domains) * (tile + SHEET_PAD) + SHEET_PAD
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for j, c in enumerate(classes):  # rotated class labels in the header
        label = Image.new("L", (SHEET_HEADER_H - 4, tile), 0)
        ImageDraw.Draw(label).text((2, max(0, tile // 2 - 7)), c, fill=255, font=font)
        label = label.rotate(90, expand=True)
        x = SHEET_LABEL_W + SHEET_PAD + j * (tile + SHEET_PAD)
        sheet.paste((0, 0, 0), (x, 2), label)
    for i, d in enumerate(domains):
        y = SHEET_HEADER_H + SHEET_PAD + i * (tile + SHEET_PAD)
        draw.text((4, y + tile // 2 - 7), d, fill=(0, 0, 0), font=font)
        for j, c in enumerate(classes):
            x = SHEET_LABEL_W + SHEET_PAD + j * (tile + SHEET_PAD)
            p = first_image(d, c)
            if p is None:
                draw.rectangle((x, y, x + tile - 1, y + tile - 1), fill=(200, 200, 200))
                continue
            with Image.open(p) as im:
                cell = im.convert("RGB")
            if cell.size != (tile, tile):
                cell = cell.resize((tile, tile), Image.LANCZOS)
            sheet.paste(cell, (x, y))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out

