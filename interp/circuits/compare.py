"""Comparing circuits across domains: node and edge Jaccard, Weisfeiler-Lehman subtree kernel.

Pure functions on :class:`interp.circuits.circuit.Circuit` s (or plain sets / graphs):

* :func:`jaccard`: ``|A & B| / |A | B|`` (``empty`` when both sets are empty: NaN by default);
* :func:`node_jaccard_by_site`: per site, Jaccard of the kept units (the top fraction);
* :func:`edge_jaccard`: Jaccard of the edge sets, an edge being
  ``((up_site, up_unit), (down_site, down_unit))``; two edgeless circuits score 0, as in the
  paper's code (so :func:`aggregate` counts them);
* :func:`wl_kernel`: the Weisfeiler-Lehman subtree kernel (Shervashidze et al. 2011) with
  initial node labels ``(site, unit)``: ``k(G, H) = sum_{i=0..h} <phi_i(G), phi_i(H)>``, with
  ``phi_i`` the histogram of labels after ``i`` relabelling iterations, where iteration
  ``i + 1`` labels a node by its label at ``i`` and the sorted multiset of its neighbours'
  labels at ``i``. Exactly ``h`` iterations are run (``h=0``: label histograms only). The
  normalised kernel is ``k(G, H) / sqrt(k(G, G) k(H, H))``. Labels are compressed with a
  stable hash, so features of different graphs are comparable without shared state.
  ``neighbours``: ``"out"`` (successors, edges pointing downstream: the paper's kernel and
  the default everywhere), ``"undirected"`` (the textbook kernel on the underlying undirected
  graph), ``"in"`` (predecessors: the subtree feeding a node), or ``"both"`` (in- and
  out-neighbour multisets kept apart).

:func:`compare_domains` builds the long table (one row per class, domain pair, site, metric);
:func:`aggregate` summarises it over held-out, seen and all classes (mean, std, n), and
:func:`pair_group_summary` averages over domain-pair groups (all pairs, pairs excluding
quickdraw -- no pair containing quickdraw --, pairs with quickdraw, pairs with the test domain).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from interp.circuits.circuit import Circuit
from training.util.validate import check_choice

NEIGHBOURS: tuple[str, ...] = ("undirected", "in", "out", "both")
CLASS_SUBSETS: tuple[str, ...] = ("held-out", "seen", "all")
PAIR_GROUPS: tuple[str, ...] = ("all_pairs", "excluding_quickdraw", "with_quickdraw", "with_test_domain")
#: Columns that name one trained run; summaries never pool rows that differ in them.
RUN_KEYS: tuple[str, ...] = ("run", "setup", "test_domain", "seed")
COLUMNS: tuple[str, ...] = (
    "run", "setup", "test_domain", "seed", "class_name", "domain_a", "domain_b", "site", "layer",
    "layer_index", "metric", "value",
)


def jaccard(a: Iterable[Hashable], b: Iterable[Hashable], empty: float = float("nan")) -> float:
    """``|A & B| / |A | B|``; ``empty`` (default NaN: undefined) if both are empty."""
    a, b = set(a), set(b)
    union = len(a | b)
    return len(a & b) / union if union else float(empty)


def node_jaccard_by_site(a: Circuit, b: Circuit) -> dict[str, float]:
    """Per site of ``a`` (in order), Jaccard of the two circuits' kept units there."""
    na, nb = a.nodes_by_site(), b.nodes_by_site()
    return {s: jaccard(na.get(s, set()), nb.get(s, set())) for s in a.sites}


def edge_jaccard(a: Circuit, b: Circuit) -> float:
    """Jaccard of the edge sets; 0 for two edgeless circuits (the paper's code: nothing shared)."""
    return jaccard(a.edge_set(), b.edge_set(), empty=0.0)


def _compress(label: Any) -> str:
    return hashlib.sha1(repr(label).encode()).hexdigest()[:16]


def _graph(g: Circuit | nx.DiGraph | nx.Graph) -> nx.Graph:
    return g.graph if isinstance(g, Circuit) else g


def _initial_label(graph: nx.Graph, node: Hashable) -> Any:
    data = graph.nodes[node]
    if "site" in data and "unit" in data:
        return (str(data["site"]), int(data["unit"]))
    return data.get("label", node)


