"""The experiment report: tidy result tables, the figures drawn from them, report.md and HTML.

:func:`collect_results` gathers every run's evaluation and every analysis into long tables;
:func:`gallery` derives one small table per figure and draws it, writing each PNG beside the
CSV it shows (``<out>/results/<name>.{csv,png}``); :func:`write_report` writes
``report.md`` and ``report.html`` from the same tables. Figures are drawn from the CSVs
only, so they can be redrawn without recomputation.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.util.files import atomic_path, write_bytes

from . import layout
from .config import ExperimentConfig
from .layout import RESULTS_DIR, RunPlan, analysed_runs, run_plans

SETUP_ORDER = ("natural-only", "cg-low", "cg-high", "leave-out-domain", "upper-low", "upper-high")
SETUP_LABELS = {"natural-only": "natural-only", "cg-low": "CG low-div.", "cg-high": "CG high-div.",
                "leave-out-domain": "leave-out-domain", "upper-low": "upper bound low",
                "upper-high": "upper bound high"}


# ---------------------------------------------------------------- tables


def run_id(run: RunPlan) -> str:
    """A run's name in the experiment's tables (:attr:`~domainlens.layout.RunPlan.table_id`)."""
    return run.table_id


def _concat(items: Iterable[tuple[RunPlan, Path]]) -> pd.DataFrame:
    """Concatenate per-run tables of ``(RunPlan, csv path)`` items that exist. ``run`` becomes
    :func:`run_id` (directory names repeat across test domains); setup and test domain are
    the plan's; ``seed`` is the table's own (the run's training seed, from its RunInfo), filled
    from the plan only where a table has none."""
    frames = []
    for r, path in items:
        if not path.is_file():
            continue
        frame = pd.read_csv(path).assign(run=run_id(r), setup=r.setup, test_domain=r.test_domain)
        if "seed" not in frame.columns:
            frame["seed"] = r.seed
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def collect_results(config: ExperimentConfig) -> dict[str, pd.DataFrame]:
    """Long tables of the whole experiment: ``accuracy`` (every run's zero-shot table),
    ``cka``, ``patching``, ``circuit_summary``, ``circuit_groups``, ``circuit_nodes``; the
    ``run`` column is :func:`run_id`."""
    runs = run_plans(config)
    analysed = analysed_runs(config)
    source = config.analyses.patch_source

    def per_analysed(path: str) -> pd.DataFrame:
        return _concat([(r, r.analysis_dir / path.format(target=r.test_domain)) for r in analysed])

    circuits = layout.CIRCUITS_DIR
    return {
        "accuracy": _concat([(r, r.eval_table) for r in runs]),
        "cka": per_analysed(f"{layout.CKA_DIR}/{layout.CKA_TABLE}"),
        "patching": per_analysed(f"{layout.PATCHING_DIR}/"
                                 + layout.patching_summary(source, "{target}")),
        "circuit_summary": per_analysed(f"{circuits}/{layout.COMPARISON_SUMMARY}"),
        "circuit_groups": per_analysed(f"{circuits}/{layout.COMPARISON_GROUPS}"),
        "circuit_nodes": per_analysed(f"{circuits}/{layout.CIRCUIT_NODES}"),
    }


def run_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per run (last evaluated epoch): held-out and seen top-1 on its test domain.

    Columns: test_domain, setup, seed, run, epoch, heldout_top1, seen_top1, n_heldout_images.
    """
    top = accuracy[(accuracy["metric"] == "top1") & (accuracy["eval_domain"] == accuracy["test_domain"])]
    last = top[top["epoch"] == top.groupby("run")["epoch"].transform("max")]
    wide = last.pivot_table(index=["test_domain", "setup", "seed", "run", "epoch"],
                            columns="class_subset", values="value").reset_index()
    counts = last[last["class_subset"] == "held-out"].set_index("run")["n_images"]
    wide = wide.rename(columns={"held-out": "heldout_top1", "seen": "seen_top1"})
    wide.columns.name = None  # the pivot's "class_subset" header is no column of the table
    wide["n_heldout_images"] = wide["run"].map(counts).astype("Int64")
    keep = ["test_domain", "setup", "seed", "run", "epoch", "heldout_top1", "seen_top1",
            "n_heldout_images"]
    return _order(wide.reindex(columns=keep))


def headline(per_run: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1) and range over seeds of held-out and seen top-1 per (test domain,
    setup)."""
    grouped = per_run.groupby(["test_domain", "setup"], sort=False)
    table = grouped.agg(
        heldout_mean=("heldout_top1", "mean"), heldout_std=("heldout_top1", "std"),
        heldout_min=("heldout_top1", "min"), heldout_max=("heldout_top1", "max"),
        seen_mean=("seen_top1", "mean"), n_seeds=("seed", "nunique"),
    ).reset_index()
    return _order(table)


def findings(table: pd.DataFrame, chance: float) -> pd.DataFrame:
    """The paper's qualitative accuracy findings checked on the headline table.

    One row per (finding, test domain) with the two numbers compared and ``holds``; a finding
    whose setups were not run is left out.
    """
    means = table.set_index(["test_domain", "setup"])["heldout_mean"]
    rows = []
    checks = [("diversity helps (CG high-div. > natural-only)", "cg-high", "natural-only"),
              ("diversity helps (leave-out-domain > natural-only)", "leave-out-domain", "natural-only"),
              ("CG trails leave-out-domain", "leave-out-domain", "cg-high")]
    for finding, better, worse in checks:
        for domain in table["test_domain"].unique():
            if (domain, better) in means.index and (domain, worse) in means.index:
                a, b = float(means[(domain, better)]), float(means[(domain, worse)])
                rows.append({"finding": finding, "test_domain": domain, "a": a, "b": b,
                             "holds": bool(a > b)})
    by_domain = table.groupby("test_domain")["heldout_mean"].mean()
    if len(by_domain) > 1 and "quickdraw" in by_domain.index:
        hardest = by_domain.idxmin()
        rows.append({"finding": "quickdraw is hardest (lowest mean held-out top-1 over setups)",
                     "test_domain": hardest, "a": float(by_domain["quickdraw"]),
                     "b": float(by_domain.drop("quickdraw").min()), "holds": hardest == "quickdraw"})
    out = pd.DataFrame(rows, columns=["finding", "test_domain", "a", "b", "holds"])
    out.attrs["chance"] = chance
    return out


def _pair_values(cka: pd.DataFrame, summary: pd.DataFrame, class_subset: str) -> dict[str, pd.DataFrame]:
    """Per (run, domain pair, layer) similarity: linear CKA of class means and circuit node
    Jaccard (class mean), for ``class_subset`` where present, else all classes."""
    out = {}
    if not cka.empty:
        subset = class_subset if class_subset in set(cka["class_subset"]) else "all"
        out["CKA"] = cka[(cka["kernel"] == "linear") & (cka["class_subset"] == subset)]
    if not summary.empty:
        part = summary[(summary["metric"] == "node_jaccard") & (summary["statistic"] == "mean")]
        subset = class_subset if class_subset in set(part["class_subset"]) else "all"
        out["node Jaccard"] = part[part["class_subset"] == subset]
    keep = ["run", "test_domain", "domain_a", "domain_b", "layer_index", "value"]
    return {k: v[keep].dropna(subset=["value"]) for k, v in out.items() if not v.empty}


def mechanism_findings(cka: pd.DataFrame, summary: pd.DataFrame, class_subset: str) -> pd.DataFrame:
    """The paper's mechanistic findings checked per analysed run, in intermediate layers
    (every layer but the first and the last):

    * less sharing with the test domain: mean similarity over domain pairs that include the
      run's test domain (``a``) below the mean over the other pairs (``b``);
    * quickdraw shares least: the domain whose pairs have the lowest mean similarity is
      quickdraw (``a``: quickdraw's mean, ``b``: the lowest other domain's).
    """
    rows = []
    for measure, table in _pair_values(cka, summary, class_subset).items():
        for run, part in table.groupby("run", sort=False):
            layers = sorted(part["layer_index"].unique())
            mid = part[part["layer_index"].isin(layers[1:-1] or layers)]
            domain = mid["test_domain"].iloc[0]
            has_test = (mid["domain_a"] == domain) | (mid["domain_b"] == domain)
            a, b = float(mid[has_test]["value"].mean()), float(mid[~has_test]["value"].mean())
            rows.append({"finding": f"less sharing with the test domain, intermediate layers ({measure})",
                         "test_domain": domain, "run": run, "a": a, "b": b, "holds": bool(a < b)})
            domains = sorted(set(mid["domain_a"]) | set(mid["domain_b"]))
            means = {d: float(mid[(mid["domain_a"] == d) | (mid["domain_b"] == d)]["value"].mean())
                     for d in domains}
            if "quickdraw" in means and len(means) > 2:
                lowest = min(means, key=means.get)
                others = min(v for d, v in means.items() if d != "quickdraw")
                rows.append({"finding": f"quickdraw shares least, intermediate layers ({measure})",
                             "test_domain": domain, "run": run, "a": means["quickdraw"], "b": others,
                             "holds": lowest == "quickdraw"})
    return pd.DataFrame(rows, columns=["finding", "test_domain", "run", "a", "b", "holds"])


def cka_by_layer(cka: pd.DataFrame, class_subset: str) -> pd.DataFrame:
    """Linear CKA per layer averaged over domain pairs with / without the run's test domain.

    Uses ``class_subset`` if the table has it, else ``all``. Columns: run, setup, test_domain,
    seed, layer_index, layer, class_subset, pair_group, value, n_pairs.
    """
    if cka.empty:
        return cka
    subset = class_subset if class_subset in set(cka["class_subset"]) else "all"
    part = cka[(cka["kernel"] == "linear") & (cka["class_subset"] == subset)].copy()
    with_test = (part["domain_a"] == part["test_domain"]) | (part["domain_b"] == part["test_domain"])
    part["pair_group"] = np.where(with_test, "with test domain", "other pairs")
    keys = ["run", "setup", "test_domain", "seed", "layer_index", "layer", "class_subset", "pair_group"]
    return part.groupby(keys, sort=False)["value"].agg(value="mean", n_pairs="count").reset_index()


def patching_by_layer(patching: pd.DataFrame) -> pd.DataFrame:
    """Effect per layer of patching the class-mean source activation into the target
    (denoising, all classes pooled): the change in the target images' metric, with its
    bootstrap interval, beside the unpatched target (``receiver_mean``) and source
    (``donor_mean``) levels. Not the recovery fraction: it divides by ``donor_mean -
    receiver_mean``, which is near zero when a model treats both domains alike (the CG runs
    here), and then swings by hundreds. Paired whole-residual patches recover everything by
    construction, so class means are the informative pairing."""
    if patching.empty:
        return patching
    rows = patching[(patching["granularity"] == "site") & (patching["site_kind"] == "layer")
                     & (patching["statistic"] == "effect") & (patching["class_name"] == "all")
                     & (patching["direction"] == "denoising")
                     & (patching["pairing"] == "class_mean")]
    keep = ["run", "setup", "test_domain", "seed", "source_domain", "target_domain", "site_order",
            "site", "layer", "class_subset", "metric", "pairing", "receiver_mean", "donor_mean",
            "value", "ci_low", "ci_high", "n"]
    return rows[keep].sort_values(["run", "site_order"]).reset_index(drop=True)


def node_sharing_by_layer(groups: pd.DataFrame, class_subset: str) -> pd.DataFrame:
    """Node Jaccard per layer, averaged over classes of ``class_subset`` (``all`` if absent)
    and over the domain pairs with the test domain, without quickdraw, and all pairs."""
    if groups.empty:
        return groups
    subset = class_subset if class_subset in set(groups["class_subset"]) else "all"
    rows = groups[(groups["metric"] == "node_jaccard") & (groups["class_subset"] == subset)
                  & groups["pair_group"].isin(["with_test_domain", "excluding_quickdraw", "all_pairs"])]
    keys = ["run", "setup", "test_domain", "seed", "layer_index", "layer", "site", "class_subset",
            "pair_group", "value", "spread", "n_pairs"]
    return rows[keys].reset_index(drop=True)


def circuit_similarity(summary: pd.DataFrame, metric: str = "wl_kernel") -> pd.DataFrame:
    """Per run and domain pair: the class mean of a whole-circuit similarity (WL kernel or edge
    Jaccard) over the held-out classes if present, else all classes."""
    if summary.empty:
        return summary
    part = summary[(summary["metric"] == metric) & (summary["statistic"] == "mean")]
    subset = "held-out" if "held-out" in set(part["class_subset"]) else "all"
    part = part[part["class_subset"] == subset]
    keep = ["run", "setup", "test_domain", "seed", "domain_a", "domain_b", "metric",
            "class_subset", "value"]
    return part[keep].reset_index(drop=True)


def _order(table: pd.DataFrame) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(SETUP_ORDER)}
    keys = [c for c in ("test_domain", "setup", "seed") if c in table.columns]
    return table.sort_values(keys, key=lambda col: col.map(order) if col.name == "setup" else col,
                             kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- figures


def _save(fig, table: pd.DataFrame, stem: Path) -> Path:
    """Write ``stem.csv`` (the table the figure shows) and ``stem.png``, atomically."""
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    _atomic(stem.with_suffix(".csv"), lambda p: table.to_csv(p, index=False))
    _atomic(stem.with_suffix(".png"), lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)
    return stem.with_suffix(".png")


def plot_accuracy(per_run: pd.DataFrame, chance: float):
    """Grouped bars: held-out top-1 on the test domain per setup (mean over seeds, std as
    error bar, seeds as dots), one group per test domain."""
    import matplotlib.pyplot as plt

    domains = list(dict.fromkeys(per_run["test_domain"]))
    setups = [s for s in SETUP_ORDER if s in set(per_run["setup"])]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(domains) * max(1, len(setups)) / 4, 3.2))
    width = 0.8 / max(1, len(setups))
    colours = plt.get_cmap("tab10")
    for j, setup in enumerate(setups):
        for i, domain in enumerate(domains):
            vals = per_run[(per_run["test_domain"] == domain) & (per_run["setup"] == setup)]["heldout_top1"]
            if vals.empty:
                continue
            x = i + (j - (len(setups) - 1) / 2) * width
            ax.bar(x, vals.mean(), width, color=colours(j), yerr=vals.std() if len(vals) > 1 else None,
                   capsize=2, label=SETUP_LABELS[setup] if i == 0 else None)
            ax.scatter(np.full(len(vals), x), vals, s=6, color="black", zorder=3)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label="chance")
    ax.set_xticks(range(len(domains)), domains)
    ax.set_ylabel("held-out-class top-1 on the test domain")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _line_panels(table: pd.DataFrame, x: str, group: str, y: str, ylabel: str, title_of,
                 band: tuple[str, str] | None = None, label_col: str = "layer"):
    import matplotlib.pyplot as plt

    runs = list(dict.fromkeys(table["run"]))
    # one colour and legend order per group across all panels
    colours = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(table[group]))}
    fig, axes = plt.subplots(1, len(runs), figsize=(3.4 * len(runs), 2.9), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs, strict=True):
        part = table[table["run"] == run]
        position = {v: i for i, v in enumerate(sorted(part[x].unique()))}  # evenly spaced layers
        for name, colour in colours.items():
            rows = part[part[group] == name].sort_values(x)
            if rows.empty:
                continue
            xs = rows[x].map(position)
            ax.plot(xs, rows[y], marker="o", markersize=3, label=str(name), color=colour)
            if band is not None:
                ax.fill_between(xs, rows[band[0]], rows[band[1]], alpha=0.2, color=colour)
        ticks = part.drop_duplicates(x).sort_values(x)
        ax.set_xticks(ticks[x].map(position), ticks[label_col], rotation=60, ha="right", fontsize=6)
        ax.set_title(title_of(part.iloc[0]), fontsize=8)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def _run_title(row: pd.Series) -> str:
    return f"test domain {row['test_domain']}: {SETUP_LABELS.get(row['setup'], row['setup'])}, seed {row['seed']}"


def plot_similarity_heatmaps(table: pd.DataFrame):
    """One domain x domain heatmap of circuit similarity per run."""
    import matplotlib.pyplot as plt

    from interp.plots import domain_heatmap

    runs = list(dict.fromkeys(table["run"]))
    fig, axes = plt.subplots(1, len(runs), figsize=(3.3 * len(runs), 3.2), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        part = table[table["run"] == run]
        domains = sorted(set(part["domain_a"]) | set(part["domain_b"]))
        matrix = pd.DataFrame(np.eye(len(domains)), index=domains, columns=domains)
        for _, row in part.iterrows():
            matrix.loc[row["domain_a"], row["domain_b"]] = row["value"]
            matrix.loc[row["domain_b"], row["domain_a"]] = row["value"]
        domain_heatmap(ax, matrix, domains, _run_title(part.iloc[0]))
    fig.tight_layout()
    return fig


@dataclass
class Gallery:
    """Figures written by :func:`gallery`: name -> (PNG path, one sentence on what it shows)."""

    figures: dict[str, tuple[Path, str]] = field(default_factory=dict)


def gallery(config: ExperimentConfig, tables: dict[str, pd.DataFrame], out: Path) -> Gallery:
    """Draw every figure of the report from ``tables`` into ``out`` (PNG beside CSV)."""
    from training.domainnet import class_names

    result = Gallery()
    per_run = run_accuracy(tables["accuracy"])
    chance = 1.0 / len(class_names(config.data_root))
    png = _save(plot_accuracy(per_run, chance), per_run, out / "accuracy_by_setup")
    result.figures["accuracy_by_setup"] = (png, (
        "Held-out-class zero-shot top-1 on each test domain, per training setup: bars are the "
        "mean over seeds, error bars the standard deviation, dots single seeds; the dashed line "
        "is chance."))

    subset = config.analyses.classes
    cka = cka_by_layer(tables["cka"], subset)
    if not cka.empty:
        fig = _line_panels(cka, "layer_index", "pair_group", "value", "linear CKA (class means)",
                           _run_title)
        result.figures["cka_by_layer"] = (_save(fig, cka, out / "cka_by_layer"), (
            "Layerwise linear CKA between domains' class-mean activations, averaged over domain "
            "pairs that include the test domain and over the other pairs."))
    patch = patching_by_layer(tables["patching"])
    if not patch.empty:
        fig = _line_panels(patch, "site_order", "target_domain", "value",
                           "effect on logit diff. (class-mean patch)", _run_title,
                           band=("ci_low", "ci_high"))
        result.figures["patching_by_layer"] = (_save(fig, patch, out / "patching_by_layer"), (
            "Change in test-domain images' logit difference (true class minus runner-up) when "
            f"the class-mean {config.analyses.patch_source} activation of their class is patched "
            "in at each layer, with bootstrap intervals; the unpatched levels of both domains are "
            "the receiver_mean and donor_mean columns."))
    sharing = node_sharing_by_layer(tables["circuit_groups"], subset)
    if not sharing.empty:
        fig = _line_panels(sharing, "layer_index", "pair_group", "value", "node Jaccard", _run_title)
        result.figures["node_sharing_by_layer"] = (_save(fig, sharing, out / "node_sharing_by_layer"), (
            "Circuit node sharing per layer: Jaccard of the kept units of a class's circuits in "
            "two domains, averaged over classes and over pairs with the test domain, without "
            "quickdraw, and all pairs."))
    similarity = circuit_similarity(tables["circuit_summary"])
    if not similarity.empty:
        fig = plot_similarity_heatmaps(similarity)
        result.figures["circuit_similarity"] = (_save(fig, similarity, out / "circuit_similarity"), (
            "Whole-circuit similarity (Weisfeiler-Lehman subtree kernel, normalised) between "
            "domains, averaged over classes."))
    drawing = _circuit_drawing(config, tables["circuit_nodes"], out)
    if drawing is not None:
        result.figures["circuit_drawing"] = drawing
    if config.data.source == "synth":
        result.figures["contact_sheet"] = _contact_sheet(config, out)
    return result


def _circuit_drawing(config: ExperimentConfig, nodes: pd.DataFrame, out: Path):
    """Copy the first analysed run's circuit drawing beside the node table it draws."""
    runs = [r for r in analysed_runs(config) if (r.analysis_dir / layout.CIRCUITS_DIR).is_dir()]
    if not runs or nodes.empty:
        return None
    pngs = sorted((runs[0].analysis_dir / layout.CIRCUITS_DIR).glob(layout.circuit_drawing("*")))
    if not pngs:
        return None
    cls = pngs[0].stem.removeprefix("circuits_")
    rows = nodes[(nodes["run"] == run_id(runs[0])) & (nodes["class_name"] == cls)]
    stem = out / "circuit_drawing"
    _atomic(stem.with_suffix(".csv"), lambda p: rows.to_csv(p, index=False))
    _atomic(stem.with_suffix(".png"), lambda p: shutil.copyfile(pngs[0], p))
    return stem.with_suffix(".png"), (
        f"The circuits of class '{cls}' in every domain (test domain {runs[0].test_domain}, "
        f"{SETUP_LABELS.get(runs[0].setup, runs[0].setup)}): kept units per layer and their "
        "strongest incoming edges.")


def contact_sheet_table(root: Path, n: int = 12) -> pd.DataFrame:
    """The images the contact sheet shows: the first training image of each of the first ``n``
    classes in each domain. Columns domain, class_name, path; ``path`` is relative to ``root``
    (a shared table holds no path of the machine that made it)."""
    from training.domainnet import load_index

    root = Path(root).resolve()
    index = load_index(root, splits=("train",))
    classes = sorted(index["class_name"].unique())[:n]
    shown = (index[index["class_name"].isin(classes)].sort_values("path")
             .groupby(["domain", "class_name"], sort=True).head(1)[["domain", "class_name", "path"]])
    shown = shown.assign(path=[Path(p).resolve().relative_to(root).as_posix() for p in shown["path"]])
    return shown.reset_index(drop=True)


def _contact_sheet(config: ExperimentConfig, out: Path) -> tuple[Path, str]:
    from training.synth import contact_sheet

    n = 12
    stem = out / layout.CONTACT_SHEET
    # the generator picks the image format from the file name, so draw into a .png temp file
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        drawn = contact_sheet(config.data_root, Path(tmp) / "sheet.png", n_classes=n)
        write_bytes(stem.with_suffix(".png"), Path(drawn).read_bytes())
    shown = contact_sheet_table(config.data_root, n)
    _atomic(stem.with_suffix(".csv"), lambda p: shown.to_csv(p, index=False))
    try:
        root = Path(config.data_root).resolve().relative_to(config.out_dir.resolve()).as_posix()
    except ValueError:
        root = Path(config.data_root).name
    return stem.with_suffix(".png"), (
        "The generated data: the first training image of the first classes in each domain "
        f"(image paths relative to the data root, {root}/).")


# ---------------------------------------------------------------- report


def step_times(config: ExperimentConfig) -> pd.DataFrame:
    """Seconds per finished step (from the step records), with the step kind."""
    from .steps import read_seconds

    state = config.out_dir / layout.STATE_DIR
    seconds = read_seconds(state) if state.is_dir() else {}
    table = pd.DataFrame({"step": list(seconds), "seconds": list(seconds.values())})
    table["kind"] = table["step"].str.split("/").str[0]
    return table


def _md_table(table: pd.DataFrame, floats: str = "{:.3f}") -> str:
    def cell(v) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else floats.format(v)
        return str(v)

    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def headline_display(table: pd.DataFrame, subset: str = "held-out") -> pd.DataFrame:
    """The headline table as text cells, ``mean ± std`` over seeds of held-out (or, with
    ``subset="seen"``, the mean of seen-class) top-1, per test domain (rows) and setup
    (columns)."""
    def fmt(row) -> str:
        if subset == "seen":
            return "" if pd.isna(row["seen_mean"]) else f"{row['seen_mean']:.3f}"
        std = "" if pd.isna(row["heldout_std"]) else f" ± {row['heldout_std']:.3f}"
        return f"{row['heldout_mean']:.3f}{std}"

    cells = table.assign(cell=table.apply(fmt, axis=1))
    wide = cells.pivot(index="test_domain", columns="setup", values="cell")
    setups = [s for s in SETUP_ORDER if s in wide.columns]
    wide = wide[setups].rename(columns=SETUP_LABELS).reset_index()
    wide.columns.name = None  # else to_html draws the pivot's "setup" as an empty column
    return wide.rename(columns={"test_domain": "test domain"})


def headline_title(table: pd.DataFrame, subset: str = "held-out") -> str:
    """Heading of a headline table: says "mean ± std over seeds" only when some cell averages
    more than one seed (and so shows a ± for the held-out table)."""
    seeds = int(table["n_seeds"].max()) if len(table) else 0
    if subset == "seen":
        return ("Seen-class top-1 on the test domain"
                + (" (mean over seeds)" if seeds > 1 else " (one seed)"))
    return ("Held-out-class top-1 on the test domain"
            + (" (mean ± std over seeds)" if seeds > 1 else " (one seed)"))


def write_report(config: ExperimentConfig) -> dict[str, Path]:
    """Write the result tables, the figures, ``report.md`` and ``report.html``."""
    out = config.out_dir
    results = out / RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True)
    tables = collect_results(config)
    for name, table in tables.items():
        if not table.empty:
            _atomic(results / f"{name}.csv", lambda p, t=table: t.to_csv(p, index=False))
    per_run = run_accuracy(tables["accuracy"])
    head = headline(per_run)
    _atomic(results / "headline.csv", lambda p: head.to_csv(p, index=False))
    from training.domainnet import class_names, heldout_classes

    n_classes = len(class_names(config.data_root))
    n_heldout = len(heldout_classes(config.data_root))
    found = findings(head, 1.0 / n_classes)
    mechanism = mechanism_findings(tables["cka"], tables["circuit_summary"], config.analyses.classes)
    found = pd.concat([found.assign(run="mean over seeds"), mechanism],
                      ignore_index=True)[list(mechanism.columns)]
    _atomic(results / "findings.csv", lambda p: found.to_csv(p, index=False))
    figures = gallery(config, tables, results)
    times = step_times(config)

    blocks: list[tuple[str, object]] = [
        ("h1", f"domainlens report: {config.name}"),
        ("p", f"Data: {config.data.source} ({n_classes} classes, {n_heldout} held out), model "
              f"{config.train.model}, {config.train.epochs} epochs, seeds "
              f"{list(config.train.seeds)}, test domains {list(config.mixtures.test_domains)}. "
              f"Config: config.json. Chance: {1 / n_classes:.3f}."),
        ("h2", headline_title(head)),
        ("table", headline_display(head)),
        ("h2", headline_title(head, "seen")),
        ("table", headline_display(head, "seen")),
        ("p", "Per run: results/accuracy_by_setup.csv; every domain, subset and epoch: "
              "results/accuracy.csv."),
    ]
    if not found.empty:
        shown = found.assign(a=found["a"].round(3), b=found["b"].round(3),
                             holds=found["holds"].map({True: "yes", False: "no"}))
        blocks += [("h2", "The paper's findings on this data"),
                   ("p", "Accuracy rows: a and b are the mean held-out top-1 of the two sides "
                         "compared. Mechanistic rows (one per analysed run, intermediate layers): "
                         "a and b are the mean similarity of domain pairs with and without the "
                         "test domain, or quickdraw's mean and the lowest other domain's."),
                   ("table", shown)]
    blocks.append(("h2", "Figures"))
    for _name, (png, sentence) in figures.figures.items():
        rel = png.relative_to(out)
        blocks += [("p", sentence + f" Table: {rel.with_suffix('.csv')}."), ("img", str(rel))]
    if not times.empty:
        _atomic(results / "step_times.csv", lambda p: times.to_csv(p, index=False))
        per_kind = times.groupby("kind", sort=False)["seconds"].agg(["count", "sum", "mean"]).reset_index()
        per_kind.columns = ["step kind", "steps", "total s", "mean s"]
        blocks += [("h2", "Time per step"),
                   ("p", f"Total {times['seconds'].sum():.0f} s of recorded step time; every "
                         "step: results/step_times.csv."),
                   ("table", per_kind.round(1))]
    _atomic(out / layout.REPORT_MD, lambda p: Path(p).write_text(_markdown(blocks)))
    _atomic(out / layout.REPORT_HTML, lambda p: Path(p).write_text(_html(blocks, config.name)))
    return {"markdown": out / layout.REPORT_MD, "html": out / layout.REPORT_HTML,
            **{k: v[0] for k, v in figures.figures.items()}}


def _markdown(blocks: list[tuple[str, object]]) -> str:
    parts = []
    for kind, value in blocks:
        if kind == "h1":
            parts.append(f"# {value}")
        elif kind == "h2":
            parts.append(f"## {value}")
        elif kind == "p":
            parts.append(str(value))
        elif kind == "table":
            parts.append(_md_table(value))
        elif kind == "img":
            parts.append(f"![{Path(str(value)).stem}]({value})")
    return "\n\n".join(parts) + "\n"


def _html(blocks: list[tuple[str, object]], title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:960px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}</style></head><body>"]
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(str(value))}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(str(value))}</p>")
        elif kind == "table":
            parts.append(value.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
        elif kind == "img":
            parts.append(f"<img src='{html.escape(str(value))}' alt='{html.escape(Path(str(value)).stem)}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place
    (:func:`training.util.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


def read_findings(out: Path) -> pd.DataFrame:
    """The findings table of a finished experiment."""
    return pd.read_csv(Path(out) / RESULTS_DIR / "findings.csv")


__all__ = ["collect_results", "findings", "gallery", "headline", "read_findings", "run_accuracy",
           "write_report"]
