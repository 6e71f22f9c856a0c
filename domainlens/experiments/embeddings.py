"""Embedding separation of one run, and the aligned-captions comparison of two runs.

:func:`embeddings_run` (``domainlens embeddings``) loads a run's checkpoint, collects the
final image embedding (``hook_image_embed``) over each domain's test split (cached on disk,
the activation cache of :mod:`interp.hooked.activations`), L2-normalises it, and writes under
``out`` (default ``<run>/eval/embeddings``):

* ``separation.csv``: domain-mean and class-mean distances (every ordered domain pair) per
  class subset, with references ``model``, ``init`` (the same on the epoch-0 checkpoint),
  ``domain-shuffle`` and ``class-shuffle`` (:mod:`interp.embeddings.separation`);
* ``separation_dims.csv``: per-dimension ``|mean(domain) - mean(rest)|``;
* ``domain_probe.csv``: cross-validated one-vs-rest linear probe, balanced accuracy per domain;
* ``umap.csv``: 2-D densMAP coordinates of a seeded subsample of up to ``umap_per_domain``
  images per domain (``picture`` = ``all`` and ``no_<domain>``);
* figures ``separation.png``, ``domain_probe.png``, ``umap.png``, ``umap_no_<domain>.png``.

:func:`aligned_captions_run` puts a standard run and its aligned-captions twin (same setup,
test domain, seed and mixture rows; only the captions differ) side by side: each run's
separation tables (computed as above, without UMAP) and its held-out zero-shot accuracy from
``eval/zero_shot.csv``, in ``aligned_captions.csv`` plus ``aligned_captions.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domainlens import layout
from domainlens.experiments.inputs import (
    ImageSettings,
    ModelSource,
    domain_activations,
    load_inputs,
    write_table,
)
from training.runinfo import CLASS_SUBSETS  # held-out (C2), seen (C1), all

if TYPE_CHECKING:  # numpy and pandas load inside the functions: `--help` stays fast
    import numpy as np
    import pandas as pd
    from typing_extensions import Unpack

    from domainlens.experiments.inputs import AnalysisInputs, AnalysisOptions

EMBED_SITE = "hook_image_embed"
REFERENCES: tuple[str, ...] = ("init", "domain-shuffle", "class-shuffle")


@dataclass(frozen=True)
class EmbeddingSettings(ImageSettings):
    """Settings of :func:`embeddings_run` (see ``domainlens embeddings --help``)."""

    classes: Sequence[str] = CLASS_SUBSETS
    references: Sequence[str] = REFERENCES
    folds: int = 5
    umap: bool = True
    umap_per_domain: int = 500
    umap_without: str | None = "quickdraw"
    split: str = "test"

    def validate(self) -> EmbeddingSettings:
        """Raise ``ValueError`` naming a bad value and the allowed ones; return ``self``."""
        from training.util.validate import check_choice, check_choices, check_number

        if not check_choices("class subsets", self.classes, CLASS_SUBSETS):
            raise ValueError(f"class subsets: none given; expected values from {list(CLASS_SUBSETS)}")
        check_choices("references", self.references, REFERENCES)
        check_number("folds", self.folds, low=2, integer=True)
        check_number("umap_per_domain", self.umap_per_domain, low=1, integer=True)
        check_choice("split", self.split, ("train", "test"))
        self.check_images()
        return self


def collect_embeddings(
    run: Any, data: Path, domains: Sequence[str], settings: EmbeddingSettings,
    cache_dir: str | Path | None = None, device: str = "cpu",
) -> tuple[np.ndarray, pd.DataFrame]:
    """L2-normalised final embeddings ``(N, E)`` of ``run`` (a
    :class:`interp.hooked.runs.HookedRun`) over ``domains``, and their index (path, domain,
    class_name, label, split), domain by domain; images decoded as ``run``'s source says."""
    import numpy as np
    import pandas as pd

    from interp.embeddings.separation import l2_normalise

    run.model.check_sites([EMBED_SITE])
    acts = domain_activations(run, data, domains, [EMBED_SITE], settings, split=settings.split,
                              device=device, cache_dir=cache_dir)
    x = np.concatenate([acts[d].acts[EMBED_SITE].numpy() for d in domains])
    index = pd.concat([acts[d].index for d in domains], ignore_index=True)
    return l2_normalise(x), index


