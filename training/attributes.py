"""Attribute-object (AO) compositional generalization: specs, mixtures, caption NMI, evaluation.

Can a CLIP recognise an object with an attribute it never saw on that object (a blue cup), and
does that depend on how entangled attributes and objects are in its captions? An
:class:`AOSpec` declares the object classes, the attribute vocabularies (``colour``: names of
:data:`~training.synth.styles.NAMED_COLOURS`; ``pattern``: :data:`~training.synth.styles.PATTERNS`),
an *entanglement* knob, held-out (attribute value, object) pairs and a fixed training size.
:func:`build_ao_dataset` renders it (``real`` style only) into a DomainNet-format root with one
training mixture:

    <root>/real/<object>/real_<label:03d>_<index:06d>.png   train indices 0..n-1, then the test grid
    <root>/real_train.txt, real_test.txt                    DomainNet split files (labels: sorted objects)
    <root>/heldout_classes.txt                              empty: no class is held out, pairs are
    <root>/images.csv                                       every image: entry, split, class_name,
                                                            label, colour, pattern, title
    <root>/mixtures/real/<name>.tsv (+ .json)               the training mixture (same TSV format and
                                                            writer as :mod:`training.mixtures`)

**The knob.** For an object ``o`` and an entangled attribute kind, the training distribution of
its values is ``p(a | o) = (1 - e) * uniform(allowed(o)) + e * [a == bound(o)]``: ``e = 0`` puts
every allowed value uniformly on every object, ``e = 1`` binds each object to one value.
``allowed(o)`` is the vocabulary without ``o``'s held-out values, so held-out pairs never occur
in training; ``bound(o)`` is the first allowed value from position ``i mod n`` on (object ``i``
of ``n`` values). Each object gets ``n_train / len(objects)`` images, and each kind's values are
dealt out by largest-remainder quotas of ``p(a | o)`` (not sampled), then shuffled per (seed,
kind, object): the same spec gives the same images and the NMI is a deterministic function of
the knob. Kinds not in ``entangle`` stay uniform. The test split is the full grid: ``n_test``
images of every (object, colour, pattern), held-out pairs included.

**Captions** are the paper's rendition captions (:func:`training.captions.make_captions`, real
domain) with the class text ``"<pattern> <colour> <object>"``: "a photo of a striped red cup."

**NMI** (:func:`caption_nmi`) is computed from caption text alone, for any TSV: each caption is
parsed for exactly one object noun (singular or plural) and exactly one attribute value of the
vocabulary given, the (attribute, object) contingency table is built, and
``NMI = I(A; O) / mean(H(A), H(O))`` (the arithmetic mean, scikit-learn's default
``average_method``; natural logarithms cancel). Captions without exactly one of each are counted
as skipped.

**Evaluation** (:func:`evaluate_ao`) scores a CLIP run on the test grid: object top-1 over all
objects ("a photo of a cup."), attribute top-1 over a kind's values ("a photo of something
blue."), pair top-1 over all (value, object) prompts ("a photo of a blue cup."), each separately
on the held-out and the seen pairs; a supervised run gets object top-1 from its linear head.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .captions import CAPTION_STYLES, make_captions
from .domains import display_name
from .mixtures import Mixture, write_mixture
from .synth.base_captions import plural
from .synth.generate import image_relpath, image_rng
from .synth.objects import ATTRIBUTE_CLASSES, OBJECT_CLASSES
from .synth.styles import NAMED_COLOURS, PATTERNS, Look, render_real_look
from .util.files import write_csv, write_text
from .util.seeding import seeded_rng
from .util.validate import check_choice, check_choices, check_number

#: Attribute kinds and every value each may take.
ATTRIBUTE_KINDS: dict[str, tuple[str, ...]] = {"colour": tuple(NAMED_COLOURS), "pattern": PATTERNS}
#: The domain AO images are rendered in (the photo style).
AO_DOMAIN = "real"
#: Caption order of the attribute words before the noun: "a striped red cup".
CAPTION_ORDER: tuple[str, ...] = ("pattern", "colour")
#: Split of the images of a root, the mixture folder and the per-image table.
IMAGES_FILE = "images.csv"
MIXTURE_DIR = "mixtures"
#: Pair subsets of the evaluation table.
#: ``held-out``: the image's pair of the kind is held out; ``seen``: every pair of the image
#: occurs in training; ``unseen``: the kind's pair is not held out but absent from training
#: all the same (an entangled kind at knob 1 keeps one value per object).
PAIR_SUBSETS: tuple[str, ...] = ("held-out", "seen", "unseen")
#: Columns of :func:`evaluate_ao`'s table.
AO_EVAL_COLUMNS: tuple[str, ...] = (
    "run", "kind", "seed", "mixture_seed", "entanglement", "nmi", "epoch", "attribute",
    "pair_subset", "metric", "value", "n_images",
)
NMI_AVERAGES: tuple[str, ...] = ("arithmetic", "geometric", "min", "max")


@dataclass(frozen=True)
class AOSpec:
    """An attribute-object mixture (see the module docstring for the knob and the grid).

    Attributes:
        objects: object classes, from :data:`~training.synth.objects.ATTRIBUTE_CLASSES`.
        colours: colour names (:data:`~training.synth.styles.NAMED_COLOURS`).
        patterns: pattern names (:data:`~training.synth.styles.PATTERNS`); ``("plain",)`` for
            colour only.
        entanglement: the knob ``e`` in [0, 1] (0: decorrelated, 1: one value per object).
        entangle: the attribute kinds the knob applies to (the others stay uniform).
        heldout_pairs: ``(attribute value, object)`` pairs removed from training; ``None``:
            one colour per object, the one after its bound colour (``colours[(i + 1) % n]``).
        n_train: training images in total (a multiple of ``len(objects)``), the same for
            every value of the knob.
        n_test: test images per (object, colour, pattern).
        image_size: side of the images in pixels.
        seed: seeds the images (:func:`~training.synth.generate.image_rng`), the shuffles and
            the captions.
        captions: caption style of :mod:`training.captions` (``domain`` or ``aligned``).
    """

    objects: tuple[str, ...] = ("apple", "cup", "fish", "umbrella")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow")
    patterns: tuple[str, ...] = PATTERNS
    entanglement: float = 0.0
    entangle: tuple[str, ...] = ("colour",)
    heldout_pairs: tuple[tuple[str, str], ...] | None = None
    n_train: int = 1200
    n_test: int = 2
    image_size: int = 32
    seed: int = 0
    captions: str = "domain"

    def __post_init__(self) -> None:
        for name, allowed in (("objects", ATTRIBUTE_CLASSES), ("colours", NAMED_COLOURS),
                              ("patterns", PATTERNS), ("entangle", ATTRIBUTE_KINDS)):
            raw = getattr(self, name)
            values = (raw,) if isinstance(raw, str) else tuple(raw)
            check_choices(name, values, allowed)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has duplicates: {list(values)}")
            if not values and name != "entangle":
                raise ValueError(f"{name} is empty; expected some of {list(allowed)}")
            object.__setattr__(self, name, values)
        if len(self.objects) < 2:
            raise ValueError(f"objects needs at least 2 classes, got {list(self.objects)}")
        check_number("entanglement", self.entanglement, low=0, high=1)
        check_number("n_train", self.n_train, low=len(self.objects), integer=True)
        if self.n_train % len(self.objects):
            raise ValueError(f"n_train must be a multiple of the {len(self.objects)} objects, "
                             f"got {self.n_train}")
        check_number("n_test", self.n_test, low=1, integer=True)
        check_number("image_size", self.image_size, low=16, high=1024, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_choice("captions", self.captions, CAPTION_STYLES)
        pairs = default_heldout(self) if self.heldout_pairs is None else self.heldout_pairs
        object.__setattr__(self, "heldout_pairs", _check_pairs(self, pairs))

    def kinds(self) -> dict[str, tuple[str, ...]]:
        """``{"colour": colours, "pattern": patterns}``."""
        return {"colour": self.colours, "pattern": self.patterns}

    @property
    def name(self) -> str:
        """The mixture's name (:func:`mixture_name`)."""
        return mixture_name(self.entanglement)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists instead of tuples)."""
        return json.loads(json.dumps(asdict(self)))


def mixture_name(entanglement: float) -> str:
    """``ao-e<entanglement>`` (``ao-e0.5``, the float as Python prints it): the name of an AO
    mixture and of its root in an experiment."""
    return f"ao-e{float(entanglement)}"


def default_heldout(spec: AOSpec) -> tuple[tuple[str, str], ...]:
    """One held-out colour per object: object ``i`` loses ``colours[(i + 1) % n]`` (never its
    bound colour ``colours[i % n]``); none if there is a single colour."""
    n = len(spec.colours)
    if n < 2:
        return ()
    return tuple((spec.colours[(i + 1) % n], o) for i, o in enumerate(spec.objects))


def _kind_of(spec: AOSpec, value: str) -> str | None:
    return next((k for k, values in spec.kinds().items() if value in values), None)


def _check_pairs(spec: AOSpec, pairs: Any) -> tuple[tuple[str, str], ...]:
    """Held-out pairs as sorted ``(value, object)`` tuples; one-line errors naming the bad
    pair: malformed, unknown value or object, or every value of a kind held out on an object."""
    out = []
    for pair in pairs:
        if isinstance(pair, str) or len(tuple(pair)) != 2:
            raise ValueError(f"held-out pair {pair!r} must be (attribute value, object)")
        value, obj = (str(x) for x in pair)
        if obj not in spec.objects:
            raise ValueError(f"held-out pair {(value, obj)!r}: object {obj!r} is not one of the "
                             f"spec's objects {list(spec.objects)}")
        if _kind_of(spec, value) is None:
            allowed = [v for values in spec.kinds().values() for v in values]
            raise ValueError(f"held-out pair {(value, obj)!r}: unknown attribute value {value!r}; "
                             f"expected one of {allowed}")
        out.append((value, obj))
    if len(set(out)) != len(out):
        raise ValueError(f"held-out pairs have duplicates: {out}")
    for obj in spec.objects:
        for kind, values in spec.kinds().items():
            if all((v, obj) in out for v in values):
                raise ValueError(f"held-out pairs hold out every {kind} of {obj!r} "
                                 f"({list(values)}): it would have no training images")
    return tuple(sorted(out, key=lambda p: (spec.objects.index(p[1]), p[0])))


def allowed_values(spec: AOSpec, kind: str, obj: str) -> tuple[str, ...]:
    """The values of ``kind`` that ``obj`` may have in training (vocabulary order)."""
    held = set(spec.heldout_pairs or ())
    return tuple(v for v in spec.kinds()[kind] if (v, obj) not in held)


def bound_value(spec: AOSpec, kind: str, obj: str) -> str:
    """The value ``obj`` is bound to at entanglement 1: the first allowed value from position
    ``i mod n`` of the vocabulary on (``i`` the object's index)."""
    values = spec.kinds()[kind]
    allowed = set(allowed_values(spec, kind, obj))
    start = spec.objects.index(obj) % len(values)
    return next(v for v in values[start:] + values[:start] if v in allowed)


def train_distribution(spec: AOSpec, kind: str, obj: str) -> dict[str, float]:
    """``p(value | obj)`` of one attribute kind in training (zero for held-out values)."""
    allowed = allowed_values(spec, kind, obj)
    e = float(spec.entanglement) if kind in spec.entangle else 0.0
    bound = bound_value(spec, kind, obj)
    return {v: ((1 - e) / len(allowed) if v in allowed else 0.0) + (e if v == bound else 0.0)
            for v in spec.kinds()[kind]}


def quota(n: int, probs: Mapping[str, float]) -> dict[str, int]:
    """``n`` items dealt to keys by largest remainder of ``n * p`` (ties in key order); a key
    with ``p = 0`` gets none."""
    keys = list(probs)
    exact = np.asarray([n * probs[k] for k in keys], dtype=np.float64)
    counts = np.floor(exact + 1e-9).astype(np.int64)
    rest = n - int(counts.sum())
    order = sorted((i for i in range(len(keys)) if probs[keys[i]] > 0),
                   key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return {k: int(c) for k, c in zip(keys, counts, strict=True)}


def plan_images(spec: AOSpec) -> pd.DataFrame:
    """Every image of the spec: ``split``, ``class_name``, ``label`` (index in the sorted
    objects), ``index`` (its image index: train ``0..n-1``, then the test grid), ``colour``,
    ``pattern``, ``entry`` (``real/<class>/real_<label>_<index>.png``). Deterministic."""
    classes = sorted(spec.objects)
    per_object = spec.n_train // len(spec.objects)
    rows = []
    for obj in spec.objects:
        label = classes.index(obj)
        dealt = {}
        for kind in spec.kinds():
            counts = quota(per_object, train_distribution(spec, kind, obj))
            values = np.asarray([v for v, c in counts.items() for _ in range(c)])
            dealt[kind] = values[seeded_rng(spec.seed, "ao", "train", kind, obj).permutation(
                per_object)]
        for i in range(per_object):
            rows.append(("train", obj, label, i, str(dealt["colour"][i]), str(dealt["pattern"][i])))
        index = per_object
        for colour in spec.colours:
            for pattern in spec.patterns:
                for _ in range(spec.n_test):
                    rows.append(("test", obj, label, index, colour, pattern))
                    index += 1
    plan = pd.DataFrame(rows, columns=["split", "class_name", "label", "index", "colour",
                                       "pattern"])
    plan["entry"] = [image_relpath(AO_DOMAIN, c, int(lab), int(i)) for c, lab, i in
                     zip(plan["class_name"], plan["label"], plan["index"], strict=True)]
    return plan


def class_text(obj: str, colour: str, pattern: str) -> str:
    """The class text of a caption: ``"<pattern> <colour> <object>"`` (``striped red cup``)."""
    words = {"colour": colour, "pattern": pattern}
    return " ".join([words[k] for k in CAPTION_ORDER] + [display_name(obj)])


def heldout_flags(spec: AOSpec, plan: pd.DataFrame) -> pd.DataFrame:
    """Per image and kind, whether its (value, object) pair is held out: bool columns
    ``heldout_colour``, ``heldout_pattern``, and ``heldout_any``."""
    held = set(spec.heldout_pairs or ())
    out = pd.DataFrame(index=plan.index)
    for kind in spec.kinds():
        out[f"heldout_{kind}"] = [(v, o) in held for v, o in
                                  zip(plan[kind], plan["class_name"], strict=True)]
    out["heldout_any"] = out.any(axis=1)
    return out


def pair_subset_masks(spec: AOSpec, images: pd.DataFrame,
                      train_counts: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per attribute kind, a boolean mask over the rows of ``images`` (columns ``class_name``
    and one per kind) for each of :data:`PAIR_SUBSETS`; ``train_counts``: training images per
    ``{kind: {value: {object: n}}}`` (the manifest's ``train_counts``)."""
    flags = heldout_flags(spec, images)
    trained = {kind: np.asarray([train_counts.get(kind, {}).get(v, {}).get(o, 0) > 0
                                 for v, o in zip(images[kind], images["class_name"],
                                                 strict=True)], dtype=bool)
               for kind in spec.kinds()}
    all_trained = np.logical_and.reduce(list(trained.values()))
    masks = {}
    for kind in spec.kinds():
        held = flags[f"heldout_{kind}"].to_numpy()
        masks[kind] = {"held-out": held, "seen": all_trained, "unseen": ~held & ~trained[kind]}
    return masks


@dataclass
class AODataset:
    """A built AO root: its spec, images table, training mixture and caption NMI."""

    root: Path
    spec: AOSpec
    images: pd.DataFrame
    mixture: Mixture
    nmi: dict[str, float] = field(default_factory=dict)

    @property
    def tsv(self) -> Path:
        """The training mixture's TSV."""
        assert self.mixture.tsv is not None
        return self.mixture.tsv


def build_ao_dataset(spec: AOSpec, root: str | Path, progress: bool = True) -> AODataset:
    """Render ``spec`` into ``root`` (layout in the module docstring) and write its mixture.

    The manifest beside the TSV holds the spec (``setup`` ``"ao"``, ``test_domain`` ``"real"``,
    ``data_root``, ``seed`` and the AO fields), the held-out pairs, the training counts per
    (kind, value, object) and the caption NMI per kind (:func:`caption_nmi` on the TSV's own
    captions). Deterministic: the same spec writes the same bytes (the TSV apart from its
    absolute paths). Image ``i`` of an object takes its random draws (scene, pose, shading,
    ...) from ``image_rng(seed, "real", object, i)`` whatever its attributes, so across knob
    values with the same seed and patterns, training image ``i`` differs only in the colour of
    its main part (fill, edges and the accent if it had that colour), never in scene or pose.
    A root written before by another spec keeps that spec's extra PNGs, named by no split
    file, ``images.csv`` or mixture.
    """
    from tqdm.auto import tqdm

    root = Path(root).resolve()
    plan = plan_images(spec)
    titles = make_captions(
        [class_text(o, c, p) for o, c, p in zip(plan["class_name"], plan["colour"],
                                                 plan["pattern"], strict=True)],
        [AO_DOMAIN] * len(plan), plan["entry"].tolist(), spec.seed, spec.captions)
    plan["title"] = titles
    for obj in spec.objects:
        (root / AO_DOMAIN / obj).mkdir(parents=True, exist_ok=True)
    for row in tqdm(plan.itertuples(index=False), total=len(plan), desc="ao images",
                    disable=not progress, unit="img"):
        rng = image_rng(spec.seed, AO_DOMAIN, row.class_name, int(row.index))
        img, _ = render_real_look(OBJECT_CLASSES[row.class_name], rng, spec.image_size,
                                  Look(row.colour, row.pattern))
        img.save(root / row.entry, format="PNG", compress_level=1)
    for split in ("train", "test"):
        part = plan[plan["split"] == split]
        write_text(root / f"{AO_DOMAIN}_{split}.txt",
                   "".join(f"{e} {lab}\n" for e, lab in zip(part["entry"], part["label"],
                                                             strict=True)))
    write_text(root / "heldout_classes.txt", "")
    write_csv(root / IMAGES_FILE, plan[["entry", "split", "class_name", "label", "colour",
                                        "pattern", "title"]])
    train = plan[plan["split"] == "train"]
    rows = pd.DataFrame({"filepath": [str(root / e) for e in train["entry"]],
                         "title": train["title"].to_numpy(), "domain": AO_DOMAIN,
                         "label": train["label"].to_numpy()})
    nmi = {kind: caption_nmi(train["title"], values, spec.objects).nmi
           for kind, values in spec.kinds().items()}
    counts = {kind: {v: {o: int(((train[kind] == v) & (train["class_name"] == o)).sum())
                         for o in spec.objects} for v in values}
              for kind, values in spec.kinds().items()}
    manifest = {
        "name": spec.name,
        "spec": {"setup": "ao", "test_domain": AO_DOMAIN, "data_root": str(root), **spec.to_dict()},
        "classes": sorted(spec.objects),
        "heldout_pairs": [list(p) for p in spec.heldout_pairs or ()],
        "nmi": nmi,
        "nmi_average": "arithmetic",
        "train_counts": counts,
        "counts": {"total": len(rows), "base": 0, "rendition": len(rows),
                   "by_domain": {AO_DOMAIN: {"seen": len(rows)}}},
    }
    mixture = Mixture(rows=rows, manifest=manifest)
    write_mixture(mixture, root / MIXTURE_DIR)
    return AODataset(root=root, spec=spec, images=plan, mixture=mixture, nmi=nmi)


def read_ao_images(root: str | Path) -> pd.DataFrame:
    """``<root>/images.csv`` (one row per image; see :func:`build_ao_dataset`)."""
    path = Path(root) / IMAGES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {root} is not an AO root "
                                "(build one with `domainlens ao-data`)")
    return pd.read_csv(path, keep_default_na=False)


def spec_from_manifest(manifest: Mapping[str, Any]) -> AOSpec:
    """The :class:`AOSpec` recorded in a mixture (or run) manifest."""
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    if spec.get("setup") != "ao":
        raise ValueError(f"mixture {manifest.get('name')!r} is not an attribute-object mixture "
                         f"(setup {spec.get('setup')!r}, expected 'ao')")
    fields_ = {k: v for k, v in spec.items() if k in AOSpec.__dataclass_fields__}
    fields_["heldout_pairs"] = tuple(tuple(p) for p in fields_.get("heldout_pairs") or ())
    return AOSpec(**fields_)


# ----------------------------------------------------------------------------------------------
# NMI from caption text


@dataclass(frozen=True)
class NMIResult:
    """The attribute-object NMI of a set of captions.

    Attributes:
        nmi: ``I(A; O)`` over the normaliser of ``average`` (arithmetic: ``(H(A) + H(O)) / 2``).
        mutual_information, h_attribute, h_object: in nats.
        average: the normalisation (one of :data:`NMI_AVERAGES`).
        table: the ``(attribute value) x (object)`` contingency table of the parsed captions.
        n_parsed, n_skipped: captions with exactly one attribute value and one object, and
            the others.
    """

    nmi: float
    mutual_information: float
    h_attribute: float
    h_object: float
    average: str
    table: pd.DataFrame
    n_parsed: int
    n_skipped: int

    def summary(self) -> dict[str, Any]:
        """One CSV row: the numbers, without the table."""
        return {"nmi": self.nmi, "average": self.average,
                "mutual_information": self.mutual_information, "h_attribute": self.h_attribute,
                "h_object": self.h_object, "n_parsed": self.n_parsed,
                "n_skipped": self.n_skipped}


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def nmi_from_table(table: np.ndarray | pd.DataFrame,
                   average: str = "arithmetic") -> tuple[float, float, float, float]:
    """``(nmi, I, H_rows, H_cols)`` of a contingency table of counts (rows x columns).

    ``I`` and the entropies are in nats; ``nmi = I / norm``, ``norm`` the ``average``
    (arithmetic, geometric, min or max) of the two entropies. As scikit-learn's
    ``normalized_mutual_info_score``: 1 if both variables are constant, 0 if ``I`` is 0.
    """
    check_choice("average", average, NMI_AVERAGES)
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError(f"a contingency table must be a 2-D array of counts >= 0, got shape "
                         f"{counts.shape}")
    total = counts.sum()
    if total <= 0:
        raise ValueError("the contingency table is empty: no caption names exactly one "
                         "attribute value and one object of the vocabularies")
    joint = counts / total
    rows, cols = joint.sum(axis=1), joint.sum(axis=0)
    h_rows, h_cols = _entropy(rows), _entropy(cols)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(rows, cols)[nz])).sum())
    mi = max(mi, 0.0)
    if h_rows == 0 and h_cols == 0:
        return 1.0, mi, h_rows, h_cols
    if mi <= 1e-15:
        return 0.0, 0.0, h_rows, h_cols
    norm = {"arithmetic": (h_rows + h_cols) / 2, "geometric": float(np.sqrt(h_rows * h_cols)),
            "min": min(h_rows, h_cols), "max": max(h_rows, h_cols)}[average]
    return mi / norm, mi, h_rows, h_cols