def wl_features(g: Circuit | nx.Graph, h: int, neighbours: str = "out") -> list[Counter]:
    """Label histograms ``[phi_0, ..., phi_h]`` of the WL relabelling (see module docstring).

    Node labels start as ``(site, unit)`` (circuit nodes) or the ``label`` attribute / node id.
    """
    if isinstance(h, bool) or not isinstance(h, int) or h < 0:
        raise ValueError(f"h (WL iterations) must be an integer >= 0, got {h!r}")
    check_choice("neighbours", neighbours, NEIGHBOURS)
    graph = _graph(g)
    directed = graph.is_directed()
    labels = {v: _compress(("init", _initial_label(graph, v))) for v in graph.nodes}
    features = [Counter(labels.values())]
    for _ in range(h):
        new = {}
        for v in graph.nodes:
            if neighbours == "undirected" or not directed:
                nbrs = set(graph.predecessors(v)) | set(graph.successors(v)) if directed \
                    else set(graph.neighbors(v))
                signature: Any = (labels[v], tuple(sorted(labels[u] for u in nbrs)))
            elif neighbours == "in":
                signature = (labels[v], tuple(sorted(labels[u] for u in graph.predecessors(v))))
            elif neighbours == "out":
                signature = (labels[v], tuple(sorted(labels[u] for u in graph.successors(v))))
            else:
                signature = (labels[v], tuple(sorted(labels[u] for u in graph.predecessors(v))),
                             tuple(sorted(labels[u] for u in graph.successors(v))))
            new[v] = _compress(signature)
        labels = new
        features.append(Counter(labels.values()))
    return features


def _dot(a: Counter, b: Counter) -> int:
    if len(a) > len(b):
        a, b = b, a
    return sum(count * b.get(label, 0) for label, count in a.items())


def wl_kernel_from_features(fa: Sequence[Counter], fb: Sequence[Counter], normalize: bool = True,
                            fa_self: float | None = None, fb_self: float | None = None) -> float:
    """The WL kernel from :func:`wl_features` of two graphs (same ``h``)."""
    if len(fa) != len(fb):
        raise ValueError(f"features of different depths: h={len(fa) - 1} vs h={len(fb) - 1}")
    k = float(sum(_dot(a, b) for a, b in zip(fa, fb, strict=True)))
    if not normalize:
        return k
    kaa = fa_self if fa_self is not None else float(sum(_dot(a, a) for a in fa))
    kbb = fb_self if fb_self is not None else float(sum(_dot(b, b) for b in fb))
    if kaa == 0 or kbb == 0:
        return float("nan")
    return k / math.sqrt(kaa * kbb)


def wl_kernel(a: Circuit | nx.Graph, b: Circuit | nx.Graph, h: int = 2, normalize: bool = True,
              neighbours: str = "out") -> float:
    """WL subtree kernel with exactly ``h`` iterations; normalised by default (NaN for an
    empty graph). ``neighbours="out"``: relabel from successors, as the paper."""
    return wl_kernel_from_features(wl_features(a, h, neighbours), wl_features(b, h, neighbours),
                                   normalize)