def _check_folds(index: pd.DataFrame, domains: Sequence[str], folds: int) -> None:
    counts = index["domain"].value_counts()
    few = {d: int(counts.get(d, 0)) for d in domains if counts.get(d, 0) < folds}
    if few:
        raise ValueError(f"too few images for a {folds}-fold domain probe: {few}; lower --folds "
                         "or --max-per-class")


def separation_of(
    inputs: AnalysisInputs, run: Any, settings: EmbeddingSettings, reference: str = "none",
    shuffles: bool = True,
) -> tuple[dict[str, pd.DataFrame], np.ndarray, pd.DataFrame]:
    """Separation tables of one checkpoint (``reference`` names it in the tables; shuffled
    references only when ``shuffles``), with metadata columns (``model`` first); also returns
    the embeddings and their index."""
    from interp.embeddings.separation import separation_tables

    x, index = collect_embeddings(run, inputs.data, inputs.domains, settings, inputs.cache_dir,
                                  inputs.device)
    _check_folds(index, inputs.domains, settings.folds)
    refs = [r for r in settings.references if r != "init"] if shuffles else []
    tables = separation_tables(x, index["domain"].to_numpy(), index["class_name"].to_numpy(),
                               order=inputs.domains, subsets=inputs.subsets(settings.classes),
                               references=refs, folds=settings.folds, seed=settings.seed)
    meta = inputs.meta(run)
    for name, table in tables.items():
        table["reference"] = table["reference"].replace({"none": reference})
        tables[name] = table.assign(**meta)
    return tables, x, index


def embeddings_run(source: str | Path | ModelSource, settings: EmbeddingSettings | None = None,
                   **options: Unpack[AnalysisOptions]) -> dict[str, Path]:
    """Embedding separation of one model (module docstring); returns ``{"separation": csv,
    "dimensions": csv, "probe": csv, "separation_figure", "probe_figure": png, and with UMAP
    "umap": csv, "umap_figure", "umap_no_<domain>": png}``.

    ``source``: a run directory or any model source, ``options``:
    :class:`~.inputs.AnalysisOptions` (a non-run source needs ``data_root`` and ``out``).
    ``cache_dir``: activation cache (default ``<run or out>/cache/activations``; ``""``
    disables it). ``domains``: default every domain with a test split. The ``init`` reference
    needs the run's epoch-0 checkpoint (refused up front if it is missing or the source is not
    a run).
    """
    import pandas as pd

    from interp.plots.cka import save_figure
    from interp.plots.embeddings import plot_distances, plot_probe

    settings = (settings or EmbeddingSettings()).validate()
    inputs = load_inputs(source, out_name=Path("eval") / layout.EMBEDDINGS_DIR,
                         references=settings.references, **options)
    out = inputs.out
    tables, x, index = separation_of(inputs, inputs.run, settings)
    if "init" in settings.references:
        init_tables, _, _ = separation_of(inputs, inputs.checkpoint(0), settings,
                                          reference="init", shuffles=False)
        tables = {k: pd.concat([tables[k], init_tables[k]], ignore_index=True) for k in tables}
    written = {
        "separation": write_table(out / layout.SEPARATION_TABLE, tables["distances"]),
        "dimensions": write_table(out / layout.SEPARATION_DIMS, tables["dimensions"]),
        "probe": write_table(out / layout.DOMAIN_PROBE, tables["probe"]),
    }
    title = inputs.title()
    subset = "all" if "all" in settings.classes else settings.classes[0]
    written["separation_figure"] = save_figure(
        plot_distances(tables["distances"], subset, title=f"{title}: {subset} classes"),
        out / layout.SEPARATION_FIGURE)
    written["probe_figure"] = save_figure(plot_probe(tables["probe"], title=title),
                                          out / layout.DOMAIN_PROBE_FIGURE)
    if settings.umap:
        written.update(_umap(x, index, settings, inputs.meta(), title, out))
    return written


