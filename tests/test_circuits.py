"""Edges, circuits, faithfulness, comparison (Jaccard, WL kernel) and the circuits command."""

from __future__ import annotations

import json
import math
import os
import shutil

import networkx as nx
import pandas as pd
import pytest
import torch
from circuit_helpers import tiny_images, tiny_tower
from conftest import torch_threads
from fakedata import make_fake_domainnet
from transformer_lens.hook_points import HookPoint

from interp.circuits.attribution import (
    clean_activations,
    default_sites,
    node_effects,
    site_grads,
    to_units,
)
from interp.circuits.circuit import (
    Circuit,
    build_circuit,
    faithfulness_table,
    random_circuits,
    select_edges,
    select_nodes,
)
from interp.circuits.compare import (
    aggregate,
    compare_domains,
    edge_jaccard,
    jaccard,
    node_jaccard_by_site,
    pair_group_summary,
    wl_kernel,
)
from interp.circuits.edges import EdgeWeights, edge_weights, site_parents
from interp.metrics import get_metric

pytestmark = pytest.mark.usefixtures("one_thread")  # the gradients' summation order


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
               for m in model.modules() if isinstance(m, HookPoint))


# ----------------------------------------------------------------------------- edge set
def test_vit_edge_set_is_the_residual_stream_graph_and_never_wraps():
    model = tiny_tower("vit")
    parents = site_parents(model)
    a0, m0, r0 = "blocks.0.attn.hook_z", "blocks.0.mlp.hook_post", "blocks.0.hook_resid_post"
    a1, m1, r1 = "blocks.1.attn.hook_z", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"
    assert parents == {a0: [], m0: [a0], r0: [a0, m0], a1: [r0], m1: [r0, a1], r1: [r0, a1, m1]}
    # residual sites only: consecutive; components only: everything earlier via the stream
    assert site_parents(model, [r0, r1]) == {r0: [], r1: [r0]}
    assert site_parents(model, [a0, m0, a1, m1])[m1] == [a0, m0, a1]


def test_resnet_edges_join_consecutive_blocks_only():
    model = tiny_tower("rn")
    sites = default_sites(model)
    assert site_parents(model) == {s: ([sites[i - 1]] if i else []) for i, s in enumerate(sites)}


