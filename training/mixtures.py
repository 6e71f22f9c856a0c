"""Training mixtures: a declarative spec that resolves to (path, caption, domain, label) rows.

Every mixture is a base set of natural image-text pairs, included whole, plus a rendition part
drawn from the six domains of a DomainNet-format root. For a test domain D with held-out
classes C2 (seen classes C1 = the rest):

================== ============================================== =====================
setup              rendition part                                 D's C2 in training?
================== ============================================== =====================
natural-only       real, all classes                              no (D absent)
cg-low             real + D restricted to C1                      no
cg-high            all six domains, D restricted to C1            no
leave-out-domain   all domains except D                           no (D absent)
upper-low          real + D, all classes                          yes
upper-high         all six domains, all classes                   yes
domain-interp      real + D(C1) + ``other_domains``               no
================== ============================================== =====================

``allow=p`` adds part of each of D's held-out classes to a setup that excludes them
(interpolation towards the upper bound): under a size-matching rule, ``ceil(p * s0 * n)`` rows
of a class of ``n`` rows, ``s0 = target / N_all`` (``N_all``: the setup's rows with D's held-out
classes), as the paper's code; with ``size_rule="none"``, ``ceil(p * n)``.

Row order (:func:`_order`): domain by domain in :data:`DOMAINS` order, within a domain its
classes in order of first appearance in the split file, within a class split-file order
(``selection="first"``) or a seeded permutation per (domain, class) (``"random"``); every
size rule keeps a prefix of each group, so with ``"first"`` the TSV lists the rows as the
paper's code writes them.

Size rules for the rendition part (:func:`match_size`):

* ``paper`` (default): the cg-low size of the same test domain, by the paper's algorithm: each
  (domain, class) group keeps its first ``ceil(shrink * n)`` rows, ``shrink = target / N``
  (with ``allow``: ``(target - A) / (N_all - M)``, A the allowed rows, M D's held-out rows),
  then sweeps remove the surplus: each sweep visits the domains in :data:`SWEEP_ORDER` (real,
  quickdraw, painting, sketch, infograph, clipart) and within a domain its classes in order of
  first appearance, removes the last kept row of each class (one per class; never from an
  allowed group) and stops the moment the size is exact. Setups smaller than the target
  (natural-only) stay whole, as in the paper's code.
* ``balanced``: the same target and first step, but the surplus comes from the groups that
  keep the most rows (one row each, ties in row order): group sizes stay as even as possible
  (this toolkit's rule before it followed the paper's sweep).
* ``fixed``: a given ``size`` for every setup and test domain, trimmed by the paper's sweep.
* ``none``: everything.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .captions import CAPTION_STYLES, make_captions
from .domainnet import class_names, heldout_classes, load_index
from .domains import DOMAIN_LETTERS, DOMAINS, check_domains, display_name
from .util.files import write_bytes, write_json
from .util.seeding import seeded_rng
from .util.validate import check_choice, check_number

SETUPS: tuple[str, ...] = (
    "natural-only", "cg-low", "cg-high", "leave-out-domain", "upper-low", "upper-high",
    "domain-interp",
)
#: The setups ``setup="all"`` builds: those that need no extra parameter.
STANDARD_SETUPS: tuple[str, ...] = SETUPS[:-1]
#: Test domains: every domain but real, which every mixture contains.
TEST_DOMAINS: tuple[str, ...] = tuple(d for d in DOMAINS if d != "real")
SIZE_RULES: tuple[str, ...] = ("paper", "balanced", "fixed", "none")
#: Domain order of the paper's trim sweeps ("start discarding from the largest domains").
SWEEP_ORDER: tuple[str, ...] = ("real", "quickdraw", "painting", "sketch", "infograph",
                                "clipart")
SELECTIONS: tuple[str, ...] = ("first", "random")
TSV_COLUMNS: tuple[str, ...] = ("filepath", "title", "domain", "label")
#: Columns a mixture TSV must have to be read (any OpenCLIP-style TSV has them).
REQUIRED_COLUMNS: tuple[str, ...] = ("filepath", "title")
BASE_DOMAIN = "base"


@dataclass(frozen=True)
class MixtureSpec:
    """What a mixture contains; resolved against a data root by :func:`build_mixture`.

    ``heldout=None`` takes the root's declared held-out classes; ``base_tsv=None`` takes
    ``<data_root>/base.tsv``. ``other_domains`` is only for ``domain-interp``.
    """

    setup: str
    test_domain: str
    data_root: str
    base_tsv: str | None = None
    include_base: bool = True
    heldout: tuple[str, ...] | None = None
    allow: float = 0.0
    other_domains: tuple[str, ...] = ()
    captions: str = "domain"
    size_rule: str = "paper"
    size: int | None = None
    selection: str = "first"
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if self.setup not in SETUPS:
            raise ValueError(f"unknown setup {self.setup!r}; expected one of {list(SETUPS)}")
        if self.test_domain not in TEST_DOMAINS:
            raise ValueError(
                f"unknown test domain {self.test_domain!r}; expected one of {list(TEST_DOMAINS)}"
            )
        check_domains(self.other_domains)
        object.__setattr__(self, "other_domains", tuple(self.other_domains))
        if self.heldout is not None:
            object.__setattr__(self, "heldout", tuple(self.heldout))
        if self.setup == "domain-interp":
            bad = [d for d in self.other_domains if d in ("real", self.test_domain)]
            if bad or not self.other_domains:
                allowed = [d for d in DOMAINS if d not in ("real", self.test_domain)]
                raise ValueError(
                    f"domain-interp needs other_domains among {allowed}, got "
                    f"{list(self.other_domains)}"
                )
        elif self.other_domains:
            raise ValueError(f"other_domains is only for domain-interp, not {self.setup!r}")
        if not 0.0 <= self.allow <= 1.0:
            raise ValueError(f"allow must be in [0, 1], got {self.allow}")
        if self.allow and self.setup in ("upper-low", "upper-high", "natural-only",
                                         "leave-out-domain"):
            raise ValueError(
                f"allow adds held-out classes of the test domain; setup {self.setup!r} "
                "has none to add to (use cg-low, cg-high or domain-interp)"
            )
        if self.captions not in CAPTION_STYLES:
            raise ValueError(
                f"unknown caption style {self.captions!r}; expected one of {list(CAPTION_STYLES)}"
            )
        check_choice("size_rule", self.size_rule, SIZE_RULES)
        if (self.size_rule == "fixed") != (self.size is not None):
            raise ValueError("size is required with size_rule='fixed' and only then")
        if self.size is not None:
            check_number("size", self.size, low=1, integer=True)
        check_choice("selection", self.selection, SELECTIONS)

    @property
    def name(self) -> str:
        """The paper's file name: ``lso-<letters>-no<D>classes[-pseudo][-allow<p>][-aligned]``.

        Letters of the rendition domains (c i p q r s); ``-no<D>classes`` on every setup but
        natural-only (``lso-real-only``), leave-out-domain included although D is absent;
        ``-pseudo`` on the upper bounds (D's held-out classes kept); ``<p>`` as Python prints
        the float (``0.2``, ``1.0``), as the paper's code. ``-aligned`` also on natural-only
        (the paper's code names that file ``lso-real-only`` too; the suffix keeps the two
        files apart).
        """
        if self.setup == "natural-only":
            name = "lso-real-only"
        else:
            letters = "".join(DOMAIN_LETTERS[d] for d in rendition_domains(self))
            name = f"lso-{letters}-no{self.test_domain}classes"
            if self.setup in ("upper-low", "upper-high"):
                name += "-pseudo"
        if self.allow:
            name += f"-allow{float(self.allow)}"
        if self.captions == "aligned":
            name += "-aligned"
        return name


def rendition_domains(spec: MixtureSpec) -> tuple[str, ...]:
    """Domains of the rendition part of ``spec``, in canonical order."""
    d = spec.test_domain
    chosen = {
        "natural-only": {"real"},
        "cg-low": {"real", d},
        "upper-low": {"real", d},
        "cg-high": set(DOMAINS),
        "upper-high": set(DOMAINS),
        "leave-out-domain": set(DOMAINS) - {d},
        "domain-interp": {"real", d, *spec.other_domains},
    }[spec.setup]
    return tuple(x for x in DOMAINS if x in chosen)


def split_entries(paths: Iterable[str], data_root: str | Path) -> list[str]:
    """Each image's split-file entry ``<domain>/<class>/<file>``: its path relative to the
    (resolved) data root, else its last three components. The caption key of an image."""
    prefix = str(Path(data_root).resolve()) + "/"
    return [p[len(prefix):] if p.startswith(prefix) else "/".join(p.split("/")[-3:])
            for p in paths]


@dataclass
class Mixture:
    """A mixture: its rows and its manifest, as built (:func:`build_mixture`) or read from
    disk (:func:`read_mixture`); :func:`write_mixture` writes it.

    Attributes:
        rows: one row per image-text pair, columns ``filepath``, ``title`` and (always when
            built, if present in the TSV when read) ``domain`` and ``label`` (int).
        manifest: ``name``, ``spec`` (the resolved :class:`MixtureSpec` as a dict), classes,
            counts, ...; ``{"name": <stem>}`` for a TSV read without a manifest.
        tsv: the TSV's absolute path (``None`` until written).
        sha256: hash of the TSV's bytes (``""`` until written; a resumed run checks it).
    """

    rows: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    tsv: Path | None = None
    sha256: str = ""

    @property
    def name(self) -> str:
        """The mixture's name (manifest ``name``, else the TSV's stem)."""
        return str(self.manifest.get("name") or (self.tsv.stem if self.tsv else ""))

    @property
    def spec(self) -> dict[str, Any]:
        """The manifest's ``spec`` (``{}`` if absent)."""
        spec = self.manifest.get("spec")
        return dict(spec) if isinstance(spec, dict) else {}


