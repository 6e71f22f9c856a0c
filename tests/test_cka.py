"""CKA against naive implementations written from the papers' formulas; cross-domain tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from interp.similarity.cka import (
    center_gram,
    cka,
    gram_linear,
    gram_rbf,
    hsic,
    linear_cka_all,
    linear_cka_features,
    linear_cka_stats,
    linear_hsic_all,
    linear_hsic_all_flops,
    linear_stats,
    minibatch_cka,
    self_product,
    self_product_flops,
    stacked_centred,
)
from interp.similarity.cross_domain import (
    CROSS_DOMAIN_COLUMNS,
    class_means,
    cross_domain_cka,
    matched_rows,
    model_vs_model_cka,
)


# ----------------------------------------------------------------------------- naive reference
def naive_linear_gram(x: np.ndarray) -> np.ndarray:
    n = len(x)
    k = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            k[i, j] = float(np.dot(x[i], x[j]))
    return k


def naive_rbf_gram(x: np.ndarray, sigma: float | None = None) -> np.ndarray:
    n = len(x)
    d2 = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            d2[i, j] = float(np.sum((x[i] - x[j]) ** 2))
    if sigma is None:
        upper = sorted(d2[i, j] for i in range(n) for j in range(i + 1, n) if d2[i, j] > 0)
        sigma = float(np.sqrt(upper[(len(upper) - 1) // 2]))  # lower median (torch.median)
    return np.exp(-d2 / (2 * sigma**2))


def naive_hsic(k: np.ndarray, m: np.ndarray, unbiased: bool) -> float:
    n = len(k)
    if not unbiased:  # Gretton et al. 2005: tr(K H L H) / (n - 1)^2
        h = np.eye(n) - np.ones((n, n)) / n
        return float(np.trace(k @ h @ m @ h)) / (n - 1) ** 2
    kt, mt = k.copy(), m.copy()  # Song et al. 2012, eq. (5)
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(mt, 0.0)
    one = np.ones(n)
    value = (
        np.trace(kt @ mt)
        + (one @ kt @ one) * (one @ mt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ mt @ one)
    )
    return float(value) / (n * (n - 3))


def naive_cka(x, y, kernel="linear", unbiased=True, sigma=None) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    gram = naive_linear_gram if kernel == "linear" else (lambda a: naive_rbf_gram(a, sigma))
    k, m = gram(x), gram(y)
    return naive_hsic(k, m, unbiased) / np.sqrt(naive_hsic(k, k, unbiased) * naive_hsic(m, m, unbiased))


def related(n: int = 40, p: int = 6, q: int = 5, seed: int = 0, noise: float = 0.7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, q))) + noise * rng.normal(size=(n, q))
    return x, y


def orthogonal(d: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


# ----------------------------------------------------------------------------- exact values
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_equals_naive_gram_implementation(kernel, unbiased):
    x, y = related()
    expected = naive_cka(x, y, kernel, unbiased)
    assert abs(cka(x, y, kernel, unbiased, method="gram") - expected) < 1e-10
    assert abs(cka(x, y, kernel, unbiased) - expected) < 1e-10
    if kernel == "linear":
        assert abs(linear_cka_features(x, y, unbiased) - expected) < 1e-10
    assert abs(cka(x, y, kernel, unbiased, sigma=1.3) - naive_cka(x, y, kernel, unbiased, 1.3)) < 1e-10
    assert 0.05 < expected < 0.99


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("shape", [(30, 4, 6), (9, 40, 50)])  # n > d and d > n (Gram route)
def test_feature_space_form_equals_gram_form(unbiased, shape):
    n, p, q = shape
    x, y = related(n, p, q, seed=3)
    x = x + 5.0  # uncentred input: HSIC_1 is shift-invariant, the feature form centres
    gram_value = cka(x, y, "linear", unbiased, method="gram")
    assert abs(linear_cka_features(x, y, unbiased) - gram_value) < 1e-10
    assert abs(naive_cka(x, y, "linear", unbiased) - gram_value) < 1e-10
    a, b = linear_stats(x, unbiased), linear_stats(y, unbiased)
    assert abs(linear_cka_stats(a, b) - gram_value) < 1e-10
    assert abs(a.self_hsic - naive_hsic(naive_linear_gram(x), naive_linear_gram(x), unbiased)) < 1e-8 * abs(a.self_hsic)


def test_hsic_matches_naive_on_given_grams():
    x, y = related(25, seed=5)
    k, m = naive_rbf_gram(x), naive_linear_gram(y)
    for unbiased in (True, False):
        assert abs(hsic(k, m, unbiased) - naive_hsic(k, m, unbiased)) < 1e-10
    torch.testing.assert_close(gram_rbf(x), torch.as_tensor(naive_rbf_gram(x)))
    h = np.eye(25) - np.ones((25, 25)) / 25
    torch.testing.assert_close(center_gram(torch.as_tensor(k)), torch.as_tensor(h @ k @ h))


# ----------------------------------------------------------------------------- invariances
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(kernel, unbiased):
    x, _ = related(50, p=8)
    y = 3.7 * x @ orthogonal(8)
    assert abs(cka(x, y, kernel, unbiased) - 1.0) < 1e-10
    assert abs(cka(x, 0.01 * x, kernel, unbiased) - 1.0) < 1e-10


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_not_invariant_to_general_invertible_maps(kernel):
    x, _ = related(200, p=8)
    skew = orthogonal(8, 1) @ np.diag(np.geomspace(0.02, 20.0, 8)) @ orthogonal(8, 2)
    assert np.linalg.matrix_rank(skew) == 8
    value = cka(x, x @ skew, kernel)
    assert value < 0.9


def test_unbiased_cka_is_near_zero_for_independent_data():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(1000, 12)), rng.normal(size=(1000, 10))
    assert abs(cka(x, y)) < 0.01
    small_x, small_y = rng.normal(size=(100, 20)), rng.normal(size=(100, 20))
    assert abs(cka(small_x, small_y)) < 0.05
    assert cka(small_x, small_y, unbiased=False) > 0.12  # the biased estimator is inflated


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_is_symmetric(kernel, unbiased):
    x, y = related(seed=11)
    assert abs(cka(x, y, kernel, unbiased) - cka(y, x, kernel, unbiased)) < 1e-12


# ----------------------------------------------------------------------------- minibatch
def test_minibatch_cka_with_one_batch_is_exact():
    x, y = related(60, seed=2)
    for kernel in ("linear", "rbf"):
        assert abs(minibatch_cka(x, y, 60, kernel) - cka(x, y, kernel)) < 1e-10


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_cka_agrees_with_exact_for_large_n(kernel):
    x, y = related(1500, p=10, q=8, seed=4, noise=1.0)
    exact = cka(x, y, kernel, sigma=4.0 if kernel == "rbf" else None)
    mini = minibatch_cka(x, y, 150, kernel, sigma=4.0 if kernel == "rbf" else None, seed=1)
    assert 0.2 < exact < 0.95
    assert abs(mini - exact) < 0.02
    assert mini == minibatch_cka(x, y, 150, kernel, sigma=4.0 if kernel == "rbf" else None, seed=1)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    x, y = related(10)
    with pytest.raises(ValueError, match="at least 4"):
        cka(x[:3], y[:3])
    assert np.isfinite(cka(x[:3], y[:3], unbiased=False))
    with pytest.raises(ValueError, match="same number of rows"):
        cka(x, y[:8])
    with pytest.raises(ValueError, match="kernel must be one of"):
        cka(x, y, kernel="poly")
    with pytest.raises(ValueError, match="linear kernel only"):
        cka(x, y, kernel="rbf", method="features")
    with pytest.raises(ValueError, match="2-D"):
        cka(x[:, 0], y)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cka(bad, y)
    with pytest.raises(ValueError, match="identical"):
        gram_rbf(np.ones((5, 3)))
    with pytest.raises(ValueError, match="larger than the number of rows"):
        minibatch_cka(x, y, 20)


# ----------------------------------------------------------------------------- cross-domain
def make_domains(seed: int = 0):
    """Three domains sharing a latent class structure, with different class sets and counts."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(9, 6))
    spec = {"A": range(8), "B": [0, 1, 2, 3, 4, 5, 8], "C": range(9)}
    acts, labels = {}, {}
    for d, (name, classes) in enumerate(spec.items()):
        lab = np.repeat([f"c{c}" for c in classes], 3 + d)
        mixing = rng.normal(size=(6, 5 + d))
        base = np.stack([centres[int(c[1:])] for c in lab]) + 0.5 * rng.normal(size=(len(lab), 6))
        acts[name] = {
            "s0": torch.as_tensor(base @ mixing, dtype=torch.float32),
            "s1": torch.as_tensor(np.tanh(base @ mixing) + 0.1 * rng.normal(size=(len(lab), 5 + d)), dtype=torch.float32),
        }
        labels[name] = lab
    return acts, labels