def _umap(x: np.ndarray, index: pd.DataFrame, settings: EmbeddingSettings, meta: dict,
          title: str, out: Path) -> dict[str, Path]:
    import pandas as pd

    from interp.embeddings.projection import umap_coordinates
    from interp.plots.cka import save_figure
    from interp.plots.embeddings import plot_umap

    doms, cls = index["domain"].to_numpy(), index["class_name"].to_numpy()
    pictures = {"all": ()}
    if settings.umap_without and settings.umap_without in set(doms):
        pictures[f"no_{settings.umap_without}"] = (settings.umap_without,)
    parts, written = [], {}
    for name, exclude in pictures.items():
        coords = umap_coordinates(x, doms, cls, per_domain=settings.umap_per_domain,
                                  seed=settings.seed, exclude=exclude)
        coords.insert(0, "picture", name)
        coords["path"] = index["path"].to_numpy()[coords["row"]]
        parts.append(coords)
        fig_name = layout.UMAP_FIGURE if not exclude else layout.umap_without(exclude[0])
        label = "" if not exclude else f", without {exclude[0]}"
        key = "umap_figure" if not exclude else Path(fig_name).stem
        written[key] = save_figure(plot_umap(coords, title=f"{title}{label}"), out / fig_name)
    written["umap"] = write_table(out / layout.UMAP_TABLE,
                                pd.concat(parts, ignore_index=True).assign(**meta))
    return {"umap": written.pop("umap"), **written}


# ---------------------------------------------------------------- aligned captions
def _captions(info: Any) -> str | None:
    spec = info.manifest.get("spec", {}) if isinstance(info.manifest, dict) else {}
    return spec.get("captions")


def check_twins(standard: Any, aligned: Any) -> None:
    """Refuse two runs (:class:`training.runinfo.RunInfo`) that are not an aligned-captions
    pair: same setup, test domain, training seed and mixture row counts, captions
    ``domain`` vs ``aligned`` (where the manifests record them)."""
    for what in ("setup", "test_domain", "seed"):
        a, b = getattr(standard, what), getattr(aligned, what)
        if a != b:
            raise ValueError(f"not twins: {what} {a!r} ({standard.name}) != {b!r} ({aligned.name})")
    ca, cb = standard.manifest.get("counts"), aligned.manifest.get("counts")
    if ca is not None and cb is not None and ca != cb:
        raise ValueError(f"not twins: mixture row counts differ ({ca} vs {cb})")
    styles = (_captions(standard), _captions(aligned))
    if styles[0] == "aligned" or (styles[1] is not None and styles[1] != "aligned"):
        raise ValueError(f"expected a standard run then an aligned-captions run, got captions "
                         f"{styles[0]!r} ({standard.name}) and {styles[1]!r} ({aligned.name})")


def heldout_accuracy(run_dir: str | Path, epoch: int | None = None) -> pd.DataFrame:
    """Held-out (C2) zero-shot top-1 per eval domain from ``<run>/eval/zero_shot.csv`` at
    ``epoch`` (default: the latest evaluated): columns eval_domain, epoch, value."""
    import pandas as pd

    path = layout.eval_table(Path(run_dir))
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: evaluate the run first (domainlens eval)")
    table = pd.read_csv(path)
    rows = table[(table["metric"] == "top1") & (table["class_subset"] == "held-out")
                 & table["class_name"].fillna("").eq("")]
    if rows.empty:
        raise ValueError(f"{path} has no held-out top-1 rows")
    epoch = int(rows["epoch"].max()) if epoch is None else int(epoch)
    rows = rows[rows["epoch"] == epoch]
    if rows.empty:
        raise ValueError(f"{path} has no held-out top-1 rows for epoch {epoch}")
    return rows[["eval_domain", "epoch", "value"]].reset_index(drop=True)


