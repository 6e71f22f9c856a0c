"""The report judges findings on their controls (issue 13): hand-made tables that follow the
controls contract (a ``reference`` column: none / init / class-shuffle / seed), the one-seed
accuracy bootstrap, heatmaps with a masked diagonal, and PDFs beside PNGs."""

from __future__ import annotations

import dataclasses
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domainlens import pipeline
from domainlens.config import load_config
from domainlens.report import (
    Level,
    bootstrap_top1,
    findings,
    headline,
    judge,
    mechanism_findings,
    run_accuracy,
)

DOMAINS = ["clipart", "quickdraw", "real", "sketch"]
LESS = "less sharing with the test domain, intermediate layers (CKA)"


def cka_rows(values: dict[str, dict[int, tuple[float, float]]]) -> pd.DataFrame:
    """A tidy CKA table, test domain sketch, 4 layers: ``{reference: {seed: (with, other)}}``
    gives the value of pairs with sketch and of the other pairs in the middle layers."""
    rows = []
    for reference, by_seed in values.items():
        for seed, (with_test, other) in by_seed.items():
            for layer in range(4):
                for a, b in combinations(DOMAINS, 2):
                    value = 1.0 if layer in (0, 3) else with_test if "sketch" in (a, b) else other
                    rows.append(dict(run=f"sketch/cg-s{seed}", setup="cg-high", seed=seed,
                                     test_domain="sketch", reference=reference, domain_a=a,
                                     domain_b=b, layer_index=layer, layer=f"L{layer}",
                                     kernel="linear",
                                     class_subset="held-out", value=value))
    return pd.DataFrame(rows)


def less_sharing(table: pd.DataFrame) -> pd.Series:
    found = mechanism_findings(table, pd.DataFrame(), "held-out").set_index("finding")
    return found.loc[LESS]


def test_finding_refuted_by_the_init_reference():
    """Pairs with the test domain share less (0.3 vs 0.6), but the untrained network shows
    the same gap: the learned difference is zero, so init decides: no."""
    table = cka_rows({"none": {0: (0.3, 0.6), 1: (0.32, 0.62)},
                      "init": {0: (0.1, 0.4), 1: (0.12, 0.42)},
                      "class-shuffle": {0: (0.0, 0.0), 1: (0.0, 0.0)}})
    row = less_sharing(table)
    assert row["difference"] == pytest.approx(-0.3) and row["learned"] == pytest.approx(0.0)
    assert row["holds"] is False or row["holds"] == False  # noqa: E712 (pandas boolean)
    assert row["decided_by"] == "init" and row["n_seeds"] == 2


def test_finding_with_one_seed_is_undecided():
    """Everything points the predicted way, but one seed has no spread: undecided."""
    table = cka_rows({"none": {0: (0.3, 0.6)}, "init": {0: (0.2, 0.2)},
                      "class-shuffle": {0: (0.1, 0.1)}})
    row = less_sharing(table)
    assert pd.isna(row["holds"]) and row["decided_by"] == "undecided"
    assert row["learned"] == pytest.approx(-0.3) and row["beyond_shuffle"] == pytest.approx(-0.3)


def test_seed_spread_decides():
    """The learned difference is -0.3 ± small over three seeds: holds; with a spread larger
    than the difference it is undecided, decided by the seed spread."""
    init = {s: (0.2, 0.2) for s in range(3)}
    shuffle = {s: (0.0, 0.0) for s in range(3)}
    tight = cka_rows({"none": {0: (0.30, 0.6), 1: (0.31, 0.6), 2: (0.29, 0.6)},
                      "init": init, "class-shuffle": shuffle})
    row = less_sharing(tight)
    assert row["holds"] == True and row["decided_by"] == "seed spread"  # noqa: E712
    assert row["a_std"] == pytest.approx(0.01) and row["low"] < row["difference"] < row["high"]
    wide = cka_rows({"none": {0: (0.2, 0.6), 1: (0.7, 0.6), 2: (0.3, 0.6)},
                     "init": init, "class-shuffle": shuffle})
    row = less_sharing(wide)
    assert pd.isna(row["holds"]) and row["decided_by"] == "seed spread"