def manual_class_means(x, labels, classes):
    frame = pd.DataFrame(np.asarray(x, dtype=np.float64))
    frame["label"] = labels
    return frame.groupby("label").mean().loc[list(classes)].to_numpy()


def test_class_means_match_groupby():
    acts, labels = make_domains()
    means, classes = class_means(acts["B"]["s0"], labels["B"])
    np.testing.assert_allclose(means.numpy(), manual_class_means(acts["B"]["s0"], labels["B"], classes), atol=1e-6)
    with pytest.raises(ValueError, match="c8"):
        class_means(acts["A"]["s0"], labels["A"], ["c0", "c8"])


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_class_mean_cka_uses_the_class_intersection_of_each_pair(kernel):
    acts, labels = make_domains()
    table = cross_domain_cka(acts, labels, kernel=kernel, progress=False)
    assert list(table.columns) == list(CROSS_DOMAIN_COLUMNS)
    assert len(table) == 2 * 3
    shared = {("A", "B"): [f"c{i}" for i in range(6)], ("A", "C"): [f"c{i}" for i in range(8)],
              ("B", "C"): [f"c{i}" for i in (0, 1, 2, 3, 4, 5, 8)]}
    for (a, b), classes in shared.items():
        for site in ("s0", "s1"):
            row = table[(table.domain_a == a) & (table.domain_b == b) & (table.site == site)].iloc[0]
            expected = naive_cka(
                manual_class_means(acts[a][site], labels[a], classes),
                manual_class_means(acts[b][site], labels[b], classes), kernel,
            )
            assert row.n_classes == len(classes) == row.n
            assert abs(row.value - expected) < 1e-9
    # a pair's value does not depend on which other domains are analysed, or their order
    alone = cross_domain_cka(acts, labels, domains=["B", "A"], kernel=kernel, progress=False)
    both = table[(table.domain_a == "A") & (table.domain_b == "B")].sort_values("site")["value"].to_numpy()
    np.testing.assert_allclose(alone.sort_values("site")["value"].to_numpy(), both, atol=1e-12)


