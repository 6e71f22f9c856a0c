"""The experiment report: tidy result tables, the figures drawn from them, report.md and HTML.

:func:`collect_results` gathers every run's evaluation and every analysis (with its
``reference`` rows and ``controls.csv``, issue 13) into long tables; :func:`findings` and
:func:`mechanism_findings` check the paper's findings on them, judged on the controls
(:func:`judge`: the init and class-shuffle references, the seed spread, or a bootstrap over
classes and images with one seed); :func:`gallery` derives one small table per figure and
draws it, writing each PNG and a vector PDF beside the CSV it shows
(``<out>/results/<name>.{csv,png,pdf}``); :func:`write_report` writes ``report.md`` and
``report.html`` from the same tables. Figures are drawn from the CSVs only, so they can be
redrawn without recomputation.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.util.files import atomic_path, write_bytes

from . import embedding_report, layout
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
        if r.kind != "clip" or r.experiment != "main" or r.split is not None:
            frame = frame.assign(**run_columns(r))
        if "seed" not in frame.columns:
            frame["seed"] = r.seed
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: Columns that tell the experiments' runs apart (:func:`run_columns`); the main CLIP runs
#: of a fixed split have the defaults.
RUN_COLUMNS = {"experiment": "main", "kind": "clip", "variant": "", "split": "fixed",
               "allow": 0.0, "n_extra": 0}


def run_columns(r: RunPlan) -> dict[str, object]:
    """The :data:`RUN_COLUMNS` of one run: its experiment, model kind (clip / supervised),
    variant label, class split, allowed fraction and number of extra domains."""
    return {"experiment": r.experiment, "kind": r.kind, "variant": r.label,
            "split": "fixed" if r.split is None else f"split{r.split}", "allow": float(r.allow),
            "n_extra": len(r.other_domains)}


def with_run_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every :data:`RUN_COLUMNS` column (missing values: the defaults; the
    variant of a main run is its setup)."""
    if table.empty:
        return table
    table = table.copy()
    for column, default in RUN_COLUMNS.items():
        if column not in table.columns:
            table[column] = default
        table[column] = table[column].fillna(default) if default != "" else table[column]
    missing = table["variant"].isna() | (table["variant"] == "")
    table.loc[missing, "variant"] = table.loc[missing, "setup"]
    return table


def main_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """The rows of the configured setups' CLIP runs (the headline's), without the run
    columns when they hold only defaults."""
    if accuracy.empty or "experiment" not in accuracy.columns:
        return accuracy
    main = accuracy[accuracy["experiment"].fillna("main") == "main"]
    if main["split"].fillna("fixed").eq("fixed").all():
        main = main.drop(columns=[c for c in RUN_COLUMNS if c in main.columns])
    return main


def collect_results(config: ExperimentConfig) -> dict[str, pd.DataFrame]:
    """Long tables of the whole experiment: ``accuracy`` (every run's zero-shot table),
    ``cka``, ``patching``, ``circuit_summary``, ``circuit_groups``, ``circuit_nodes`` (each
    with a ``reference`` column: ``none`` for measured rows, else the control) and
    ``controls`` (every analysis folder's ``controls.csv``, with an ``analysis`` column); the
    ``run`` column is :func:`run_id`."""
    runs = run_plans(config)
    analysed = analysed_runs(config)
    source = config.analyses.patch_source

    def per_analysed(path: str) -> pd.DataFrame:
        return _concat([(r, r.analysis_dir / path.format(target=r.test_domain)) for r in analysed])

    circuits = layout.CIRCUITS_DIR
    accuracy = _concat([(r, r.eval_table) for r in runs])
    if "experiment" in accuracy.columns:  # the experiments' runs beside the main ones
        accuracy = with_run_columns(accuracy)
    tables = {
        "accuracy": accuracy,
        "cka": per_analysed(f"{layout.CKA_DIR}/{layout.CKA_TABLE}"),
        "patching": per_analysed(f"{layout.PATCHING_DIR}/"
                                 + layout.patching_summary(source, "{target}")),
        "circuit_summary": per_analysed(f"{circuits}/{layout.COMPARISON_SUMMARY}"),
        "circuit_groups": per_analysed(f"{circuits}/{layout.COMPARISON_GROUPS}"),
        "circuit_nodes": per_analysed(f"{circuits}/{layout.CIRCUIT_NODES}"),
        # [analyses.circuit_variants]: each variant's summary, with a variant column
        "circuit_variants": pd.concat(
            [per_analysed(f"{layout.circuit_variant_dir(name)}/{layout.COMPARISON_SUMMARY}")
             .assign(variant=name) for name in config.analyses.circuit_variants]
            or [pd.DataFrame()], ignore_index=True),
    }
    tables.update({name: per_analysed(path) for name, path in embedding_report.TABLES.items()})
    # every analysis table gets a reference column ("none": measured) for the controls
    tables = {k: v if k == "accuracy" else with_reference(v) for k, v in tables.items()}
    controls = [per_analysed(f"{folder}/{layout.CONTROLS}").assign(analysis=folder)
                for folder in (layout.CKA_DIR, layout.PATCHING_DIR, circuits)]
    controls = [c for c in controls if len(c.columns) > 1]
    tables["controls"] = pd.concat(controls, ignore_index=True) if controls else pd.DataFrame()
    return tables


def run_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per run (last evaluated epoch): held-out and seen top-1 on its test domain.

    Columns: test_domain, setup, seed, run, epoch, heldout_top1, seen_top1, n_heldout_images.
    """
    top = accuracy[(accuracy["metric"] == "top1") & (accuracy["eval_domain"] == accuracy["test_domain"])]
    last = top[top["epoch"] == top.groupby("run")["epoch"].transform("max")]
    extra = [c for c in RUN_COLUMNS if c in last.columns]  # the experiments' runs
    wide = last.pivot_table(index=["test_domain", "setup", "seed", "run", "epoch", *extra],
                            columns="class_subset", values="value").reset_index()
    counts = last[last["class_subset"] == "held-out"].set_index("run")["n_images"]
    wide = wide.rename(columns={"held-out": "heldout_top1", "seen": "seen_top1"})
    wide.columns.name = None  # the pivot's "class_subset" header is no column of the table
    wide["n_heldout_images"] = wide["run"].map(counts).astype("Int64")
    keep = ["test_domain", "setup", "seed", "run", "epoch", "heldout_top1", "seen_top1",
            "n_heldout_images", *extra]
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


# ---------------------------------------------------------------- findings, judged on controls

#: Columns of the findings table. ``a``/``b``: the two sides compared (means over seeds, with
#: their std); ``difference`` = a - b with the interval [low, high] the verdict used;
#: ``learned``: the same difference on the excess over the init reference (value minus the
#: epoch-0 checkpoint's), ``beyond_shuffle``: on the excess over the class-shuffle reference;
#: ``holds``: True / False / NA (undecided); ``decided_by``: what decided it (see :func:`judge`).
FINDING_COLUMNS = ["finding", "test_domain", "setup", "run", "n_seeds", "a", "a_std", "b", "b_std",
                   "difference", "low", "high", "learned", "learned_low", "learned_high",
                   "beyond_shuffle", "beyond_shuffle_low", "beyond_shuffle_high", "interval",
                   "holds", "decided_by"]
#: The references a finding is checked against, in order, and their findings columns.
CONTROL_LEVELS = (("init", "learned"), ("class-shuffle", "beyond_shuffle"))
MEASURED = "none"


def with_reference(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``reference`` column (issue 13's tables; a table without one holds
    measured values only: all ``"none"``)."""
    if table.empty:
        return table
    if "reference" not in table.columns:
        return table.assign(reference=MEASURED)
    return table.assign(reference=table["reference"].fillna(MEASURED).astype(str))