def _order(rows: pd.DataFrame, selection: str, seed: int) -> pd.DataFrame:
    """``rows`` grouped by (domain, class): domains in :data:`DOMAINS` order, within a domain
    its classes in order of first appearance in ``rows`` (split-file order), within a group
    the order of ``rows`` (``"first"``) or a permutation seeded per (seed, domain, class)
    (``"random"``: the same in every mixture, so setups differ only in the rows they hold)."""
    group = rows.groupby(["domain", "class_name"], sort=False)
    first_seen = group.ngroup().to_numpy()  # groups numbered in order of first appearance
    if selection == "first":
        within = np.arange(len(rows))
    else:
        within = np.empty(len(rows), dtype=np.int64)
        for (domain, cls), positions in group.indices.items():
            within[positions] = seeded_rng(seed, "selection", domain, cls).permutation(
                len(positions))
    domain_rank = rows["domain"].map({d: i for i, d in enumerate(DOMAINS)}).to_numpy()
    return rows.iloc[np.lexsort((within, first_seen, domain_rank))]


def _excludes_heldout(spec: MixtureSpec) -> bool:
    """Whether ``spec`` leaves out the test domain's held-out classes (``allow`` adds some)."""
    return spec.setup in ("cg-low", "cg-high", "domain-interp")