def _phrase_pattern(phrases: Mapping[str, Sequence[str]]) -> tuple[re.Pattern, dict[str, str]]:
    """One regex over every phrase as whole words (longest first) and phrase -> key."""
    lookup = {p.lower(): key for key, forms in phrases.items() for p in forms}
    alternatives = sorted(lookup, key=len, reverse=True)
    body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in alternatives)
    return re.compile(rf"(?<![a-z])(?:{body})(?![a-z])"), lookup


def parse_captions(titles: Sequence[str], attributes: Sequence[str],
                   objects: Sequence[str]) -> pd.DataFrame:
    """Per caption, its attribute value and object, or ``""`` where the caption names none or
    more than one distinct one. Objects are class folder or display names, matched as whole
    words, singular or plural (``traffic light(s)``), case-insensitively; attribute values as
    whole words. Columns ``attribute``, ``object``."""
    attributes = _vocabulary("attributes", attributes)
    objects = _vocabulary("objects", objects)
    obj_re, obj_of = _phrase_pattern({o: (display_name(o), plural(display_name(o)))
                                      for o in objects})
    att_re, att_of = _phrase_pattern({a: (display_name(a),) for a in attributes})
    found_a, found_o = [], []
    for title in titles:
        text = str(title).lower()
        objs = {obj_of[re.sub(r"\s+", " ", m)] for m in obj_re.findall(text)}
        # an attribute word inside an object's name ("orange" in "orange juice") is not one
        rest = obj_re.sub(" ", text)
        atts = {att_of[re.sub(r"\s+", " ", m)] for m in att_re.findall(rest)}
        found_o.append(objs.pop() if len(objs) == 1 else "")
        found_a.append(atts.pop() if len(atts) == 1 else "")
    return pd.DataFrame({"attribute": found_a, "object": found_o})