@dataclass(frozen=True)
class Level:
    """One quantity a finding is checked on: its point estimate and interval (NaN: none)."""

    name: str       # "value" (the measured values), "init", "class-shuffle"
    point: float
    low: float = float("nan")
    high: float = float("nan")


def judge(levels: Iterable[Level], sign: int, noise: str) -> tuple[object, str]:
    """``(holds, decided_by)`` of a finding that predicts ``sign * difference > 0`` on every
    level (the measured difference, then its excess over each reference).

    Levels are checked in order. A level whose interval lies entirely on the wrong side of
    zero (or has no width and is not on the predicted side; without an interval: whose point
    is not) refutes the finding: ``(False, level name)``. If no
    level refutes it, it holds when every interval excludes zero, ``(True, noise)``; an
    interval that includes zero leaves it undecided, ``(NA, noise)``; without intervals (one
    seed, no bootstrap) it is undecided, ``(NA, "undecided")``. ``noise`` names the intervals
    (``"seed spread"``, ``"bootstrap"``)."""
    tol = 1e-9  # differences of equal means are zero up to rounding
    undecided, any_interval = False, False
    for level in levels:
        if not np.isfinite(level.point):
            continue
        if np.isfinite(level.low) and np.isfinite(level.high):
            any_interval = True
            low, high = sorted((sign * level.low, sign * level.high))
            # refuted: the interval lies below zero, or has no width at or below zero (e.g.
            # seeds agreeing that the learned difference is nil); touching zero is undecided
            if high < -tol or (high - low <= tol and high <= tol):
                return False, level.name
            undecided |= low <= tol
        else:
            if sign * level.point <= tol:
                return False, level.name
            undecided = True
    if undecided:
        return pd.NA, noise if any_interval else "undecided"
    return True, noise


def _seed_level(name: str, per_seed: np.ndarray) -> Level:
    """Mean over seeds with the interval mean ± std (ddof 1); no interval with one seed."""
    per_seed = np.asarray(per_seed, dtype=float)
    per_seed = per_seed[np.isfinite(per_seed)]
    if not per_seed.size:
        return Level(name, float("nan"))
    mean = float(per_seed.mean())
    if per_seed.size < 2:
        return Level(name, mean)
    std = float(per_seed.std(ddof=1))
    return Level(name, mean, mean - std, mean + std)


def _boot_level(name: str, point: float, replicates: np.ndarray) -> Level:
    """A point estimate with the 95% percentile interval of its bootstrap replicates."""
    low, high = np.percentile(replicates, [2.5, 97.5])
    return Level(name, point, float(low), float(high))


def _finding_row(finding: str, test_domain: str, setup: str, run: str, n_seeds: int,
                 a: np.ndarray, b: np.ndarray, levels: list[Level], sign: int, noise: str,
                 interval: str) -> dict:
    holds, decided = judge(levels, sign, noise)
    by_name = {level.name: level for level in levels}
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    row = {"finding": finding, "test_domain": test_domain, "setup": setup, "run": run,
           "n_seeds": n_seeds, "a": float(np.nanmean(a)), "b": float(np.nanmean(b)),
           "a_std": float(np.nanstd(a, ddof=1)) if a.size > 1 else float("nan"),
           "b_std": float(np.nanstd(b, ddof=1)) if b.size > 1 else float("nan"),
           "interval": interval, "holds": holds, "decided_by": decided}
    for name, column in (("value", "difference"), *CONTROL_LEVELS):
        level = by_name.get(name, Level(name, float("nan")))
        row.update({column: level.point, f"{column}_low" if column != "difference" else "low":
                    level.low, f"{column}_high" if column != "difference" else "high": level.high})
    return row


def _findings_frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    out["holds"] = out["holds"].astype("boolean")
    return out


def class_top1(accuracy: pd.DataFrame, per_run: pd.DataFrame) -> pd.DataFrame:
    """Per run, the held-out classes' accuracies on its test domain at the run's last evaluated
    epoch (``class_top1`` rows of ``eval/zero_shot.csv``). Columns run, class_name, value,
    n_images."""
    last = per_run.set_index("run")["epoch"]
    rows = accuracy[(accuracy["metric"] == "class_top1") & (accuracy["class_subset"] == "held-out")
                    & (accuracy["eval_domain"] == accuracy["test_domain"])]
    rows = rows[rows["epoch"] == rows["run"].map(last)]
    return rows[["run", "test_domain", "class_name", "value", "n_images"]].reset_index(drop=True)


def bootstrap_top1(per_class: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap replicates ``(n_boot,)`` of each run's held-out top-1 over classes and images.

    Each replicate draws the classes with replacement (the same draw for every run of a test
    domain: their test images are the same, so differences between setups are paired on
    classes), then each drawn class's correct count from Binomial(n_images, accuracy) (the
    same as redrawing its images with replacement). Seeded by ``seed``, the test domain and
    the run (:func:`training.util.seeding.seeded_rng`)."""
    from training.util.seeding import seeded_rng

    out: dict[str, np.ndarray] = {}
    for domain, rows in per_class.groupby("test_domain", sort=True):
        classes = sorted(rows["class_name"].unique())
        draw = seeded_rng(seed, "findings", "classes", str(domain)).integers(
            len(classes), size=(n_boot, len(classes)))
        for run, part in rows.groupby("run", sort=True):
            part = part.set_index("class_name").reindex(classes)
            p = part["value"].to_numpy(dtype=float)
            n = part["n_images"].fillna(0).to_numpy(dtype=int)
            p = np.nan_to_num(p)
            rng = seeded_rng(seed, "findings", "images", str(run))
            correct = rng.binomial(n[draw], p[draw])
            total = n[draw].sum(axis=1)
            out[str(run)] = correct.sum(axis=1) / np.maximum(total, 1)
    return out


def findings(table: pd.DataFrame, chance: float, per_run: pd.DataFrame | None = None,
             accuracy: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The paper's qualitative accuracy findings checked on the headline table.

    One row per (finding, test domain) with the two numbers compared (``a``, ``b``: means over
    seeds), their difference and an interval (columns :data:`FINDING_COLUMNS`). With at least
    two seeds in every cell compared (``per_run``), the interval is the mean ± std over seeds
    of the difference computed per seed (``decided_by`` "seed spread"); otherwise a bootstrap
    95% interval over classes and images (:func:`bootstrap_top1`, from ``accuracy``'s
    per-class rows; "bootstrap"). A difference whose interval includes zero is undecided
    (``holds`` NA), not "no" (:func:`judge`). A finding whose setups were not run is left out.
    """
    means = table.set_index(["test_domain", "setup"])["heldout_mean"].to_dict()
    seeds: dict[tuple[str, str], dict[int, float]] = {}
    if per_run is not None and not per_run.empty:
        for (d, s), part in per_run.groupby(["test_domain", "setup"]):
            seeds[(d, s)] = dict(zip(part["seed"].astype(int), part["heldout_top1"], strict=True))
    replicates: dict[tuple[str, str], np.ndarray] = {}
    if per_run is not None and accuracy is not None and not accuracy.empty:
        per_class = class_top1(accuracy, per_run)
        if not per_class.empty:
            boot = bootstrap_top1(per_class, n_boot=n_boot, seed=seed)
            for (d, s), part in per_run.groupby(["test_domain", "setup"]):
                runs = [boot[r] for r in part["run"] if r in boot]
                if len(runs) == len(part):
                    replicates[(d, s)] = np.mean(runs, axis=0)

    def check(finding, domain, sign, cells, sides) -> dict | None:
        """``sides(values) -> (a, b)`` of a mapping (test domain, setup) -> top-1."""
        if any(c not in means for c in cells):
            return None
        a, b = sides(means)
        common = sorted(set.intersection(*(set(seeds.get(c, {})) for c in cells))) if seeds else []
        if len(common) >= 2 and all(len(seeds[c]) >= 2 for c in cells):
            per_seed = [sides({c: seeds[c][s] for c in cells}) for s in common]
            pa, pb = np.array([p[0] for p in per_seed]), np.array([p[1] for p in per_seed])
            level = _seed_level("value", pa - pb)
            level = Level("value", a - b, level.low, level.high)
            noise, interval = "seed spread", f"mean ± std over {len(common)} seeds"
            n_seeds = len(common)
        elif all(c in replicates for c in cells):
            ra, rb = sides({c: replicates[c] for c in cells})
            level, pa, pb = _boot_level("value", a - b, ra - rb), np.array([a]), np.array([b])
            noise, interval = "bootstrap", "95% bootstrap over classes and images"
            n_seeds = min(len(seeds.get(c, {0: 0})) for c in cells)
        else:
            level, pa, pb = Level("value", a - b), np.array([a]), np.array([b])
            noise, interval, n_seeds = "undecided", "none", 1
        row = _finding_row(finding, domain, "", "mean over seeds", n_seeds, pa, pb, [level],
                           sign, noise, interval)
        row.update(a=a, b=b)
        return row

    rows = []
    checks = [("diversity helps (CG high-div. > natural-only)", "cg-high", "natural-only"),
              ("diversity helps (leave-out-domain > natural-only)", "leave-out-domain", "natural-only"),
              ("CG trails leave-out-domain", "leave-out-domain", "cg-high")]
    domains = list(dict.fromkeys(table["test_domain"]))
    for finding, better, worse in checks:
        for domain in domains:
            row = check(finding, domain, +1, [(domain, better), (domain, worse)],
                        lambda m, d=domain, x=better, y=worse: (m[(d, x)], m[(d, y)]))
            if row is not None:
                rows.append(row)
    by_domain = table.groupby("test_domain")["heldout_mean"].mean()
    if len(by_domain) > 1 and "quickdraw" in by_domain.index:
        cells = [(d, s) for d, s in means if d in by_domain.index]
        setups_of = {d: [s for dd, s in cells if dd == d] for d in by_domain.index}

        def hardest_sides(m):
            mean_of = {d: np.mean([m[(d, s)] for s in setups_of[d]], axis=0) for d in setups_of}
            others = np.min([mean_of[d] for d in mean_of if d != "quickdraw"], axis=0)
            return mean_of["quickdraw"], others

        row = check("quickdraw is hardest (lowest mean held-out top-1 over setups)",
                    str(by_domain.idxmin()), -1, cells, hardest_sides)
        rows.append(row)
    out = _findings_frame(rows)
    out.attrs["chance"] = chance
    return out


