"""Reference values beside every cross-domain similarity (interp.controls and the experiments)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import torch_threads
from fakedata import make_fake_domainnet

from interp.controls import (
    bootstrap_excess,
    check_reference_runs,
    check_references,
    derangement,
    excess_table,
    ratio_of_sums,
    resampled_cka,
    shuffle_pairing,
    shuffled_labels,
)
from interp.similarity.cka import cka
from interp.similarity.cross_domain import cross_domain_cka
from training.util.seeding import seeded_rng


# ----------------------------------------------------------------------------- pure pieces
def test_derangement_has_no_fixed_points_and_is_seeded():
    for n in (2, 3, 4, 9):
        for seed in range(20):
            perm = derangement(n, seeded_rng(seed, "t"))
            assert sorted(perm.tolist()) == list(range(n))
            assert not np.any(perm == np.arange(n))
    assert derangement(5, seeded_rng(1)).tolist() == derangement(5, seeded_rng(1)).tolist()
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, seeded_rng(0))
    pairing = shuffle_pairing(["a", "b", "c", "d"], 0, "held-out")
    assert pairing == shuffle_pairing(["a", "b", "c", "d"], 0, "held-out")  # same for every model
    assert all(k != v for k, v in pairing.items()) and set(pairing.values()) == set("abcd")


def test_shuffled_labels_relabels_the_paired_class_and_drops_others():
    pairing = {"a": "b", "b": "c", "c": "a"}
    new, keep = shuffled_labels(np.array(["a", "b", "z", "c", "b"]), pairing)
    assert keep.tolist() == [True, True, False, True, True]
    assert new.tolist() == ["c", "a", "b", "a"]  # a row of class pairing[x] is labelled x


def test_class_shuffle_cka_equals_a_hand_computation_on_a_tiny_table():
    """4 classes, fixed derangement (a->c, b->d, c->b, d->a): cross-domain CKA on relabelled B
    equals CKA of A's class means against B's class means in the order c, d, b, a."""
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d"]
    labels = np.repeat(classes, 3)
    xa, xb = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
    pairing = {"a": "c", "b": "d", "c": "b", "d": "a"}
    new, keep = shuffled_labels(labels, pairing)
    table = cross_domain_cka({"A": {"s": torch.tensor(xa)}, "B": {"s": torch.tensor(xb[keep])}},
                             {"A": labels, "B": new}, classes=classes, unbiased=False, progress=False)
    mean_a = np.stack([xa[labels == c].mean(0) for c in classes])
    mean_b = np.stack([xb[labels == pairing[c]].mean(0) for c in classes])

    def centred_gram(x):
        k = x @ x.T
        h = np.eye(4) - 1 / 4
        return h @ k @ h

    ka, kb = centred_gram(mean_a), centred_gram(mean_b)
    hand = (ka * kb).sum() / np.sqrt((ka * ka).sum() * (kb * kb).sum())
    assert table["value"].iloc[0] == pytest.approx(hand, abs=1e-10)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_resampled_cka_equals_cka_on_each_resample(kernel, unbiased):
    rng = np.random.default_rng(1)
    x, y = torch.tensor(rng.normal(size=(7, 4))), torch.tensor(rng.normal(size=(7, 3)))
    index = rng.integers(0, 7, size=(5, 7))
    index[0] = np.arange(7)
    got = resampled_cka(x, y, index, kernel, unbiased, chunk=100)  # several chunks
    for r in range(5):
        try:
            want = cka(x[index[r]], y[index[r]], kernel, unbiased)
        except ValueError:  # all rows identical: no bandwidth
            want = float("nan")
        assert got[r] == pytest.approx(want, abs=1e-9, nan_ok=True)


def test_excess_intervals_cover_the_hand_computed_excess():
    values = pd.DataFrame({"m": "x", "class_name": list("abcdef"), "value": [0.6, 0.7, 0.5, 0.8, 0.65, 0.55]})
    refs = pd.DataFrame({"m": "x", "class_name": list("abcdef"), "reference": "init",
                         "value": [0.2, 0.3, 0.25, 0.1, 0.2, 0.3]})
    table = excess_table(values, refs, by=["m"], n_boot=500, seed=0)
    row = table.iloc[0]
    hand = np.mean(values["value"]) - np.mean(refs["value"])
    assert row["excess"] == pytest.approx(hand)
    assert row["value"] == pytest.approx(values["value"].mean())
    assert row["excess_low"] <= hand <= row["excess_high"] and row["excess_low"] > 0
    assert row["n_classes"] == 6 and row["reference"] == "init"
    again = excess_table(values, refs, by=["m"], n_boot=500, seed=0)
    pd.testing.assert_frame_equal(table, again)  # seeded
    # ratio of per-class sums (patching recovery), and the CKA form over class indices
    num = pd.DataFrame({"m": "x", "class_name": list("abcd"), "num": [1.0, 2, 1, 2], "den": [2.0, 2, 2, 2]})
    ref = num.assign(reference="class-shuffle", num=[0.0, 0.5, 0.0, 0.5])
    ratio = excess_table(num, ref, by=["m"], columns=("num", "den"), statistic=ratio_of_sums, n_boot=200)
    assert ratio["excess"].iloc[0] == pytest.approx(6 / 8 - 1 / 8)
    assert ratio["excess_low"].iloc[0] <= 5 / 8 <= ratio["excess_high"].iloc[0]
    v, r = np.array([0.5, 0.9, 0.7, 0.6]), np.array([0.1, 0.2, 0.3, 0.2])
    interval = bootstrap_excess(lambda i: v[i].mean(1), lambda i: r[i].mean(1), 4, n_boot=300)
    assert interval.estimate == pytest.approx(v.mean() - r.mean())
    assert interval.low <= interval.estimate <= interval.high


def test_bad_reference_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown \\['shuffle'\\]"):
        check_references(("init", "shuffle"), None, 10)
    with pytest.raises(ValueError, match="--seed-run"):
        check_references(("seed",), None, 10)
    with pytest.raises(ValueError, match="'seed' is not among"):
        check_references(("init",), tmp_path, 10)
    with pytest.raises(ValueError, match="n_boot"):
        check_references(("init",), None, 0)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch_3.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="epoch-0 .* epochs \\[3\\]"):
        check_reference_runs(run, ("init",), None)
    with pytest.raises(ValueError, match="not a run directory"):
        check_reference_runs(run, ("seed",), tmp_path / "nowhere")
    check_reference_runs(run, ("class-shuffle",), None)


# ----------------------------------------------------------------------------- experiments
TINY_VIT = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def _two_epoch_run(path, data_root, heldout=("banana", "cat", "dog", "the_eiffel_tower", "aircraft_carrier")):
    """A tiny ViT CLIP run with an epoch-0 and a (different) epoch-1 checkpoint."""
    from training.models import build_clip

    (path / "checkpoints").mkdir(parents=True)
    (path / "model_config.json").write_text(json.dumps(TINY_VIT))
    for epoch in (0, 1):
        torch.manual_seed(epoch)
        torch.save({"epoch": epoch, "name": path.name, "state_dict": build_clip(TINY_VIT).state_dict()},
                   path / "checkpoints" / f"epoch_{epoch}.pt")
    (path / "mixture.json").write_text(json.dumps({
        "name": "lso-rs-nosketchclasses",
        "spec": {"setup": "cg-low", "test_domain": "sketch", "seed": 0, "data_root": str(data_root),
                 "heldout": list(heldout)},
    }))
    (path / "run.json").write_text(json.dumps({"kind": "clip", "settings": {"seed": 0}}))
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A two-epoch run and an identical-weight copy under another name (a 'second seed')."""
    from PIL import Image

    base = tmp_path_factory.mktemp("ctl")
    root = make_fake_domainnet(base / "data")
    rng = np.random.default_rng(0)
    for path in sorted(root.glob("*/*/*.png")):  # the fake domains' images are identical: add noise
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)
        noisy = np.clip(pixels + rng.integers(-80, 80, size=pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path)
    run = _two_epoch_run(base / "runs" / "lso-rs-s0", root)
    twin = base / "runs" / "lso-rs-s1"
    shutil.copytree(run, twin)
    return run, twin, root


def _without(table, *columns):
    return table.drop(columns=[c for c in columns if c in table.columns]).reset_index(drop=True)


def test_cka_references_init_class_shuffle_and_seed(two_runs, tmp_path):
    """init rows = cka_run on epoch 0 directly; class-shuffle rows = the relabelled call; with an
    identical-weight twin the seed reference equals the value (excess 0); controls.csv."""
    from domainlens.experiments.cka import CKASettings, cka_run

    run, twin, _ = two_runs
    common = dict(classes=("held-out",), kernels=("linear", "rbf"), unbiased=False, progress=False,
                  n_boot=200)
    settings = CKASettings(references=("init", "class-shuffle", "seed"), seed_reference=twin, **common)
    with torch_threads(1):
        written = cka_run(run, domains=["real", "sketch", "clipart"], settings=settings,
                          out=tmp_path / "cka", cache_dir=tmp_path / "cache")
        direct = pd.read_csv(cka_run(run, domains=["real", "sketch", "clipart"], epoch=0,
                                     settings=CKASettings(references=(), **common),
                                     out=tmp_path / "cka0", cache_dir="")["table"])
    table = pd.read_csv(written["table"])
    assert set(table["reference"]) == {"none", "init", "class-shuffle", "seed"}
    assert set(direct["reference"]) == {"none"}
    init = table[table["reference"] == "init"]
    pd.testing.assert_frame_equal(_without(init, "reference"), _without(direct, "reference"))
    none = table[table["reference"] == "none"].reset_index(drop=True)
    assert set(none["epoch"]) == {1} and not np.allclose(none["value"], init["value"])
    seed = table[table["reference"] == "seed"].reset_index(drop=True)
    assert set(seed["run"]) == {"lso-rs-s1"}
    np.testing.assert_allclose(seed["value"], none["value"], atol=1e-12)

    controls = pd.read_csv(written["controls"])
    assert list(controls.columns) == ["measure", "site", "domain_a", "domain_b", "class_subset", "run",
                                      "setup", "test_domain", "seed", "reference", "value",
                                      "reference_value", "excess", "excess_low", "excess_high",
                                      "n_classes"]
    assert set(controls["measure"]) == {"cka_linear", "cka_rbf"}
    assert set(controls["run"]) == {"lso-rs-s0"} and len(controls) == 3 * len(none)
    np.testing.assert_allclose(controls["excess"], controls["value"] - controls["reference_value"])
    seeded = controls[controls["reference"] == "seed"]
    np.testing.assert_allclose(seeded[["excess", "excess_low", "excess_high"]], 0, atol=1e-9)
    finite = controls.dropna(subset=["excess_low"])
    assert len(finite) > 0.9 * len(controls)
    assert ((finite["excess_low"] <= finite["excess"] + 1e-12)
            & (finite["excess"] <= finite["excess_high"] + 1e-12)).mean() > 0.9

    # class-shuffle by hand: relabel sketch with the pairing, call cross-domain CKA
    from interp.hooked.activations import collect_domain_activations
    from interp.hooked.runs import load_hooked_run
    from training.runinfo import read_run_info

    hooked = load_hooked_run(run)
    info = read_run_info(run)
    sites = [s.name for s in hooked.model.layers()]
    acts = collect_domain_activations(hooked.model, info.data_root, ["real", "sketch"], sites,
                                      mean=hooked.mean, std=hooked.std, progress=False)
    classes = [c for c in info.heldout if c in set(acts["real"].labels) & set(acts["sketch"].labels)]
    pairing = shuffle_pairing(classes, 0, "held-out")
    new, keep = shuffled_labels(acts["sketch"].labels, pairing)
    hand = cross_domain_cka({"real": acts["real"].acts,
                             "sketch": {s: x[torch.as_tensor(keep)] for s, x in acts["sketch"].acts.items()}},
                            {"real": acts["real"].labels, "sketch": new}, sites=sites, classes=classes,
                            kernel="linear", unbiased=False, progress=False)
    shuffled = table[(table["reference"] == "class-shuffle") & (table["kernel"] == "linear")
                     & (table["domain_a"] == "real") & (table["domain_b"] == "sketch")]
    np.testing.assert_allclose(shuffled["value"], hand["value"], atol=1e-12)


def test_cka_refuses_bad_references_before_any_work(two_runs, tmp_path, monkeypatch):
    from domainlens.experiments import cka as experiment
    from domainlens.experiments.cka import CKASettings, cka_run

    run, _, root = two_runs
    monkeypatch.setattr("interp.hooked.runs.load_hooked_run",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("work started")))
    with pytest.raises(ValueError, match="unknown"):
        cka_run(run, settings=CKASettings(references=("init", "noise")))
    with pytest.raises(ValueError, match="--seed-run"):
        cka_run(run, settings=CKASettings(references=("seed",)))
    only_late = tmp_path / "late"
    shutil.copytree(run, only_late)
    (only_late / "checkpoints" / "epoch_0.pt").unlink()
    with pytest.raises(ValueError, match="epoch-0"):
        cka_run(only_late, settings=CKASettings())
    assert experiment.CKASettings().references == ("init", "class-shuffle")


