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
from training.runinfo import CLASS_SUBSETS  # held-out (C2), seen (C1), all

if TYPE_CHECKING:  # numpy and pandas load inside the functions: `--help` stays fast
    import numpy as np
    import pandas as pd

EMBED_SITE = "hook_image_embed"
REFERENCES: tuple[str, ...] = ("init", "domain-shuffle", "class-shuffle")


@dataclass(frozen=True)
class EmbeddingSettings:
    """Settings of :func:`embeddings_run` (see ``domainlens embeddings --help``)."""

    classes: Sequence[str] = CLASS_SUBSETS
    references: Sequence[str] = REFERENCES
    folds: int = 5
    umap: bool = True
    umap_per_domain: int = 500
    umap_without: str | None = "quickdraw"
    max_per_class: int | None = None
    split: str = "test"
    seed: int = 0
    batch_size: int = 64
    workers: int = 0
    progress: bool = True

    def validate(self) -> EmbeddingSettings:
        """Raise ``ValueError`` naming a bad value and the allowed ones; return ``self``."""
        from training.util.validate import check_choice, check_choices, check_number

        if not check_choices("class subsets", self.classes, CLASS_SUBSETS):
            raise ValueError(f"class subsets: none given; expected values from {list(CLASS_SUBSETS)}")
        check_choices("references", self.references, REFERENCES)
        check_number("folds", self.folds, low=2, integer=True)
        check_number("umap_per_domain", self.umap_per_domain, low=1, integer=True)
        check_choice("split", self.split, ("train", "test"))
        if self.max_per_class is not None:
            check_number("max_per_class", self.max_per_class, low=1, integer=True)
        return self


def collect_embeddings(
    run: Any, data: Path, domains: Sequence[str], settings: EmbeddingSettings,
    cache_dir: str | Path | None, device: str = "cpu",
) -> tuple[np.ndarray, pd.DataFrame]:
    """L2-normalised final embeddings ``(N, E)`` of ``run`` (a
    :class:`interp.hooked.runs.HookedRun`) over ``domains``, and their index (path, domain,
    class_name, label, split), domain by domain."""
    import numpy as np
    import pandas as pd

    from interp.embeddings.separation import l2_normalise
    from interp.hooked.activations import collect_domain_activations

    run.model.check_sites([EMBED_SITE])
    acts = collect_domain_activations(
        run.model, data, domains, [EMBED_SITE], split=settings.split,
        max_per_class=settings.max_per_class, seed=settings.seed, mean=run.mean, std=run.std,
        batch_size=settings.batch_size, device=device, cache_dir=cache_dir or None,
        num_workers=settings.workers, progress=settings.progress,
    )
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
    run: Any, data: Path, domains: Sequence[str], settings: EmbeddingSettings,
    cache_dir: str | Path | None, device: str = "cpu", reference: str = "none",
    shuffles: bool = True,
) -> tuple[dict[str, pd.DataFrame], np.ndarray, pd.DataFrame]:
    """Separation tables of one checkpoint (``reference`` names it in the tables; shuffled
    references only when ``shuffles``), with metadata columns; also returns the embeddings
    and their index."""
    from interp.embeddings.separation import separation_tables

    x, index = collect_embeddings(run, data, domains, settings, cache_dir, device)
    _check_folds(index, domains, settings.folds)
    subsets = {s: (None if s == "all" else list(run.info.subset(s))) for s in settings.classes}
    refs = [r for r in settings.references if r != "init"] if shuffles else []
    tables = separation_tables(x, index["domain"].to_numpy(), index["class_name"].to_numpy(),
                               order=domains, subsets=subsets, references=refs,
                               folds=settings.folds, seed=settings.seed)
    meta = run.info.meta(run.epoch)
    for name, table in tables.items():
        table["reference"] = table["reference"].replace({"none": reference})
        tables[name] = table.assign(**meta)
    return tables, x, index


def _domains(info: Any, domains: Sequence[str] | None) -> list[str]:
    from training.domainnet import available_domains
    from training.domains import check_domains

    data = info.require_data()
    domains = list(check_domains(domains)) if domains else list(available_domains(data))
    if len(domains) < 2:
        raise ValueError(f"need at least two domains, got {domains}")
    return domains