def _vocabulary(name: str, values: Sequence[str]) -> tuple[str, ...]:
    values = (values,) if isinstance(values, str) else tuple(str(v) for v in values)
    bad = [v for v in values if not v.strip()]
    if not values or bad:
        raise ValueError(f"{name} must be a non-empty list of words, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates: {list(values)}")
    return values


def caption_nmi(titles: Sequence[str], attributes: Sequence[str], objects: Sequence[str],
                average: str = "arithmetic") -> NMIResult:
    """NMI between attribute and object as named in ``titles`` (see :func:`parse_captions`
    and :func:`nmi_from_table`). Every vocabulary value is a row/column of the table, also
    when no caption names it (a zero row changes no entropy)."""
    parsed = parse_captions(list(titles), attributes, objects)
    ok = (parsed["attribute"] != "") & (parsed["object"] != "")
    attributes, objects = _vocabulary("attributes", attributes), _vocabulary("objects", objects)
    table = pd.crosstab(pd.Categorical(parsed.loc[ok, "attribute"], categories=list(attributes)),
                        pd.Categorical(parsed.loc[ok, "object"], categories=list(objects)),
                        dropna=False)
    table.index.name, table.columns.name = "attribute", "object"
    nmi, mi, h_a, h_o = nmi_from_table(table.to_numpy(), average)
    return NMIResult(nmi=nmi, mutual_information=mi, h_attribute=h_a, h_object=h_o,
                     average=average, table=table, n_parsed=int(ok.sum()),
                     n_skipped=int((~ok).sum()))