def test_circuit_references_init_class_shuffle_and_seed(two_runs, tmp_path):
    from domainlens.experiments.circuits import CircuitSettings, run_circuits
    from interp.circuits.circuit import Circuit
    from interp.circuits.compare import edge_jaccard, node_jaccard_by_site, wl_kernel

    run, twin, root = two_runs
    classes, domains = ["axe", "cat", "dog"], ["clipart", "sketch"]
    common = dict(n_images=2, n_boot=200)
    settings = CircuitSettings(references=("init", "class-shuffle", "seed"), seed_reference=twin, **common)
    with torch_threads(1):
        results = run_circuits(run, classes=classes, domains=domains, settings=settings,
                               out=tmp_path / "c", progress=False)
        direct = run_circuits(run, classes=classes, domains=domains, epoch=0, progress=False,
                              settings=CircuitSettings(references=(), **common), out=tmp_path / "c0")
    comparison = pd.read_csv(tmp_path / "c" / "comparison.csv")
    assert set(comparison["reference"]) == {"none", "init", "class-shuffle", "seed"}
    by_ref = {r: t.reset_index(drop=True) for r, t in comparison.groupby("reference")}
    want = direct.comparison.reset_index(drop=True)
    pd.testing.assert_frame_equal(by_ref["init"].drop(columns="reference"),
                                  want.drop(columns="reference"), check_dtype=False)
    np.testing.assert_allclose(by_ref["seed"]["value"], by_ref["none"]["value"], equal_nan=True)
    assert set(by_ref["seed"]["run"]) == {"lso-rs-s1"}
    assert not np.allclose(by_ref["init"]["value"], by_ref["none"]["value"], equal_nan=True)

    # class-shuffle by hand: circuit of (c, A) against (pairing[c], B)
    pairing = shuffle_pairing(classes, 0)
    circuits = {key: Circuit.load(path) for key, path in results.circuit_files.items()}
    shuffled = by_ref["class-shuffle"].set_index(["class_name", "domain_a", "domain_b", "metric", "site"])["value"]
    for c in classes:
        ca, cb = circuits[(c, "clipart")], circuits[(pairing[c], "sketch")]
        assert shuffled[(c, "clipart", "sketch", "edge_jaccard", "*")] == pytest.approx(edge_jaccard(ca, cb))
        assert shuffled[(c, "clipart", "sketch", "wl_kernel", "*")] == pytest.approx(wl_kernel(ca, cb), nan_ok=True)
        for site, value in node_jaccard_by_site(ca, cb).items():
            assert shuffled[(c, "clipart", "sketch", "node_jaccard", site)] == pytest.approx(value, nan_ok=True)

    controls = pd.read_csv(tmp_path / "c" / "controls.csv")
    assert set(controls["reference"]) == {"init", "class-shuffle", "seed"}
    assert set(controls["measure"]) == {"node_jaccard", "edge_jaccard", "wl_kernel"}
    assert set(controls["class_subset"]) == {"held-out", "seen", "all"}
    np.testing.assert_allclose(controls.loc[controls["reference"] == "seed", "excess"], 0, atol=1e-12)
    finite = controls.dropna(subset=["excess_low", "excess"])
    assert ((finite["excess_low"] <= finite["excess"] + 1e-12)
            & (finite["excess"] <= finite["excess_high"] + 1e-12)).all()
    summary = pd.read_csv(tmp_path / "c" / "comparison_summary.csv")
    assert set(summary["reference"]) == {"none", "init", "class-shuffle", "seed"}


