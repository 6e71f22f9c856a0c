"""Paper fidelity (issue 12): the paper's rows, row order, names, captions and scores, each on a
small hand-made input whose expected output is worked out by hand below."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from training.mixtures import STANDARD_SETUPS, MixtureSpec, build_mixture, match_size

# ----------------------------------------------------------------------------- a hand-made index
# Four classes (labels by sorted name: ant 0, bee 1, cat 2, dog 3), held-out class: bee.
# Per domain, the classes in split-file order with their train counts (class order differs
# from the alphabetical one, so order of first appearance is observable):
TRAIN = {
    "clipart": [("ant", 1), ("bee", 1), ("cat", 1), ("dog", 1)],
    "infograph": [("ant", 1), ("bee", 1), ("cat", 1), ("dog", 1)],
    "painting": [("ant", 1), ("bee", 1), ("cat", 1), ("dog", 1)],
    "quickdraw": [("cat", 3), ("ant", 2), ("bee", 4), ("dog", 3)],
    "real": [("dog", 4), ("ant", 3), ("cat", 3), ("bee", 2)],
    "sketch": [("ant", 2), ("bee", 2), ("cat", 2), ("dog", 2)],
}
LABELS = {"ant": 0, "bee": 1, "cat": 2, "dog": 3}
# CG low-diversity for quickdraw: real 12 + quickdraw's seen classes 3 + 2 + 3 = 20 rows.
S = 20


def entry(domain: str, cls: str, j: int) -> str:
    return f"{domain}/{cls}/{domain}_{cls}_{j}.png"


def rows_of(domain: str, cls: str, *js: int) -> list[str]:
    return [entry(domain, cls, j) for j in js]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fidelity") / "dn"
    root.mkdir()
    for domain, groups in TRAIN.items():
        lines = [f"{entry(domain, c, j)} {LABELS[c]}" for c, n in groups for j in range(n)]
        (root / f"{domain}_train.txt").write_text("\n".join(lines) + "\n")
        (root / f"{domain}_test.txt").write_text(f"{entry(domain, 'ant', 99)} 0\n")
    (root / "heldout_classes.txt").write_text("bee\n")
    (root / "base.tsv").write_text("filepath\ttitle\tdomain\tlabel\n"
                                   "base/b0.png\ta photo of an ant\tbase\t0\n"
                                   "base/b1.png\ta photo of a cat\tbase\t2\n")
    return root


def spec(root: Path, setup: str, **kw) -> MixtureSpec:
    return MixtureSpec(setup=setup, test_domain="quickdraw", data_root=str(root), **kw)


def rendition_entries(root: Path, mixture) -> list[str]:
    rows = mixture.rows[mixture.rows["domain"] != "base"]
    prefix = str(root.resolve()) + "/"
    return [p[len(prefix):] for p in rows["filepath"]]


def one_each(domain: str, classes: str = "ant bee cat dog") -> list[str]:
    return [entry(domain, c, 0) for c in classes.split()]


# ----------------------------------------------------------------------------- trim sweep
def test_paper_sweep_cg_high(root):
    # cg-high / quickdraw: 40 candidate rows (quickdraw without bee), shrink 20/40 = 0.5:
    #   clipart, infograph, painting: ceil(0.5 * 1) = 1 per class (4 each)
    #   quickdraw: cat 3 -> 2, ant 2 -> 1, dog 3 -> 2 (5); real: dog 4 -> 2, ant 2, cat 2,
    #   bee 2 -> 1 (7); sketch: 1 per class (4).  Total 28: 8 too many.
    # Sweep: real dog, ant, cat, bee lose one (4), quickdraw cat, ant, dog (3), painting ant
    # (1): done.  TSV order: clipart, infograph, painting, quickdraw, real, sketch; classes
    # in order of first appearance (real: dog, ant, cat).
    expected = (one_each("clipart") + one_each("infograph") + one_each("painting", "bee cat dog")
                + one_each("quickdraw", "cat dog") + one_each("real", "dog ant cat")
                + one_each("sketch"))
    mixture = build_mixture(spec(root, "cg-high"))
    assert rendition_entries(root, mixture) == expected
    # the base set comes first, whole, in its own order
    assert mixture.rows["filepath"].iloc[:2].str.endswith(("base/b0.png", "base/b1.png")).all()
    assert mixture.rows["domain"].iloc[:2].tolist() == ["base", "base"]


def test_paper_sweep_leave_out_domain_empties_painting(root):
    # leave-out-domain / quickdraw: clipart 4 + infograph 4 + painting 4 + real 12 + sketch 8
    # = 32 rows, shrink 20/32 = 0.625: n=1 -> 1, n=2 -> 2, n=3 -> 2, n=4 -> 3.
    #   real: dog 3, ant 2, cat 2, bee 2 (9); sketch 2 each (8); the rest 1 each (12): 29.
    # Sweep (9 too many): real dog, ant, cat, bee (4); quickdraw absent; painting ant, bee,
    # cat, dog (4); sketch ant (1): done.  Painting loses every row, as in the paper's code.
    expected = (one_each("clipart") + one_each("infograph")
                + rows_of("real", "dog", 0, 1) + rows_of("real", "ant", 0) + rows_of("real", "cat", 0)
                + rows_of("real", "bee", 0) + rows_of("sketch", "ant", 0)
                + rows_of("sketch", "bee", 0, 1) + rows_of("sketch", "cat", 0, 1)
                + rows_of("sketch", "dog", 0, 1))
    assert rendition_entries(root, build_mixture(spec(root, "leave-out-domain"))) == expected


def test_balanced_rule_takes_from_the_largest_groups(root):
    # same first step as test_paper_sweep_cg_high (28 rows, 8 too many); the 5 groups that keep
    # 2 (quickdraw cat, dog; real dog, ant, cat) lose one each, then ties among the groups that
    # keep 1, in row order: clipart ant, bee, cat.
    expected = (one_each("clipart", "dog") + one_each("infograph") + one_each("painting")
                + one_each("quickdraw", "cat ant dog") + one_each("real", "dog ant cat bee")
                + one_each("sketch"))
    mixture = build_mixture(spec(root, "cg-high", size_rule="balanced"))
    assert rendition_entries(root, mixture) == expected


def test_natural_only_whole_and_fixed_size_uses_the_sweep(root):
    real = [entry("real", c, j) for c, n in TRAIN["real"] for j in range(n)]
    assert rendition_entries(root, build_mixture(spec(root, "natural-only"))) == real
    # upper-low / quickdraw, fixed size 12: 24 rows (real 12, quickdraw 12), shrink 0.5:
    # quickdraw cat 2, ant 1, bee 2, dog 2; real dog 2, ant 2, cat 2, bee 1: 14, 2 too many.
    # Sweep: real dog, real ant.
    expected = (rows_of("quickdraw", "cat", 0, 1) + rows_of("quickdraw", "ant", 0)
                + rows_of("quickdraw", "bee", 0, 1) + rows_of("quickdraw", "dog", 0, 1)
                + rows_of("real", "dog", 0) + rows_of("real", "ant", 0)
                + rows_of("real", "cat", 0, 1) + rows_of("real", "bee", 0))
    mixture = build_mixture(spec(root, "upper-low", size_rule="fixed", size=12))
    assert rendition_entries(root, mixture) == expected


def test_match_size_sweep_order_and_protected_rows():
    # groups in TSV order: (clipart, a) 2 rows, (real, a) 2, (real, b) 2, (sketch, a) 2 (the
    # last protected); target 5: shrink (5 - 2) / (8 - 2) = 0.5 -> 1 row each of the free
    # groups = 3, plus 2 protected = 5: nothing to trim.  Target 4 -> 0.333: ceil -> 1 each,
    # 1 too many: the sweep starts with real (a), never touches the protected sketch rows.
    rows = pd.DataFrame({"domain": ["clipart"] * 2 + ["real"] * 4 + ["sketch"] * 2,
                         "class_name": ["a", "a", "a", "a", "b", "b", "a", "a"],
                         "path": [f"p{i}" for i in range(8)]})
    protected = np.array([False] * 6 + [True] * 2)
    assert match_size(rows, 5, protected=protected)["path"].tolist() == ["p0", "p2", "p4", "p6", "p7"]
    assert match_size(rows, 4, protected=protected)["path"].tolist() == ["p0", "p4", "p6", "p7"]
    # balanced: every free group keeps 1, ties in row order -> clipart loses its row
    assert match_size(rows, 4, rule="balanced", protected=protected)["path"].tolist() == \
        ["p2", "p4", "p6", "p7"]
    with pytest.raises(ValueError, match="smaller than the 2 protected rows"):
        match_size(rows, 1, protected=protected)
    # one 2-row group per domain (TSV order c, i, p, q, r, s), target 7: shrink 7/12 keeps 2
    # each (12), 5 too many: real, quickdraw, painting, sketch, infograph lose one; clipart none
    six = pd.DataFrame({"domain": [d for d in ("clipart", "infograph", "painting", "quickdraw",
                                               "real", "sketch") for _ in range(2)],
                        "class_name": "a", "path": [f"p{i}" for i in range(12)]})
    assert match_size(six, 7)["path"].tolist() == ["p0", "p1", "p2", "p4", "p6", "p8", "p10"]


# ----------------------------------------------------------------------------- allow
def test_allow_counts_and_shrink_as_the_paper(root):
    # cg-high / quickdraw, allow 0.5: N_all = 44 (40 + quickdraw bee 4), s0 = 20/44;
    # bee keeps ceil(0.5 * 20/44 * 4) = ceil(0.909) = 1 (the old rule kept ceil(0.5 * 4) = 2).
    # The others shrink by (20 - 1) / (44 - 4) = 0.475: n=1 -> 1, 2 -> 1, 3 -> 2, 4 -> 2:
    #   quickdraw cat 2, ant 1, dog 2 (+ bee 1, protected); real dog 2, ant 2, cat 2, bee 1;
    #   sketch 1 each; clipart, infograph, painting 1 each: 28 + 1 = 29, 9 too many.
    # Sweep: real dog, ant, cat, bee (4); quickdraw cat, ant, (bee skipped), dog (3);
    # painting ant, bee (2): done.
    expected = (one_each("clipart") + one_each("infograph") + one_each("painting", "cat dog")
                + one_each("quickdraw", "cat bee dog") + one_each("real", "dog ant cat")
                + one_each("sketch"))
    mixture = build_mixture(spec(root, "cg-high", allow=0.5))
    assert rendition_entries(root, mixture) == expected
    assert mixture.name == "lso-cipqrs-noquickdrawclasses-allow0.5"
    # without size matching the allowed count is ceil(p * n): 2 of bee's 4 rows
    whole = rendition_entries(root, build_mixture(spec(root, "cg-high", allow=0.5,
                                                       size_rule="none")))
    assert [e for e in whole if e.startswith("quickdraw/bee/")] == rows_of("quickdraw", "bee", 0, 1)


def test_allow_on_cg_low(root):
    # cg-low / quickdraw, allow 0.8: N_all = 24, s0 = 20/24; bee keeps ceil(0.8 * 20/24 * 4)
    # = ceil(2.67) = 3. Others: (20 - 3) / (24 - 4) = 0.85: n=2 -> 2, 3 -> 3, 4 -> 4: 20 rows
    # + 3 = 23, 3 too many; sweep: real dog, ant, cat.
    expected = (rows_of("quickdraw", "cat", 0, 1, 2) + rows_of("quickdraw", "ant", 0, 1)
                + rows_of("quickdraw", "bee", 0, 1, 2) + rows_of("quickdraw", "dog", 0, 1, 2)
                + rows_of("real", "dog", 0, 1, 2) + rows_of("real", "ant", 0, 1)
                + rows_of("real", "cat", 0, 1) + rows_of("real", "bee", 0, 1))
    assert rendition_entries(root, build_mixture(spec(root, "cg-low", allow=0.8))) == expected


# ----------------------------------------------------------------------------- names
def test_names_as_the_paper_code(root):
    names = {s: spec(root, s).name for s in STANDARD_SETUPS}
    assert names == {
        "natural-only": "lso-real-only",
        "cg-low": "lso-qr-noquickdrawclasses",
        "cg-high": "lso-cipqrs-noquickdrawclasses",
        "leave-out-domain": "lso-ciprs-noquickdrawclasses",
        "upper-low": "lso-qr-noquickdrawclasses-pseudo",
        "upper-high": "lso-cipqrs-noquickdrawclasses-pseudo",
    }
    assert spec(root, "cg-high", allow=0.2).name == "lso-cipqrs-noquickdrawclasses-allow0.2"
    assert spec(root, "cg-low", allow=1.0).name == "lso-qr-noquickdrawclasses-allow1.0"
    assert spec(root, "cg-high", allow=0.2, captions="aligned").name == \
        "lso-cipqrs-noquickdrawclasses-allow0.2-aligned"
    assert spec(root, "upper-high", captions="aligned").name == \
        "lso-cipqrs-noquickdrawclasses-pseudo-aligned"
    assert MixtureSpec(setup="leave-out-domain", test_domain="sketch", data_root=str(root)).name \
        == "lso-cipqr-nosketchclasses"


# ----------------------------------------------------------------------------- captions
def test_caption_identical_across_every_setup_of_a_test_domain(root):
    mixtures = [build_mixture(spec(root, s)) for s in STANDARD_SETUPS]
    mixtures += [build_mixture(spec(root, "cg-low", allow=0.5)),
                 build_mixture(spec(root, "cg-high", allow=0.2)),
                 build_mixture(spec(root, "domain-interp", other_domains=("sketch",))),
                 build_mixture(spec(root, "cg-high", size_rule="none", selection="random", seed=0))]
    seen: dict[str, str] = {}
    shared = 0
    for mixture in mixtures:
        rows = mixture.rows[mixture.rows["domain"] != "base"]
        for path, title in zip(rows["filepath"], rows["title"], strict=True):
            if path in seen:
                shared += 1
                assert seen[path] == title, path
            seen[path] = title
    assert shared > 100  # the check had images to compare
    assert len(set(seen.values())) > 10  # and captions do vary between images
    # a caption depends on (image, seed, style) only
    other_seed = build_mixture(spec(root, "upper-high", seed=1))
    aligned = build_mixture(spec(root, "upper-high", captions="aligned"))
    titles = [dict(zip(m.rows["filepath"], m.rows["title"], strict=True)) for m in
              (other_seed, aligned)]
    for t in titles:
        assert any(t[p] != seen[p] for p in seen if p in t)


def test_art_takes_no_article():
    from training.captions import TEMPLATES, caption, fill_template, make_captions

    assert fill_template(TEMPLATES[0], "art", "lion") == "art of a lion."
    assert fill_template(TEMPLATES[3], "art", "lion") == "a lion depicted in art."
    assert fill_template(TEMPLATES[5], "art", "lion") == "a lion is visible in art."
    assert fill_template(TEMPLATES[1], "art", "lion") == "a lion art."
    assert fill_template(TEMPLATES[0], "illustration", "lion") == "an illustration of a lion."
    assert fill_template(TEMPLATES[2], "painting", "lion") == "a painting depicting a lion."
    keys = [f"painting/lion/{i}.jpg" for i in range(400)]
    caps = make_captions(["lion"] * 400, ["painting"] * 400, keys, 0)
    assert any("art" in c for c in caps)
    assert not any(" a art" in f" {c}" or "an art" in c for c in caps)
    assert caps == [caption("lion", "painting", k, 0) for k in keys]  # row-independent


# ----------------------------------------------------------------------------- scores
def _graph(edges: list[tuple[str, str]]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(["a", "b", "c"])
    g.add_edges_from(edges)
    return g


def test_wl_kernel_default_is_successors():
    from interp.circuits.circuit import Circuit
    from interp.circuits.compare import compare_domains, wl_kernel

    # G: a -> b, a -> c;  H: a -> b -> c; initial labels are the node names.
    # h=0: three shared labels: <G,H> = 3, <G,G> = <H,H> = 3.
    # h=1 from successors: G a:(a,[b,c]) b:(b,[]) c:(c,[]); H a:(a,[b]) b:(b,[c]) c:(c,[]):
    #   one shared label (c,[]) -> k = 4, self 6 -> 4/6.
    # from predecessors: G a:(a,[]) b:(b,[a]) c:(c,[a]); H a:(a,[]) b:(b,[a]) c:(c,[b]): 5/6.
    # undirected: G a:(a,[b,c]) b:(b,[a]) c:(c,[a]); H a:(a,[b]) b:(b,[a,c]) c:(c,[b]): 3/6.
    g, h = _graph([("a", "b"), ("a", "c")]), _graph([("a", "b"), ("b", "c")])
    assert wl_kernel(g, h, h=1) == pytest.approx(4 / 6)
    assert wl_kernel(g, h, h=1, neighbours="out") == pytest.approx(4 / 6)
    assert wl_kernel(g, h, h=1, neighbours="in") == pytest.approx(5 / 6)
    assert wl_kernel(g, h, h=1, neighbours="undirected") == pytest.approx(3 / 6)

    ca = Circuit.from_parts(["s0", "s1"], {"s0": [0, 1], "s1": [0]}, None,
                            [("s0", 0, "s1", 0, 1.0), ("s0", 1, "s1", 0, 1.0)])
    cb = Circuit.from_parts(["s0", "s1"], {"s0": [0], "s1": [0, 1]}, None,
                            [("s0", 0, "s1", 0, 1.0), ("s0", 0, "s1", 1, 1.0)])
    # a: s0#0 -> s1#0 <- s0#1;  b: s0#0 -> s1#0, s0#0 -> s1#1.  h=1 from successors:
    # a: s0#0:(s0#0,[s1#0]) s0#1:(s0#1,[s1#0]) s1#0:(s1#0,[]); b: s0#0:(s0#0,[s1#0,s1#1])
    # s1#0:(s1#0,[]) s1#1:(s1#1,[]): shared s1#0 at h=1; h=0 shares s0#0, s1#0 -> k = 3 / 6.
    table = compare_domains({("x", "real"): ca, ("x", "sketch"): cb}, h=1)
    assert table[table.metric == "wl_kernel"]["value"].item() == pytest.approx(3 / 6)


def test_every_entry_point_defaults_to_successors():
    from domainlens.commands import circuits as circuits_command
    from domainlens.experiments.circuits import CircuitSettings

    assert CircuitSettings().neighbours == "out"  # API, and the pipeline, which uses its default
    parser = argparse.ArgumentParser()
    circuits_command.register(parser.add_subparsers())
    assert parser.parse_args(["circuits", "runs/x"]).neighbours == "out"


def test_edge_jaccard_of_edgeless_circuits_is_zero_and_counted():
    from interp.circuits.circuit import Circuit
    from interp.circuits.compare import aggregate, compare_domains, edge_jaccard, jaccard

    empty = Circuit.from_parts(["s0", "s1"], {"s0": [0], "s1": [1]})
    other = Circuit.from_parts(["s0", "s1"], {"s0": [2], "s1": [1]})
    linked = Circuit.from_parts(["s0", "s1"], {"s0": [0], "s1": [1]}, None, [("s0", 0, "s1", 1, 1.0)])
    assert edge_jaccard(empty, other) == 0.0
    assert edge_jaccard(empty, linked) == 0.0
    assert edge_jaccard(linked, linked) == 1.0
    assert math.isnan(jaccard(set(), set()))  # the generic rule stays "undefined"
    # class x: two edgeless circuits (0); class y: identical edges (1) -> mean 0.5 over n = 2
    table = compare_domains({("x", "real"): empty, ("x", "sketch"): other,
                             ("y", "real"): linked, ("y", "sketch"): linked}, h=1)
    summary = aggregate(table, heldout=["x"])
    edge = summary[(summary.metric == "edge_jaccard") & (summary.class_subset == "all")]
    stats = edge.set_index("statistic")["value"]
    assert stats["mean"] == 0.5 and stats["n"] == 2


# ----------------------------------------------------------------------------- configs
def test_paper_config_uses_integrated_gradients_and_choices_match_interp():
    from domainlens.config import CIRCUIT_EDGE_METHODS, CIRCUIT_METHODS, load_config
    from domainlens.experiments.circuits import CircuitSettings
    from interp.circuits.attribution import NODE_METHODS
    from interp.circuits.edges import EDGE_METHODS

    assert CIRCUIT_METHODS == NODE_METHODS and CIRCUIT_EDGE_METHODS == EDGE_METHODS
    an = load_config("paper").analyses
    assert (an.circuit_method, an.circuit_edge_method) == ("ig", "ig")
    defaults = CircuitSettings()
    assert (defaults.steps, defaults.baseline, defaults.rule) == (10, "zero", "left")
    with pytest.raises(ValueError, match="circuit_method"):
        load_config("quickstart").replace("analyses", circuit_method="sfc")