#: The circuit measures the mechanistic findings check: node Jaccard per layer, and the
#: whole-circuit edge Jaccard and WL kernel (one value per domain pair, layer_index -1).
CIRCUIT_MEASURES: dict[str, str] = {"node_jaccard": "node Jaccard",
                                    "edge_jaccard": "edge Jaccard", "wl_kernel": "WL kernel"}


def _pair_values(cka: pd.DataFrame, summary: pd.DataFrame, class_subset: str,
                 variant: str = "") -> dict[str, pd.DataFrame]:
    """Per (run, reference, domain pair, layer) similarity: linear CKA of class means and
    the circuit measures of :data:`CIRCUIT_MEASURES` (class means), for ``class_subset``
    where present, else all classes. ``variant``: a circuit variant's name, appended to the
    circuit measures' names."""
    out = {}
    if not cka.empty:
        subset = class_subset if class_subset in set(cka["class_subset"]) else "all"
        out["CKA"] = cka[(cka["kernel"] == "linear") & (cka["class_subset"] == subset)]
    if not summary.empty:
        for metric, name in CIRCUIT_MEASURES.items():
            part = summary[(summary["metric"] == metric) & (summary["statistic"] == "mean")]
            subset = class_subset if class_subset in set(part["class_subset"]) else "all"
            out[f"{name} [{variant}]" if variant else name] = part[part["class_subset"] == subset]
    keep = ["run", "setup", "test_domain", "seed", "reference", "domain_a", "domain_b",
            "layer_index", "value"]
    tables = {}
    for name, table in out.items():
        table = with_reference(table)
        for column, default in (("setup", ""), ("seed", -1)):
            if column not in table.columns:
                table = table.assign(**{column: default})
        tables[name] = table[keep].dropna(subset=["value"])
    return {k: v for k, v in tables.items() if not v.empty}