# ----------------------------------------------------------------------------- edge weights
def _clamped_value(model, images, sites, values, down):
    """Forward with every site except ``down`` clamped to ``values``; returns ``down``'s value."""
    out = {}

    def clamp(x, hook):
        if hook.name == down:
            out["v"] = x.detach().clone()
            return x
        return values[hook.name].to(x.dtype)

    with torch.no_grad(), model.hooks(fwd_hooks=[(s, clamp) for s in sites]):
        model(images)
    return out["v"]


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_gxa_edges_equal_finite_differences(kind):
    model = tiny_tower(kind, dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    sites = default_sites(model)
    kept = {s: [0, 2] if model.site_layout(s) != "heads" else [1] for s in sites}
    edges = edge_weights(model, images, labels, kept, progress=False)
    clean = clean_activations(model, images, sites)
    _, grads, _ = site_grads(model, images, labels, sites, get_metric("logit"))
    checked = 0
    for (up, down), w in edges.weights.items():
        layout_u, layout_d = model.site_layout(up), model.site_layout(down)
        for i, d in enumerate(kept[down]):
            for j, u in enumerate(kept[up]):
                eps = 1e-4
                ys = []
                for sign in (1, -1):
                    values = dict(clean)
                    mask = torch.zeros_like(to_units(clean[up], layout_u))[:1]  # (1, U)
                    mask[0, u] = 1.0
                    shape = [1] * clean[up].ndim
                    axis = {"tokens": 2, "heads": 2, "spatial": 1}[layout_u]
                    shape[axis] = mask.shape[1]
                    values[up] = clean[up] * (1 + sign * eps * mask.reshape(shape))  # Delta = clean
                    f = _clamped_value(model, images, sites, values, down)
                    ys.append(float(to_units(grads[down] * f, layout_d)[:, d].mean()))
                fd = (ys[0] - ys[1]) / (2 * eps)
                assert float(w[i, j]) == pytest.approx(fd, rel=1e-5, abs=1e-10), (up, u, down, d)
                checked += 1
    assert checked >= 8


@pytest.mark.parametrize("kind, baseline", [("vit", "mean"), ("rn", "zero")])
def test_ig_edges_are_complete_per_downstream_unit(kind, baseline):
    model = tiny_tower(kind, dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    reference, _ = tiny_images(5, seed=4, dtype=torch.float64)
    sites = default_sites(model)
    parents = site_parents(model)
    shapes = {s: a.shape for s, a in clean_activations(model, images[:1], sites).items()}
    all_units = {s: list(range(to_units(torch.zeros(shapes[s], dtype=torch.float64),
                                        model.site_layout(s)).shape[1])) for s in sites}
    down = sites[-1]
    kept = {s: all_units[s] for s in parents[down]} | {down: all_units[down][:3]}
    edges = edge_weights(model, images, labels, kept, method="ig", steps=24, rule="midpoint",
                         baseline=baseline, reference=reference, progress=False)
    clean = clean_activations(model, images, sites)
    base = clean_activations(model, reference, sites) if baseline == "mean" else None
    _, grads, _ = site_grads(model, images, labels, sites, get_metric("logit"))
    at_base = dict(clean)
    for p in parents[down]:
        at_base[p] = (base[p].mean(0, keepdim=True) if base else torch.zeros_like(clean[p])).expand_as(clean[p])
    f_clean = _clamped_value(model, images, sites, clean, down)
    f_base = _clamped_value(model, images, sites, at_base, down)
    layout = model.site_layout(down)
    expected = to_units(grads[down] * (f_clean - f_base), layout).mean(0)
    total = sum(edges.weights[(p, down)].sum(1) for p in parents[down])
    # midpoint rule: O(1/S^2) for the smooth ViT; ReLU kinks (ResNet) make it first order
    error = float((total - expected[kept[down]]).abs().max())
    assert error < (2e-4 if kind == "vit" else 1e-2) * float(expected.abs().max())
    assert float(expected[kept[down]].abs().max()) > 1e-5  # not trivially zero


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_gxa_edges_out_of_a_unit_sum_to_its_node_effect(kind):
    model = tiny_tower(kind, dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    atp = node_effects(model, images, labels, method="atp", progress=False)
    kept = {s: list(range(len(v))) for s, v in atp.effects.items()}
    edges = edge_weights(model, images, labels, kept, progress=False)
    assert _hook_count(model) == 0
    for site in atp.sites[:-1]:  # the last site has no children
        out = sum(w.sum(0) for (u, _), w in edges.weights.items() if u == site)
        torch.testing.assert_close(out, atp.effects[site], rtol=1e-8, atol=1e-12)


def test_edges_do_not_depend_on_progress_flag():
    model = tiny_tower("rn")
    images, labels = tiny_images(2)
    kept = select_nodes(node_effects(model, images, labels, progress=False), 0.5)
    a = edge_weights(model, images, labels, kept, progress=False)
    b = edge_weights(model, images, labels, kept, progress=True)
    assert a.weights.keys() == b.weights.keys()
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


# ----------------------------------------------------------------------------- selection, Circuit
def test_select_nodes_fraction_and_threshold():
    effects = {"a": torch.tensor([0.1, -0.5, 0.3, 0.0, 0.2, -0.05, 0.01, 0.02, 0.03, 0.04, 0.0])}
    assert select_nodes(effects, 0.1) == {"a": [1, 2]}  # ceil(1.1) = 2 by |effect|
    assert select_nodes(effects, 1.0)["a"] == list(range(11))
    assert select_nodes(effects, threshold=0.5) == {"a": [1, 2]}  # |e| >= 0.25
    assert select_nodes(effects, threshold=1.0) == {"a": [1]}
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
            select_nodes(effects, bad)
        with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
            select_nodes(effects, threshold=bad)


def _toy_edges() -> EdgeWeights:
    kept = {"s0": [0, 1, 2], "s1": [5]}
    weights = {("s0", "s1"): torch.tensor([[0.3, -0.9, 0.1]], dtype=torch.float64)}
    return EdgeWeights(weights, kept, {"s0": [], "s1": ["s0"]}, "gxa", 1, "left", 1)


def test_signed_and_absolute_edge_ranking_differ():
    edges = _toy_edges()
    assert select_edges(edges, 1, "signed") == [("s0", 0, "s1", 5, 0.3)]
    assert select_edges(edges, 1, "abs") == [("s0", 1, "s1", 5, -0.9)]
    assert len(select_edges(edges, None, "abs")) == 3
    with pytest.raises(ValueError, match="edge rank must be one of .*got 'weight'"):
        select_edges(edges, 1, "weight")
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        select_edges(edges, 0)


@pytest.mark.parametrize("suffix", [".json", ".graphml"])
def test_circuit_roundtrip(tmp_path, suffix):
    edges = _toy_edges()
    scores = {"s0": torch.tensor([1.0, -2.0, 0.5]), "s1": torch.arange(6.0)}
    circuit = Circuit.from_parts(["s0", "s1"], edges.kept, scores, select_edges(edges, 2, "abs"),
                                 labels={"s0": "L0", "s1": "L1"}, meta={"class_name": "axe", "k": 2})
    loaded = Circuit.load(circuit.save(tmp_path / f"c{suffix}"))
    assert loaded.sites == ["s0", "s1"] and loaded.meta == {"class_name": "axe", "k": 2}
    assert loaded.node_set() == circuit.node_set() == {("s0", 0), ("s0", 1), ("s0", 2), ("s1", 5)}
    assert loaded.edge_set() == {(("s0", 1), ("s1", 5)), (("s0", 0), ("s1", 5))}
    assert loaded.graph.nodes["s0#1"]["score"] == -2.0
    assert loaded.graph.edges["s0#1", "s1#5"]["weight"] == pytest.approx(-0.9)
    nodes, edge_table = loaded.to_frames()
    assert len(nodes) == 4 and len(edge_table) == 2
    fig = loaded.draw(title="toy")
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="does not go forward"):
        Circuit.from_parts(["s0", "s1"], edges.kept, None, [("s1", 5, "s0", 0, 1.0)])
    with pytest.raises(ValueError, match="circuit file type must be one of .*got '.txt'"):
        circuit.save(tmp_path / "c.txt")


# ----------------------------------------------------------------------------- faithfulness
def test_faithfulness_full_is_one_empty_is_zero_and_random_is_seeded():
    model = tiny_tower("vit")
    images, labels = tiny_images(4)
    reference, _ = tiny_images(6, seed=2)
    effects = node_effects(model, images, labels, progress=False)
    everything = {s: list(range(len(v))) for s, v in effects.effects.items()}
    full = faithfulness_table(model, images, labels, everything, reference=reference, n_random=0)
    empty = faithfulness_table(model, images, labels, {s: [] for s in everything},
                               reference=reference, n_random=0)
    value = lambda t, m: float(t[(t.circuit == "circuit") & (t.metric == m)].value.iloc[0])  # noqa: E731
    assert value(full, "faithfulness") == pytest.approx(1.0)
    assert value(full, "completeness") == pytest.approx(0.0, abs=1e-9)
    assert value(empty, "faithfulness") == pytest.approx(0.0, abs=1e-9)
    assert value(empty, "completeness") == pytest.approx(1.0)
    f_full, f_empty = (float(full[full.metric == m].value.iloc[0]) for m in ("F_full", "F_empty"))
    assert abs(f_full - f_empty) > 1e-4  # the normalisation is not degenerate
    kept = select_nodes(effects, 0.25)
    a = faithfulness_table(model, images, labels, kept, reference=reference, n_random=3, seed=7)
    b = faithfulness_table(model, images, labels, kept, reference=reference, n_random=3, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.circuit) == {"model", "circuit", "random"} and a.draw.max() == 2
    sizes = {s: len(v) for s, v in effects.effects.items()}
    draws = random_circuits(kept, sizes, 2, seed=7)
    assert all(len(d[s]) == len(kept[s]) for d in draws for s in kept)
    assert draws == random_circuits(kept, sizes, 2, seed=7) != random_circuits(kept, sizes, 2, seed=8)
    assert _hook_count(model) == 0


# ----------------------------------------------------------------------------- comparison
def _labelled(edges, labels) -> nx.DiGraph:
    g = nx.DiGraph()
    for node, label in labels.items():
        g.add_node(node, label=label)
    g.add_edges_from(edges)
    return g


def test_wl_kernel_hand_worked():
    # worked out for the undirected kernel (the default is the paper's "out", tested in
    # tests/test_fidelity.py)
    undirected = {"neighbours": "undirected"}
    # G: A -> B;  H: A -> B, A -> B' (two B-labelled nodes).  Worked out by hand:
    # h=0: <G,H> = 1*1 + 1*2 = 3, <G,G> = 2, <H,H> = 5
    # h=1: labels (A,{B}), (B,{A}) in G; (A,{B,B}), 2 x (B,{A}) in H: <G,H> += 2, <G,G> += 2, <H,H> += 5
    # h=2: no common labels: <G,H> += 0, <G,G> += 2, <H,H> += 5  (and likewise at h=3)
    g = _labelled([("x1", "x2")], {"x1": "A", "x2": "B"})
    h = _labelled([("y1", "y2"), ("y1", "y3")], {"y1": "A", "y2": "B", "y3": "B"})
    assert wl_kernel(g, h, h=0, normalize=False, **undirected) == 3
    assert wl_kernel(g, h, h=1, normalize=False, **undirected) == 5
    assert wl_kernel(g, h, h=0, **undirected) == pytest.approx(3 / math.sqrt(10))
    assert wl_kernel(g, h, h=1, **undirected) == pytest.approx(5 / math.sqrt(40))
    assert wl_kernel(g, h, h=2, **undirected) == pytest.approx(5 / math.sqrt(90))  # h honoured: h=2 ...
    assert wl_kernel(g, h, h=3, **undirected) == pytest.approx(5 / math.sqrt(160))  # ... differs from h=3
    assert wl_kernel(g, g, h=2, **undirected) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="h \\(WL iterations\\) must be an integer >= 0"):
        wl_kernel(g, h, h=-1)
    with pytest.raises(ValueError, match="neighbours must be one of .*got 'up'"):
        wl_kernel(g, h, neighbours="up")
    # direction matters only with directed neighbourhoods: reverse G's edge
    g_rev = _labelled([("x2", "x1")], {"x1": "A", "x2": "B"})
    assert wl_kernel(g, g_rev, h=1, **undirected) == pytest.approx(1.0)
    assert wl_kernel(g, g_rev, h=1, neighbours="in") == pytest.approx(0.5)


def _circuit(nodes, edges, sites=("s0", "s1")) -> Circuit:
    kept: dict[str, list[int]] = {s: [] for s in sites}
    for s, u in nodes:
        kept[s].append(u)
    return Circuit.from_parts(list(sites), kept, None, [(a, u, b, d, 1.0) for (a, u), (b, d) in edges])


def test_jaccard_and_kernel_on_identical_disjoint_and_worked_circuits():
    a = _circuit([("s0", 0), ("s0", 1), ("s1", 0)], [(("s0", 0), ("s1", 0)), (("s0", 1), ("s1", 0))])
    same = _circuit([("s0", 0), ("s0", 1), ("s1", 0)], [(("s0", 0), ("s1", 0)), (("s0", 1), ("s1", 0))])
    other = _circuit([("s0", 5), ("s1", 7)], [(("s0", 5), ("s1", 7))])
    part = _circuit([("s0", 0), ("s0", 2), ("s1", 0)], [(("s0", 0), ("s1", 0)), (("s0", 2), ("s1", 0))])
    assert node_jaccard_by_site(a, same) == {"s0": 1.0, "s1": 1.0}
    assert edge_jaccard(a, same) == 1.0 and wl_kernel(a, same) == pytest.approx(1.0)
    assert node_jaccard_by_site(a, other) == {"s0": 0.0, "s1": 0.0}
    assert edge_jaccard(a, other) == 0.0 and wl_kernel(a, other) == 0.0
    assert node_jaccard_by_site(a, part) == {"s0": pytest.approx(1 / 3), "s1": 1.0}
    assert edge_jaccard(a, part) == pytest.approx(1 / 3)
    # h=0 on (site, unit) labels: shared labels s0#0 and s1#0 -> 2 / sqrt(3 * 3)
    assert wl_kernel(a, part, h=0) == pytest.approx(2 / 3)
    assert math.isnan(jaccard(set(), set()))


def test_comparison_tables_and_quickdraw_exclusion():
    a = _circuit([("s0", 0), ("s1", 0)], [(("s0", 0), ("s1", 0))])
    b = _circuit([("s0", 1), ("s1", 1)], [(("s0", 1), ("s1", 1))])
    circuits = {("axe", "real"): a, ("axe", "sketch"): a, ("axe", "quickdraw"): b,
                ("cat", "real"): a, ("cat", "sketch"): b, ("cat", "quickdraw"): b}
    table = compare_domains(circuits, h=1, meta={"run": "r", "setup": "cg", "test_domain": "sketch", "seed": 0})
    assert len(table) == 2 * 3 * (2 + 2) and set(table.wl_h) == {1}
    edge = table[table.metric == "edge_jaccard"].set_index(["class_name", "domain_a", "domain_b"]).value
    assert edge[("axe", "real", "sketch")] == 1.0 and edge[("axe", "real", "quickdraw")] == 0.0
    assert edge[("cat", "sketch", "quickdraw")] == 1.0
    summary = aggregate(table, heldout=["axe"])
    mean = summary[(summary.statistic == "mean") & (summary.metric == "edge_jaccard")]
    held = mean[mean.class_subset == "held-out"].set_index(["domain_a", "domain_b"]).value
    assert held[("real", "sketch")] == 1.0
    every = mean[mean.class_subset == "all"].set_index(["domain_a", "domain_b"]).value
    assert every[("real", "sketch")] == 0.5 and every[("sketch", "quickdraw")] == 0.5
    std = summary[(summary.statistic == "std") & (summary.metric == "edge_jaccard")
                  & (summary.class_subset == "all")].set_index(["domain_a", "domain_b"]).value
    assert std[("real", "sketch")] == pytest.approx(math.sqrt(0.5))
    groups = pair_group_summary(summary, test_domain="sketch")
    g = groups[(groups.metric == "edge_jaccard") & (groups.class_subset == "held-out")].set_index("pair_group")
    assert g.loc["excluding_quickdraw", "value"] == 1.0 and g.loc["excluding_quickdraw", "n_pairs"] == 1
    assert g.loc["with_quickdraw", "value"] == 0.0 and g.loc["with_quickdraw", "n_pairs"] == 2
    assert g.loc["all_pairs", "value"] == pytest.approx(1 / 3)
    assert g.loc["with_test_domain", "n_pairs"] == 2


def test_pair_group_summary_keeps_runs_seeds_and_test_domains_apart():
    a = _circuit([("s0", 0), ("s1", 0)], [(("s0", 0), ("s1", 0))])
    b = _circuit([("s0", 1), ("s1", 1)], [(("s0", 1), ("s1", 1))])
    one = {("axe", "real"): a, ("axe", "sketch"): a, ("axe", "quickdraw"): b}
    two = {("axe", "real"): a, ("axe", "sketch"): b, ("axe", "quickdraw"): b}
    tables = [compare_domains(one, meta={"run": "r1", "setup": "cg", "test_domain": "sketch", "seed": 0}),
              compare_domains(two, meta={"run": "r2", "setup": "cg", "test_domain": "quickdraw", "seed": 1})]
    summary = aggregate(pd.concat(tables, ignore_index=True), heldout=["axe"])
    groups = pair_group_summary(summary)
    for column in ("run", "setup", "test_domain", "seed", "class_subset", "site", "layer",
                   "layer_index", "metric", "pair_group", "value", "spread", "n_pairs"):
        assert column in groups.columns
    edge = groups[(groups.metric == "edge_jaccard") & (groups.class_subset == "all")]
    g = edge.set_index(["run", "pair_group"])
    assert g.loc[("r1", "excluding_quickdraw"), "value"] == 1.0  # r1: real-sketch share all
    assert g.loc[("r2", "excluding_quickdraw"), "value"] == 0.0  # r2: they share nothing
    assert g.loc[("r1", "all_pairs"), "n_pairs"] == 3 and g.loc[("r2", "all_pairs"), "n_pairs"] == 3
    # each run's own test domain: r1 pairs with sketch (1, 0), r2 pairs with quickdraw (0, 1)
    assert g.loc[("r1", "with_test_domain"), "value"] == 0.5
    assert g.loc[("r2", "with_test_domain"), "value"] == 0.5
    assert set(g.loc["r1"]["seed"]) == {0} and set(g.loc["r2"]["test_domain"]) == {"quickdraw"}


# ----------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def circuit_run(tmp_path_factory):
    from training.checkpoints import checkpoint_path, save_checkpoint
    from training.models import build_clip, write_model_config

    root = make_fake_domainnet(tmp_path_factory.mktemp("dn") / "root")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    run = tmp_path_factory.mktemp("runs") / "lso-cipqrs-nosketchclasses"
    run.mkdir()
    write_model_config(run, cfg)
    torch.manual_seed(0)
    save_checkpoint(checkpoint_path(run, 0), {"epoch": 0, "name": run.name,
                                              "state_dict": build_clip(cfg).state_dict(), "optimizer": None})
    spec = {"setup": "cg-high", "test_domain": "sketch", "seed": 1, "data_root": str(root)}
    (run / "mixture.json").write_text(json.dumps({"name": run.name, "spec": spec}))
    yield run, root
    shutil.rmtree(run.parent, ignore_errors=True)  # CI disks may be small


def test_circuits_command_writes_tables_figures_and_resumes(circuit_run, tmp_path, monkeypatch, capsys):
    from domainlens.cli import main

    run, root = circuit_run
    out = tmp_path / "out"
    argv = ["circuits", str(run), "--data", str(root), "--classes", "axe", "cat", "--domains",
            "clipart", "quickdraw", "sketch", "--n-images", "2", "--faithfulness", "--n-random", "2",
            "--out", str(out), "--quiet"]
    with torch_threads(1):
        assert main(argv) == 0
    assert "excluding_quickdraw" in capsys.readouterr().out
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison.columns) >= {"run", "setup", "test_domain", "seed", "class_name", "domain_a",
                                       "domain_b", "site", "layer", "metric", "value"}
    measured = comparison[comparison["reference"] == "none"]  # the rest: reference rows
    assert len(measured) == 2 * 3 * (6 + 2)  # classes x pairs x (sites + edge + WL)
    summary = pd.read_csv(out / "comparison_summary.csv")
    assert set(summary.class_subset) == {"held-out", "seen", "all"}  # axe is held out
    faith = pd.read_csv(out / "faithfulness.csv")
    assert set(faith.domain) == {"clipart", "quickdraw", "sketch"}
    for name in ("circuit_nodes.csv", "circuit_edges.csv", "comparison_groups.csv",
                 "node_sharing.png", "circuit_similarity.png", "circuits_axe.png"):
        assert (out / name).stat().st_size > 100
    assert Circuit.load(out / "circuits" / "cat" / "sketch.json").meta["domain"] == "sketch"
    assert len(list((out / "cache").glob("*__*.pt"))) == 6

    # resumable: a rerun (other top-k and WL h) recomputes no node effects
    def refuse(*args, **kwargs):
        raise AssertionError("node effects recomputed despite the cache")

    monkeypatch.setattr("domainlens.experiments.circuits.node_effects", refuse)
    with torch_threads(1):
        assert main([*argv, "--top-k", "1", "--wl-h", "0"]) == 0
    assert set(pd.read_csv(out / "comparison.csv").wl_h) == {0}


