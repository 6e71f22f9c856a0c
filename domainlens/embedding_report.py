"""The report's embedding section: separation, the domain probe, SAE feature sharing and the
aligned-captions comparison (issue 15), from the per-run tables the analyses wrote.

Every figure is drawn from a table written beside it (mean, std and range over seeds); the
aligned-captions findings are judged on the spread over seeds of the per-seed difference, like
the experiments' findings in :mod:`domainlens.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from . import layout

#: Per-run tables of the embedding analyses: name in the report's tables -> path below the
#: run's analysis folder.
TABLES: dict[str, str] = {
    "separation": f"{layout.EMBEDDINGS_DIR}/{layout.SEPARATION_TABLE}",
    "domain_probe": f"{layout.EMBEDDINGS_DIR}/{layout.DOMAIN_PROBE}",
    "sharing_scores": f"{layout.FEATURES_DIR}/{layout.SHARING_SCORES}",
    "sae_quality": f"{layout.FEATURES_DIR}/{layout.SAE_QUALITY}",
    "aligned": f"{layout.ALIGNED_DIR}/{layout.ALIGNED_TABLE}",
}

SEPARATION_MEASURE = "class_mean_distance"
ALIGNED_SEPARATION = "separation from the test domain falls with aligned captions"
ALIGNED_ACCURACY = "aligned captions raise held-out top-1"


def _over_seeds(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    from .report import over_seeds  # imported here: the report imports this module

    return over_seeds(table, keys)


def probe_table(probe: pd.DataFrame) -> pd.DataFrame:
    """Linear domain probe (balanced accuracy, one domain vs the rest) per (test domain,
    setup, reference, domain) over seeds."""
    return _over_seeds(probe, ["test_domain", "setup", "reference", "domain"])


def separation_table(separation: pd.DataFrame) -> pd.DataFrame:
    """Class-conditional distance (mean over shared classes of the distance between class
    means, all classes) of every domain to the run's test domain, per reference, over seeds."""
    part = separation[(separation["measure"] == SEPARATION_MEASURE)
                      & (separation["class_subset"] == "all")
                      & (separation["domain_a"] == separation["test_domain"])
                      & (separation["domain_b"] != separation["test_domain"])]
    return _over_seeds(part.rename(columns={"domain_b": "domain"}),
                       ["test_domain", "setup", "reference", "domain"])