def _excess(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The measured rows with ``value`` replaced by value minus ``reference``'s value of the
    same (run, domain pair, layer); empty without that reference."""
    keys = ["run", "domain_a", "domain_b", "layer_index"]
    measured = table[table["reference"] == MEASURED]
    ref = table[table["reference"] == reference].groupby(keys)["value"].mean().rename("ref")
    if ref.empty:
        return measured.iloc[:0]
    merged = measured.join(ref, on=keys, how="inner")
    return merged.assign(value=merged["value"] - merged["ref"]).drop(columns="ref")


def _less_sharing(mid: pd.DataFrame, domain: str) -> tuple[float, float] | None:
    """(mean over pairs with ``domain``, mean over the other pairs)."""
    has = (mid["domain_a"] == domain) | (mid["domain_b"] == domain)
    if not has.any() or has.all():
        return None
    return float(mid[has]["value"].mean()), float(mid[~has]["value"].mean())


def _quickdraw_least(mid: pd.DataFrame, domain: str) -> tuple[float, float] | None:
    """(quickdraw's mean over its pairs, the lowest other domain's mean)."""
    domains = sorted(set(mid["domain_a"]) | set(mid["domain_b"]))
    means = {d: float(mid[(mid["domain_a"] == d) | (mid["domain_b"] == d)]["value"].mean())
             for d in domains}
    if "quickdraw" not in means or len(means) <= 2:
        return None
    return means["quickdraw"], min(v for d, v in means.items() if d != "quickdraw")


def mechanism_findings(cka: pd.DataFrame, summary: pd.DataFrame, class_subset: str,
                       variant: str = "") -> pd.DataFrame:
    """The paper's mechanistic findings checked per analysed (test domain, setup) over its
    seeds, in intermediate layers (every layer but the first and the last):

    * less sharing with the test domain: mean similarity over domain pairs that include the
      test domain (``a``) below the mean over the other pairs (``b``);
    * quickdraw shares least: the mean over quickdraw's pairs (``a``) below the lowest other
      domain's (``b``).

    Each is checked (:func:`judge`) on the measured difference ``a - b``, then on the same
    difference of the excess over the init reference (``learned``: is the pattern learned, or
    already in the untrained network?) and over the class-shuffle reference
    (``beyond_shuffle``: is it class-specific?), each as the mean ± std over seeds: it holds
    only when all three are separated from zero by more than the seed spread. With one seed
    it can be refuted but not confirmed (undecided). Whole-circuit measures (edge Jaccard, WL
    kernel) have one "layer". ``variant``: the circuit variant ``summary`` comes from (its
    name is appended to the measure). Columns :data:`FINDING_COLUMNS`."""
    rows = []
    for measure, table in _pair_values(cka, summary, class_subset, variant).items():
        groups = table.groupby(["test_domain", "setup"], sort=False)
        for (domain, setup), part in groups:
            runs = list(dict.fromkeys(part["run"]))
            measured = part[part["reference"] == MEASURED]
            layers = sorted(measured["layer_index"].unique())
            mid_layers = layers[1:-1] or layers
            scope = "whole circuit" if layers == [-1] else "intermediate layers"
            level_tables = {"value": measured}
            for reference, _ in CONTROL_LEVELS:
                level_tables[reference] = _excess(part, reference)
            for label, stat in (("less sharing with the test domain", _less_sharing),
                                ("quickdraw shares least", _quickdraw_least)):
                per_level: dict[str, list[float]] = {}
                sides = []
                for run in runs:
                    for name, level_table in level_tables.items():
                        mid = level_table[(level_table["run"] == run)
                                          & level_table["layer_index"].isin(mid_layers)]
                        found = stat(mid, domain) if not mid.empty else None
                        if found is None:
                            continue
                        per_level.setdefault(name, []).append(found[0] - found[1])
                        if name == "value":
                            sides.append(found)
                if not sides:
                    continue
                levels = [_seed_level(name, np.array(per_level[name]))
                          for name in ("value", *(r for r, _ in CONTROL_LEVELS)) if name in per_level]
                n = len(sides)
                seeds = sorted(set(part["seed"])) if "seed" in part else []
                interval = (f"mean ± std over {n} seeds" if n > 1
                            else "one seed: no spread (can refute, not confirm)")
                rows.append(_finding_row(
                    f"{label}, {scope} ({measure})", domain, setup,
                    runs[0] if n == 1 else f"{setup} seeds {', '.join(map(str, seeds))}", n,
                    np.array([s[0] for s in sides]), np.array([s[1] for s in sides]), levels,
                    -1, "seed spread", interval))
    return _findings_frame(rows)


def cka_by_layer(cka: pd.DataFrame, class_subset: str) -> pd.DataFrame:
    """Linear CKA per layer averaged over domain pairs with / without the run's test domain.

    Uses ``class_subset`` if the table has it, else ``all``. Columns: run, setup, test_domain,
    seed, reference, layer_index, layer, class_subset, pair_group, value, n_pairs (one row
    per run: the figure takes mean and spread over seeds).
    """
    if cka.empty:
        return cka
    cka = with_reference(cka)
    subset = class_subset if class_subset in set(cka["class_subset"]) else "all"
    part = cka[(cka["kernel"] == "linear") & (cka["class_subset"] == subset)].copy()
    with_test = (part["domain_a"] == part["test_domain"]) | (part["domain_b"] == part["test_domain"])
    part["pair_group"] = np.where(with_test, "with test domain", "other pairs")
    keys = ["run", "setup", "test_domain", "seed", "reference", "layer_index", "layer",
            "class_subset", "pair_group"]
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
    patching = with_reference(patching)
    rows = patching[(patching["granularity"] == "site") & (patching["site_kind"] == "layer")
                     & (patching["statistic"] == "effect") & (patching["class_name"] == "all")
                     & (patching["direction"] == "denoising")
                     & (patching["pairing"] == "class_mean")]
    keep = ["run", "setup", "test_domain", "seed", "reference", "source_domain", "target_domain",
            "site_order", "site", "layer", "class_subset", "metric", "pairing", "receiver_mean",
            "donor_mean", "value", "ci_low", "ci_high", "n"]
    return rows[keep].sort_values(["run", "site_order"]).reset_index(drop=True)


def node_sharing_by_layer(groups: pd.DataFrame, class_subset: str) -> pd.DataFrame:
    """Node Jaccard per layer, averaged over classes of ``class_subset`` (``all`` if absent)
    and over the domain pairs with the test domain, without quickdraw, and all pairs."""
    if groups.empty:
        return groups
    groups = with_reference(groups)
    subset = class_subset if class_subset in set(groups["class_subset"]) else "all"
    rows = groups[(groups["metric"] == "node_jaccard") & (groups["class_subset"] == subset)
                  & groups["pair_group"].isin(["with_test_domain", "excluding_quickdraw", "all_pairs"])]
    keys = ["run", "setup", "test_domain", "seed", "reference", "layer_index", "layer", "site",
            "class_subset", "pair_group", "value", "spread", "n_pairs"]
    return rows[keys].reset_index(drop=True)


def circuit_similarity(summary: pd.DataFrame, metric: str = "wl_kernel") -> pd.DataFrame:
    """Per run and domain pair: the class mean of a whole-circuit similarity (WL kernel or edge
    Jaccard) over the held-out classes if present, else all classes."""
    if summary.empty:
        return summary
    summary = with_reference(summary)
    part = summary[(summary["metric"] == metric) & (summary["statistic"] == "mean")]
    subset = "held-out" if "held-out" in set(part["class_subset"]) else "all"
    part = part[part["class_subset"] == subset]
    keep = ["run", "setup", "test_domain", "seed", "reference", "domain_a", "domain_b", "metric",
            "class_subset", "value"]
    return part[keep].reset_index(drop=True)


def _order(table: pd.DataFrame) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(SETUP_ORDER)}
    keys = [c for c in ("test_domain", "setup", "seed") if c in table.columns]
    return table.sort_values(keys, key=lambda col: col.map(order) if col.name == "setup" else col,
                             kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- figures


def _save(fig, table: pd.DataFrame, stem: Path) -> Path:
    """Write ``stem.csv`` (the table the figure shows), ``stem.png`` and the vector
    ``stem.pdf`` beside it, atomically (:func:`interp.plots.save_figure`)."""
    from interp.plots import save_figure

    stem.parent.mkdir(parents=True, exist_ok=True)
    _atomic(stem.with_suffix(".csv"), lambda p: table.to_csv(p, index=False))
    return save_figure(fig, stem.with_suffix(".png"), dpi=110, bbox_inches="tight")


def _figure(**kwargs):
    """A matplotlib ``Figure`` outside pyplot (no global state, nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_accuracy(per_run: pd.DataFrame, chance: float):
    """Grouped bars: held-out top-1 on the test domain per setup (mean over seeds, std as
    error bar, seeds as dots), one group per test domain."""
    from matplotlib import colormaps

    domains = list(dict.fromkeys(per_run["test_domain"]))
    setups = [s for s in SETUP_ORDER if s in set(per_run["setup"])]
    fig = _figure(figsize=(1.6 + 1.5 * len(domains) * max(1, len(setups)) / 4, 3.2))
    ax = fig.subplots()
    width = 0.8 / max(1, len(setups))
    colours = colormaps["tab10"]
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


def over_seeds(table: pd.DataFrame, keys: list[str], y: str = "value") -> pd.DataFrame:
    """Mean, std (ddof 1; NaN with one seed), min, max and number of runs of ``y`` over the
    runs (seeds) sharing ``keys``."""
    grouped = table.groupby(keys, sort=False)
    stats = grouped[y].agg(mean="mean", std="std", low="min", high="max")
    return stats.assign(n_seeds=grouped["run"].nunique()).reset_index()


def _line_panels(table: pd.DataFrame, x: str, group: str, y: str, ylabel: str,
                 band: tuple[str, str] | None = None, label_col: str = "layer"):
    """One panel per (test domain, setup): per ``group`` the mean over seeds of ``y`` against
    ``x`` with a ± std band over seeds (one seed: the ``band`` columns, e.g. a bootstrap
    interval), and the init reference's mean as a dashed line in the same colour."""
    from interp.plots import REFERENCE_STYLE

    table = with_reference(table)
    panels = list(dict.fromkeys(zip(table["test_domain"], table["setup"], strict=True)))
    # one colour and legend order per group across all panels
    colours = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(table[group]))}
    fig = _figure(figsize=(3.4 * len(panels), 2.9))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)
    for ax, (domain, setup) in zip(axes[0], panels, strict=True):
        part = table[(table["test_domain"] == domain) & (table["setup"] == setup)]
        measured = part[part["reference"] == MEASURED]
        position = {v: i for i, v in enumerate(sorted(part[x].unique()))}  # evenly spaced layers
        n_seeds = measured["run"].nunique()
        for name, colour in colours.items():
            rows = measured[measured[group] == name]
            if rows.empty:
                continue
            stats = over_seeds(rows, [x], y).sort_values(x)
            xs = stats[x].map(position)
            ax.plot(xs, stats["mean"], marker="o", markersize=3, label=str(name), color=colour)
            if n_seeds > 1:
                ax.fill_between(xs, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                alpha=0.2, color=colour, lw=0)
            elif band is not None:
                ranges = rows.groupby(x)[list(band)].mean().loc[stats[x]]
                ax.fill_between(xs, ranges[band[0]], ranges[band[1]], alpha=0.2, color=colour, lw=0)
            for reference, style in REFERENCE_STYLE.items():
                ref = part[(part["reference"] == reference) & (part[group] == name)]
                if ref.empty:
                    continue
                line = ref.groupby(x)[y].mean().sort_index()
                ax.plot(line.index.map(position), line.to_numpy(), ls=style, lw=1.0, color=colour,
                        label=f"{name} ({reference})")
        ticks = part.drop_duplicates(x).sort_values(x)
        ax.set_xticks(ticks[x].map(position), ticks[label_col], rotation=60, ha="right", fontsize=6)
        spread = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
        ax.set_title(f"test domain {domain}: {SETUP_LABELS.get(setup, setup)}\n{spread}", fontsize=8)
        ax.legend(fontsize=5)
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