def test_requested_class_subset_and_missing_classes():
    acts, labels = make_domains()
    subset = ["c0", "c2", "c3", "c5", "c7"]
    with pytest.raises(ValueError, match=r"domain 'B' has no images of requested class\(es\) \['c7'\]"):
        cross_domain_cka(acts, labels, classes=subset, progress=False)
    table = cross_domain_cka(acts, labels, classes=subset, missing="intersect", class_subset="held-out", progress=False)
    row = table[(table.domain_a == "A") & (table.domain_b == "B") & (table.site == "s1")].iloc[0]
    assert row.class_subset == "held-out" and row.n_classes == 4
    expected = naive_cka(manual_class_means(acts["A"]["s1"], labels["A"], subset[:4]),
                         manual_class_means(acts["B"]["s1"], labels["B"], subset[:4]))
    assert abs(row.value - expected) < 1e-9
    pairs = table[table.site == "s1"].set_index(["domain_a", "domain_b"])["n_classes"]
    assert pairs.to_dict() == {("A", "B"): 4, ("A", "C"): 5, ("B", "C"): 4}
    with pytest.raises(ValueError, match="at least 4 classes.*'A' and 'B'"):
        cross_domain_cka(acts, labels, classes=["c0", "c1", "c2"], progress=False)
    assert len(cross_domain_cka(acts, labels, classes=["c0", "c1", "c2"], unbiased=False, progress=False)) == 6
    with pytest.raises(ValueError, match="unknown domain"):
        cross_domain_cka(acts, labels, domains=["A", "Z"], progress=False)
    with pytest.raises(ValueError, match="site"):
        cross_domain_cka(acts, labels, sites=["s0", "s9"], progress=False)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("mode", ["class_mean", "per_sample"])
