"""Circuits: kept nodes and edges as a graph, saved, loaded, drawn and checked for faithfulness.

* :func:`select_nodes`: per site ("layer"), the top ``fraction`` of units by ``|effect|``
  (the paper: 10%; at least one unit per site), or the units with
  ``|effect| >= threshold * max |effect|`` of that site; both numbers must be in (0, 1].
* :func:`select_edges`: per kept downstream node, the ``top_k`` incoming edges (from kept
  nodes of its parent sites) ranked by ``|weight|`` (``rank="abs"``) or by signed weight,
  largest first (``rank="signed"``, the paper's choice: with our sign convention a positive
  weight means the upstream unit raises the metric through this edge, so an inhibitory edge
  is kept only when a node has fewer than ``top_k`` positive ones, as the paper's top-k).
* :class:`Circuit`: a ``networkx.DiGraph`` whose nodes are ``"site#unit"`` strings with
  attributes ``site``, ``unit``, ``layer`` (index of the site), ``label`` and ``score`` (node
  effect), and whose edges carry ``weight``; saved as JSON (node-link) or GraphML.
* :func:`faithfulness_table`: mean-ablate everything outside the circuit, ``F(C)``, and report
  ``(F(C) - F(empty)) / (F(M) - F(empty))``; completeness ablates the circuit itself,
  ``(F(M \\ C) - F(empty)) / (F(M) - F(empty))`` (low = the circuit holds what matters);
  both also for seeded random circuits with the same number of units per site. Ablations
  are :mod:`interp.interventions.ablation`'s (mean over reference images, per position).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from interp.circuits.attribution import NodeEffects
from interp.circuits.edges import EdgeWeights
from interp.hooked.base import HookedImageTower, in_eval_mode
from interp.interventions.units import PatchUnit
from interp.metrics import MetricFn, evaluate_metric, faithfulness
from training.util.files import atomic_path, write_text
from training.util.seeding import seeded_rng
from training.util.validate import check_choice

EDGE_RANKS: tuple[str, ...] = ("abs", "signed")
FORMATS: tuple[str, ...] = (".json", ".graphml")


def check_fraction(value: float, name: str) -> float:
    """Return ``value`` as float or raise ``ValueError`` if it is not in (0, 1]."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


def node_key(site: str, unit: int) -> str:
    """Graph node id of a unit: ``"site#unit"``."""
    return f"{site}#{int(unit)}"


def parse_node(key: str) -> tuple[str, int]:
    """``"site#unit"`` -> ``(site, unit)``."""
    site, unit = key.rsplit("#", 1)
    return site, int(unit)


# --------------------------------------------------------------------------- selection
def select_nodes(
    effects: NodeEffects | Mapping[str, Tensor],
    fraction: float | None = 0.1,
    threshold: float | None = None,
) -> dict[str, list[int]]:
    """Kept units per site: ``{site: sorted unit indices}`` (see the module docstring).

    Give either ``fraction`` (``ceil(fraction * U)`` units with the largest ``|effect|``; ties
    broken by unit index) or ``threshold`` (relative to the site's largest ``|effect|``).
    """
    table = effects.effects if isinstance(effects, NodeEffects) else effects
    if threshold is not None:
        threshold = check_fraction(threshold, "threshold")
    elif fraction is not None:
        fraction = check_fraction(fraction, "fraction")
    else:
        raise ValueError("give a fraction or a threshold, both in (0, 1]")
    kept = {}
    for site, values in table.items():
        mag = torch.as_tensor(values).double().abs()
        if threshold is not None:
            top = float(mag.max()) if mag.numel() else 0.0
            units = [] if top == 0.0 else torch.nonzero(mag >= threshold * top).flatten().tolist()
        else:
            k = max(1, math.ceil(fraction * mag.numel() - 1e-9))
            order = sorted(range(mag.numel()), key=lambda u: (-float(mag[u]), u))
            units = order[:k]
        kept[site] = sorted(int(u) for u in units)
    return kept


def select_edges(
    edges: EdgeWeights, top_k: int | None = 3, rank: str = "signed"
) -> list[tuple[str, int, str, int, float]]:
    """Per kept downstream unit, its ``top_k`` incoming edges: ``(up, u, down, d, weight)``.

    ``rank``: ``"abs"`` (largest ``|weight|``) or ``"signed"`` (largest weight); ``top_k=None``
    keeps all. Ties are broken by (upstream site order, unit index) for determinism.
    """
    check_choice("edge rank", rank, EDGE_RANKS)
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    incoming: dict[tuple[str, int], list[tuple[float, int, str, int, float]]] = {}
    order = {s: i for i, s in enumerate(edges.kept)}
    for (up, down), w in edges.weights.items():
        for i, d in enumerate(edges.kept[down]):
            for j, u in enumerate(edges.kept[up]):
                weight = float(w[i, j])
                key = abs(weight) if rank == "abs" else weight
                incoming.setdefault((down, d), []).append((key, order.get(up, 0), up, u, weight))
    chosen = []
    for (down, d), cands in incoming.items():
        cands.sort(key=lambda c: (-c[0], c[1], c[3]))
        for _, _, up, u, weight in cands if top_k is None else cands[: int(top_k)]:
            chosen.append((up, u, down, d, weight))
    return chosen