REFERENCE_ROWS = {MEASURED: "trained", "init": "init (epoch 0)", "class-shuffle": "class-shuffle",
                  "seed": "other seed"}


def plot_similarity_heatmaps(table: pd.DataFrame):
    """Domain x domain heatmaps of circuit similarity: one column per (test domain, setup),
    the mean over seeds (± std where there are several) in each cell; one row per reference
    present (trained, init, class-shuffle). Diagonal masked; one colour scale from the
    off-diagonal values of every panel."""
    from interp.plots import domain_heatmap, off_diagonal_limits

    table = with_reference(table)
    panels = list(dict.fromkeys(zip(table["test_domain"], table["setup"], strict=True)))
    references = [r for r in REFERENCE_ROWS if r in set(table["reference"]) and r != "seed"]
    domains = sorted(set(table["domain_a"]) | set(table["domain_b"]))
    cells = {}
    for ref in references:
        for domain, setup in panels:
            part = table[(table["reference"] == ref) & (table["test_domain"] == domain)
                         & (table["setup"] == setup)]
            stats = over_seeds(part, ["domain_a", "domain_b"])
            mean = pd.DataFrame(np.eye(len(domains)), index=domains, columns=domains)
            std = pd.DataFrame(np.nan, index=domains, columns=domains)
            for row in stats.itertuples(index=False):
                mean.loc[row.domain_a, row.domain_b] = mean.loc[row.domain_b, row.domain_a] = row.mean
                std.loc[row.domain_a, row.domain_b] = std.loc[row.domain_b, row.domain_a] = row.std
            cells[(ref, domain, setup)] = (mean, std, int(stats["n_seeds"].max()) if len(stats) else 0)
    limits = off_diagonal_limits([m for m, _, _ in cells.values()])
    fig = _figure(figsize=(3.3 * len(panels) + 0.8, 3.7 * len(references)), layout="constrained")
    axes = fig.subplots(len(references), len(panels), squeeze=False)
    image = None
    for i, ref in enumerate(references):
        for j, (domain, setup) in enumerate(panels):
            mean, std, n = cells[(ref, domain, setup)]
            title = (f"{REFERENCE_ROWS[ref]}\ntest domain {domain}, {SETUP_LABELS.get(setup, setup)}, "
                     + (f"mean ± std over {n} seeds" if n > 1 else "one seed"))
            image = domain_heatmap(axes[i, j], mean, domains, title,
                                   spread=std if n > 1 else None, limits=limits)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="similarity (off-diagonal scale)")
    return fig


@dataclass
class Gallery:
    """Figures written by :func:`gallery`: name -> (PNG path, one sentence on what it shows)."""

    figures: dict[str, tuple[Path, str]] = field(default_factory=dict)


def gallery(config: ExperimentConfig, tables: dict[str, pd.DataFrame], out: Path) -> Gallery:
    """Draw every figure of the report from ``tables`` into ``out`` (PNG beside CSV)."""
    from training.domainnet import class_names

    result = Gallery()
    per_run = run_accuracy(main_accuracy(tables["accuracy"]))
    chance = 1.0 / len(class_names(config.data_root))
    png = _save(plot_accuracy(per_run, chance), per_run, out / "accuracy_by_setup")
    result.figures["accuracy_by_setup"] = (png, (
        "Held-out-class zero-shot top-1 on each test domain, per training setup: bars are the "
        "mean over seeds, error bars the standard deviation, dots single seeds; the dashed line "
        "is chance."))

    subset = config.analyses.classes
    layerwise = [
        ("cka_by_layer", cka_by_layer(tables["cka"], subset), "layer_index", "pair_group",
         "linear CKA (class means)", None,
         "Layerwise linear CKA between domains' class-mean activations, averaged over domain "
         "pairs that include the test domain and over the other pairs: mean over seeds with "
         "a ± std band, the untrained (epoch-0) network's value dashed in the same colour."),
        ("patching_by_layer", patching_by_layer(tables["patching"]), "site_order",
         "target_domain", "effect on logit diff. (class-mean patch)", ("ci_low", "ci_high"),
         "Change in test-domain images' logit difference (true class minus runner-up) when "
         f"the class-mean {config.analyses.patch_source} activation of their class is patched "
         "in at each layer: mean over seeds with a ± std band (one seed: the bootstrap "
         "interval), the epoch-0 network's effect dashed; the unpatched levels of both "
         "domains are the receiver_mean and donor_mean columns."),
        ("node_sharing_by_layer", node_sharing_by_layer(tables["circuit_groups"], subset),
         "layer_index", "pair_group", "node Jaccard", None,
         "Circuit node sharing per layer: Jaccard of the kept units of a class's circuits in "
         "two domains, averaged over classes and over pairs with the test domain, without "
         "quickdraw, and all pairs: mean over seeds with a ± std band, the epoch-0 "
         "network's circuits dashed in the same colour."),
    ]
    for name, table, x, group, ylabel, band, caption in layerwise:
        if not table.empty:
            fig = _line_panels(table, x, group, "value", ylabel, band=band)
            result.figures[name] = (_save(fig, table, out / name), caption)
    similarity = circuit_similarity(tables["circuit_summary"])
    if not similarity.empty:
        fig = plot_similarity_heatmaps(similarity)
        result.figures["circuit_similarity"] = (_save(fig, similarity, out / "circuit_similarity"), (
            "Whole-circuit similarity (Weisfeiler-Lehman subtree kernel, normalised) between "
            "domains, averaged over classes, mean (± std) over seeds; rows: the trained "
            "network and its references (epoch 0, class-shuffled pairs). Diagonal masked, "
            "colours scaled to the off-diagonal values."))
    drawing = _circuit_drawing(config, tables["circuit_nodes"], out)
    if drawing is not None:
        result.figures["circuit_drawing"] = drawing
    experiment_figures(config, tables["accuracy"], out, result)
    result.figures.update(embedding_report.figures(tables, out, _save))
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
    nodes = with_reference(nodes)
    rows = nodes[(nodes["run"] == run_id(runs[0])) & (nodes["class_name"] == cls)
                 & (nodes["reference"] == MEASURED)]
    stem = out / "circuit_drawing"
    _atomic(stem.with_suffix(".csv"), lambda p: rows.to_csv(p, index=False))
    _atomic(stem.with_suffix(".png"), lambda p: shutil.copyfile(pngs[0], p))
    pdf = pngs[0].with_suffix(".pdf")  # written beside it by interp.plots.save_figure
    if pdf.is_file():
        _atomic(stem.with_suffix(".pdf"), lambda p: shutil.copyfile(pdf, p))
    else:
        _png_as_pdf(stem.with_suffix(".png"))
    return stem.with_suffix(".png"), (
        f"The circuits of class '{cls}' in every domain (test domain {runs[0].test_domain}, "
        f"{SETUP_LABELS.get(runs[0].setup, runs[0].setup)}): kept units per layer and their "
        "strongest incoming edges.")


