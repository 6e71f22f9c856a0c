"""The cross-domain CKA experiment of one model: ``domainlens cka`` as a function.

:func:`cka_run` loads a run's checkpoint (or any OpenCLIP model: :mod:`.inputs`) as a hooked
image tower, collects pooled activations over each domain's test split (cached on disk, the
images preprocessed as the source says), computes CKA between every pair of domains at every
layer for each class subset and kernel, and writes under ``out`` (default
``<run>/eval/cka``) ``cka.csv`` (tidy, one row per layer x domain pair x subset x kernel,
the ``model`` column first) and
figures drawn from it: ``cka_by_layer.png`` and ``cka_heatmaps_<subset>_<kernel>.png``.

References (:mod:`interp.controls`): ``cka.csv`` has a ``reference`` column, ``"none"`` for the
measured value plus the rows of every requested reference, computed by the same code:
``"init"`` (the run's epoch-0 checkpoint, same images), ``"class-shuffle"`` (domain A's class
``c`` against domain B's class ``c'``: B's labels relabelled by a seeded derangement of the
pair's class list before the same cross-domain CKA call) and ``"seed"`` (the run
``seed_reference``, same classes, domains and images). ``controls.csv``: value, reference,
excess and its bootstrap interval over classes (class-mean rows of A and B resampled
jointly; ``mode="per_sample"`` rows get NaN intervals) per (kernel, site, pair, subset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from domainlens import layout
from domainlens.experiments.inputs import ImageSettings, ReferenceSettings, load_inputs, write_table
from training.runinfo import CLASS_SUBSETS  # held-out (C2), seen (C1), all

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from domainlens.experiments.inputs import AnalysisInputs, AnalysisOptions, ModelSource

KERNELS: tuple[str, ...] = ("linear", "rbf")
MODES: tuple[str, ...] = ("class_mean", "per_sample")


@dataclass(frozen=True)
class CKASettings(ReferenceSettings, ImageSettings):
    """Settings of :func:`cka_run` (see ``domainlens cka --help``)."""

    classes: Sequence[str] = CLASS_SUBSETS
    kernels: Sequence[str] = KERNELS
    unbiased: bool = True
    mode: str = "class_mean"
    missing: str = "error"
    pooling: str = "mean"
    sites: Sequence[str] | None = None
    split: str = "test"

    def validate(self) -> CKASettings:
        """Raise ``ValueError`` naming a bad value and the allowed ones; return ``self``."""
        from training.util.validate import check_choice, check_choices

        for name, values, allowed in (("class subsets", self.classes, CLASS_SUBSETS),
                                      ("kernels", self.kernels, KERNELS)):
            if not check_choices(name, values, allowed):
                raise ValueError(f"{name}: none given; expected values from {list(allowed)}")
        check_choice("mode", self.mode, MODES)
        check_choice("missing", self.missing, ("error", "intersect"))
        check_choice("split", self.split, ("train", "test"))
        self.check_images()
        self.check_references()
        return self


def cka_run(source: str | Path | ModelSource, settings: CKASettings | None = None,
            **options: Unpack[AnalysisOptions]) -> dict[str, Path]:
    """Layerwise cross-domain CKA of one model and its references (module docstring); returns
    ``{"table": csv, "controls": csv, <figure name>: png, ...}``.

    ``source``: a run directory or any model source (:class:`~.inputs.ModelSource`);
    ``options``: :class:`~.inputs.AnalysisOptions` (pretrained, heldout, data_root, domains,
    epoch, out, cache_dir, device). A non-run source needs ``data_root`` and ``out`` and only
    has the ``class-shuffle`` reference. ``cache_dir``: activation cache (default
    ``<run or out>/cache/activations``; ``""`` disables it), shared by the reference
    checkpoints (keyed by the weights). ``domains``: default every domain with a test split.
    The ``"seed"`` reference run is read at ``epoch`` (default: its latest checkpoint) on this
    run's data and classes.
    """
    import pandas as pd

    from interp.controls import CONTROLS_FILE
    from interp.plots.cka import plot_cka_by_layer, plot_cka_heatmaps, save_figure

    settings = (settings or CKASettings()).validate()
    references = settings.check_references()
    inputs = load_inputs(source, out_name=Path("eval") / layout.CKA_DIR, references=references,
                         seed_reference=settings.seed_reference, **options)
    run, out = inputs.run, inputs.out
    layers = run.model.layers()
    sites = run.model.check_sites(settings.sites) if settings.sites else [s.name for s in layers]
    # the model's own held-out classes (a run's manifest), as evaluation, patching and circuits use
    common = dict(inputs=inputs, sites=sites, layers=layers,
                  subsets=inputs.subsets(settings.classes), settings=settings)

    acts, table = _analyse(run, **common)
    tables = {"none": table}
    other_acts = {}
    if "init" in references:  # epoch 0 analysed already: the same checkpoint, not twice
        init = inputs.checkpoint(0)
        other_acts["init"], tables["init"] = (acts, table) if init is run else _analyse(init, **common)
    if "class-shuffle" in references:
        tables["class-shuffle"] = _class_shuffle_table(acts, table, **common)
    if "seed" in references:
        other = inputs.seed_run(settings.seed_reference)
        other.model.check_sites(sites)
        other_acts["seed"], tables["seed"] = _analyse(other, **common)
    full = pd.concat([t.assign(reference=r) for r, t in tables.items()], ignore_index=True)
    written = {"table": write_table(out / layout.CKA_TABLE, full)}
    controls = _controls(acts, other_acts, tables, subsets=common["subsets"], settings=settings,
                         meta=inputs.meta())
    written["controls"] = write_table(out / CONTROLS_FILE, controls)

    title = inputs.title()
    written["cka_by_layer"] = save_figure(plot_cka_by_layer(table, title=title),
                                          out / layout.CKA_BY_LAYER)
    for (subset, kernel), part in table.groupby(["class_subset", "kernel"], sort=False):
        fig = plot_cka_heatmaps(part, title=f"{title}: {subset} classes, {kernel} CKA")
        name = layout.cka_heatmaps(subset, kernel)
        written[name] = save_figure(fig, out / f"{name}.png")
    return written


def _analyse(run: Any, *, inputs: AnalysisInputs, sites: Sequence[str], layers: Any,
             subsets: dict[str, list[str] | None], settings: CKASettings) -> tuple[dict[str, Any], Any]:
    """Activations ``{domain: DomainActivations}`` of one checkpoint over the analysis' images
    and its CKA table (no ``reference`` column)."""
    import pandas as pd

    from interp.similarity.cross_domain import cross_domain_cka

    acts = inputs.activations(run, sites, settings, split=settings.split, pooling=settings.pooling)
    tables = [
        cross_domain_cka(
            acts, sites=sites, layers=layers, domains=inputs.domains, classes=subsets[subset],
            class_subset=subset, missing=settings.missing, mode=settings.mode, kernel=kernel,
            unbiased=settings.unbiased, max_per_class=settings.max_per_class, seed=settings.seed,
            meta={**inputs.meta(run), "pooling": settings.pooling, "split": settings.split},
            progress=settings.progress,
        )
        for subset in settings.classes for kernel in settings.kernels
    ]
    return acts, pd.concat(tables, ignore_index=True)


def _pair_classes(acts: dict[str, Any], a: str, b: str, classes: list[str] | None) -> list[str]:
    """The classes of a pair as cross-domain CKA chooses them: requested and in both domains
    (default: all both have, sorted)."""
    shared = set(acts[a].labels.tolist()) & set(acts[b].labels.tolist())
    return sorted(shared) if classes is None else [c for c in classes if c in shared]


def _pairs(domains: Sequence[str]) -> list[tuple[str, str]]:
    import itertools

    return list(itertools.combinations(domains, 2))


def _class_shuffle_table(acts: dict[str, Any], table: Any, *, inputs: AnalysisInputs,
                         sites: Sequence[str], layers: Any, subsets: dict[str, list[str] | None],
                         settings: CKASettings) -> Any:
    """The class-shuffle reference: per pair (A, B), B's rows of class ``pairing[c]`` relabelled
    ``c`` (:func:`interp.controls.shuffled_labels`), then the same cross-domain CKA call; the
    ``meta`` columns of the measured table."""
    import pandas as pd

    from interp.controls import shuffle_pairing, shuffled_labels
    from interp.similarity.cross_domain import cross_domain_cka

    first = table.iloc[0]
    meta = {c: first[c] for c in table.columns if c in {"model", "run", "setup", "test_domain", "seed",
                                                        "epoch", "mixture_seed", "pooling", "split"}}
    parts = []
    for subset in settings.classes:
        for a, b in _pairs(inputs.domains):
            pair_classes = _pair_classes(acts, a, b, subsets[subset])
            if len(pair_classes) < 2:
                continue
            pairing = shuffle_pairing(pair_classes, settings.seed, subset)
            labels_b, keep = shuffled_labels(acts[b].labels, pairing)
            keep_t = torch.as_tensor(keep)
            shuffled = {a: acts[a].acts, b: {s: x[keep_t.to(x.device)] for s, x in acts[b].acts.items()}}
            for kernel in settings.kernels:
                parts.append(cross_domain_cka(
                    shuffled, {a: acts[a].labels, b: labels_b}, sites=sites, layers=layers,
                    domains=[a, b], classes=pair_classes, class_subset=subset, missing="error",
                    mode=settings.mode, kernel=kernel, unbiased=settings.unbiased,
                    max_per_class=settings.max_per_class, seed=settings.seed, meta=meta,
                    progress=False,
                ))
    return pd.concat(parts, ignore_index=True) if parts else table.iloc[:0]


def _controls(acts: dict[str, Any], other_acts: dict[str, dict[str, Any]], tables: dict[str, Any], *,
              subsets: dict[str, list[str] | None], settings: CKASettings,
              meta: dict[str, Any]) -> Any:
    """``controls.csv`` rows: per (kernel, site, pair, subset, reference) the table values,
    their excess and a bootstrap interval over classes (class-mean mode)."""
    import numpy as np
    import pandas as pd

    from interp.controls import bootstrap_excess, controls_frame, resampled_cka, shuffle_pairing
    from interp.similarity.cross_domain import class_means

    keys = ["class_subset", "kernel", "site", "domain_a", "domain_b"]
    looked = {r: t.set_index(keys)["value"].to_dict() for r, t in tables.items()}
    means: dict[tuple, Any] = {}

    def matrix(source: dict[str, Any], tag: str, domain: str, site: str, classes: list[str]) -> Any:
        key = (tag, domain, site, tuple(classes))
        if key not in means:
            x = torch.as_tensor(source[domain].acts[site])
            means[key] = class_means(x, source[domain].labels, classes)[0]
        return means[key]

    rows = []
    for row in tables["none"].itertuples(index=False):
        subset, kernel, site, a, b = key = tuple(getattr(row, k) for k in keys)
        value, n = row.value, int(row.n_classes)
        classes = _pair_classes(acts, a, b, subsets[subset])
        for reference in (r for r in tables if r != "none"):
            ref_value = looked[reference].get(key)
            if ref_value is None:
                continue
            low = high = float("nan")
            if settings.mode == "class_mean":
                xa, xb = matrix(acts, "none", a, site, classes), matrix(acts, "none", b, site, classes)
                if reference == "class-shuffle":
                    pairing = shuffle_pairing(classes, settings.seed, subset)
                    ya, yb = xa, matrix(acts, "none", b, site, [pairing[c] for c in classes])
                else:
                    source = other_acts[reference]
                    ya = matrix(source, reference, a, site, classes)
                    yb = matrix(source, reference, b, site, classes)

                def value_fn(index: np.ndarray, xa=xa, xb=xb, kernel=kernel) -> np.ndarray:
                    return resampled_cka(xa, xb, index, kernel, settings.unbiased)

                def reference_fn(index: np.ndarray, ya=ya, yb=yb, kernel=kernel) -> np.ndarray:
                    return resampled_cka(ya, yb, index, kernel, settings.unbiased)

                interval = bootstrap_excess(value_fn, reference_fn, len(classes),
                                            n_boot=settings.n_boot, seed=settings.seed)
                low, high = interval.low, interval.high
            rows.append({"measure": f"cka_{kernel}", "site": site, "domain_a": a, "domain_b": b,
                         "class_subset": subset, "reference": reference, "value": float(value),
                         "reference_value": float(ref_value),
                         "excess": float(value) - float(ref_value), "excess_low": low,
                         "excess_high": high, "n_classes": n})
    return controls_frame(pd.DataFrame(rows), meta)