def test_class_shuffle_refutes_and_tables_without_reference_column_are_measured():
    """Beyond the class-shuffle null the gap is reversed: class-shuffle decides. A table
    without a ``reference`` column is all measured values (two identical seeds: holds)."""
    table = cka_rows({"none": {0: (0.3, 0.6), 1: (0.3, 0.6)}, "init": {0: (0.0, 0.0), 1: (0.0, 0.0)},
                      "class-shuffle": {0: (0.0, 0.5), 1: (0.0, 0.5)}})
    row = less_sharing(table)
    assert row["holds"] == False and row["decided_by"] == "class-shuffle"  # noqa: E712
    bare = cka_rows({"none": {0: (0.3, 0.6), 1: (0.3, 0.6)}}).drop(columns="reference")
    row = less_sharing(bare)
    assert row["holds"] == True and np.isnan(row["learned"])  # noqa: E712


def test_judge_never_says_no_on_an_interval_straddling_zero():
    assert judge([Level("value", -0.05, -0.15, 0.05)], +1, "bootstrap") == (pd.NA, "bootstrap")
    assert judge([Level("value", -0.5, -1.0, 0.0)], +1, "bootstrap") == (pd.NA, "bootstrap")
    assert judge([Level("value", 0.0, 0.0, 0.0)], +1, "seed spread") == (False, "value")
    assert judge([Level("value", -0.05, -0.15, -0.01)], +1, "bootstrap") == (False, "value")
    assert judge([Level("value", 0.05, 0.01, 0.1)], +1, "bootstrap") == (True, "bootstrap")


def accuracy_rows(classes: dict[str, dict[str, tuple[float, int]]], domain: str = "sketch") -> pd.DataFrame:
    """One seed per setup: ``{setup: {class: (accuracy, n_images)}}``, with the top1 rows."""
    rows = []
    for setup, per_class in classes.items():
        common = dict(run=f"{domain}/{setup}-s0", setup=setup, test_domain=domain, seed=0,
                      epoch=2, eval_domain=domain, class_subset="held-out")
        for name, (value, n) in per_class.items():
            rows.append({**common, "class_name": name, "metric": "class_top1", "value": value,
                         "n_images": n})
        n_all = sum(n for _, n in per_class.values())
        top1 = sum(v * n for v, n in per_class.values()) / n_all
        rows.append({**common, "class_name": "", "metric": "top1", "value": top1, "n_images": n_all})
    return pd.DataFrame(rows)


def test_one_seed_accuracy_bootstrap_marks_a_straddling_interval_undecided():
    """CG high-div. is 0.05 above natural-only on 6 classes x 20 images, but class by class
    it is sometimes better, sometimes worse: the bootstrap interval straddles zero, so the
    finding is undecided (not "no", not "yes"). A large gap on the same classes holds."""
    natural = {f"c{i}": (v, 20) for i, v in enumerate([0.2, 0.5, 0.1, 0.6, 0.3, 0.4])}
    close = {f"c{i}": (v, 20) for i, v in enumerate([0.4, 0.3, 0.3, 0.5, 0.4, 0.5])}
    acc = accuracy_rows({"natural-only": natural, "cg-high": close})
    per_run = run_accuracy(acc)
    found = findings(headline(per_run), chance=0.1, per_run=per_run, accuracy=acc, n_boot=400)
    row = found.set_index("finding").loc["diversity helps (CG high-div. > natural-only)"]
    assert row["difference"] == pytest.approx(0.4 - 0.35)
    assert row["low"] < 0 < row["high"] and pd.isna(row["holds"])
    assert row["decided_by"] == "bootstrap" and "bootstrap" in row["interval"]
    again = findings(headline(per_run), chance=0.1, per_run=per_run, accuracy=acc, n_boot=400)
    assert again["low"].iloc[0] == row["low"]  # seeded
    far = {c: (min(1.0, v + 0.4), n) for c, (v, n) in natural.items()}
    acc = accuracy_rows({"natural-only": natural, "cg-high": far})
    per_run = run_accuracy(acc)
    row = findings(headline(per_run), chance=0.1, per_run=per_run, accuracy=acc, n_boot=400).iloc[0]
    assert row["holds"] == True and row["low"] > 0  # noqa: E712