def _png_as_pdf(png: Path) -> Path:
    """``<stem>.pdf`` beside a PNG that is a picture already (the contact sheet of images, a
    copied drawing without its PDF): the image placed on a PDF page."""
    from PIL import Image

    pdf = png.with_suffix(".pdf")
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        _atomic(pdf, lambda p: rgb.save(p, format="PDF", resolution=110.0))
    return pdf


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
    _png_as_pdf(stem.with_suffix(".png"))
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


def failed_steps(config: ExperimentConfig) -> pd.DataFrame:
    """The steps that failed and have not finished since (their failure records): step,
    error, job and log file."""
    from .steps import read_failures

    records = read_failures(config.out_dir / layout.STATE_DIR)
    rows = [{"step": r["id"], "error": str(r["error"]).replace("|", "/"),
             "job": r.get("job") or "", "log": r.get("log") or ""} for r in records]
    return pd.DataFrame(rows, columns=["step", "error", "job", "log"])


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
    main = main_accuracy(tables["accuracy"])
    per_run = replicates(run_accuracy(main))
    head = headline(per_run)
    _atomic(results / "headline.csv", lambda p: head.to_csv(p, index=False))
    from training.domainnet import class_names, heldout_classes

    n_classes = len(class_names(config.data_root))
    n_heldout = (config.data.heldout_count if config.data.heldout == "random"
                 else len(heldout_classes(config.data_root)))
    found = findings(head, 1.0 / n_classes, per_run=per_run, accuracy=main,
                     n_boot=config.analyses.n_boot, seed=config.data.seed)
    mechanism = mechanism_findings(tables["cka"], tables["circuit_summary"], config.analyses.classes)
    variants = tables["circuit_variants"]
    if not variants.empty:  # the same circuit findings under each variant's settings
        mechanism = pd.concat([mechanism] + [
            mechanism_findings(pd.DataFrame(), part, config.analyses.classes, variant=name)
            for name, part in variants.groupby("variant", sort=False)], ignore_index=True)
    experiments = experiment_findings(config, tables["accuracy"])
    aligned = embedding_report.aligned_findings(tables["aligned"], _spread_row)
    found = _findings_frame([*found.to_dict("records"), *mechanism.to_dict("records"),
                             *experiments.to_dict("records"), *aligned])
    _atomic(results / "findings.csv", lambda p: found.to_csv(p, index=False))
    controls = controls_summary(tables["controls"])
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
    failed = failed_steps(config)
    if not failed.empty:  # a report of the finished steps only
        blocks[2:2] = [("h2", "Failed steps"),
                       ("p", f"{len(failed)} step(s) failed; the steps that need them did not "
                             "run and are missing below. Rerun the same command to run only "
                             "the unfinished steps."),
                       ("table", failed)]
    if not found.empty:
        blocks += [("h2", "The paper's findings on this data"),
                   ("p", "Every finding is judged on its controls, not on the measured numbers "
                         "alone. Accuracy rows: a and b are the mean held-out top-1 of the two "
                         "sides compared; their difference gets an interval, the mean ± std over "
                         "seeds of the difference per seed when every setup has several seeds, "
                         "else a 95% bootstrap over classes and images; a difference whose "
                         "interval includes zero is undecided, not no. Mechanistic rows (one per "
                         "analysed test domain and setup, over its seeds; intermediate layers "
                         "for CKA and node Jaccard, the whole circuit for edge Jaccard and the "
                         "WL kernel; a measure in brackets is an [analyses.circuit_variants] "
                         "entry): "
                         "a and b are the mean similarity of domain pairs with and without the "
                         "test domain, or quickdraw's mean and the lowest other domain's; the "
                         "difference is checked as measured, then as learned (the same "
                         "difference of the excess over the epoch-0 network) and beyond shuffle "
                         "(of the excess over class-shuffled pairs), each as mean ± std over "
                         "seeds: a finding holds only if all three are separated from zero by "
                         "more than the seed spread, and one seed can refute but not confirm "
                         "it. 'decided by' names the check that decided (value, init, "
                         "class-shuffle, seed spread, bootstrap) or 'undecided'. Every column: "
                         "results/findings.csv."),
                   ("table", findings_display(found))]
    if not controls.empty:
        _atomic(results / "controls_summary.csv", lambda p: controls.to_csv(p, index=False))
        blocks += [("h2", "Controls"),
                   ("p", "Each similarity beside its references (init: the run's epoch-0 "
                         "checkpoint; class-shuffle: class c in one domain against another class "
                         "in the other; seed: another seed's run), averaged over sites, domain "
                         "pairs and seeds; excess = value - reference, with the mean of its "
                         "bootstrap intervals over classes. Per site and pair: "
                         "results/controls.csv."),
                   ("table", controls)]
    if not tables["sae_quality"].empty:
        quality = embedding_report.sae_quality_table(tables["sae_quality"])
        blocks += [("h2", "Sparse autoencoders"),
                   ("p", "Reconstruction quality of the SAEs whose features the sharing scores "
                         "count (mean over seeds): explained variance of the L2-normalised "
                         "inputs, mean number of active latents (L0), fraction of latents never "
                         "active. A dictionary with low explained variance says little about "
                         "the features of the model. Per run: results/sae_quality.csv."),
                   ("table", quality)]
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


def findings_display(found: pd.DataFrame) -> pd.DataFrame:
    """The findings as text cells: sides as mean (± std over seeds), differences with their
    interval, holds as yes / no / undecided."""
    def num(v, std=float("nan")) -> str:
        if pd.isna(v):
            return ""
        return f"{v:.3f}" + ("" if pd.isna(std) else f" ± {std:.3f}")

    def interval(point, low, high) -> str:
        if pd.isna(point):
            return ""
        return f"{point:+.3f}" + ("" if pd.isna(low) else f" [{low:+.3f}, {high:+.3f}]")

    return pd.DataFrame({
        "finding": found["finding"], "test domain": found["test_domain"], "run": found["run"],
        "seeds": found["n_seeds"],
        "a": [num(v, s) for v, s in zip(found["a"], found["a_std"], strict=True)],
        "b": [num(v, s) for v, s in zip(found["b"], found["b_std"], strict=True)],
        "a - b": [interval(*v) for v in zip(found["difference"], found["low"], found["high"], strict=True)],
        "learned": [interval(*v) for v in zip(found["learned"], found["learned_low"],
                                              found["learned_high"], strict=True)],
        "beyond shuffle": [interval(*v) for v in zip(found["beyond_shuffle"],
                                                     found["beyond_shuffle_low"],
                                                     found["beyond_shuffle_high"], strict=True)],
        "interval": found["interval"],
        "holds": [("undecided" if pd.isna(h) else "yes" if h else "no") for h in found["holds"]],
        "decided by": found["decided_by"],
    })


def controls_summary(controls: pd.DataFrame) -> pd.DataFrame:
    """Per (analysis, measure, reference): mean value, reference value and excess over the
    rows of ``controls.csv`` (sites, pairs, seeds), the mean excess interval and the numbers of
    rows and seeds."""
    need = {"measure", "reference", "value", "reference_value", "excess"}
    if controls.empty or not need <= set(controls.columns):
        return pd.DataFrame()
    keys = [c for c in ("analysis", "measure", "reference") if c in controls.columns]
    table = controls.assign(**{c: controls.get(c, np.nan) for c in ("excess_low", "excess_high")})
    grouped = table.groupby(keys, sort=False)
    out = grouped.agg(value=("value", "mean"), reference_value=("reference_value", "mean"),
                      excess=("excess", "mean"), excess_low=("excess_low", "mean"),
                      excess_high=("excess_high", "mean"), rows=("value", "size"),
                      seeds=("run", "nunique")).reset_index()
    return out.round(3)


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