def test_fast_and_reference_methods_agree(kernel, mode):
    acts, labels = make_domains(seed=1)
    kwargs = {"kernel": kernel, "mode": mode, "progress": False}
    fast = cross_domain_cka(acts, labels, **kwargs)
    reference = cross_domain_cka(acts, labels, method="reference", **kwargs)
    np.testing.assert_allclose(fast["value"], reference["value"], atol=1e-9)


def test_minibatch_option_of_cross_domain_cka():
    acts, labels = make_domains(seed=2)
    exact = cross_domain_cka(acts, labels, domains=["A", "C"], mode="per_sample", progress=False)
    n = int(exact["n"].iloc[0])
    one_batch = cross_domain_cka(acts, labels, domains=["A", "C"], mode="per_sample", minibatch_size=n, progress=False)
    np.testing.assert_allclose(one_batch["value"], exact["value"], atol=1e-10)
    small = cross_domain_cka(acts, labels, domains=["A", "C"], mode="per_sample", minibatch_size=8, progress=False)
    assert not np.allclose(small["value"], exact["value"]) and small["value"].between(-1, 1).all()


def test_per_sample_mode_matches_images_by_class():
    rng = np.random.default_rng(3)
    classes = [f"c{i}" for i in range(6)]
    points = rng.normal(size=(6, 4))
    # A: 3 identical images per class; B: 1 image per class, an orthogonal map of A's.
    acts = {"A": {"s": torch.as_tensor(np.repeat(points, 3, axis=0))},
            "B": {"s": torch.as_tensor(points @ orthogonal(4, 5))}}
    labels = {"A": np.repeat(classes, 3), "B": np.array(classes)}
    table = cross_domain_cka(acts, labels, mode="per_sample", progress=False)
    assert table.loc[0, "n"] == 6 and abs(table.loc[0, "value"] - 1.0) < 1e-10
    # with unequal counts the number of matched rows is the sum of per-class minima
    acts["B"] = {"s": torch.as_tensor(rng.normal(size=(10, 4)))}
    labels["B"] = np.array(classes + classes[:4])
    table = cross_domain_cka(acts, labels, mode="per_sample", max_per_class=5, progress=False)
    assert table.loc[0, "n"] == 4 * 2 + 2 * 1
    again = cross_domain_cka(acts, labels, mode="per_sample", max_per_class=5, progress=False)
    assert table.loc[0, "value"] == again.loc[0, "value"]  # seeded, deterministic


def test_matched_rows_pair_images_of_the_same_class():
    la = np.array(["x", "y", "x", "z", "x", "y"])
    lb = np.array(["y", "x", "y", "y", "w"])
    ra, rb = matched_rows(la, lb, domains=("A", "B"), seed=3)
    assert len(ra) == len(rb) == 3 and (la[ra] == lb[rb]).all()
    assert sorted(la[ra]) == ["x", "y", "y"]  # per class min(count_a, count_b)
    ra2, rb2 = matched_rows(la, lb, domains=("A", "B"), seed=3)
    assert (ra == ra2).all() and (rb == rb2).all()
    ra, rb = matched_rows(la, lb, classes=["y"], domains=("A", "B"))
    assert (la[ra] == "y").all() and len(ra) == 2