# --------------------------------------------------------------------------- the graph
class Circuit:
    """A circuit: a ``networkx.DiGraph`` of kept units and edges, with scores and metadata.

    ``graph.graph`` holds ``sites`` (ordered list), ``labels`` (site -> short label) and
    ``meta`` (free-form: run, class, domain, settings).
    """

    def __init__(self, graph: nx.DiGraph) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"expected a networkx DiGraph, got {type(graph).__name__}")
        graph.graph.setdefault("sites", [])
        graph.graph.setdefault("labels", {})
        graph.graph.setdefault("meta", {})
        self.graph = graph

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_parts(
        cls,
        sites: Sequence[str],
        kept: Mapping[str, Sequence[int]],
        scores: Mapping[str, Tensor] | None = None,
        edges: Sequence[tuple[str, int, str, int, float]] = (),
        labels: Mapping[str, str] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Circuit:
        """Build from kept units (``{site: units}``), optional node scores ``{site: (U,)}`` and
        edges ``(up_site, up_unit, down_site, down_unit, weight)``."""
        sites = list(sites)
        index = {s: i for i, s in enumerate(sites)}
        labels = {s: (labels or {}).get(s, s) for s in sites}
        graph = nx.DiGraph(sites=sites, labels=labels, meta=dict(meta or {}))
        for site, units in kept.items():
            if site not in index:
                raise ValueError(f"kept units for unknown site {site!r}; sites: {sites}")
            for u in units:
                score = float(scores[site][u]) if scores is not None else float("nan")
                graph.add_node(node_key(site, u), site=site, unit=int(u), layer=index[site],
                               label=labels[site], score=score)
        for up, u, down, d, weight in edges:
            a, b = node_key(up, u), node_key(down, d)
            missing = [k for k in (a, b) if k not in graph]
            if missing:
                raise ValueError(f"edge {a} -> {b} touches node(s) {missing} outside the circuit")
            if index[up] >= index[down]:
                raise ValueError(f"edge {a} -> {b} does not go forward (site order {sites})")
            graph.add_edge(a, b, weight=float(weight))
        return cls(graph)

    # ----------------------------------------------------------------- views
    @property
    def sites(self) -> list[str]:
        """Sites in forward order."""
        return list(self.graph.graph["sites"])

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form metadata."""
        return self.graph.graph["meta"]

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def nodes_by_site(self) -> dict[str, set[int]]:
        """``{site: kept unit indices}`` (every site, possibly empty)."""
        out: dict[str, set[int]] = {s: set() for s in self.sites}
        for _, data in self.graph.nodes(data=True):
            out.setdefault(data["site"], set()).add(int(data["unit"]))
        return out

    def node_set(self) -> set[tuple[str, int]]:
        """All nodes as ``(site, unit)``."""
        return {(d["site"], int(d["unit"])) for _, d in self.graph.nodes(data=True)}

    def edge_set(self) -> set[tuple[tuple[str, int], tuple[str, int]]]:
        """All edges as ``((up_site, up_unit), (down_site, down_unit))``."""
        return {(parse_node(a), parse_node(b)) for a, b in self.graph.edges}

    def to_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(nodes, edges)`` tables: site, layer, label, unit, score / up_*, down_*, weight."""
        nodes = pd.DataFrame(
            [{"site": d["site"], "layer_index": d["layer"], "layer": d["label"], "unit": d["unit"],
              "score": d["score"]} for _, d in self.graph.nodes(data=True)],
            columns=["site", "layer_index", "layer", "unit", "score"],
        )
        edges = pd.DataFrame(
            [{"up_site": parse_node(a)[0], "up_unit": parse_node(a)[1],
              "down_site": parse_node(b)[0], "down_unit": parse_node(b)[1], "weight": w}
             for a, b, w in self.graph.edges(data="weight")],
            columns=["up_site", "up_unit", "down_site", "down_unit", "weight"],
        )
        return nodes, edges

    # ----------------------------------------------------------------- io
    def save(self, path: str | Path) -> Path:
        """Write as JSON (node-link) or GraphML, chosen by the suffix; atomic."""
        path = Path(path)
        check_choice("circuit file type", path.suffix, FORMATS)
        if path.suffix == ".json":
            data = nx.node_link_data(self.graph, edges="edges")
            return write_text(path, json.dumps(data, indent=1, default=_jsonable))
        graph = self.graph.copy()
        graph.graph = {k: json.dumps(v, default=_jsonable) for k, v in self.graph.graph.items()}
        with atomic_path(path) as tmp:
            nx.write_graphml(graph, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        """Read what :meth:`save` wrote."""
        path = Path(path)
        check_choice("circuit file type", path.suffix, FORMATS)
        if path.suffix == ".json":
            graph = nx.node_link_graph(json.loads(path.read_text()), directed=True, edges="edges")
        else:
            graph = nx.read_graphml(path)
            graph.graph = {k: json.loads(graph.graph[k]) for k in ("sites", "labels", "meta")
                           if isinstance(graph.graph.get(k), str)}
            for _, data in graph.nodes(data=True):
                data["unit"], data["layer"] = int(data["unit"]), int(data["layer"])
        return cls(nx.DiGraph(graph))

    # ----------------------------------------------------------------- drawing
    def draw(self, ax: Any = None, title: str | None = None, max_nodes_per_site: int = 24) -> Figure:
        """Layered drawing: one column per site (forward order), nodes sorted by score; node
        colour = sign of the score, size ~ ``|score|``; edge width ~ ``|weight|``, red/blue =
        positive/negative. At most ``max_nodes_per_site`` nodes per column (largest ``|score|``)."""
        fig = ax.figure if ax is not None else Figure(figsize=(1.6 * max(2, len(self.sites)), 5))
        ax = ax if ax is not None else fig.add_subplot(1, 1, 1)
        pos, shown = {}, set()
        for i, site in enumerate(self.sites):
            nodes = [(k, d) for k, d in self.graph.nodes(data=True) if d["site"] == site]
            nodes.sort(key=lambda kd: -abs(_finite(kd[1]["score"])))
            nodes = nodes[:max_nodes_per_site]
            nodes.sort(key=lambda kd: -_finite(kd[1]["score"]))
            for j, (k, _) in enumerate(nodes):
                pos[k] = (i, (j + 0.5) / max(1, len(nodes)))
                shown.add(k)
        weights = [abs(w) for a, b, w in self.graph.edges(data="weight") if a in shown and b in shown]
        wmax = max(weights) if weights else 1.0
        for a, b, w in self.graph.edges(data="weight"):
            if a in shown and b in shown:
                (x0, y0), (x1, y1) = pos[a], pos[b]
                ax.plot([x0, x1], [y0, y1], color="tab:red" if w >= 0 else "tab:blue",
                        lw=0.3 + 2.5 * abs(w) / (wmax or 1.0), alpha=0.6, zorder=1)
        scores = [abs(_finite(self.graph.nodes[k]["score"])) for k in shown]
        smax = max(scores) if scores else 1.0
        for k in shown:
            s = _finite(self.graph.nodes[k]["score"])
            ax.scatter(*pos[k], s=15 + 120 * abs(s) / (smax or 1.0), zorder=2,
                       color="tab:red" if s >= 0 else "tab:blue", edgecolors="black", linewidths=0.3)
        labels = self.graph.graph.get("labels", {})
        ax.set_xticks(range(len(self.sites)), [labels.get(s, s) for s in self.sites], rotation=45,
                      ha="right", fontsize=7)
        ax.set_yticks([])
        ax.set_xlim(-0.5, len(self.sites) - 0.5)
        ax.set_ylim(-0.02, 1.02)
        if title:
            ax.set_title(title, fontsize=9)
        return fig


def _finite(x: float) -> float:
    return 0.0 if x is None or not math.isfinite(float(x)) else float(x)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} into circuit metadata")


def build_circuit(
    effects: NodeEffects,
    edges: EdgeWeights | None,
    *,
    kept: Mapping[str, Sequence[int]] | None = None,
    top_k: int | None = 3,
    rank: str = "signed",
    labels: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Circuit:
    """A :class:`Circuit` from node effects, kept units (default: ``edges.kept``) and edges."""
    if kept is None:
        if edges is None:
            raise ValueError("give kept units or edge weights (which carry them)")
        kept = edges.kept
    chosen = select_edges(edges, top_k=top_k, rank=rank) if edges is not None else []
    return Circuit.from_parts(effects.sites, kept, effects.effects, chosen, labels=labels, meta=meta)


# --------------------------------------------------------------------------- faithfulness
def site_units(model: HookedImageTower, site: str, units: Sequence[int]) -> list[PatchUnit]:
    """:class:`~interp.interventions.units.PatchUnit` s covering ``units`` of ``site`` (heads for ``heads``
    sites, a channel set otherwise); empty list for no units."""
    units = sorted(int(u) for u in units)
    if not units:
        return []
    if model.site_layout(site) in ("heads", "head_result", "head_vector"):
        return [PatchUnit(site, head=u) for u in units]
    return [PatchUnit(site, channels=tuple(units))]


def random_circuits(
    kept: Mapping[str, Sequence[int]], sizes: Mapping[str, int], n: int, seed: int = 0
) -> list[dict[str, list[int]]]:
    """``n`` random unit sets with ``len(kept[site])`` of ``sizes[site]`` units per site, from a
    generator seeded with ``seed`` (the same seed gives the same circuits)."""
    rng = seeded_rng(seed)
    out = []
    for _ in range(n):
        out.append({s: sorted(rng.choice(sizes[s], size=len(kept.get(s, [])), replace=False).tolist())
                    for s in sizes})
    return out


@torch.no_grad()
def _ablated_metric(model, images, labels, units, values, metric, batch_size) -> Tensor:
    from interp.interventions.ablation import run_with_ablations

    out = []
    for start in range(0, images.shape[0], batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        logits = run_with_ablations(model, x, units, values) if units else model(x)
        out.append(evaluate_metric(metric, logits, y).double().cpu())
    return torch.cat(out)


@in_eval_mode
def faithfulness_table(
    model: HookedImageTower,
    images: Tensor,
    labels: Tensor,
    kept: Mapping[str, Sequence[int]],
    *,
    reference: Tensor,
    sites: Sequence[str] | None = None,
    metric: str | MetricFn = "logit",
    n_random: int = 10,
    seed: int = 0,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Faithfulness and completeness of a circuit and of random circuits of the same size.

    ``kept``: ``{site: units}`` (e.g. ``circuit.nodes_by_site()``); ``sites``: the sites whose
    units are ablated (default: the keys of ``kept``; a site missing from ``kept`` has no
    kept unit). ``reference``: images ``(N, 3, H, W)`` for the mean ablation. Returns rows
    ``circuit`` (``circuit`` | ``random``), ``draw`` (0.. for random), ``metric``
    (``faithfulness`` | ``completeness`` | ``F_circuit`` | ``F_complement`` | ``F_full`` |
    ``F_empty``), ``value``.
    """
    from interp.circuits.attribution import UNIT_AXIS, check_inputs, clean_activations
    from interp.interventions.ablation import ablation_values

    labels = check_inputs(model, images, labels)
    sites = list(kept) if sites is None else list(sites)
    model.check_sites(sites)
    unknown = [s for s in kept if s not in sites]
    if unknown:
        raise ValueError(f"kept units for site(s) {unknown} outside the ablated sites {sites}")
    if n_random < 0:
        raise ValueError(f"n_random must be >= 0, got {n_random}")
    device = next(model.parameters()).device
    images = images.to(device)
    shapes = {s: tuple(a.shape[1:]) for s, a in clean_activations(model, images[:1], sites).items()}
    sizes = {s: int(shapes[s][UNIT_AXIS[model.site_layout(s)] - 1]) for s in sites}
    for s, units in kept.items():
        bad = [u for u in units if not 0 <= int(u) < sizes[s]]
        if bad:
            raise ValueError(f"unit(s) {bad[:5]} out of range for site {s!r}: allowed 0..{sizes[s] - 1}")
    values = ablation_values(model, "mean", sites, reference=reference.to(device), batch_size=batch_size)

    def units_of(selection: Mapping[str, Sequence[int]], inside: bool) -> list[PatchUnit]:
        out: list[PatchUnit] = []
        for s in sites:
            chosen = {int(u) for u in selection.get(s, [])}
            picked = chosen if inside else set(range(sizes[s])) - chosen
            out += site_units(model, s, sorted(picked))
        return out

    def run(units: list[PatchUnit]) -> Tensor:
        return _ablated_metric(model, images, labels, units, values, metric, batch_size)

    full = run([])
    empty = run(units_of({}, inside=False))
    rows = [{"circuit": "model", "draw": 0, "metric": "F_full", "value": float(full.mean())},
            {"circuit": "model", "draw": 0, "metric": "F_empty", "value": float(empty.mean())}]
    circuits = [("circuit", 0, kept)] + [
        ("random", i, r) for i, r in enumerate(random_circuits(kept, sizes, n_random, seed))]
    for name, draw, selection in circuits:
        f_c = run(units_of(selection, inside=False))
        f_mc = run(units_of(selection, inside=True))
        rows += [
            {"circuit": name, "draw": draw, "metric": "faithfulness", "value": faithfulness(f_c, empty, full)},
            {"circuit": name, "draw": draw, "metric": "completeness", "value": faithfulness(f_mc, empty, full)},
            {"circuit": name, "draw": draw, "metric": "F_circuit", "value": float(f_c.mean())},
            {"circuit": name, "draw": draw, "metric": "F_complement", "value": float(f_mc.mean())},
        ]
    return pd.DataFrame(rows, columns=["circuit", "draw", "metric", "value"])