__all__ = ["bootstrap_top1", "collect_results", "findings", "gallery", "headline", "judge",
           "mechanism_findings", "read_findings", "run_accuracy", "write_report"]


# ---------------------------------------------------------------- data-centric experiments
#: Accuracies are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before the logit (0 and 1 happen on
#: few held-out images).
LOGIT_EPS = 1e-3


def replicates(per_run: pd.DataFrame) -> pd.DataFrame:
    """``per_run`` with random class splits folded into the seeds: each (split, seed) pair
    becomes one replicate ``seed`` (the spread over splits and seeds); unchanged otherwise."""
    if per_run.empty or "split" not in per_run.columns or per_run["split"].eq("fixed").all():
        return per_run
    pairs = per_run["split"].astype(str) + "/" + per_run["seed"].astype(str)
    codes = {p: i for i, p in enumerate(sorted(set(pairs)))}
    return per_run.assign(seed=pairs.map(codes).astype(int))


def all_runs(accuracy: pd.DataFrame) -> pd.DataFrame:
    """:func:`run_accuracy` of every run (experiments included) with :data:`RUN_COLUMNS`."""
    if accuracy.empty:
        return pd.DataFrame()
    return run_accuracy(with_run_columns(accuracy))


def logit(p: np.ndarray | pd.Series, eps: float = LOGIT_EPS) -> np.ndarray:
    """``log(p / (1 - p))`` of ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


def effective_robustness(per_run: pd.DataFrame, fit: str = "pooled") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Effective robustness (Fang et al. 2022): every run as a point (x: seen-class top-1 on
    the test domain, y: held-out-class top-1 there), a least-squares line ``logit y = intercept
    + slope * logit x`` over the natural-only CLIP runs (``pooled``: one line over all of them;
    ``per-domain``: one per test domain), and each run's vertical distance above it in logit
    space, ``robustness = logit y - (intercept + slope * logit x)``.

    Returns ``(points, fits)``: points = ``per_run`` rows with ``logit_seen``,
    ``logit_heldout``, ``predicted`` and ``robustness`` (NaN without a line: fewer than two
    natural-only runs of distinct x); fits: ``scope``, ``slope``, ``intercept``, ``n_runs``.
    """
    if per_run.empty:
        return pd.DataFrame(), pd.DataFrame()
    points = per_run.copy()
    points["logit_seen"] = logit(points["seen_top1"])
    points["logit_heldout"] = logit(points["heldout_top1"])
    kind = points["kind"] if "kind" in points.columns else pd.Series("clip", index=points.index)
    base = points[(points["setup"] == "natural-only") & (kind == "clip")]
    scopes = {"all": base} if fit == "pooled" else dict(iter(base.groupby("test_domain")))
    rows = []
    for scope, part in scopes.items():
        x, y = part["logit_seen"].to_numpy(), part["logit_heldout"].to_numpy()
        if len(part) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
        else:
            slope = intercept = float("nan")
        rows.append({"scope": scope, "slope": float(slope), "intercept": float(intercept),
                     "n_runs": len(part)})
    fits = pd.DataFrame(rows, columns=["scope", "slope", "intercept", "n_runs"])
    line = fits.set_index("scope")
    scope = "all" if fit == "pooled" else points["test_domain"]
    slope = line["slope"].reindex(np.broadcast_to(scope, len(points))).to_numpy()
    intercept = line["intercept"].reindex(np.broadcast_to(scope, len(points))).to_numpy()
    points["predicted"] = intercept + slope * points["logit_seen"]
    points["robustness"] = points["logit_heldout"] - points["predicted"]
    return points, fits


def _pair_by_replicate(a: pd.DataFrame, b: pd.DataFrame, value: str) -> np.ndarray:
    """Differences ``a - b`` of ``value`` over the (split, seed) replicates both have."""
    keys = [c for c in ("split", "seed") if c in a.columns and c in b.columns]
    merged = a[[*keys, value]].merge(b[[*keys, value]], on=keys, suffixes=("_a", "_b"))
    return (merged[f"{value}_a"] - merged[f"{value}_b"]).to_numpy(dtype=float)


def _spread_row(finding: str, domain: str, setup: str, a: pd.Series, b: pd.Series,
                diffs: np.ndarray) -> dict:
    level = _seed_level("value", diffs)
    level = Level("value", float(np.mean(a) - np.mean(b)), level.low, level.high)
    noise = "seed spread" if np.isfinite(level.low) else "undecided"
    interval = f"mean ± std over {len(diffs)} seeds" if noise != "undecided" else "none"
    row = _finding_row(finding, domain, setup, "mean over seeds", len(diffs), np.asarray(a),
                       np.asarray(b), [level], +1, noise, interval)
    return row


def experiment_findings(config: ExperimentConfig, accuracy: pd.DataFrame) -> pd.DataFrame:
    """Findings of the data-centric experiments, one row per (test domain, setup):
    ``CLIP more robust than supervised`` (a: CLIP held-out top-1, b: the supervised run's on
    the same mixture) and ``above the natural-only line`` (a: the setup's mean effective
    robustness, b: 0), each judged on the spread over seeds (and class splits) of the
    per-replicate difference."""
    runs = all_runs(accuracy)
    rows: list[dict] = []
    if runs.empty:
        return _findings_frame(rows)
    runs = runs[runs["experiment"].isin(["main", "supervised"])]
    clip, sup = runs[runs["kind"] == "clip"], runs[runs["kind"] == "supervised"]
    for (domain, setup), part in clip.groupby(["test_domain", "setup"], sort=False):
        other = sup[(sup["test_domain"] == domain) & (sup["setup"] == setup)]
        if other.empty:
            continue
        rows.append(_spread_row("CLIP more robust than supervised (held-out top-1)", domain,
                                setup, part["heldout_top1"], other["heldout_top1"],
                                _pair_by_replicate(part, other, "heldout_top1")))
    points = pd.DataFrame()
    if config.experiments.effective_robustness:
        points, _ = effective_robustness(all_runs(accuracy), config.experiments.robustness_fit)
    if not points.empty:
        points = points[(points["kind"] == "clip") & (points["experiment"] == "main")
                        & (points["setup"] != "natural-only") & points["robustness"].notna()]
        for (domain, setup), part in points.groupby(["test_domain", "setup"], sort=False):
            zero = pd.Series(np.zeros(len(part)))
            rows.append(_spread_row("above the natural-only line (effective robustness)",
                                    domain, setup, part["robustness"], zero,
                                    part["robustness"].to_numpy(dtype=float)))
    return _order(_findings_frame(rows)) if rows else _findings_frame(rows)


def domain_interpolation_table(per_run: pd.DataFrame, domains: Iterable[str]) -> pd.DataFrame:
    """Held-out top-1 of the domain interpolation per (test domain, subset) over seeds:
    ``n_extra`` 0 (cg-low) .. 4 (cg-high), ``variant`` the subset's letters."""
    if per_run.empty:
        return pd.DataFrame()
    runs = per_run[per_run["test_domain"].isin(list(domains)) & (per_run["kind"] == "clip")
                   & per_run["setup"].isin(["cg-low", "domain-interp", "cg-high"])
                   & (per_run["allow"] == 0)]
    if runs.empty:
        return pd.DataFrame()
    runs = runs.assign(n_extra=np.where(runs["setup"] == "cg-high", 4, runs["n_extra"]),
                       value=runs["heldout_top1"])
    return over_seeds(runs, ["test_domain", "variant", "n_extra"])