def _target_size(spec: MixtureSpec, index: pd.DataFrame, heldout: set[str]) -> int | None:
    """Rendition rows the size rule asks for (None: keep everything): the cg-low size of the
    test domain (real plus D's seen classes) or the fixed ``size``."""
    if spec.size_rule == "fixed":
        return spec.size
    if spec.size_rule == "none":
        return None
    in_real = index["domain"].eq("real")
    in_seen_d = index["domain"].eq(spec.test_domain) & ~index["class_name"].isin(heldout)
    return int((in_real | in_seen_d).sum())


def select_rendition(spec: MixtureSpec, index: pd.DataFrame, heldout: set[str]) -> pd.DataFrame:
    """The rendition rows of ``spec`` after its size rule, in TSV order (see :func:`_order`).

    ``index``: one split of :func:`training.domainnet.load_index` (split-file order).
    """
    candidates = _order(index[index["domain"].isin(rendition_domains(spec))], spec.selection,
                        spec.seed)
    target = _target_size(spec, index, heldout)
    held = (candidates["domain"].eq(spec.test_domain)
            & candidates["class_name"].isin(heldout)).to_numpy()
    protected = np.zeros(len(candidates), dtype=bool)
    if _excludes_heldout(spec):
        keep = ~held
        if spec.allow:
            # the paper's allow: ceil(p * s0 * n) rows per held-out class, s0 = target / N_all
            s0 = 1.0 if target is None else target / len(candidates)
            rank = candidates[held].groupby("class_name", sort=False).cumcount().to_numpy()
            n = candidates[held].groupby("class_name", sort=False)["path"].transform(
                "size").to_numpy()
            allowed = np.flatnonzero(held)[rank < np.ceil(spec.allow * s0 * n)]
            keep[allowed] = True
            protected[allowed] = True
        candidates, protected = candidates[keep], protected[keep]
    if target is None or (spec.size_rule != "fixed" and len(candidates) <= target):
        return candidates  # smaller setups stay whole (the paper's natural-only)
    if target > len(candidates):
        raise ValueError(f"size {target} is larger than the data: setup {spec.setup!r} for "
                         f"{spec.test_domain} has {len(candidates)} images")
    rule = "balanced" if spec.size_rule == "balanced" else "paper"
    return match_size(candidates, target, rule=rule, protected=protected)


