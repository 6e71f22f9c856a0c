"""interp.embeddings: separation measures, UMAP picture, SAE and latent sharing on tiny tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from interp.embeddings.separation import (
    class_mean_distances,
    dimension_differences,
    domain_mean_distances,
    domain_probe,
    l2_normalise,
    separation_tables,
    shuffled,
)
from interp.embeddings.sharing import (
    domain_scores,
    latent_histograms,
    share,
    sharing_summary,
    sharing_table,
    top_latents,
    top_set,
)


def tiny_table(seed: int = 0, n: int = 12, e: int = 6):
    """Three domains x two classes, ``n`` images each; domain 'q' sits apart."""
    rng = np.random.default_rng(seed)
    shift = {"a": 0.0, "b": 0.2, "q": 2.0}
    x, doms, cls = [], [], []
    for d, s in shift.items():
        for c in ("cat", "dog"):
            base = np.zeros(e)
            base[0] = s
            base[1] = 1.0 if c == "cat" else -1.0
            x.append(base + 0.3 * rng.standard_normal((n, e)))
            doms += [d] * n
            cls += [c] * n
    return l2_normalise(np.concatenate(x)), np.array(doms, object), np.array(cls, object)


def test_domain_mean_distances_match_naive() -> None:
    x, doms, _ = tiny_table()
    table = domain_mean_distances(x, doms)
    assert len(table) == 9
    for r in table.itertuples():
        naive = np.sqrt(((x[doms == r.domain_a].mean(0) - x[doms == r.domain_b].mean(0)) ** 2).sum())
        assert r.value == pytest.approx(naive)
    m = table.pivot(index="domain_a", columns="domain_b", values="value")
    assert np.allclose(np.diag(m), 0) and np.allclose(m, m.T)
    assert m.loc["a", "q"] > m.loc["a", "b"]


def test_class_mean_distances_match_naive_over_shared_classes() -> None:
    x, doms, cls = tiny_table()
    drop = (doms == "b") & (cls == "dog")  # b lacks dogs: pairs with b use cats only
    x, doms, cls = x[~drop], doms[~drop], cls[~drop]
    table = class_mean_distances(x, doms, cls).set_index(["domain_a", "domain_b"])

    def mean(d, c):
        return x[(doms == d) & (cls == c)].mean(0)

    naive_aq = np.mean([np.linalg.norm(mean("a", c) - mean("q", c)) for c in ("cat", "dog")])
    assert table.loc[("a", "q"), "value"] == pytest.approx(naive_aq)
    assert table.loc[("a", "b"), "value"] == pytest.approx(np.linalg.norm(mean("a", "cat")
                                                                          - mean("b", "cat")))
    assert table.loc[("a", "b"), "n_classes"] == 1 and table.loc[("a", "q"), "n_classes"] == 2


def test_dimension_differences_match_naive() -> None:
    x, doms, _ = tiny_table()
    table = dimension_differences(x, doms)
    q = table[table["domain"] == "q"]["value"].to_numpy()
    assert np.allclose(q, np.abs(x[doms == "q"].mean(0) - x[doms != "q"].mean(0)))
    assert q.argmax() == 0  # the shifted dimension


def test_probe_matches_naive_cross_validation() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    from training.util.seeding import derived_seed

    x, doms, _ = tiny_table()
    table = domain_probe(x, doms, folds=3, seed=1).set_index("domain")
    for d in ("a", "q"):
        y = (doms == d).astype(int)
        pred = np.zeros_like(y)
        cv = StratifiedKFold(3, shuffle=True, random_state=derived_seed(1, "probe", d) % 2**32)
        for train, test in cv.split(x, y):
            probe = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x[train], y[train])
            pred[test] = probe.predict(x[test])
        assert table.loc[d, "value"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert table.loc["q", "value"] > 0.95  # far-apart domain: linearly separable
    assert domain_probe(x, doms, folds=3, seed=1).equals(domain_probe(x, doms, folds=3, seed=1))


def test_separation_tables_references() -> None:
    x, doms, cls = tiny_table()
    tables = separation_tables(x, doms, cls, folds=3, seed=0,
                               subsets={"all": None, "cats": ["cat"]})
    dist = tables["distances"]
    assert set(dist["reference"]) == {"none", "domain-shuffle", "class-shuffle"}
    # class shuffle only for the class-conditional measure
    assert set(dist[dist["reference"] == "class-shuffle"]["measure"]) == {"class_mean_distance"}
    model = dist[(dist["reference"] == "none") & (dist["class_subset"] == "all")
                 & (dist["measure"] == "domain_mean_distance")]
    assert np.allclose(model["value"], domain_mean_distances(x, doms)["value"])
    sh = dist[(dist["reference"] == "domain-shuffle") & (dist["measure"] == "domain_mean_distance")
              & (dist["domain_a"] == "a") & (dist["domain_b"] == "q") & (dist["class_subset"] == "all")]
    assert sh["value"].item() < model.query("domain_a == 'a' and domain_b == 'q'")["value"].item()
    probe = tables["probe"].set_index(["reference", "domain"])["value"]
    assert probe[("none", "q")] > probe[("domain-shuffle", "q")]
    # within-domain class shuffle keeps every domain's labels and class counts
    s = shuffled(cls, 0, "class", within=doms)
    for d in "abq":
        assert sorted(s[doms == d]) == sorted(cls[doms == d])


def test_separation_bad_input() -> None:
    x, doms, cls = tiny_table(n=2)
    with pytest.raises(ValueError, match=r"domain\(s\) \['sketch'\] have no embeddings"):
        domain_mean_distances(x, doms, order=["a", "sketch"])
    with pytest.raises(ValueError, match="too few images"):
        domain_probe(x, doms, folds=5)
    with pytest.raises(ValueError, match="one label per row"):
        domain_mean_distances(x, doms[:-1])
    with pytest.raises(ValueError, match="at least two domains"):
        domain_mean_distances(x, doms, order=["a"])
    with pytest.raises(ValueError, match="references"):
        separation_tables(x, doms, cls, references=["init"])


# ---------------------------------------------------------------- sharing
def test_top_latents_ties_by_index_and_positive_only() -> None:
    z = np.array([[0.0, 2.0, 2.0, 1.0, -1.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0]])
    tops = top_latents(z, top=3)
    assert tops[0].tolist() == [1, 2, 3]
    assert tops[1].tolist() == []  # no positive latent: contributes nothing
    assert top_latents(z, top=5)[0].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"top=6 is larger than the number of latents \(5\)"):
        top_latents(z, top=6)


def test_share_hand_computed_with_ties_and_zero_rows() -> None:
    h_a = np.array([5, 3, 3, 0, 1, 0])   # top-2: {0, 1} (1 beats 2 on the tie by index)
    h_b = np.array([0, 0, 3, 3, 9, 0])   # top-2: {4, 2}; top-4: {4, 2, 3} (only 3 non-zero)
    assert top_set(h_a, 2) == {0, 1} and top_set(h_b, 4) == {2, 3, 4}
    # k=2: {0,1} & {2,4} = 0 -> 0; k=4: {0,1,2,4} & {2,3,4} = {2,4} -> 2/4
    assert share(h_a, h_b, ks=(2, 4)) == pytest.approx((0 + 0.5) / 2)
    assert np.isnan(share(h_a, np.zeros(6), ks=(2,)))
    with pytest.raises(ValueError, match=r"k=7 is larger than the number of latents \(6\)"):
        share(h_a, h_b, ks=(7,))


def test_sharing_table_summary_and_scores_by_hand() -> None:
    # 2 classes x 3 domains x 4 latents, z built so that each image's top-1 latent is known
    z = np.array([[1.0, 0, 0, 0],    # cat/a -> 0
                  [1.0, 0, 0, 0],    # cat/b -> 0
                  [0, 0, 0, 1.0],    # cat/q -> 3
                  [0, 1.0, 0, 0],    # dog/a -> 1
                  [0, 0, 0, 0],      # dog/b -> nothing (zero histogram)
                  [0, 1.0, 0, 0]])   # dog/q -> 1
    doms = np.array(["a", "b", "q", "a", "b", "q"], object)
    cls = np.array(["cat", "cat", "cat", "dog", "dog", "dog"], object)
    hist, c_order, d_order = latent_histograms(z, doms, cls, top=1)
    assert hist.shape == (2, 3, 4) and hist[1, 1].sum() == 0
    table = sharing_table(hist, c_order, d_order, ks=(1,))
    v = table.set_index(["class_name", "domain_a", "domain_b"])["value"]
    assert v[("cat", "a", "b")] == 1 and v[("cat", "a", "q")] == 0 and v[("dog", "a", "q")] == 1
    assert np.isnan(v[("dog", "a", "b")]) and np.isnan(v[("dog", "b", "b")])
    summary = sharing_summary(table)
    s = summary.set_index(["domain_a", "domain_b"])
    assert s.loc[("a", "b"), "value"] == 1 and s.loc[("a", "b"), "n_classes"] == 1
    assert s.loc[("a", "q"), "value"] == 0.5
    scores = domain_scores(summary).set_index("domain")["value"]
    # a: mean(a-b = 1, a-q = 0.5); b: mean(b-a = 1, b-q = 0); q: mean(0.5, 0): every row, not sketch's
    assert scores.to_dict() == pytest.approx({"a": 0.75, "b": 0.5, "q": 0.25})
    with pytest.raises(ValueError, match=r"unknown domain\(s\) \['sketch'\]"):
        domain_scores(summary, ["sketch"])
    with pytest.raises(ValueError, match=r"unknown domain\(s\) \['sketch'\]"):
        latent_histograms(z, doms, cls, domain_order=["a", "sketch"], top=1)
    with pytest.raises(ValueError, match="larger than the number of latents"):
        sharing_table(hist, c_order, d_order, ks=(5,))


# ---------------------------------------------------------------- SAE
def test_sae_loss_decreases_and_decoder_stays_unit_norm() -> None:
    import torch

    from interp.embeddings.sae import SAEConfig, encode, sae_quality, train_sae

    x, _, _ = tiny_table(n=20)
    config = SAEConfig(expansion=4, lr=1e-2, l1=1e-3, batch_size=60, epochs=15, seed=0)
    sae, history = train_sae(x, config)
    assert sae.n_latents == 24
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]
    assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(24), atol=1e-5)
    quality = sae_quality(sae, x)
    assert quality["explained_variance"] > 0.5 and 0 < quality["l0"] <= 24
    assert 0 <= quality["dead"] <= 24
    again, _ = train_sae(x, config)  # seeded
    assert torch.equal(again.W_dec, sae.W_dec)
    assert (encode(sae, x) >= 0).all()


def test_sae_bad_input(tmp_path) -> None:
    from interp.embeddings.sae import SAEConfig, load_sae, save_sae, train_sae

    with pytest.raises(ValueError, match="expansion must be"):
        train_sae(np.zeros((4, 3)), SAEConfig(expansion=0))
    with pytest.raises(ValueError, match="N >= 2"):
        train_sae(np.zeros((1, 3)))
    sae, _ = train_sae(np.random.default_rng(0).standard_normal((8, 3)), SAEConfig(epochs=1))
    save_sae(sae, SAEConfig(epochs=1), tmp_path / "sae.pt")
    loaded, config = load_sae(tmp_path / "sae.pt")
    assert config.epochs == 1 and all(
        (a == b).all() for a, b in zip(loaded.state_dict().values(), sae.state_dict().values(), strict=True))


# ---------------------------------------------------------------- UMAP
def test_subsample_is_seeded_and_index_only() -> None:
    from interp.embeddings.projection import subsample_per_domain

    doms = np.array(["a"] * 10 + ["q"] * 3, object)
    rows = subsample_per_domain(doms, 4, seed=3)
    assert rows.tolist() == subsample_per_domain(doms, 4, seed=3).tolist()
    assert (doms[rows] == "a").sum() == 4 and (doms[rows] == "q").sum() == 3
    assert "q" not in doms[subsample_per_domain(doms, 4, seed=3, exclude=["q"])]
    with pytest.raises(ValueError, match="no rows left"):
        subsample_per_domain(doms, 4, exclude=["a", "q"])


@pytest.mark.slow  # numba compiles umap-learn's densMAP kernels in every new process: ~60 s
def test_umap_coordinates_identical_for_a_seed() -> None:
    pytest.importorskip("umap")
    from interp.embeddings.projection import umap_coordinates

    x, doms, cls = tiny_table(n=8)
    one = umap_coordinates(x, doms, cls, per_domain=10, seed=0, n_neighbors=5)
    two = umap_coordinates(x, doms, cls, per_domain=10, seed=0, n_neighbors=5)
    assert len(one) == 30 and list(one.columns) == ["row", "domain", "class_name", "x", "y"]
    pd.testing.assert_frame_equal(one, two)
    assert np.isfinite(one[["x", "y"]].to_numpy()).all()
    with pytest.raises(ValueError, match="too few images for UMAP"):
        umap_coordinates(x[:3], doms[:3], per_domain=10)