def test_bootstrap_top1_redraws_classes_and_images():
    per_class = pd.DataFrame({"run": ["r"] * 2, "test_domain": ["sketch"] * 2,
                              "class_name": ["a", "b"], "value": [0.0, 1.0], "n_images": [10, 30]})
    boot = bootstrap_top1(per_class, n_boot=2000, seed=0)["r"]
    assert boot.shape == (2000,) and boot.min() == 0.0 and boot.max() == 1.0
    assert boot.mean() == pytest.approx(0.5 * 0.75 + 0.25 * 1.0 + 0.25 * 0.0, abs=0.03)
    fixed = pd.DataFrame({"run": ["r"], "test_domain": ["x"], "class_name": ["a"],
                          "value": [0.5], "n_images": [50]})
    assert bootstrap_top1(fixed, n_boot=500, seed=0)["r"].std() == pytest.approx(
        np.sqrt(0.25 / 50), rel=0.2)  # image resampling: binomial spread


# ---------------------------------------------------------------- figures


def test_heatmap_masks_the_diagonal_and_scales_to_off_diagonal_values():
    from matplotlib.figure import Figure

    from interp.plots import domain_heatmap

    matrix = pd.DataFrame([[1.0, 0.2, 0.3], [0.2, 1.0, 0.4], [0.3, 0.4, 1.0]],
                          index=list("abc"), columns=list("abc"))
    ax = Figure().subplots()
    image = domain_heatmap(ax, matrix, list("abc"), "t")
    data = image.get_array()
    assert np.ma.getmaskarray(data)[np.eye(3, dtype=bool)].all()
    assert not np.ma.getmaskarray(data)[~np.eye(3, dtype=bool)].any()
    assert image.get_clim() == pytest.approx((0.2, 0.4))
    assert "1.00" not in [t.get_text() for t in ax.texts] and len(ax.texts) == 6


def test_report_heatmaps_share_an_off_diagonal_scale():
    from domainlens.report import plot_similarity_heatmaps

    rows = []
    for reference, base in (("none", 0.1), ("init", 0.3)):
        for seed in (0, 1):
            for i, (a, b) in enumerate(combinations(DOMAINS, 2)):
                rows.append(dict(run=f"r{seed}", setup="cg-high", test_domain="sketch", seed=seed,
                                 reference=reference, domain_a=a, domain_b=b, metric="wl_kernel",
                                 class_subset="held-out", value=base + 0.01 * i + 0.01 * seed))
    fig = plot_similarity_heatmaps(pd.DataFrame(rows))
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2  # trained and init rows
    for image in images:
        # means over the two seeds (+0.005): the lowest trained and the highest init pair
        assert image.get_clim() == pytest.approx((0.105, 0.3 + 0.05 + 0.005))
    assert any("±" in t.get_text() for t in fig.axes[0].texts)  # spread over the two seeds


def test_line_figure_draws_the_init_reference_dashed_in_the_same_colour():
    from domainlens.report import _line_panels, cka_by_layer

    table = cka_rows({"none": {0: (0.3, 0.6), 1: (0.35, 0.6)}, "init": {0: (0.2, 0.2), 1: (0.2, 0.2)}})
    fig = _line_panels(cka_by_layer(table, "held-out"), "layer_index", "pair_group", "value", "CKA")
    lines = fig.axes[0].get_lines()
    solid = {line.get_color(): line for line in lines if line.get_linestyle() == "-"}
    dashed = [line for line in lines if line.get_linestyle() == "--"]
    assert len(solid) == 2 and len(dashed) == 2
    assert {line.get_color() for line in dashed} == set(solid)
    assert "2 seeds" in fig.axes[0].get_title()


def test_save_figure_writes_a_pdf_beside_the_png(tmp_path):
    from matplotlib.figure import Figure

    from domainlens.report import _save
    from interp.plots import save_figure
    from interp.plots.cka import save_figure as from_cka

    assert from_cka is save_figure  # one save function
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    png = _save(fig, pd.DataFrame({"x": [0, 1]}), tmp_path / "fig")
    assert png == tmp_path / "fig.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.csv", "fig.pdf", "fig.png"]
    only = save_figure(fig, tmp_path / "sub" / "x.png", pdf=False)
    assert only.is_file() and not (tmp_path / "sub" / "x.pdf").exists()


# ---------------------------------------------------------------- pipeline wiring


def _with_controls(cls):
    """A settings class with the controls' fields (as domainlens.experiments gets them)."""
    names = {f.name for f in dataclasses.fields(cls)}
    extra = [(name, kind, dataclasses.field(default=default)) for name, kind, default in (
        ("references", tuple, ("init", "class-shuffle")), ("seed_reference", object, None),
        ("n_boot", int, 1000)) if name not in names]
    frozen = cls.__dataclass_params__.frozen
    return dataclasses.make_dataclass(cls.__name__, extra, bases=(cls,), frozen=frozen)