def match_size(rows: pd.DataFrame, target: int, rule: str = "paper",
               protected: np.ndarray | pd.Series | None = None) -> pd.DataFrame:
    """Shrink ``rows`` to exactly ``target`` rows, keeping a prefix of each (domain, class) group.

    ``rows``: columns ``domain``, ``class_name``; groups in order (domains, then classes in
    order of first appearance), each group's rows in keep order. ``protected`` (bool per row):
    rows always kept and never trimmed (``allow``'s held-out rows). With ``P`` protected rows,
    every other group keeps its first ``ceil(shrink * n)`` rows, ``shrink = (target - P) /
    (len(rows) - P)``; the surplus (fewer rows than groups) is then removed by ``rule``:

    * ``"paper"``: sweeps over the groups, domains in :data:`SWEEP_ORDER`, within a domain in
      group order, each removing the last kept row of every non-empty group, one per group,
      stopping the moment ``target`` rows remain;
    * ``"balanced"``: one row from each of the groups that keep the most (ties in group order).
    """
    check_choice("rule", rule, ("paper", "balanced"))
    n = len(rows)
    protected = (np.zeros(n, dtype=bool) if protected is None
                 else np.asarray(protected, dtype=bool))
    if protected.shape != (n,):
        raise ValueError(f"protected has shape {protected.shape}, expected ({n},)")
    if target > n:
        raise ValueError(f"size {target} is larger than the data: {n} rows available")
    if target == n:
        return rows
    n_protected = int(protected.sum())
    if target < n_protected:
        raise ValueError(f"size {target} is smaller than the {n_protected} protected rows")
    free = rows[~protected]
    group = free.groupby(["domain", "class_name"], sort=False)
    gid = group.ngroup().to_numpy()
    rank = group.cumcount().to_numpy()
    sizes = np.bincount(gid)
    shrink = (target - n_protected) / (n - n_protected)
    # ceil in floating point without a tolerance, as the paper's code, so that the same
    # inputs give the same rows (0.7000000000000001 * 60 keeps 43)
    keep_n = np.ceil(shrink * sizes).astype(np.int64)
    excess = int(keep_n.sum()) - (target - n_protected)
    if rule == "paper":
        domain_of = free["domain"].to_numpy()[np.unique(gid, return_index=True)[1]]
        sweep_rank = {d: i for i, d in enumerate(SWEEP_ORDER)}
        order = sorted(range(len(sizes)), key=lambda g: (sweep_rank.get(domain_of[g], 99), g))
        while excess > 0:
            if not keep_n[order].any():
                raise ValueError("nothing left to trim")  # unreachable: target >= protected
            for g in order:
                if keep_n[g] > 0:  # the paper's code would pop from an empty list here
                    keep_n[g] -= 1
                    excess -= 1
                    if excess == 0:
                        break
    elif excess > 0:
        keep_n[np.argsort(-keep_n, kind="stable")[:excess]] -= 1
    keep = protected.copy()
    keep[np.flatnonzero(~protected)[rank < keep_n[gid]]] = True
    return rows[keep]