def allow_table(per_run: pd.DataFrame, allow: Iterable[float], setups: Iterable[str]) -> pd.DataFrame:
    """Held-out top-1 against the allowed fraction p per (test domain, diversity level) over
    seeds: p = 0 the CG setup, p = 1 its upper bound."""
    if per_run.empty or not list(allow):
        return pd.DataFrame()
    parts = []
    for setup in setups:
        level = setup.split("-")[1]
        upper = f"upper-{level}"
        runs = per_run[(per_run["kind"] == "clip") & per_run["setup"].isin([setup, upper])]
        runs = runs.assign(p=np.where(runs["setup"] == upper, 1.0, runs["allow"]),
                           diversity=level, value=runs["heldout_top1"])
        parts.append(runs[(runs["setup"] == setup) | (runs["allow"] == 0)])
    runs = pd.concat(parts, ignore_index=True)
    return over_seeds(runs, ["test_domain", "diversity", "p"]).sort_values(
        ["test_domain", "diversity", "p"]).reset_index(drop=True)


def supervised_table(per_run: pd.DataFrame) -> pd.DataFrame:
    """Held-out top-1 of CLIP and the supervised baseline per (test domain, setup) over
    seeds (only the cells with a supervised run)."""
    runs = per_run[per_run["experiment"].isin(["main", "supervised"])]
    with_sup = runs[runs["kind"] == "supervised"][["test_domain", "setup"]].drop_duplicates()
    runs = runs.merge(with_sup, on=["test_domain", "setup"]).assign(value=lambda t: t["heldout_top1"])
    if runs.empty:
        return pd.DataFrame()
    return _order(over_seeds(runs, ["test_domain", "setup", "kind"]))


def _panels(n: int, width: float = 3.2):
    fig = _figure(figsize=(width * n, 3.0))
    return fig, fig.subplots(1, n, squeeze=False, sharey=True)[0]


def _test_domain_panels(table: pd.DataFrame) -> tuple[Any, list[tuple[Any, pd.DataFrame]]]:
    """A titled panel per test domain (shared y axis: held-out-class top-1), each with its rows."""
    domains = list(dict.fromkeys(table["test_domain"]))
    fig, axes = _panels(len(domains))
    axes[0].set_ylabel("held-out-class top-1")
    for ax, domain in zip(axes, domains, strict=True):
        ax.set_title(f"test domain {domain}", fontsize=8)
    return fig, [(ax, table[table["test_domain"] == d]) for ax, d in zip(axes, domains, strict=True)]


def plot_supervised(table: pd.DataFrame):
    """Paired bars per (test domain, setup): CLIP vs supervised held-out top-1 (mean ± std)."""
    fig, panels = _test_domain_panels(table)
    for ax, part in panels:
        setups = list(dict.fromkeys(part["setup"]))
        for j, kind in enumerate(("clip", "supervised")):
            rows = part[part["kind"] == kind].set_index("setup").reindex(setups)
            ax.bar(np.arange(len(setups)) + (j - 0.5) * 0.4, rows["mean"], 0.4,
                   yerr=rows["std"].fillna(0), capsize=2, label=kind, color=f"C{j}")
        ax.set_xticks(range(len(setups)), [SETUP_LABELS.get(s, s) for s in setups], rotation=45,
                      ha="right", fontsize=7)
    panels[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_domain_interpolation(table: pd.DataFrame):
    """Held-out top-1 against the number of extra domains, one point per subset (± std)."""
    fig, panels = _test_domain_panels(table)
    for ax, part in panels:
        ax.errorbar(part["n_extra"], part["mean"], yerr=part["std"].fillna(0), fmt="o",
                    capsize=2, markersize=4)
        for _, row in part.iterrows():
            short = row["variant"].split("-")[-1] if row["n_extra"] not in (0, 4) else (
                "CG low" if row["n_extra"] == 0 else "CG high")
            ax.annotate(short, (row["n_extra"], row["mean"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
        ax.set_xticks(range(5))
        ax.set_xlabel("extra rendition domains")
    fig.tight_layout()
    return fig


def plot_allow(table: pd.DataFrame):
    """Held-out top-1 against the allowed fraction p, one line per diversity level."""
    fig, panels = _test_domain_panels(table)
    for ax, part in panels:
        for j, (level, rows) in enumerate(part.groupby("diversity", sort=False)):
            rows = rows.sort_values("p")
            ax.plot(rows["p"], rows["mean"], marker="o", markersize=3, color=f"C{j}",
                    label=f"{level} diversity")
            ax.fill_between(rows["p"], rows["mean"] - rows["std"].fillna(0),
                            rows["mean"] + rows["std"].fillna(0), alpha=0.2, color=f"C{j}", lw=0)
        ax.set_xlabel("fraction p of the test domain's held-out classes in training")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_effective_robustness(points: pd.DataFrame, fits: pd.DataFrame):
    """Seen- vs held-out-class top-1 on logit axes, one marker per setup, the natural-only
    line dashed."""
    fig = _figure(figsize=(4.4, 3.6))
    ax = fig.subplots()
    eps = LOGIT_EPS
    for j, (label, rows) in enumerate(points.groupby("variant", sort=False)):
        ax.scatter(rows["seen_top1"].clip(eps, 1 - eps), rows["heldout_top1"].clip(eps, 1 - eps),
                   s=12, color=f"C{j % 10}", marker="os^vD<>"[j // 10 % 7], label=label)
    xs = np.linspace(logit(points["seen_top1"]).min() - 0.3, logit(points["seen_top1"]).max() + 0.3, 50)
    for _, fit in fits.dropna().iterrows():
        ys = fit["intercept"] + fit["slope"] * xs
        ax.plot(1 / (1 + np.exp(-xs)), 1 / (1 + np.exp(-ys)), ls="--", color="grey", lw=1)
    ax.set_xscale("logit")
    ax.set_yscale("logit")
    ax.set_xlabel("seen-class top-1 on the test domain")
    ax.set_ylabel("held-out-class top-1 on the test domain")
    ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    return fig


def experiment_figures(config: ExperimentConfig, accuracy: pd.DataFrame, out: Path,
                       result: Gallery) -> None:
    """The experiments' figures (those whose runs exist), each beside its table."""
    per_run = all_runs(accuracy)
    if per_run.empty:
        return
    ex = config.experiments
    sup = supervised_table(per_run)
    if not sup.empty:
        result.figures["clip_vs_supervised"] = (_save(plot_supervised(sup), sup, out / "clip_vs_supervised"), (
            "Held-out-class top-1 of CLIP and of the supervised baseline (same image tower, "
            "linear head) trained on the same mixture, per setup and test domain: mean over "
            "seeds with the std as error bar."))
    interp = domain_interpolation_table(per_run, ex.domain_interp)
    if not interp.empty and ex.domain_interp:
        result.figures["domain_interpolation"] = (_save(plot_domain_interpolation(interp), interp, out / "domain_interpolation"), (
            "Domain interpolation: held-out-class top-1 against the number of rendition domains "
            "added to real and the test domain's seen classes (0: CG low-diversity, 4: CG "
            "high-diversity), one point per subset (letters), mean ± std over seeds."))
    allow = allow_table(per_run, ex.allow, ex.allow_setups)
    if not allow.empty:
        result.figures["allow_interpolation"] = (_save(plot_allow(allow), allow, out / "allow_interpolation"), (
            "Held-out class interpolation: held-out-class top-1 against the fraction p of the "
            "test domain's held-out classes added to training (p = 0: the CG setup, p = 1: its "
            "upper bound), one line per diversity level, a ± std band over seeds."))
    points, fits = effective_robustness(per_run, ex.robustness_fit)
    if ex.effective_robustness and not points.empty:  # the points even without a line
        _atomic(out / "effective_robustness_fit.csv", lambda p: fits.to_csv(p, index=False))
        result.figures["effective_robustness"] = (_save(plot_effective_robustness(points, fits), points, out / "effective_robustness"), (
            "Effective robustness: every run's seen-class against held-out-class top-1 on its "
            "test domain (logit axes) with the least-squares line (in logit space) over the "
            "natural-only runs dashed; a run's robustness column is its distance above the "
            "line (fit: effective_robustness_fit.csv)."))