def test_every_seed_is_analysed_with_the_next_seed_as_its_seed_reference(tmp_path, monkeypatch):
    from domainlens.experiments import circuits, cka, patching

    monkeypatch.setattr(pipeline, "measure_throughput", lambda *a, **k: (100.0, 400.0))
    for module, name in ((cka, "CKASettings"), (patching, "PatchSettings"),
                         (circuits, "CircuitSettings")):
        monkeypatch.setattr(module, name, _with_controls(getattr(module, name)))
    config = load_config("smoke", out=tmp_path).replace("train", seeds=[0, 1, 2]).replace(
        "analyses", seeds=[0, 1, 2], n_boot=200)
    assert config.analysis_references == ("init", "class-shuffle", "seed")
    steps = {s.id: s for s in pipeline.plan(config, progress=False)}
    for kind in ("cka", "patching", "circuits"):
        for seed in range(3):
            step = steps[f"{kind}/quickdraw/cg-high/s{seed}"]
            partner = f"quickdraw/cg-high/s{(seed + 1) % 3}"
            assert step.params["settings"]["seed_reference"] == partner  # an id, not a path
            assert step.params["settings"]["references"] == ["init", "class-shuffle", "seed"]
            assert step.params["settings"]["n_boot"] == 200
            assert f"train/{partner}" in step.depends
    one = load_config("smoke", out=tmp_path)
    assert one.analysis_references == ("init", "class-shuffle")
    step = {s.id: s for s in pipeline.plan(one, progress=False)}["cka/quickdraw/cg-high/s0"]
    assert step.params["settings"]["seed_reference"] is None
    assert step.depends == ["train/quickdraw/cg-high/s0"]


@pytest.mark.parametrize("text, message", [
    ("[analyses]\nreferences = ['noise']\n", "'noise'"),
    ("[analyses]\nreferences = ['seed']\n", "'seed' needs at least two"),
    ("[analyses]\nn_boot = 3\n", "n_boot must be"),
])
def test_bad_references_are_an_error(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        load_config(path, out=tmp_path / "out")


def test_study_analyses_every_seed():
    study = load_config("study")
    assert study.analyses.seeds == study.train.seeds == (0, 1, 2)
    assert study.analysis_references == ("init", "class-shuffle", "seed")
    assert Path(pipeline.__file__).is_file()


def test_controls_summary_averages_each_reference():
    from domainlens.report import controls_summary

    rows = [dict(analysis="cka", measure="cka_linear", site=s, domain_a="real", domain_b="sketch",
                 class_subset="held-out", run=f"r{seed}", setup="cg-high", test_domain="sketch",
                 seed=seed, reference=ref, value=0.6, reference_value=rv, excess=0.6 - rv,
                 excess_low=0.5 - rv, excess_high=0.7 - rv, n_classes=6)
            for ref, rv in (("init", 0.2), ("class-shuffle", 0.4)) for s in ("L1", "L2")
            for seed in (0, 1)]
    summary = controls_summary(pd.DataFrame(rows)).set_index("reference")
    assert summary.loc["init", "excess"] == pytest.approx(0.4)
    assert summary.loc["class-shuffle", "excess_low"] == pytest.approx(0.1)
    assert summary.loc["init", "rows"] == 4 and summary.loc["init", "seeds"] == 2
    assert controls_summary(pd.DataFrame()).empty


def test_analysis_figures_draw_reference_rows_as_references():
    """interp.plots on a table with init rows: dashed init lines, heatmaps of measured rows."""
    from interp.plots.circuits import similarity_matrix
    from interp.plots.cka import plot_cka_by_layer

    table = cka_rows({"none": {0: (0.3, 0.6)}, "init": {0: (0.9, 0.9)}})
    fig = plot_cka_by_layer(table[table["layer_index"] >= 0])
    styles = [line.get_linestyle() for line in fig.axes[0].get_lines()]
    assert styles.count("--") == styles.count("-") == 6  # one init line per domain pair
    summary = table.assign(metric="wl_kernel", statistic="mean")
    matrix = similarity_matrix(summary[summary["layer_index"] == 1], "wl_kernel", "held-out", DOMAINS)
    assert matrix.loc["clipart", "sketch"] == pytest.approx(0.3)  # init rows (0.9) left out