def test_patching_references_init_class_shuffle_and_seed(two_runs, tmp_path):
    from domainlens.experiments import patching as experiment
    from domainlens.experiments.patching import PatchSettings, patch_run
    from interp.interventions.patching import cross_domain_patching
    from training.runinfo import read_run_info

    run, twin, _ = two_runs
    common = dict(max_per_class=2, granularities=(), n_boot=100, site_sets=("components",),
                  progress=False)
    settings = PatchSettings(references=("init", "class-shuffle", "seed"), seed_reference=twin, **common)
    with torch_threads(1):
        written = patch_run(run, "real", "sketch", settings=settings, out=tmp_path / "p")
        direct = pd.read_csv(patch_run(run, "real", "sketch", epoch=0, out=tmp_path / "p0",
                                       settings=PatchSettings(references=(), **common))["summary"])
    summary = pd.read_csv(written["summary"])
    assert set(summary["reference"]) == {"none", "init", "class-shuffle", "seed"}
    by_ref = {r: t.drop(columns="reference").reset_index(drop=True) for r, t in summary.groupby("reference")}
    pd.testing.assert_frame_equal(by_ref["init"], direct.drop(columns="reference"))
    np.testing.assert_allclose(by_ref["seed"]["value"], by_ref["none"]["value"], equal_nan=True)

    # class-shuffle by hand: source images of class pairing[c] carry label c
    info = read_run_info(run)
    subset = list(info.heldout)
    from interp.hooked.runs import load_hooked_run

    hooked = load_hooked_run(run)
    xs, ys, _ = experiment._load_domain(hooked, info.data_root, "real", subset, 2, 0)
    xt, yt, _ = experiment._load_domain(hooked, info.data_root, "sketch", subset, 2, 0)
    model = experiment._with_head(hooked, info, settings, "cpu")
    pairing = shuffle_pairing(subset, 0, "held-out")
    inverse = {info.classes.index(b): info.classes.index(a) for a, b in pairing.items()}
    relabelled = torch.tensor([inverse[int(y)] for y in ys])
    sites = sorted(set(summary["site"]), key=model.site_names().index)
    with torch_threads(1):
        hand = cross_domain_patching(model, xs, relabelled, xt, yt, sites=sites, pairing="class_mean",
                                     directions=("denoising",), class_names=info.classes, progress=False)
    hand_frame = hand[0].to_frame(n_boot=100)
    want = hand_frame[hand_frame["statistic"] == "recovery"].set_index("site")["value"]
    got = summary[(summary["reference"] == "class-shuffle") & (summary["statistic"] == "recovery")
                  & (summary["pairing"] == "class_mean") & (summary["direction"] == "denoising")
                  & (summary["class_name"] == "all")].set_index("site")["value"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)

    controls = pd.read_csv(written["controls"])
    assert set(controls["measure"]) == {f"recovery_{p}_{d}" for p in ("paired", "class_mean")
                                        for d in ("denoising", "noising")}
    assert set(controls["domain_a"]) == {"real"} and set(controls["domain_b"]) == {"sketch"}
    # controls' value = the summary's recovery over all classes
    measured = summary[(summary["reference"] == "none") & (summary["statistic"] == "recovery")
                       & (summary["class_name"] == "all")]
    measured = measured.assign(measure="recovery_" + measured["pairing"] + "_" + measured["direction"])
    merged = controls[controls["reference"] == "init"].merge(measured, on=["measure", "site"])
    np.testing.assert_allclose(merged["value_x"], merged["value_y"], rtol=1e-6)
    np.testing.assert_allclose(controls.loc[controls["reference"] == "seed", "excess"], 0, atol=1e-9)
    # ratios of tiny gaps (random weights): percentile intervals are skewed, need not hold the
    # point estimate; they are ordered and the estimate is the hand-computed difference
    finite = controls.dropna(subset=["excess_low"])
    assert len(finite) > 0 and (finite["excess_low"] <= finite["excess_high"]).all()