def read_base_tsv(path: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """Read a base set (OpenCLIP TSV with ``filepath`` and ``title``) into mixture rows.

    Relative paths are taken relative to the TSV's folder. ``domain`` becomes ``base``;
    ``label`` is kept if given, else -1 (a class outside the DomainNet classes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"base set {str(path)!r} does not exist; pass base_tsv=<tsv>")
    base = pd.read_csv(path, sep="\t", dtype={"filepath": str, "title": str},
                       keep_default_na=False, quoting=csv.QUOTE_NONE)
    missing = [c for c in ("filepath", "title") if c not in base.columns]
    if missing:
        raise ValueError(f"base set {path} lacks column(s) {missing}; has {list(base.columns)}")
    if base.empty:
        raise ValueError(f"base set {path} has no rows")
    paths = base["filepath"].map(lambda p: p if os.path.isabs(p) else str(path.parent / p))
    labels = base["label"].astype(np.int64) if "label" in base.columns else -1
    out = pd.DataFrame({"filepath": paths, "title": base["title"], "domain": BASE_DOMAIN,
                        "label": labels})
    if (out["label"] >= len(classes)).any():
        raise ValueError(f"base set {path} has labels >= the {len(classes)} classes of the root")
    return out


def _resolve_heldout(spec: MixtureSpec, classes: Sequence[str]) -> tuple[str, ...]:
    heldout = (spec.heldout if spec.heldout is not None
               else heldout_classes(spec.data_root, classes))
    unknown = sorted(set(heldout) - set(classes))
    if unknown:
        raise ValueError(f"held-out classes {unknown} are not classes of {spec.data_root}")
    if not heldout:
        raise ValueError("the held-out class list is empty; give at least one class")
    if len(set(heldout)) >= len(classes):
        raise ValueError("the held-out class list leaves no seen classes")
    return tuple(sorted(heldout))


def build_mixture(
    spec: MixtureSpec,
    index: pd.DataFrame | None = None,
    base: pd.DataFrame | None = None,
) -> Mixture:
    """Resolve ``spec`` into rows and a manifest.

    ``index`` (from :func:`training.domainnet.load_index`, all domains of the split) and
    ``base`` (from :func:`read_base_tsv`) may be passed to share them between many mixtures.
    Rows: base rows first, then the rendition part grouped by (domain, class).
    """
    if index is None:
        index = load_index(spec.data_root, splits=(spec.split,))
    classes = tuple(index.attrs.get("classes") or class_names(spec.data_root))
    index = index[index["split"] == spec.split]
    heldout = _resolve_heldout(spec, classes)
    missing = [d for d in rendition_domains(spec) if not index["domain"].eq(d).any()]
    if missing:
        raise ValueError(f"setup {spec.setup!r} needs domain(s) {missing}, which have no "
                         f"{spec.split} images under {spec.data_root}")

    rows = select_rendition(spec, index, set(heldout))
    target = _target_size(spec, index, set(heldout))
    if target is None:
        target = len(rows)

    # a caption is a function of (image, seed, style) only: the same in every mixture
    titles = make_captions([display_name(c) for c in rows["class_name"]],
                           rows["domain"].tolist(), split_entries(rows["path"], spec.data_root),
                           spec.seed, spec.captions)
    rendition = pd.DataFrame({"filepath": rows["path"].to_numpy(), "title": titles,
                              "domain": rows["domain"].to_numpy(),
                              "label": rows["label"].to_numpy()})
    parts = [rendition]
    if spec.include_base:
        if base is None:
            base_path = spec.base_tsv or str(Path(spec.data_root) / "base.tsv")
            base = read_base_tsv(base_path, classes)
        parts.insert(0, base[list(TSV_COLUMNS)])
    table = pd.concat(parts, ignore_index=True)
    resolved = replace(spec, heldout=heldout)
    manifest = {
        "name": spec.name,
        "spec": json.loads(json.dumps(asdict(resolved))),  # as read back: lists, not tuples
        "classes": list(classes),
        "size_target": int(target),
        "size_matched": bool(len(rendition) == target),
        "counts": mixture_counts(table, heldout, classes),
    }
    return Mixture(rows=table, manifest=manifest)


def mixture_counts(rows: pd.DataFrame, heldout: Iterable[str], classes: Sequence[str]) -> dict:
    """Counts per domain and class subset (``seen``/``held-out``), from the rows themselves."""
    heldout_labels = {classes.index(c) for c in heldout}
    subset = np.where(rows["label"].isin(heldout_labels), "held-out",
                      np.where(rows["label"] >= 0, "seen", "other"))
    table = pd.crosstab(rows["domain"], subset)
    by_domain = {d: {k: int(v) for k, v in table.loc[d].items() if v} for d in table.index}
    rendition = int((rows["domain"] != BASE_DOMAIN).sum())
    return {"total": len(rows), "base": len(rows) - rendition, "rendition": rendition,
            "by_domain": by_domain}


def manifest_path(tsv: str | Path) -> Path:
    """``<dir>/<stem>.json`` beside the TSV."""
    return Path(tsv).with_suffix(".json")


def write_mixture(mixture: Mixture, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/<test_domain>/<name>.tsv`` and its ``.json`` manifest, atomically.

    The TSV is what OpenCLIP's ``CsvDataset`` reads (``filepath``/``title`` columns, absolute
    paths, tab-separated); the manifest adds the spec, counts and the TSV's sha256. Sets
    ``mixture.tsv``, ``mixture.sha256`` and the manifest's ``tsv``/``content_hash``; returns
    the TSV path.
    """
    test_domain = mixture.spec.get("test_domain")
    if not test_domain:
        raise ValueError(f"mixture {mixture.name!r} has no spec.test_domain to file it under")
    tsv = Path(out_dir) / test_domain / f"{mixture.name}.tsv"
    rows = mixture.rows.assign(title=mixture.rows["title"].str.replace(r"[\t\n\r]", " ",
                                                                       regex=True))
    data = rows.to_csv(sep="\t", index=False, quoting=csv.QUOTE_NONE,
                       lineterminator="\n").encode()
    sha = hashlib.sha256(data).hexdigest()
    manifest = dict(mixture.manifest, tsv=str(tsv.resolve()), content_hash=sha)
    write_bytes(tsv, data)
    write_json(manifest_path(tsv), manifest)
    mixture.manifest, mixture.tsv, mixture.sha256 = manifest, tsv.resolve(), sha
    return tsv


def read_mixture(tsv: str | Path) -> Mixture:
    """Read a mixture TSV and its manifest, validating both.

    Only ``filepath`` and ``title`` are required, so any OpenCLIP-style TSV trains; the
    supervised baseline also needs ``label``. Raises ``FileNotFoundError`` if the TSV is
    missing and ``ValueError`` if it is empty, lacks a required column, has empty paths or
    non-integer labels, or if the manifest is not valid JSON.
    """
    tsv = Path(tsv).expanduser().resolve()
    if not tsv.is_file():
        raise FileNotFoundError(f"mixture TSV {str(tsv)!r} does not exist")
    raw = tsv.read_bytes()
    if not raw.strip():
        raise ValueError(f"mixture {str(tsv)!r} is empty")
    try:
        rows = pd.read_csv(
            tsv, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
        )
    except pd.errors.ParserError as error:
        raise ValueError(f"mixture {str(tsv)!r} is not a valid TSV: {error}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(
            f"mixture {str(tsv)!r} lacks column(s) {missing}; header is {list(rows.columns)}, "
            f"expected {list(REQUIRED_COLUMNS)} (plus optional 'domain', 'label')"
        )
    if len(rows) == 0:
        raise ValueError(f"mixture {str(tsv)!r} has a header but no rows")
    empty = rows["filepath"].str.strip() == ""
    if empty.any():
        raise ValueError(f"mixture {str(tsv)!r}: empty filepath on data line {int(empty.idxmax()) + 1}")
    if "label" in rows.columns:
        ok = rows["label"].str.fullmatch(r"-?\d+")
        if not ok.all():
            i = int((~ok).idxmax())
            raise ValueError(
                f"mixture {str(tsv)!r}: label {rows['label'].iloc[i]!r} on data line {i + 1} "
                "is not an integer"
            )
        rows["label"] = rows["label"].astype("int64")
    manifest: dict[str, Any] = {"name": tsv.stem}
    mpath = manifest_path(tsv)
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"mixture manifest {mpath} is not valid JSON: {error}") from None
        if not isinstance(manifest, dict):
            raise ValueError(f"mixture manifest {mpath} must hold a JSON object")
    return Mixture(rows=rows, manifest=manifest, tsv=tsv, sha256=hashlib.sha256(raw).hexdigest())