def embeddings_run(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    domains: Sequence[str] | None = None,
    settings: EmbeddingSettings | None = None,
    *,
    epoch: int | None = None,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Path]:
    """Embedding separation of one run (module docstring); returns ``{"separation": csv,
    "dimensions": csv, "probe": csv, "separation_figure", "probe_figure": png, and with UMAP
    "umap": csv, "umap_figure", "umap_no_<domain>": png}``.

    ``cache_dir``: activation cache (default ``<run>/cache/activations``; ``""`` disables
    it). ``domains``: default every domain with a test split. The ``init`` reference needs
    the run's epoch-0 checkpoint (refused up front if it is missing).
    """
    import pandas as pd

    from interp.hooked.runs import load_hooked_run
    from interp.plots.cka import save_figure
    from interp.plots.embeddings import plot_distances, plot_probe
    from training.util.files import write_csv

    settings = (settings or EmbeddingSettings()).validate()
    run_dir = Path(run_dir)
    run = load_hooked_run(run_dir, epoch=epoch, device=device, data_root=data_root)
    data = run.info.require_data()
    domains = _domains(run.info, domains)
    if "init" in settings.references and 0 not in run.info.checkpoints:
        raise ValueError(f"reference 'init' needs the epoch-0 checkpoint of {run_dir}, which is "
                         "missing; drop it (--references ...) or train with epoch-0 checkpoints")
    if cache_dir is None:
        cache_dir = run_dir / layout.ACTIVATION_CACHE / "activations"
    out = Path(out) if out is not None else run_dir / "eval" / layout.EMBEDDINGS_DIR
    out.mkdir(parents=True, exist_ok=True)

    tables, x, index = separation_of(run, data, domains, settings, cache_dir, device)
    if "init" in settings.references:
        init = load_hooked_run(run_dir, epoch=0, device=device, data_root=data_root)
        init_tables, _, _ = separation_of(init, data, domains, settings, cache_dir, device,
                                          reference="init", shuffles=False)
        tables = {k: pd.concat([tables[k], init_tables[k]], ignore_index=True) for k in tables}
    written = {
        "separation": write_csv(out / layout.SEPARATION_TABLE, tables["distances"]),
        "dimensions": write_csv(out / layout.SEPARATION_DIMS, tables["dimensions"]),
        "probe": write_csv(out / layout.DOMAIN_PROBE, tables["probe"]),
    }
    title = f"{run.name} (epoch {run.epoch})"
    subset = "all" if "all" in settings.classes else settings.classes[0]
    written["separation_figure"] = save_figure(
        plot_distances(tables["distances"], subset, title=f"{title}: {subset} classes"),
        out / layout.SEPARATION_FIGURE)
    written["probe_figure"] = save_figure(plot_probe(tables["probe"], title=title),
                                          out / layout.DOMAIN_PROBE_FIGURE)
    if settings.umap:
        written.update(_umap(x, index, settings, run.info.meta(run.epoch), title, out))
    return written


def _umap(x: np.ndarray, index: pd.DataFrame, settings: EmbeddingSettings, meta: dict,
          title: str, out: Path) -> dict[str, Path]:
    import pandas as pd

    from interp.embeddings.projection import umap_coordinates
    from interp.plots.cka import save_figure
    from interp.plots.embeddings import plot_umap
    from training.util.files import write_csv

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
    written["umap"] = write_csv(out / layout.UMAP_TABLE,
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


def aligned_captions_run(
    standard_run: str | Path,
    aligned_run: str | Path,
    data_root: str | Path | None = None,
    domains: Sequence[str] | None = None,
    settings: EmbeddingSettings | None = None,
    *,
    epoch: int | None = None,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Path]:
    """Standard vs aligned captions, side by side; returns ``{"table": csv, "figure": png}``.

    The table (columns quantity, domain, variant, run, value; variant ``standard`` /
    ``aligned``) holds, per domain: ``heldout_top1`` (zero-shot top-1 on the held-out classes
    evaluated in that domain), ``domain_probe`` (balanced accuracy), and, against the run's
    test domain, ``domain_mean_distance`` and ``class_mean_distance`` (all classes, the
    ``model`` reference). Default ``out``: ``<standard run>/eval/aligned_captions``.
    ``cache_dir`` default: each run's own activation cache.
    """
    import pandas as pd

    from interp.hooked.runs import load_hooked_run
    from interp.plots.cka import save_figure
    from interp.plots.embeddings import plot_side_by_side
    from training.util.files import write_csv

    settings = replace((settings or EmbeddingSettings()).validate(), umap=False, classes=("all",),
                       references=())
    runs = {v: Path(p) for v, p in (("standard", standard_run), ("aligned", aligned_run))}
    loaded = {v: load_hooked_run(p, epoch=epoch, device=device, data_root=data_root)
              for v, p in runs.items()}
    check_twins(loaded["standard"].info, loaded["aligned"].info)
    accuracy = {v: heldout_accuracy(p, loaded[v].epoch if epoch is not None else None)
                for v, p in runs.items()}  # read before the long part: a missing table fails now
    domains = _domains(loaded["standard"].info, domains)
    test = loaded["standard"].test_domain
    rows = []
    for variant, run in loaded.items():
        cache = (runs[variant] / layout.ACTIVATION_CACHE / "activations" if cache_dir is None
                 else cache_dir)
        tables, _, _ = separation_of(run, run.info.require_data(), domains, settings, cache, device)
        for r in accuracy[variant].itertuples():
            rows.append(("heldout_top1", r.eval_domain, variant, run.name, r.value))
        for r in tables["probe"].itertuples():
            rows.append(("domain_probe", r.domain, variant, run.name, r.value))
        dist = tables["distances"]
        if test in domains:
            for measure in ("domain_mean_distance", "class_mean_distance"):
                part = dist[(dist["measure"] == measure) & (dist["domain_a"] == test)
                            & (dist["domain_b"] != test)]
                for r in part.itertuples():
                    rows.append((f"{measure}_to_{test}", r.domain_b, variant, run.name, r.value))
    table = pd.DataFrame(rows, columns=["quantity", "domain", "variant", "run", "value"])
    table = table.assign(test_domain=test, setup=loaded["standard"].setup,
                         seed=loaded["standard"].seed)
    out = (Path(out) if out is not None
           else runs["standard"] / "eval" / layout.ALIGNED_DIR)
    out.mkdir(parents=True, exist_ok=True)
    written = {"table": write_csv(out / layout.ALIGNED_TABLE, table)}
    written["figure"] = save_figure(
        plot_side_by_side(table, title=f"standard vs aligned captions ({test}, seed "
                                       f"{loaded['standard'].seed})"),
        out / layout.ALIGNED_FIGURE)
    return written