def test_circuits_cache_is_keyed_by_pixels_and_faithfulness_csv_has_a_header(circuit_run, tmp_path, monkeypatch):
    """An image edited in place (same size and mtime) invalidates its cached circuits; without
    --faithfulness, faithfulness.csv is a header-only table."""
    import shutil

    import numpy as np
    from PIL import Image

    from domainlens.cli import main
    from domainlens.experiments import circuits as experiment

    run, root = circuit_run
    data = tmp_path / "root"
    shutil.copytree(root, data)
    images = sorted((data / "clipart" / "cat").glob("*.png"))
    for path in images:  # uncompressed: an edit of the pixels keeps the file size
        Image.open(path).convert("RGB").save(path, compress_level=0)
    out = tmp_path / "out"
    argv = ["circuits", str(run), "--data", str(data), "--classes", "cat", "--domains", "clipart", "sketch",
            "--n-images", "2", "--out", str(out), "--quiet"]
    with torch_threads(1):
        assert main(argv) == 0
    faith = (out / "faithfulness.csv").read_text().splitlines()
    assert len(faith) == 1 and faith[0].startswith("model,circuit,draw,metric,value,run,setup")
    assert pd.read_csv(out / "faithfulness.csv").empty
    computed = []
    original = experiment.node_effects
    monkeypatch.setattr(experiment, "node_effects",
                        lambda *a, **k: computed.append(1) or original(*a, **k))
    with torch_threads(1):
        assert main(argv) == 0
    assert computed == []  # unchanged images: from the cache
    for path in images:
        stat = path.stat()
        pixels = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(255 - pixels).save(path, compress_level=0)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert path.stat().st_size == stat.st_size
    with torch_threads(1):
        assert main(argv) == 0
    assert computed == [1]