def sharing_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Each domain's SAE sharing score (held-out classes, final embedding site) per reference,
    over seeds."""
    part = scores[scores["class_subset"] == "held-out"] if "class_subset" in scores else scores
    return _over_seeds(part, ["test_domain", "setup", "site", "reference", "domain"])


def sae_quality_table(quality: pd.DataFrame) -> pd.DataFrame:
    """The measured SAEs' reconstruction quality (explained variance, L0, dead fraction) per
    (test domain, site, split), mean over seeds."""
    part = quality[quality["reference"] == "none"]
    cols = ["explained_variance", "l0", "dead_fraction"]
    return part.groupby(["test_domain", "setup", "site", "split"], sort=False)[cols].mean().reset_index()


def aligned_table(aligned: pd.DataFrame) -> pd.DataFrame:
    """Standard vs aligned captions per (test domain, quantity, domain, variant) over seeds."""
    return _over_seeds(aligned, ["test_domain", "setup", "quantity", "domain", "variant"])


def aligned_findings(aligned: pd.DataFrame, spread_row: Callable[..., dict]) -> list[dict]:
    """Two rows per (test domain, setup), judged on the per-seed differences: the mean distance
    of the other domains to the test domain (standard minus aligned: positive = separation
    falls) and the held-out top-1 on the test domain (aligned minus standard)."""
    rows: list[dict] = []
    if aligned.empty:
        return rows
    for (domain, setup), part in aligned.groupby(["test_domain", "setup"], sort=False):
        distance = part[part["quantity"] == f"{SEPARATION_MEASURE}_to_{domain}"]
        accuracy = part[(part["quantity"] == "heldout_top1") & (part["domain"] == domain)]
        per_seed = {
            ALIGNED_SEPARATION: (distance.groupby(["seed", "variant"])["value"].mean().unstack(),
                                 "standard", "aligned"),
            ALIGNED_ACCURACY: (accuracy.groupby(["seed", "variant"])["value"].mean().unstack(),
                               "aligned", "standard"),
        }
        for finding, (wide, a, b) in per_seed.items():
            if wide.empty or not {a, b} <= set(wide.columns):
                continue
            wide = wide.dropna(subset=[a, b])
            rows.append(spread_row(finding, domain, setup, wide[a], wide[b],
                                   (wide[a] - wide[b]).to_numpy(dtype=float)))
    return rows


def _reference_bars(stats: pd.DataFrame, ylabel: str, chance: float | None = None):
    """One panel per test domain: a bar per (domain, reference), mean ± std over seeds."""
    from matplotlib.figure import Figure

    domains = list(dict.fromkeys(stats["test_domain"]))
    fig = Figure(figsize=(0.6 + 3.6 * len(domains), 3.0), layout="constrained")
    axes = fig.subplots(1, len(domains), squeeze=False, sharey=True)[0]
    for ax, test in zip(axes, domains, strict=True):
        part = stats[stats["test_domain"] == test]
        names = list(dict.fromkeys(part["domain"]))
        refs = list(dict.fromkeys(part["reference"]))
        width = 0.8 / len(refs)
        for i, ref in enumerate(refs):
            rows = part[part["reference"] == ref].set_index("domain").reindex(names)
            ax.bar(np.arange(len(names)) + (i - (len(refs) - 1) / 2) * width, rows["mean"],
                   width, yerr=rows["std"].fillna(0), capsize=2, label=ref)
        if chance is not None:
            ax.axhline(chance, color="grey", ls="--", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        ax.set_title(f"test domain {test}", fontsize=8)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=6)
    return fig


def figures(tables: dict[str, pd.DataFrame], out: Path,
            save: Callable[[object, pd.DataFrame, Path], Path]) -> dict[str, tuple[Path, str]]:
    """The section's figures ``{name: (png, caption)}``, each saved beside its table by
    ``save(figure, table, stem)``."""
    from interp.plots.embeddings import plot_side_by_side

    result: dict[str, tuple[Path, str]] = {}
    if not tables["separation"].empty:
        sep = separation_table(tables["separation"])
        result["embedding_separation"] = (save(_reference_bars(sep, "distance to the test domain"), sep, out / "embedding_separation"), (
            "Embedding separation: per domain, the distance between its class means and the test "
            "domain's (final L2-normalised image embedding, mean over shared classes), beside "
            "the epoch-0 network (init), class-shuffled and domain-shuffled pairings: mean ± "
            "std over seeds."))
    if not tables["domain_probe"].empty:
        probe = probe_table(tables["domain_probe"])
        result["domain_probe"] = (save(_reference_bars(probe, "balanced accuracy (CV)", chance=0.5), probe, out / "domain_probe"), (
            "Linear domain probe: cross-validated balanced accuracy of telling each domain's "
            "embeddings from the others' (0.5: inseparable), beside its references: mean ± std "
            "over seeds."))
    if not tables["sharing_scores"].empty:
        sharing = sharing_table(tables["sharing_scores"])
        result["feature_sharing"] = (save(_reference_bars(sharing, "SAE sharing score"), sharing, out / "feature_sharing"), (
            "SAE feature sharing: each domain's mean share@k (k = 5..20) of its held-out "
            "classes' most frequent top latents with the other domains, beside class-shuffled "
            "pairs (and the epoch-0 network): mean ± std over seeds."))
    if not tables["aligned"].empty:
        aligned = aligned_table(tables["aligned"])
        for test in dict.fromkeys(aligned["test_domain"]):
            part = aligned[aligned["test_domain"] == test].rename(columns={"mean": "value"})
            name = f"aligned_captions_{test}"
            fig = plot_side_by_side(part, f"standard vs aligned captions, test domain {test}")
            result[name] = (save(fig, part, out / name), (
                f"Aligned captions (test domain {test}): held-out top-1 per domain, the domain "
                "probe and the distance of every domain to the test domain, for the standard "
                "run and its twin trained with captions without domain words (same setup, seed "
                "and rows): means over seeds."))
    return result