# --------------------------------------------------------------------------- tables
def compare_domains(
    circuits: Mapping[tuple[str, str], Circuit],
    *,
    h: int = 2,
    neighbours: str = "out",
    labels: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """All within-class domain pairs: node Jaccard per site, edge Jaccard and WL kernel.

    ``circuits``: ``{(class_name, domain): Circuit}``. Pairs are unordered, ``domain_a <
    domain_b`` in the order of first appearance. Returns the long table (:data:`COLUMNS`):
    ``metric`` ``node_jaccard`` (one row per site), ``edge_jaccard`` and ``wl_kernel``
    (site ``"*"``), plus ``wl_h``.
    """
    by_class: dict[str, list[str]] = {}
    for cls, domain in circuits:
        by_class.setdefault(cls, []).append(domain)
    rows = []
    base = dict(meta or {})
    for cls, domains in by_class.items():
        features = {d: wl_features(circuits[(cls, d)], h, neighbours) for d in domains}
        selfk = {d: float(sum(_dot(c, c) for c in f)) for d, f in features.items()}
        for da, db in itertools.combinations(domains, 2):
            ca, cb = circuits[(cls, da)], circuits[(cls, db)]
            common = {**base, "class_name": cls, "domain_a": da, "domain_b": db}
            order = {s: i for i, s in enumerate(ca.sites)}
            for site, value in node_jaccard_by_site(ca, cb).items():
                rows.append({**common, "site": site, "layer": (labels or {}).get(site, site),
                             "layer_index": order[site], "metric": "node_jaccard", "value": value})
            rows.append({**common, "site": "*", "layer": "circuit", "layer_index": -1,
                         "metric": "edge_jaccard", "value": edge_jaccard(ca, cb)})
            rows.append({**common, "site": "*", "layer": "circuit", "layer_index": -1,
                         "metric": "wl_kernel",
                         "value": wl_kernel_from_features(features[da], features[db], True,
                                                          selfk[da], selfk[db])})
    table = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in table.columns:
            table[col] = None
    table["wl_h"] = h
    return table[[*COLUMNS, "wl_h"]]


def class_subset_of(classes: Iterable[str], heldout: Iterable[str]) -> dict[str, str]:
    """``{class: "held-out" | "seen"}``."""
    held = set(heldout)
    return {c: "held-out" if c in held else "seen" for c in classes}


def aggregate(table: pd.DataFrame, heldout: Iterable[str]) -> pd.DataFrame:
    """Mean, std (ddof 1) and number of classes per (domain pair, site, metric) over held-out,
    seen and all classes; long form with ``class_subset`` and ``statistic`` columns. NaN
    values (node Jaccard of two empty sets, WL of an empty graph) are left out and ``n``
    counts the others; edge Jaccard is never NaN (two edgeless circuits score 0)."""
    if table.empty:
        return table.assign(class_subset=[], statistic=[])
    subset = class_subset_of(table["class_name"].unique(), heldout)
    keys = [c for c in ("run", "setup", "test_domain", "seed", "domain_a", "domain_b", "site",
                        "layer", "layer_index", "metric", "wl_h") if c in table.columns]
    parts = []
    for name in CLASS_SUBSETS:
        rows = table if name == "all" else table[table["class_name"].map(subset) == name]
        if rows.empty:
            continue
        grouped = rows.groupby(keys, dropna=False, sort=False)["value"]
        stats = grouped.agg(mean="mean", std="std", n="count").reset_index()
        long = stats.melt(id_vars=keys, value_vars=["mean", "std", "n"], var_name="statistic",
                          value_name="value")
        long["class_subset"] = name
        long["class_name"] = "*"
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def pair_groups(domain_a: str, domain_b: str, test_domain: str | None) -> list[str]:
    """The :data:`PAIR_GROUPS` a domain pair belongs to."""
    groups = ["all_pairs"]
    quick = "quickdraw" in (domain_a, domain_b)
    groups.append("with_quickdraw" if quick else "excluding_quickdraw")
    if test_domain is not None and test_domain in (domain_a, domain_b):
        groups.append("with_test_domain")
    return groups


def pair_group_summary(summary: pd.DataFrame, test_domain: str | None = None) -> pd.DataFrame:
    """Average the per-pair class means of :func:`aggregate` over each domain-pair group.

    Returns rows per (run, setup, test_domain, seed; those of these columns the table has,
    so runs, seeds and test domains are never pooled) x (class_subset, site, metric,
    pair_group) with ``value`` = mean over the group's pairs of the class-mean, ``spread`` =
    std over those pairs, ``n_pairs``. "excluding_quickdraw" only averages pairs without
    quickdraw. "with_test_domain" uses ``test_domain``, default each row's ``test_domain``.
    """
    means = summary[summary["statistic"] == "mean"]
    rows = []
    keys = [c for c in (*RUN_KEYS, "class_subset", "site", "layer", "layer_index", "metric")
            if c in means.columns]
    for key, group in means.groupby(keys, dropna=False, sort=False):
        common = dict(zip(keys, key, strict=True))
        test = test_domain if test_domain is not None else common.get("test_domain")
        test = test if isinstance(test, str) else None
        membership = [pair_groups(a, b, test)
                      for a, b in zip(group["domain_a"], group["domain_b"], strict=True)]
        for name in PAIR_GROUPS:
            mask = np.array([name in m for m in membership], dtype=bool)
            vals = group["value"].to_numpy(dtype=float)[mask]
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                continue
            rows.append({**common, "pair_group": name,
                         "value": float(vals.mean()),
                         "spread": float(vals.std(ddof=1)) if vals.size > 1 else float("nan"),
                         "n_pairs": int(vals.size)})
    return pd.DataFrame(rows)
