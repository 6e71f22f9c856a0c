"""The cross-domain patching experiment of one model: ``domainlens patch`` as a function.

:func:`patch_run` loads a run's checkpoint (or any OpenCLIP model: :mod:`.inputs`) as a
hooked tower with a zero-shot head (the model's own text tower and tokenizer) over the
data root's classes, takes up to ``max_per_class`` test images per class of a class subset in
a source and a target domain, and writes under ``out`` (default ``<run>/patching``):

* ``patching_<source>_to_<target>.csv``: tidy summary. Site-level rows (``granularity ==
  "site"``) for every pairing and direction at the model's layers and per-block components,
  overall and per class; sweep rows (``position``, ``head`` or ``channel_group``) overall.
  Statistics ``patched``, ``effect``, ``recovery`` with seeded bootstrap intervals.
* ``patching_examples_<source>_to_<target>.csv``: the site-level per-example values.
* ``recovery_by_layer_<s>_to_<t>.png`` and ``layer_<granularity>_<s>_to_<t>.png``, drawn
  from the summary table only.

Metadata columns (model, run, setup, test_domain, seed = training seed, mixture_seed, epoch)
come from the model's :class:`training.runinfo.RunInfo`.

References (:mod:`interp.controls`): both tables have a ``reference`` column (``"none"``: the
measured patching). The site-level patching (not the sweeps) is repeated, on the same images
and by the same code, for ``"init"`` (the run's epoch-0 checkpoint, with its own zero-shot
head), ``"class-shuffle"`` (donor class ``c'`` of the source patched into class ``c`` of the
target: the source labels relabelled by a seeded derangement of the subset's classes, so the
recovery is normalised by that donor as well) and ``"seed"`` (the run ``seed_reference``).
``controls.csv``: recovery of value and reference, excess and its bootstrap interval over
classes, per (pairing, direction, site); ``measure`` is ``recovery_<pairing>_<direction>``,
``domain_a``/``domain_b`` the source/target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from domainlens import layout
from domainlens.experiments.inputs import ReferenceSettings, load_inputs, write_table
from interp.hooked.base import HookedImageTower
from interp.interventions.patching import (
    DIRECTIONS,
    PAIRINGS,
    component_sites,
    cross_domain_patching,
)
from interp.interventions.units import GRANULARITIES, n_channels, n_positions, site_shapes
from interp.metrics import METRIC_NAMES
from training.runinfo import CLASS_SUBSETS  # held-out (C2), seen (C1), all

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from domainlens.experiments.inputs import AnalysisOptions, ModelSource
    from interp.hooked.runs import HookedRun
    from training.runinfo import RunInfo

#: Site sets for site-level patching: the model's ``layers()`` and per-block components.
SITE_SETS: tuple[str, ...] = ("layers", "components")

#: Head logit scales: plain cosine (1.0, the paper's circuit metric) or the model's learned one.
LOGIT_SCALES: tuple[str, ...] = ("cosine", "model")


@dataclass(frozen=True)
class PatchSettings(ReferenceSettings):
    """Settings of :func:`patch_run` (see ``domainlens patch --help``).

    ``granularities``: sweeps to run (default: ViT ``position`` and ``head``, ResNet
    ``position`` and ``channel_group``); ``sweep_pairing``: pairing used by the sweeps.
    """

    classes: str = "held-out"
    max_per_class: int | None = 8
    metric: str = "logit_diff"
    pairings: Sequence[str] = PAIRINGS
    directions: Sequence[str] = DIRECTIONS
    site_sets: Sequence[str] = SITE_SETS
    granularities: Sequence[str] | None = None
    sweep_pairing: str = "paired"
    n_groups: int = 8
    logit_scale: str = "cosine"
    level: float = 0.95
    seed: int = 0
    max_batch: int = 256
    progress: bool = True

    def validate(self) -> PatchSettings:
        """Check every choice; raises ``ValueError`` naming the bad value and the allowed ones."""
        def check(values: Sequence[str], allowed: Sequence[str], what: str) -> None:
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"{what} {list(values)} invalid; choose from {list(allowed)}")

        check([self.classes], CLASS_SUBSETS, "class subset")
        check([self.metric], METRIC_NAMES, "metric")
        check(list(self.pairings), PAIRINGS, "pairings")
        check(list(self.directions), DIRECTIONS, "directions")
        check(list(self.site_sets), SITE_SETS, "site sets")
        check([self.sweep_pairing], PAIRINGS, "sweep pairing")
        check([self.logit_scale], LOGIT_SCALES, "logit scale")
        if self.granularities:
            check(list(self.granularities), [g for g in GRANULARITIES if g != "site"], "granularities")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1, got {self.max_per_class}")
        if self.n_groups < 1 or self.n_boot < 1 or self.max_batch < 1:
            raise ValueError("n_groups, n_boot and max_batch must be >= 1")
        self.check_references()
        return self


def sweep_sites(model: HookedImageTower, granularity: str) -> list[str]:
    """Sites of a sweep: ``position`` / ``channel_group``: the model's layers with that axis;
    ``head``: ViT ``blocks.i.attn.hook_z``, ResNet ``attnpool.hook_z``."""
    if granularity == "head":
        if model.cfg.architecture == "vit":
            return [f"blocks.{i}.attn.hook_z" for i in range(model.cfg.n_layers)]
        return ["attnpool.hook_z"]
    layers = [layer.name for layer in model.layers()]
    shapes = site_shapes(model, layers)
    count = n_positions if granularity == "position" else n_channels
    return [s for s in layers if count(model.site_layout(s), shapes[s]) > 0]


def _load_domain(
    run: HookedRun, root: Path, domain: str, classes: Sequence[str], max_per_class: int | None,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
    """Up to ``max_per_class`` seeded test images per class of ``domain``, decoded as ``run``'s
    source says: images ``(N, 3, S, S)``, labels ``(N,)`` (indices into all classes), index."""
    from interp.hooked.activations import select_per_class
    from training.domainnet import load_index

    index = load_index(root, [domain], splits=("test",), classes=classes)
    index = select_per_class(index, max_per_class, seed).reset_index(drop=True)
    if index.empty:
        raise ValueError(f"domain {domain!r} has no test images of classes {list(classes)} under {root}")
    label_of = {c: i for i, c in enumerate(run.info.classes)}
    labels = torch.tensor([label_of[c] for c in index["class_name"]], dtype=torch.long)
    return run.images(index["path"].tolist()), labels, index


def _with_head(run: HookedRun, spec: RunInfo, settings: PatchSettings, device: str) -> HookedImageTower:
    """The run's hooked tower in eval mode with a zero-shot head over all classes of the data
    root, from the model's own text tower and tokenizer (cosine logits or times its learned
    scale)."""
    from interp.hooked.head import ZeroShotHead
    from training.zeroshot import class_text_embeddings, class_texts

    model = run.model.eval()
    with torch.no_grad():
        embeddings = class_text_embeddings(run.source, run.text_tokenizer, class_texts(spec.classes))
    scale = float(run.source.logit_scale.detach().exp()) if settings.logit_scale == "model" else 1.0
    model.set_head(ZeroShotHead(embeddings.to(device), class_names=spec.classes, logit_scale=scale))
    return model


def patch_run(model: str | Path | ModelSource, source: str, target: str,
              settings: PatchSettings | None = None,
              **options: Unpack[AnalysisOptions]) -> dict[str, Path]:
    """Cross-domain activation patching of one model between ``source`` and ``target``
    domains, with its references (module docstring).

    ``model``: a run directory or any model source, ``options``:
    :class:`~.inputs.AnalysisOptions` (a non-run source needs ``data_root`` and ``out`` and has
    only the ``class-shuffle`` reference). Returns ``{"summary": csv, "examples": csv,
    "controls": csv, <figure name>: png, ...}``. The ``"seed"`` reference run is read at
    ``epoch`` (default: its latest checkpoint).
    """
    from interp.controls import CONTROLS_FILE, shuffle_pairing, shuffled_labels
    from interp.plots.patching import plot_layer_heatmap, plot_recovery_by_layer

    settings = (settings or PatchSettings()).validate()
    if source == target:
        raise ValueError(f"source and target domains must differ, both are {source!r}")
    references = settings.check_references()
    inputs = load_inputs(model, out_name=layout.PATCHING_DIR, references=references,
                         seed_reference=settings.seed_reference, clip_only="patching",
                         **{**options, "domains": [source, target], "cache_dir": ""})
    run, spec, device, out = inputs.run, inputs.info, inputs.device, inputs.out
    model = _with_head(run, spec, settings, device)

    subset = list(spec.subset(settings.classes))
    if not subset:
        raise ValueError(f"class subset {settings.classes!r} of {spec.data_root} is empty")
    loaded = {d: _load_domain(run, inputs.data, d, subset, settings.max_per_class, settings.seed)
              for d in (source, target)}
    meta = {**inputs.meta(), "class_subset": settings.classes}
    common = dict(
        metric=settings.metric, source_domain=source, target_domain=target,
        class_names=spec.classes, seed=settings.seed, max_batch=settings.max_batch,
        progress=settings.progress, directions=settings.directions,
    )
    (xs, ys, _), (xt, yt, _) = loaded[source], loaded[target]

    sites: list[str] = []
    if "layers" in settings.site_sets:
        sites += [layer.name for layer in model.layers()]
    if "components" in settings.site_sets:
        sites += component_sites(model)
    order = model.site_names()
    sites = sorted(dict.fromkeys(sites), key=order.index)
    frame_args = dict(n_boot=settings.n_boot, level=settings.level, seed=settings.seed)

    def site_level(patched_model: HookedImageTower, source_labels: torch.Tensor, source_images: torch.Tensor,
                   row_meta: dict) -> list:
        return [result for pairing in settings.pairings
                for result in cross_domain_patching(patched_model, source_images, source_labels, xt, yt,
                                                    sites=sites, pairing=pairing, meta=row_meta, **common)]

    results = {"none": site_level(model, ys, xs, meta)}
    if "init" in references:
        if run.epoch == 0:  # the analysed checkpoint is the untrained one
            results["init"] = results["none"]
        else:
            init = inputs.checkpoint(0)
            results["init"] = site_level(_with_head(init, spec, settings, device), ys, xs,
                                         {**inputs.meta(init), "class_subset": settings.classes})
    if "class-shuffle" in references:
        if len(subset) < 2:
            import warnings

            warnings.warn(f"class-shuffle reference skipped: class subset {settings.classes!r} has "
                          f"{len(subset)} class(es)", stacklevel=2)
        else:
            # donor class pairing[c] of the source for class c of the target: relabel the source
            pairing = shuffle_pairing(subset, settings.seed, settings.classes)
            names = [spec.classes[i] for i in ys.tolist()]
            new, keep = shuffled_labels(names, pairing)
            label_of = {c: i for i, c in enumerate(spec.classes)}
            keep_t = torch.as_tensor(keep)
            results["class-shuffle"] = site_level(
                model, torch.tensor([label_of[c] for c in new.tolist()], dtype=torch.long),
                xs[keep_t], meta)
    if "seed" in references:
        other = inputs.seed_run(settings.seed_reference)
        if other.kind != "clip":
            raise ValueError(f"seed reference run {settings.seed_reference} is a {other.kind!r} run")
        results["seed"] = site_level(_with_head(other, spec, settings, device), ys, xs,
                                     {**inputs.meta(other), "class_subset": settings.classes})

    summaries, examples = [], []
    for reference, found in results.items():
        for result in found:
            summaries.append(result.to_frame(per_class=True, **frame_args).assign(reference=reference))
            examples.append(result.examples_frame().assign(reference=reference))

    granularities = settings.granularities
    if granularities is None:
        granularities = ("position", "head") if model.cfg.architecture == "vit" else ("position", "channel_group")
    granularities = [g for g in granularities if g != "site"]
    for granularity in granularities:
        swept = cross_domain_patching(
            model, xs, ys, xt, yt, sites=sweep_sites(model, granularity), granularity=granularity,
            n_groups=settings.n_groups, pairing=settings.sweep_pairing, meta=meta, **common,
        )
        summaries += [r.to_frame(**frame_args).assign(reference="none") for r in swept]

    stem = f"{source}_to_{target}"
    summary = pd.concat(summaries, ignore_index=True)
    written = {"summary": write_table(out / layout.patching_summary(source, target), summary),
               "examples": write_table(out / layout.patching_examples(source, target),
                                     pd.concat(examples, ignore_index=True))}
    written["controls"] = write_table(out / CONTROLS_FILE, _controls(results, spec, settings, meta))
    measured = summary[summary["reference"] == "none"]
    written["recovery_by_layer"] = out / f"recovery_by_layer_{stem}.png"
    plot_recovery_by_layer(measured, path=written["recovery_by_layer"])
    for granularity in granularities:
        written[f"layer_{granularity}"] = out / f"layer_{granularity}_{stem}.png"
        plot_layer_heatmap(measured, granularity, path=written[f"layer_{granularity}"])
    return written


def class_sums(result: object, class_names: Sequence[str]) -> pd.DataFrame:
    """Per intervention and class of a :class:`~interp.interventions.patching.PatchingResult`,
    the sums ``num`` of ``patched - receiver`` and ``den`` of ``target - receiver`` (target: the
    whole-site reference of class-mean patching, else the donor), whose ratio over any set of
    classes is the recovery of those classes' examples. Columns ``site``, ``class_name``,
    ``num``, ``den``."""
    import numpy as np

    values = result.values.double().cpu().numpy()
    receiver = result.receiver.double().cpu().numpy()
    goal = result.reference if result.reference is not None else result.donor
    goal = np.broadcast_to(goal.double().cpu().numpy(), values.shape)
    names = np.asarray(class_names, dtype=object)[result.labels.cpu().numpy()]
    rows = []
    for u, group in enumerate(result.interventions):
        site = "+".join(dict.fromkeys(unit.site for unit in group))
        for name in dict.fromkeys(names.tolist()):
            mask = names == name
            rows.append({"site": site, "class_name": name,
                         "num": float((values[u, mask] - receiver[mask]).sum()),
                         "den": float((goal[u, mask] - receiver[mask]).sum())})
    return pd.DataFrame(rows)


def _controls(results: dict[str, list], spec: object, settings: PatchSettings, meta: dict) -> pd.DataFrame:
    """``controls.csv`` of the site-level patching: recovery of value and each reference over
    classes, excess and a bootstrap interval over classes (ratio of per-class sums)."""
    from interp.controls import CONTROL_KEYS, controls_frame, excess_table, ratio_of_sums

    parts = []
    for reference, found in results.items():
        for result in found:
            parts.append(class_sums(result, spec.classes).assign(
                measure=f"recovery_{result.meta['pairing']}_{result.direction}",
                domain_a=result.meta["source_domain"], domain_b=result.meta["target_domain"],
                class_subset=settings.classes, reference=reference))
    long = pd.concat(parts, ignore_index=True)
    values = long[long["reference"] == "none"].drop(columns=["reference"])
    references = long[long["reference"] != "none"]
    table = excess_table(values, references, by=list(CONTROL_KEYS), columns=("num", "den"),
                         statistic=ratio_of_sums, n_boot=settings.n_boot, level=settings.level,
                         seed=settings.seed)
    return controls_frame(table, meta)