def tsv_nmi(tsv: str | Path, attributes: Sequence[str], objects: Sequence[str],
            average: str = "arithmetic", caption_column: str = "title") -> NMIResult:
    """:func:`caption_nmi` of the captions of a TSV: a mixture (its ``title`` column) or any
    tab-separated file with a header whose ``caption_column`` holds the captions (a CC3M
    subset: ``caption``). Only that column is read (unquoted, as mixtures are written), so no
    image needs to exist."""
    import csv

    path = Path(tsv).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"caption TSV {str(path)!r} does not exist")
    header = pd.read_csv(path, sep="\t", nrows=0, quoting=csv.QUOTE_NONE).columns
    if caption_column not in header:
        raise ValueError(f"caption TSV {str(path)!r} has no column {caption_column!r}; header "
                         f"is {list(header)} (choose one with --caption-column)")
    titles = pd.read_csv(path, sep="\t", usecols=[caption_column], dtype=str,
                         keep_default_na=False, quoting=csv.QUOTE_NONE)[caption_column]
    return caption_nmi(titles.tolist(), attributes, objects, average)


# ----------------------------------------------------------------------------------------------
# evaluation


#: Prompts of :func:`evaluate_ao` (one template each, as the question is put in the issue).
OBJECT_TEMPLATE = "a photo of a {}."
ATTRIBUTE_TEMPLATE = "a photo of something {}."
PAIR_TEMPLATE = "a photo of a {}."