def build_mixtures(
    data_root: str | Path,
    out_dir: str | Path,
    setups: Iterable[str] = STANDARD_SETUPS,
    test_domains: Iterable[str] = TEST_DOMAINS,
    progress: bool = True,
    **spec_options,
) -> list[Path]:
    """Build and write every (setup, test domain) mixture; the index and base set are read once.

    ``spec_options`` are further :class:`MixtureSpec` fields (``allow``, ``captions``,
    ``size_rule``, ``seed``, ...). Returns the written TSV paths.
    """
    from tqdm.auto import tqdm

    data_root = str(Path(data_root).resolve())
    specs = [MixtureSpec(setup=s, test_domain=d, data_root=data_root, **spec_options)
             for d in check_domains(test_domains, TEST_DOMAINS) for s in setups]
    if not specs:
        raise ValueError("no mixtures requested: give at least one setup and test domain")
    split = specs[0].split
    index = load_index(data_root, splits=(split,))
    classes = index.attrs["classes"]
    base = None
    if specs[0].include_base:
        base = read_base_tsv(specs[0].base_tsv or Path(data_root) / "base.tsv", classes)
    written = []
    for spec in tqdm(specs, desc="mixtures", disable=not progress):
        written.append(write_mixture(build_mixture(spec, index, base), out_dir))
    return written


__all__ = [
    "SETUPS", "STANDARD_SETUPS", "TEST_DOMAINS", "SIZE_RULES", "SELECTIONS", "TSV_COLUMNS",
    "MixtureSpec", "Mixture", "build_mixture", "build_mixtures", "write_mixture", "read_mixture",
    "manifest_path",
    "read_base_tsv", "match_size", "mixture_counts", "rendition_domains",
    "select_rendition", "split_entries", "SWEEP_ORDER",
]
