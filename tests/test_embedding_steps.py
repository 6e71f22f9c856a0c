"""Embedding separation, SAE features and the aligned-captions twin as steps of ``reproduce``
and sections of the report (issue 15)."""

from __future__ import annotations

import pandas as pd
import pytest

from domainlens import pipeline
from domainlens.config import load_config
from domainlens.embedding_report import (
    ALIGNED_ACCURACY,
    ALIGNED_SEPARATION,
    aligned_findings,
    separation_table,
)
from domainlens.report import _spread_row

NO_ANALYSES = {"cka": False, "patching": False, "circuits": False}


def embedding_config(tmp_path, **experiments):
    config = load_config("smoke", out=tmp_path / "out").replace(
        "analyses", **NO_ANALYSES, embeddings=True, features=True, sae_epochs=5,
        umap_per_domain=20)
    return config.replace("experiments", aligned=["quickdraw"], **experiments)


def test_plan_has_the_twin_and_the_embedding_steps(tmp_path):
    steps = pipeline.plan(embedding_config(tmp_path), progress=False)
    ids = [s.id for s in steps]
    assert "train/quickdraw/cg-high-aligned/s0" in ids and "eval/quickdraw/cg-high-aligned/s0" in ids
    assert [i for i in ids if i.split("/")[0] in ("aligned", "embeddings", "features")] == [
        "aligned/quickdraw/cg-high/s0", "embeddings/quickdraw/cg-high/s0",
        "features/quickdraw/cg-high/s0"]
    aligned = next(s for s in steps if s.id == "aligned/quickdraw/cg-high/s0")
    assert aligned.depends == ["eval/quickdraw/cg-high/s0", "eval/quickdraw/cg-high-aligned/s0"]
    report = next(s for s in steps if s.id == "report")
    assert {"aligned/quickdraw/cg-high/s0", "features/quickdraw/cg-high/s0"} <= set(report.depends)
    names = [p.stem for p in next(s for s in steps if s.id == "mixtures").outputs]
    assert "lso-cipqrs-noquickdrawclasses-aligned" in names  # the paper's name for the twin
    # the twin exists for the analysed test domain only, and switching the analyses off
    # leaves the plan as it was
    assert not any("sketch/cg-high-aligned" in i for i in ids)
    plain = load_config("smoke", out=tmp_path / "out").replace("analyses", **NO_ANALYSES)
    assert [s.id for s in pipeline.plan(plain, progress=False)] == [
        i for i in ids if "aligned" not in i and i.split("/")[0] not in ("embeddings", "features")]


def test_the_twin_trains_on_the_same_rows_with_captions_without_domain_words(tmp_path):
    steps = {s.id: s for s in pipeline.plan(embedding_config(tmp_path), progress=False)}
    steps["data"].run()
    steps["mixtures"].run()
    folder = tmp_path / "out" / "mixtures" / "quickdraw"
    standard = pd.read_csv(folder / "lso-cipqrs-noquickdrawclasses.tsv", sep="\t")
    aligned = pd.read_csv(folder / "lso-cipqrs-noquickdrawclasses-aligned.tsv", sep="\t")
    path = next(c for c in standard.columns if "path" in c)
    caption = next(c for c in standard.columns if "caption" in c or "title" in c)
    assert standard[path].tolist() == aligned[path].tolist()
    words = ("sketch", "drawing", "clipart", "painting", "infographic", "photo", "doodle")
    assert not aligned[caption].str.contains("|".join(words)).any()
    assert standard[caption].str.contains("|".join(words)).any()


