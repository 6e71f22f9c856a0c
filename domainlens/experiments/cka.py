"""The cross-domain CKA experiment of one run: ``domainlens cka`` as a function.

:func:`cka_run` loads a run's checkpoint as a hooked image tower, collects pooled activations
over each domain's test split (cached on disk), computes CKA between every pair of domains at
every layer for each class subset and kernel, and writes under ``out`` (default
``<run>/eval/cka``) ``cka.csv`` (tidy, one row per layer x domain pair x subset x kernel) and
figures drawn from it: ``cka_by_layer.png`` and ``cka_heatmaps_<subset>_<kernel>.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from domainlens import layout
from training.runinfo import CLASS_SUBSETS  # held-out (C2), seen (C1), all

KERNELS: tuple[str, ...] = ("linear", "rbf")
MODES: tuple[str, ...] = ("class_mean", "per_sample")


@dataclass(frozen=True)
class CKASettings:
    """Settings of :func:`cka_run` (see ``domainlens cka --help``)."""

    classes: Sequence[str] = CLASS_SUBSETS
    kernels: Sequence[str] = KERNELS
    unbiased: bool = True
    mode: str = "class_mean"
    missing: str = "error"
    pooling: str = "mean"
    sites: Sequence[str] | None = None
    max_per_class: int | None = None
    split: str = "test"
    seed: int = 0
    batch_size: int = 64
    workers: int = 0
    progress: bool = True

    def validate(self) -> CKASettings:
        """Raise ``ValueError`` naming a bad value and the allowed ones; return ``self``."""
        from training.util.validate import check_choice, check_choices, check_number

        for name, values, allowed in (("class subsets", self.classes, CLASS_SUBSETS),
                                      ("kernels", self.kernels, KERNELS)):
            if not check_choices(name, values, allowed):
                raise ValueError(f"{name}: none given; expected values from {list(allowed)}")
        check_choice("mode", self.mode, MODES)
        check_choice("missing", self.missing, ("error", "intersect"))
        check_choice("split", self.split, ("train", "test"))
        if self.max_per_class is not None:
            check_number("max_per_class", self.max_per_class, low=1, integer=True)
        return self


def cka_run(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    domains: Sequence[str] | None = None,
    settings: CKASettings | None = None,
    *,
    epoch: int | None = None,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Path]:
    """Layerwise cross-domain CKA of one run (module docstring); returns ``{"table": csv,
    <figure name>: png, ...}``.

    ``cache_dir``: activation cache (default ``<run>/cache/activations``; ``False``-y path
    ``""`` disables it). ``domains``: default every domain with a test split.
    """
    import pandas as pd

    from interp.hooked.activations import collect_domain_activations
    from interp.hooked.runs import load_hooked_run
    from interp.plots.cka import plot_cka_by_layer, plot_cka_heatmaps, save_figure
    from interp.similarity.cross_domain import cross_domain_cka
    from training.domainnet import available_domains
    from training.domains import check_domains
    from training.util.files import write_csv

    settings = (settings or CKASettings()).validate()
    run_dir = Path(run_dir)
    run = load_hooked_run(run_dir, epoch=epoch, device=device, data_root=data_root)
    info = run.info
    data = info.require_data()
    domains = list(check_domains(domains)) if domains else list(available_domains(data))
    if len(domains) < 2:
        raise ValueError(f"need at least two domains, got {domains}")
    model = run.model
    layers = model.layers()
    sites = model.check_sites(settings.sites) if settings.sites else [s.name for s in layers]
    # the run's own held-out classes (its manifest), as evaluation, patching and circuits use
    subsets = {s: (None if s == "all" else list(info.subset(s))) for s in settings.classes}
    if cache_dir is None:
        cache_dir = run_dir / layout.ACTIVATION_CACHE / "activations"
    out = Path(out) if out is not None else run_dir / "eval" / layout.CKA_DIR
    out.mkdir(parents=True, exist_ok=True)

    acts = collect_domain_activations(
        model, data, domains, sites, split=settings.split, max_per_class=settings.max_per_class,
        seed=settings.seed, mean=run.mean, std=run.std, pooling=settings.pooling,
        batch_size=settings.batch_size, device=device, cache_dir=cache_dir or None,
        num_workers=settings.workers, progress=settings.progress,
    )
    tables = [
        cross_domain_cka(
            acts, sites=sites, layers=layers, domains=domains, classes=subsets[subset],
            class_subset=subset, missing=settings.missing, mode=settings.mode, kernel=kernel,
            unbiased=settings.unbiased, max_per_class=settings.max_per_class, seed=settings.seed,
            meta={**info.meta(run.epoch), "pooling": settings.pooling, "split": settings.split},
            progress=settings.progress,
        )
        for subset in settings.classes for kernel in settings.kernels
    ]
    table = pd.concat(tables, ignore_index=True)
    written = {"table": write_csv(out / layout.CKA_TABLE, table)}

    title = f"{run.name} (epoch {run.epoch})"
    written["cka_by_layer"] = save_figure(plot_cka_by_layer(table, title=title),
                                          out / layout.CKA_BY_LAYER)
    for (subset, kernel), part in table.groupby(["class_subset", "kernel"], sort=False):
        fig = plot_cka_heatmaps(part, title=f"{title}: {subset} classes, {kernel} CKA")
        name = layout.cka_heatmaps(subset, kernel)
        written[name] = save_figure(fig, out / f"{name}.png")
    return written