def test_meta_columns_and_layer_labels():
    acts, labels = make_domains()
    table = cross_domain_cka(
        acts, labels, layers=[("s1", "late"), ("s0", "early")],
        meta={"run": "r", "setup": "cg-high", "test_domain": "A", "seed": 0, "pooling": "mean"},
        progress=False,
    )
    assert (table.run == "r").all() and (table.pooling == "mean").all()
    assert dict(table[["site", "layer"]].drop_duplicates().itertuples(index=False)) == {"s0": "early", "s1": "late"}


def test_model_vs_model_cka():
    acts, labels = make_domains()
    a = acts["C"]
    q = orthogonal(7, 9)
    b = {"t0": a["s1"] @ torch.as_tensor(q, dtype=torch.float32), "t1": a["s0"]}
    table = model_vs_model_cka(a, b, names=("m1", "m2"), progress=False)
    assert len(table) == 4 and set(table.model_a) == {"m1"}
    value = table.set_index(["site_a", "site_b"])["value"]
    assert abs(value["s1", "t0"] - 1.0) < 1e-6 and abs(value["s0", "t1"] - 1.0) < 1e-10
    assert abs(value["s0", "t0"] - naive_cka(a["s0"], b["t0"])) < 1e-6
    means = model_vs_model_cka(a, b, labels=labels["C"], progress=False)
    assert (means["n"] == 9).all() and (means["mode"] == "class_mean").all()
    with pytest.raises(ValueError, match="same images"):
        model_vs_model_cka(a, {"t": a["s0"][:5]}, progress=False)


def test_figures_are_drawn_from_the_table(tmp_path):
    from interp.plots.cka import plot_cka_by_layer, plot_cka_heatmaps, save_figure

    acts, labels = make_domains()
    table = cross_domain_cka(acts, labels, meta={"test_domain": "B"}, progress=False)
    by_layer = save_figure(plot_cka_by_layer(table), tmp_path / "layers.png")
    heat = save_figure(plot_cka_heatmaps(table), tmp_path / "heat.png")
    assert by_layer.stat().st_size > 1000 and heat.stat().st_size > 1000
    assert by_layer.read_bytes()[:4] == b"\x89PNG" and sorted(p.name for p in tmp_path.iterdir()) == [
        "heat.pdf", "heat.png", "layers.pdf", "layers.png"]  # atomic: no temp file left; PDF beside
    mixed = pd.concat([table, table.assign(kernel="rbf")])
    with pytest.raises(ValueError, match="filter it"):
        plot_cka_heatmaps(mixed)


def test_rbf_bandwidth_is_the_lower_median():
    from interp.similarity.cka import median_bandwidth, squared_distances

    # points 0, 1, 3, 7 on a line: squared distances 1, 4, 9, 16, 36, 49 (an even count);
    # the lower median is 9 (sigma 3), the mean of the two middle values would be 12.5
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    d2 = squared_distances(x)
    assert median_bandwidth(d2) == 3.0
    torch.testing.assert_close(gram_rbf(x), torch.exp(-d2 / 18.0))
    # a repeated point adds a zero distance, which is left out: 1, 4, 9, 16, 16, 36, 36, 49, 49
    assert median_bandwidth(squared_distances(np.array([[0.0], [1.0], [3.0], [7.0], [7.0]]))) == 4.0