def test_parse_references():
    from interp.controls import parse_references

    assert parse_references(None) == ("init", "class-shuffle")
    assert parse_references(None, "runs/s1") == ("init", "class-shuffle", "seed")
    assert parse_references("init, seed") == ("init", "seed")
    assert parse_references("none") == () and parse_references("") == ()


@pytest.mark.parametrize("command", ["cka", "patch", "circuits"])
def test_cli_refuses_bad_references_before_any_work(two_runs, tmp_path, capsys, monkeypatch, command):
    from domainlens.cli import main

    run, twin, root = two_runs
    monkeypatch.setattr("interp.hooked.runs.load_hooked_run",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("work started")))
    extra = ["--source", "real", "--target", "sketch"] if command == "patch" else []
    base = [command, str(run), *extra, "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*base, "--references", "init,shuffle"]) == 2
    assert "unknown ['shuffle']" in capsys.readouterr().err
    assert main([*base, "--references", "init,seed"]) == 2
    assert "--seed-run" in capsys.readouterr().err
    late = tmp_path / "late"
    shutil.copytree(run, late)
    (late / "checkpoints" / "epoch_0.pt").unlink()
    assert main([command, str(late), *extra, "--quiet"]) == 2
    assert "epoch-0" in capsys.readouterr().err


def test_cli_cka_with_a_seed_run(two_runs, tmp_path, capsys):
    from domainlens.cli import main

    run, twin, _ = two_runs
    out = tmp_path / "cka"
    with torch_threads(1):
        assert main(["cka", str(run), "--domains", "real", "sketch", "--classes", "held-out",
                     "--kernel", "linear", "--biased", "--seed-run", str(twin), "--n-boot", "20",
                     "--no-cache", "--out", str(out), "--quiet"]) == 0
    assert "controls.csv" in capsys.readouterr().out
    assert set(pd.read_csv(out / "cka.csv")["reference"]) == {"none", "init", "class-shuffle", "seed"}
    controls = pd.read_csv(out / "controls.csv")
    assert set(controls["reference"]) == {"init", "class-shuffle", "seed"}