@pytest.mark.parametrize("section, values, message", [
    ("analyses", {"sae_epochs": 0}, r"\[analyses\] sae_epochs"),
    ("analyses", {"umap_per_domain": 0}, r"\[analyses\] umap_per_domain"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, section, values, message):
    with pytest.raises(ValueError, match=message):
        load_config("smoke", out=tmp_path).replace(section, **values)


@pytest.mark.parametrize("sections, message", [
    ({"mixtures": {"captions": "aligned"}}, r"aligned needs \[mixtures\] captions = 'domain'"),
    ({}, r"aligned \(must be among \[analyses\] test_domains\): unknown \['sketch'\]"),
    ({"analyses": {"setups": ["natural-only"]}}, r"needs 'cg-high' among \[analyses\] setups"),
])
def test_bad_aligned_settings_are_refused(tmp_path, sections, message):
    config = load_config("smoke", out=tmp_path)
    for name, values in sections.items():
        config = config.replace(name, **values)
    domains = ["quickdraw"] if sections else ["sketch"]  # smoke analyses quickdraw only
    with pytest.raises(ValueError, match=message):
        config.replace("experiments", aligned=domains)


def test_aligned_findings_equal_a_hand_computation():
    rows = []
    # two seeds; distances of clipart and real to quickdraw; held-out top-1 on quickdraw
    for seed, (std_d, ali_d, std_a, ali_a) in enumerate([((0.4, 0.6), (0.3, 0.5), 0.2, 0.2),
                                                          ((0.5, 0.7), (0.2, 0.4), 0.3, 0.1)]):
        for variant, dists, acc in (("standard", std_d, std_a), ("aligned", ali_d, ali_a)):
            for domain, d in zip(("clipart", "real"), dists, strict=True):
                rows.append(("class_mean_distance_to_quickdraw", domain, variant, d, seed))
            rows.append(("heldout_top1", "quickdraw", variant, acc, seed))
            rows.append(("heldout_top1", "real", variant, 0.9, seed))  # not the test domain
    table = pd.DataFrame(rows, columns=["quantity", "domain", "variant", "value", "seed"]).assign(
        test_domain="quickdraw", setup="cg-high", run="r")
    found = {r["finding"]: r for r in aligned_findings(table, _spread_row)}
    sep, acc = found[ALIGNED_SEPARATION], found[ALIGNED_ACCURACY]
    # separation: standard means 0.5, 0.6; aligned 0.4, 0.3 -> per-seed differences 0.1, 0.3
    assert sep["a"] == pytest.approx(0.55) and sep["b"] == pytest.approx(0.35)
    assert sep["difference"] == pytest.approx(0.2)
    assert sep["low"] == pytest.approx(0.2 - 0.1414213, abs=1e-6)  # mean - std (ddof 1)
    assert sep["holds"] is True and sep["decided_by"] == "seed spread"
    # accuracy: aligned - standard = 0.0, -0.2 -> mean -0.1 ± 0.141: undecided
    assert acc["difference"] == pytest.approx(-0.1)
    assert acc["holds"] is None or pd.isna(acc["holds"])


def test_separation_table_keeps_the_distances_to_the_test_domain():
    rows = [("class_mean_distance", "all", "none", "quickdraw", other, v, s)
            for s, vs in enumerate([(0.2, 0.4), (0.4, 0.6)])
            for other, v in zip(("clipart", "real"), vs, strict=True)]
    rows += [("class_mean_distance", "all", "none", "clipart", "real", 9.0, 0),
             ("domain_mean_distance", "all", "none", "quickdraw", "real", 9.0, 0),
             ("class_mean_distance", "held-out", "none", "quickdraw", "real", 9.0, 0)]
    table = pd.DataFrame(rows, columns=["measure", "class_subset", "reference", "domain_a",
                                        "domain_b", "value", "seed"]).assign(
        test_domain="quickdraw", setup="cg-high")
    table["run"] = "r" + table["seed"].astype(str)  # one run per seed, as the report's tables
    out = separation_table(table).set_index("domain")
    assert out.loc["clipart", "mean"] == pytest.approx(0.3)
    assert out.loc["real", "mean"] == pytest.approx(0.5)
    assert out.loc["real", "n_seeds"] == 2


def test_embedding_steps_run_resume_and_report(tmp_path):
    """The smoke config with the three analyses end to end: every step done, the report's
    tables, figures, SAE section and aligned findings written; a rerun skips everything."""
    config = embedding_config(tmp_path)
    status = pipeline.reproduce(config, progress=False, log=lambda m: None)
    assert set(status.values()) == {"done"}
    results = tmp_path / "out" / "results"
    for name in ("embedding_separation", "domain_probe", "feature_sharing",
                 "aligned_captions_quickdraw"):
        assert (results / f"{name}.png").is_file() and (results / f"{name}.csv").is_file(), name
    probe = pd.read_csv(results / "domain_probe.csv")
    assert set(probe["reference"]) == {"none", "init", "domain-shuffle"}  # no classes in a domain probe
    assert set(probe["domain"]) == {"clipart", "infograph", "painting", "quickdraw", "real",
                                    "sketch"}
    findings = pd.read_csv(results / "findings.csv")
    assert {ALIGNED_SEPARATION, ALIGNED_ACCURACY} <= set(findings["finding"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Sparse autoencoders" in report and "aligned_captions_quickdraw.png" in report
    again = pipeline.reproduce(config, progress=False, log=lambda m: None)
    assert set(again.values()) == {"skipped"}


def test_no_aligned_table_gives_no_findings():
    assert aligned_findings(pd.DataFrame(), _spread_row) == []