@pytest.mark.parametrize("extra, message", [
    (["--classes", "axe", "zebra"], "unknown class(es) ['zebra']; classes of the data root"),
    (["--domains", "photo"], "unknown domain(s) ['photo']; domains with test splits here"),
    (["--n-images", "3"], "fewer test images than the 3 requested"),
    (["--threshold", "0"], "threshold must be in (0, 1], got 0.0"),
    (["--fraction", "1.5"], "fraction must be in (0, 1], got 1.5"),
    (["--draw-class", "cat"], "draw_class 'cat' is not among the computed classes ['axe']"),
])
def test_circuits_command_bad_input(circuit_run, tmp_path, capsys, monkeypatch, extra, message):
    from domainlens.cli import main

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr("domainlens.experiments.circuits.node_effects", refuse)
    run, root = circuit_run
    argv = ["circuits", str(run), "--data", str(root), "--classes", "axe", "--n-images", "2",
            "--out", str(tmp_path), "--quiet"]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err


def test_circuits_command_help(capsys):
    from domainlens.cli import main

    with pytest.raises(SystemExit):
        main(["circuits", "--help"])
    assert "--edge-rank" in capsys.readouterr().out


def test_build_circuit_from_effects_and_edges(tmp_path):
    from interp.circuits.attribution import NodeEffects

    model = tiny_tower("rn")
    images, labels = tiny_images(3)
    effects = node_effects(model, images, labels, progress=False)
    kept = select_nodes(effects, 0.25)
    edges = edge_weights(model, images, labels, kept, progress=False)
    loaded_nodes = NodeEffects.load(effects.save(tmp_path / "nodes.pt"))
    loaded_edges = EdgeWeights.load(edges.save(tmp_path / "edges.pt"))
    assert all(torch.equal(loaded_nodes.effects[s], effects.effects[s]) for s in effects.sites)
    assert loaded_edges.weights.keys() == edges.weights.keys() and loaded_edges.kept == edges.kept
    assert all(torch.equal(loaded_edges.weights[k], edges.weights[k]) for k in edges.weights)
    circuit = build_circuit(effects, edges, top_k=2, rank="abs")
    assert circuit.nodes_by_site() == {s: set(v) for s, v in kept.items()}
    assert all(circuit.graph.in_degree(n) <= 2 for n in circuit.graph)
    first = circuit.sites[0]
    assert all(circuit.graph.in_degree(n) == 0 for n, d in circuit.graph.nodes(data=True) if d["site"] == first)