def evaluate_ao(run_dir: str | Path, data_root: str | Path | None = None,
                epoch: int | None = None, batch_size: int = 256, device: str = "cpu",
                progress: bool = True, write: bool = True) -> pd.DataFrame:
    """Score a CLIP or supervised run on its AO root's test grid (module docstring).

    Args:
        run_dir: a run trained on an AO mixture (its ``mixture.json`` holds the spec).
        data_root: the AO root (default: the manifest's ``data_root``).
        epoch: checkpoint epoch (default: the latest).
        batch_size: images per forward.
        device: where to run the model.
        progress: show progress bars.
        write: also write ``<run>/eval/ao.csv``.

    Returns:
        A tidy table, columns :data:`AO_EVAL_COLUMNS`: per attribute kind (``attribute``
        ``colour`` / ``pattern``) and ``pair_subset`` (:data:`PAIR_SUBSETS`: ``held-out``,
        the image's pair of that kind is held out; ``seen``, every pair of the image occurs
        in training (the manifest's ``train_counts``); ``unseen``, the kind's pair is not
        held out but has no training image, as at knob 1), the metrics ``object_top1``,
        ``attribute_top1`` and ``pair_top1`` (CLIP; a supervised run has ``object_top1``
        only), with ``n_images``. A kind with a single value has no attribute or pair
        metric; a subset without images has no row. ``nmi`` is the run's caption NMI of that
        kind.
    """
    import torch

    from . import checkpoints as ckpt
    from .evaluate import EVAL_DIR, predict
    from .imagecache import load_images
    from .models import nonfinite_tensors, tokenizer_for
    from .runinfo import read_run_info
    from .train import pick_device
    from .zeroshot import class_text_embeddings

    info = read_run_info(run_dir, data_root)
    spec = spec_from_manifest(info.manifest)
    root = info.require_data()
    images = read_ao_images(root)
    test = images[images["split"] == "test"].reset_index(drop=True)
    dev = pick_device(device)
    chosen = ckpt.resolve_epochs(info.run_dir, -1 if epoch is None else epoch)[0]
    loaded = ckpt.load_run_model(info.run_dir, chosen, device=dev)
    bad = nonfinite_tensors(loaded.model)
    if bad:  # a diverged run: its argmax would score class 0 as if it were a prediction
        raise ValueError(f"checkpoint {loaded.path} holds non-finite weights ({', '.join(bad[:3])}"
                         f"{' ...' if len(bad) > 3 else ''}): a diverged run cannot be scored")
    classes = sorted(spec.objects)
    if loaded.kind == "supervised" and loaded.model.num_classes != len(classes):
        raise ValueError(f"supervised run {run_dir} predicts {loaded.model.num_classes} "
                         f"classes, the AO root {root} has {len(classes)}")
    pixels = load_images([str(root / e) for e in test["entry"]], info.image_size,
                         progress=progress, desc="decoding AO test images")
    labels = test["label"].to_numpy()

    # every prompt set of the evaluation: (kind, metric, prompt texts, template, true index
    # per test image); the images are encoded once, against all of them together
    prompts: list[tuple[str, str, list[str], str, np.ndarray]] = []
    for kind, values in spec.kinds().items():
        if loaded.kind == "supervised" or len(values) < 2:
            continue
        truth = test[kind].map({v: i for i, v in enumerate(values)}).to_numpy()
        prompts.append((kind, "attribute_top1", list(values), ATTRIBUTE_TEMPLATE, truth))
        pairs = [(v, o) for v in values for o in classes]
        pair_index = {p: i for i, p in enumerate(pairs)}
        pair_truth = np.asarray([pair_index[(v, o)] for v, o in
                                 zip(test[kind], test["class_name"], strict=True)])
        prompts.append((kind, "pair_top1", [f"{v} {display_name(o)}" for v, o in pairs],
                        PAIR_TEMPLATE, pair_truth))
    with torch.no_grad():
        if loaded.kind == "supervised":
            object_pred = predict(loaded, pixels, None, batch_size, dev).argmax(dim=1).numpy()
            logits = None
        else:
            sets = [([display_name(c) for c in classes], OBJECT_TEMPLATE)]
            sets += [(texts, template) for _, _, texts, template, _ in prompts]
            tokenizer = tokenizer_for(loaded.model_config)
            weights = [class_text_embeddings(loaded.model, tokenizer, texts, (template,),
                                             device=dev) for texts, template in sets]
            logits = predict(loaded, pixels, torch.cat(weights), batch_size, dev).numpy()
            bounds = np.cumsum([0] + [len(w) for w in weights])
            object_pred = logits[:, bounds[0]:bounds[1]].argmax(axis=1)
    correct: dict[tuple[str, str], np.ndarray] = {}
    for kind in spec.kinds():
        correct[(kind, "object_top1")] = object_pred == labels
    for i, (kind, metric, _, _, truth) in enumerate(prompts, start=1):
        assert logits is not None
        correct[(kind, metric)] = logits[:, bounds[i]:bounds[i + 1]].argmax(axis=1) == truth
    masks = pair_subset_masks(spec, test, info.manifest.get("train_counts") or {})
    rows = []
    order = [(k, m) for k in spec.kinds() for m in ("object_top1", "attribute_top1", "pair_top1")]
    for kind, metric in (key for key in order if key in correct):
        hits = correct[(kind, metric)]
        for subset, mask in masks[kind].items():
            if mask.any():
                rows.append({"attribute": kind, "pair_subset": subset, "metric": metric,
                             "value": float(hits[mask].mean()), "n_images": int(mask.sum())})
    nmi = info.manifest.get("nmi") or {}
    table = pd.DataFrame(rows)
    table.insert(0, "run", info.name)
    table.insert(1, "kind", loaded.kind)
    table.insert(2, "seed", info.seed)
    table.insert(3, "mixture_seed", info.mixture_seed)
    table.insert(4, "entanglement", float(spec.entanglement))
    table.insert(5, "nmi", table["attribute"].map(lambda k: nmi.get(k, np.nan)))
    table.insert(6, "epoch", int(chosen))
    table = table[list(AO_EVAL_COLUMNS)]
    if write:
        write_csv(Path(info.run_dir) / EVAL_DIR / "ao.csv", table)
    return table


__all__ = [
    "AOSpec", "AODataset", "ATTRIBUTE_KINDS", "AO_EVAL_COLUMNS", "NMIResult", "allowed_values",
    "bound_value", "build_ao_dataset", "caption_nmi", "class_text", "default_heldout",
    "evaluate_ao", "heldout_flags", "pair_subset_masks", "mixture_name", "nmi_from_table", "parse_captions", "plan_images", "quota",
    "read_ao_images", "spec_from_manifest", "train_distribution", "tsv_nmi",
]