def test_duplicated_rows_are_at_distance_exactly_zero():
    from interp.similarity.cka import squared_distances

    # the expansion |a|^2 + |b|^2 - 2 a.b leaves rounding residue for a == b off the diagonal;
    # the median rule skips zeros, so a residue would move the bandwidth of a bootstrap resample
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16)) * rng.uniform(0.1, 100.0, size=(40, 1))
    index = rng.integers(0, 40, size=200)
    d2 = squared_distances(x[index])
    same = index[:, None] == index[None, :]
    assert (d2.numpy()[same] == 0.0).all()
    naive = ((x[index][:, None, :] - x[index][None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(d2.numpy(), naive, rtol=1e-9, atol=1e-9 * naive.max())


# ----------------------------------------------------------------------------- cka_run metadata
def _tiny_run(tmp_path, data_root, heldout, train_seed=3, mixture_seed=0):
    """A one-checkpoint tiny ViT run whose manifest names its own held-out classes and whose
    training seed differs from its mixture seed."""
    from fakedata import write_tiny_run

    return write_tiny_run(tmp_path / "runs" / "lso-rs-nosketchclasses-s3", data_root,
                          mixture="lso-rs-nosketchclasses", setup="cg-low", test_domain="sketch",
                          heldout=heldout, train_seed=train_seed, mixture_seed=mixture_seed)


def test_cka_run_uses_the_runs_training_seed_and_held_out_classes(tmp_path):
    """cka.csv's seed is the training seed (run.json), not the mixture's, and its held-out
    subset is the run's manifest's classes, not the data root's heldout_classes.txt."""
    from fakedata import make_fake_domainnet

    from domainlens.experiments.cka import CKASettings, cka_run
    from training.runinfo import read_run_info

    root = make_fake_domainnet(tmp_path / "data")
    heldout = ("banana", "cat", "dog", "the_eiffel_tower", "aircraft_carrier")
    run = _tiny_run(tmp_path, root, heldout)
    info = read_run_info(run)
    assert (info.seed, info.mixture_seed) == (3, 0)
    assert info.heldout == tuple(sorted(heldout))
    assert set(info.seen) == {"axe", "bed", "traffic_light"}
    settings = CKASettings(classes=("held-out", "all"), kernels=("linear",), unbiased=False,
                           progress=False)
    written = cka_run(run, domains=["real", "sketch"], settings=settings, cache_dir="",
                      out=tmp_path / "cka")
    table = pd.read_csv(written["table"])
    assert set(table["seed"]) == {3}
    assert set(table["mixture_seed"]) == {0}
    held = table[table["class_subset"] == "held-out"]
    assert set(held["n_classes"]) == {len(heldout)}
    assert set(table[table["class_subset"] == "all"]["n_classes"]) == {8}


# ----------------------------------------------------------------------------- all pairs at once
def stack_inputs(kind: str, seed: int = 0) -> list[np.ndarray]:
    """Matrices with the same rows: small n, unequal widths, rank-deficient, uncentred."""
    rng = np.random.default_rng(seed)
    if kind == "tiny":  # n = 4, the fewest rows unbiased HSIC allows
        return [rng.normal(size=(4, w)) + 2.0 for w in (1, 3, 6)]
    if kind == "wide":  # n small against the widths: the n x n route
        return [rng.normal(size=(9, w)) for w in (40, 55, 3)]
    if kind == "rank_deficient":
        base = rng.normal(size=(60, 3))
        x = base @ rng.normal(size=(3, 12)) + 7.0  # rank 3 (plus a shift), 12 columns
        y = np.concatenate([base, base[:, :1] * 2.0, np.ones((60, 1))], axis=1)  # dependent + constant columns
        z = rng.normal(size=(60, 5))
        z[:, 4] = z[:, 0] - z[:, 1]
        return [x, y, z, np.tanh(x[:, :7] - 7.0)]
    return [rng.normal(size=(300, w)) * (1 + w) + w for w in (16, 9, 33)]  # feature route


@pytest.mark.parametrize("kind", ["tiny", "wide", "rank_deficient", "features"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_linear_cka_all_equals_gram_reference(kind, unbiased):
    xs = stack_inputs(kind)
    z, widths = stacked_centred(xs)
    h = linear_hsic_all(z, widths, unbiased)
    values = linear_cka_all(xs, unbiased)
    torch_blas = linear_cka_all(xs, unbiased, blas="torch")
    for a in range(len(xs)):
        for b in range(len(xs)):
            k, m = gram_linear(xs[a]), gram_linear(xs[b])
            reference = hsic(k, m, unbiased)  # the n x n Gram form of the paper
            assert abs(float(h[a, b]) - reference) <= 1e-9 * max(1.0, abs(reference))
            expected = cka(xs[a], xs[b], "linear", unbiased, method="gram")
            if np.isnan(expected):  # n = 4: a self-HSIC may be <= 0, then CKA is undefined
                assert np.isnan(float(values[a, b]))
                continue
            assert abs(float(values[a, b]) - expected) < 1e-9
            assert abs(float(torch_blas[a, b]) - expected) < 1e-9
    assert torch.equal(values, values.T) or torch.allclose(values, values.T, atol=1e-15, equal_nan=True)


def test_linear_hsic_all_routes_and_flops():
    xs = stack_inputs("wide")
    z, widths = stacked_centred(xs)
    n = z.shape[0]
    # small n: the n x n route has fewer flops than the symmetric product, and both agree
    assert linear_hsic_all_flops(n, widths) < self_product_flops(n, sum(widths)) + 2.0 * n * 9
    g = self_product(z)
    torch.testing.assert_close(g, z.T @ z, rtol=1e-12, atol=1e-12)
    assert self_product_flops(100, 8) == 6400 and self_product_flops(100, 8, "torch") == 12800


def test_stacked_centred_checks_and_reuses_its_workspace():
    rng = np.random.default_rng(0)
    workspace: dict = {}
    big, _ = stacked_centred([rng.normal(size=(20, 6)), rng.normal(size=(20, 4))], workspace=workspace)
    buffers = list(workspace.values())
    small, widths = stacked_centred([np.arange(12.0).reshape(6, 2), np.ones((6, 1))], workspace=workspace)
    assert len(workspace) == len(buffers) and all(a is b for a, b in zip(workspace.values(), buffers, strict=True))
    assert widths == [2, 1] and small.is_contiguous()
    torch.testing.assert_close(small.sum(dim=0), torch.zeros(3, dtype=torch.float64))
    # rows selected while stacking equal selecting first
    x, y = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=(8, 2))
    pick_x, pick_y = np.array([9, 0, 3, 3, 5]), np.array([1, 2, 7, 0, 4])
    picked, _ = stacked_centred([x, y], rows=[pick_x, pick_y], workspace=workspace)
    expected, _ = stacked_centred([x[pick_x], y[pick_y]])
    torch.testing.assert_close(picked, expected, rtol=0, atol=0)
    bad = rng.normal(size=(6, 2))
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="sketch/s1 contains NaN or infinite"):
        stacked_centred([np.ones((6, 2)), bad], names=["real/s1", "sketch/s1"])
    with pytest.raises(ValueError, match="same number of rows"):
        stacked_centred([np.ones((6, 2)), np.ones((5, 2))])
    with pytest.raises(ValueError, match="unbiased HSIC"):
        linear_hsic_all(*stacked_centred([np.ones((3, 2))]))


def test_cross_domain_fused_path_equals_reference_at_many_sites():
    """Sites of growing and shrinking widths (workspace reuse), class-mean and per-sample."""
    rng = np.random.default_rng(4)
    acts, labels = {}, {}
    for d, name in enumerate(["A", "B", "C", "D"]):
        lab = np.repeat([f"c{c}" for c in range(7)], 5 + d)
        latent = rng.normal(size=(len(lab), 4)) + np.repeat(rng.normal(size=(7, 4)), 5 + d, axis=0)
        acts[name] = {f"s{w}": torch.as_tensor(np.maximum(latent @ rng.normal(size=(4, w)), 0), dtype=torch.float32)
                      for w in (3, 30, 2, 12)}
        labels[name] = lab
    for mode in ("class_mean", "per_sample"):
        for blas in ("auto", "torch"):
            fast = cross_domain_cka(acts, labels, mode=mode, blas=blas, progress=False)
            reference = cross_domain_cka(acts, labels, mode=mode, method="reference", progress=False)
            assert len(fast) == 4 * 6
            np.testing.assert_allclose(fast["value"], reference["value"], atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="blas must be one of"):
        cross_domain_cka(acts, labels, blas="mkl", progress=False)