def aligned_captions_run(standard_run: str | Path, aligned_run: str | Path,
                         settings: EmbeddingSettings | None = None,
                         **options: Unpack[AnalysisOptions]) -> dict[str, Path]:
    """Standard vs aligned captions, side by side; returns ``{"table": csv, "figure": png}``.

    The table (columns model, quantity, domain, variant, run, value; variant ``standard`` /
    ``aligned``) holds, per domain: ``heldout_top1`` (zero-shot top-1 on the held-out classes
    evaluated in that domain), ``domain_probe`` (balanced accuracy), and, against the run's
    test domain, ``domain_mean_distance`` and ``class_mean_distance`` (all classes, the
    ``model`` reference). Both must be run directories (twins trained here). Default ``out``:
    ``<standard run>/eval/aligned_captions``. ``cache_dir`` default: each run's own activation
    cache. ``options``: :class:`~.inputs.AnalysisOptions` (data_root, domains, epoch, out,
    cache_dir, device).
    """
    import pandas as pd

    from interp.plots.cka import save_figure
    from interp.plots.embeddings import plot_side_by_side

    settings = replace((settings or EmbeddingSettings()).validate(), umap=False, classes=("all",),
                       references=())
    runs = {v: ModelSource(p) for v, p in (("standard", standard_run), ("aligned", aligned_run))}
    for source in runs.values():
        if not source.is_run:
            raise ValueError(f"the aligned-captions test compares two runs trained here; "
                             f"{source.describe()} is not a run directory")
    epoch, cache_dir = options.get("epoch"), options.get("cache_dir")
    standard = load_inputs(runs["standard"], out_name=Path("eval") / layout.ALIGNED_DIR, **options)
    twin = runs["aligned"].load(epoch=epoch, device=standard.device, data_root=standard.data_root)
    default_cache = Path(runs["aligned"].source) / layout.ACTIVATION_CACHE / "activations"
    inputs = {"standard": standard,
              "aligned": replace(standard, run=twin, cache_dir=Path(cache_dir) if cache_dir
                                 else (None if cache_dir == "" else default_cache))}
    check_twins(standard.info, twin.info)
    accuracy = {v: heldout_accuracy(runs[v].source, i.run.epoch if epoch is not None else None)
                for v, i in inputs.items()}  # read before the long part: a missing table fails now
    test = standard.run.test_domain
    rows = []
    for variant, where in inputs.items():
        run = where.run
        tables, _, _ = separation_of(where, run, settings)
        for r in accuracy[variant].itertuples():
            rows.append(("heldout_top1", r.eval_domain, variant, run.name, r.value))
        for r in tables["probe"].itertuples():
            rows.append(("domain_probe", r.domain, variant, run.name, r.value))
        dist = tables["distances"]
        if test in standard.domains:
            for measure in ("domain_mean_distance", "class_mean_distance"):
                part = dist[(dist["measure"] == measure) & (dist["domain_a"] == test)
                            & (dist["domain_b"] != test)]
                for r in part.itertuples():
                    rows.append((f"{measure}_to_{test}", r.domain_b, variant, run.name, r.value))
    table = pd.DataFrame(rows, columns=["quantity", "domain", "variant", "run", "value"])
    table.insert(0, "model", table["run"])
    table = table.assign(test_domain=test, setup=standard.run.setup, seed=standard.run.seed)
    written = {"table": write_table(standard.out / layout.ALIGNED_TABLE, table)}
    written["figure"] = save_figure(
        plot_side_by_side(table, title=f"standard vs aligned captions ({test}, seed "
                                       f"{standard.run.seed})"),
        standard.out / layout.ALIGNED_FIGURE)
    return written
