"""The circuits experiment of a run: every (class, domain) circuit, compared across domains.

:func:`run_circuits` loads a run's checkpoint as a hooked tower with a zero-shot head over all
classes of the data root (cosine logits, the prompt ensemble of :mod:`training.zeroshot`), and
for every requested class and domain takes ``n_images`` seeded test images and computes node
effects (:mod:`interp.circuits.attribution`), edge weights between kept nodes (:mod:`interp.circuits.edges`),
the circuit (:mod:`interp.circuits.circuit`) and optionally its faithfulness. Each (class, domain)
result is cached under ``<out>/cache/`` in a file named by a hash of the model weights, the
input images (a digest of the decoded, normalised pixels, so an image edited in place
invalidates its entries), the labels and the settings that affect it (written atomically), so an
interrupted run resumes where it stopped and a rerun with, e.g., another ``top_k`` or WL
``h`` recomputes nothing heavy. Outputs (``<out>`` = ``<run>/circuits`` by default):

* ``circuits/<class>/<domain>.json``: the circuits (:class:`interp.circuits.circuit.Circuit`);
* ``circuit_nodes.csv``, ``circuit_edges.csv``: kept nodes (``node_effect``) and edges
  (``edge_weight``) of every circuit, long form;
* ``faithfulness.csv``: faithfulness / completeness of every circuit and its random controls
  (always written; with faithfulness off it holds only the header);
* ``comparison.csv``: per class and domain pair, node Jaccard per site, edge Jaccard, WL
  kernel; ``comparison_summary.csv``: over held-out / seen / all classes (mean, std, n);
  ``comparison_groups.csv``: averaged over domain-pair groups;
* figures drawn from those tables (:mod:`interp.plots.circuits`), of the measured circuits;
* ``controls.csv`` (:mod:`interp.controls`): per metric, site, domain pair, class subset and
  reference, the class means of value and reference, their excess and a bootstrap interval
  over classes.

References (``settings.references``): ``comparison.csv``, ``comparison_summary.csv`` and
``comparison_groups.csv`` have a ``reference`` column: ``"none"`` (the measured circuits),
``"init"`` (the circuits of the run's epoch-0 checkpoint on the same images, cached like the
others), ``"class-shuffle"`` (the circuit of ``(c, A)`` against that of ``(c', B)``, ``c -> c'`` a
derangement of the classes seeded by ``settings.seed``; no new circuits) and ``"seed"`` (the
circuits of the run ``settings.seed_reference`` at ``epoch``, default its latest).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from domainlens.experiments.inputs import ReferenceSettings, load_inputs, write_table
from interp.circuits.attribution import (
    BASELINES,
    NodeEffects,
    cache_key,
    check_node_sites,
    check_options,
    node_effects,
    tensor_digest,
)
from interp.circuits.circuit import (
    EDGE_RANKS,
    Circuit,
    build_circuit,
    check_fraction,
    faithfulness_table,
    select_nodes,
)
from interp.circuits.compare import NEIGHBOURS, aggregate, compare_domains, pair_group_summary
from interp.circuits.edges import EDGE_METHODS, EdgeWeights, edge_weights, site_parents
from training.util.files import torch_save
from training.util.validate import check_choice

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from domainlens.experiments.inputs import AnalysisOptions, ModelSource

CACHE_FORMAT = 2  # 2: keyed by the digest of the input pixels

#: The first columns of ``faithfulness.csv`` (:func:`interp.circuits.circuit.faithfulness_table`'s);
#: the run's (``run``, ``setup``, ...), ``class_name`` and ``domain`` follow.
FAITH_COLUMNS: tuple[str, ...] = ("circuit", "draw", "metric", "value")


@dataclass(frozen=True)
class CircuitSettings(ReferenceSettings):
    """Settings of a circuits experiment.

    Defaults: the paper's metric (true-class cosine logit), zero baseline, top 10% of units
    per site, top-3 incoming edges ranked by signed weight, WL kernel from successors
    (``neighbours="out"``), 10 IG steps with the left Riemann rule -- but NOT the paper's
    attribution method: nodes default to attribution patching (``method="atp"``) and edges to
    gradient x activation (``edge_method="gxa"``), one pass each instead of 10. The paper
    computes both by 10-step integrated gradients from a zero baseline: ``method="ig"`` (or
    ``"ig_loop"``), ``edge_method="ig"``, ``steps=10``, ``baseline="zero"``, ``rule="left"``
    (the ``paper`` config sets these). Its edge IG integrates the squared change of the
    downstream unit, ours the metric's gradient through it (:mod:`interp.circuits.edges`).

    ``n_images``: test images per (class, domain), exactly (fewer available is an error);
    ``fraction``/``threshold``: node selection (one of them, in (0, 1]); ``top_k``/``edge_rank``:
    incoming edges kept per node; ``n_reference_per_class``: images per class of a domain in
    the reference set of the mean baseline / mean ablation.
    """

    n_images: int = 20
    sites: tuple[str, ...] | None = None
    metric: str = "logit"
    method: str = "atp"
    steps: int = 10
    rule: str = "left"
    baseline: str = "zero"
    fraction: float | None = 0.1
    threshold: float | None = None
    edge_method: str = "gxa"
    top_k: int | None = 3
    edge_rank: str = "signed"
    wl_h: int = 2
    neighbours: str = "out"
    faithfulness: bool = False
    n_random: int = 5
    n_reference_per_class: int = 2
    seed: int = 0
    batch_size: int = 32

    def validate(self) -> CircuitSettings:
        """Raise ``ValueError`` naming a bad value and the allowed ones; return ``self``."""
        check_options(self.method, self.baseline, self.steps, self.rule)
        check_choice("baseline", self.baseline, BASELINES)
        check_choice("edge method", self.edge_method, EDGE_METHODS)
        check_choice("edge rank", self.edge_rank, EDGE_RANKS)
        check_choice("neighbours", self.neighbours, NEIGHBOURS)
        if self.threshold is not None:
            check_fraction(self.threshold, "threshold")
        elif self.fraction is not None:
            check_fraction(self.fraction, "fraction")
        else:
            raise ValueError("give a fraction or a threshold, both in (0, 1]")
        for name in ("n_images", "n_reference_per_class", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None for all edges), got {self.top_k}")
        if self.wl_h < 0:
            raise ValueError(f"wl_h must be >= 0, got {self.wl_h}")
        if self.n_random < 0:
            raise ValueError(f"n_random must be >= 0, got {self.n_random}")
        self.check_references()
        return self

    def heavy_key(self) -> dict[str, Any]:
        """The settings a cached (class, domain) result depends on."""
        keys = ("n_images", "sites", "metric", "method", "steps", "rule", "baseline", "fraction",
                "threshold", "edge_method", "faithfulness", "n_random", "n_reference_per_class",
                "seed")
        return {k: getattr(self, k) for k in keys}


@dataclass
class CircuitResults:
    """Tables and paths of a circuits experiment."""

    out: Path
    nodes: pd.DataFrame
    edges: pd.DataFrame
    faithfulness: pd.DataFrame
    comparison: pd.DataFrame
    summary: pd.DataFrame
    groups: pd.DataFrame
    circuit_files: dict[tuple[str, str], Path]
    figures: list[Path]
    controls: pd.DataFrame | None = None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def check_classes_domains(
    classes: Sequence[str] | None, domains: Sequence[str] | None, all_classes: Sequence[str],
    available: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Validate requested classes and domains against the data root; defaults: all."""
    classes = list(all_classes) if classes is None else list(dict.fromkeys(classes))
    unknown = [c for c in classes if c not in all_classes]
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; classes of the data root: {list(all_classes)}")
    if not classes:
        raise ValueError("no classes given")
    domains = list(available) if domains is None else list(dict.fromkeys(domains))
    bad = [d for d in domains if d not in available]
    if bad:
        raise ValueError(f"unknown domain(s) {bad}; domains with test splits here: {list(available)}")
    if len(domains) < 1:
        raise ValueError("no domains given")
    return classes, domains


def run_circuits(
    source: str | Path | ModelSource, classes: Sequence[str] | None = None, *,
    settings: CircuitSettings | None = None, draw_class: str | None = None,
    progress: bool = True, **options: Unpack[AnalysisOptions],
) -> CircuitResults:
    """Circuits of every (class, domain) of a model and their comparison (module docstring).

    ``source``: a run directory or any model source, ``options``:
    :class:`~.inputs.AnalysisOptions` (a non-run source needs ``data_root`` and ``out`` and has
    only the ``class-shuffle`` reference). ``data_root``: default the run's ``mixture.json``
    ``spec.data_root``; ``classes``/``domains``: default all classes / every domain with a
    test split; ``draw_class``: the class whose circuits are drawn per domain (default: the
    first class).

    Speed on CPU: the tiny models are too small for intra-op threads to pay off; on a busy
    2-core machine one torch thread was ~7x faster than two (1.5 s vs 11.5 s per tiny-ViT
    circuit). To use several cores, run several processes on disjoint ``classes`` with the
    same ``out``: results are cached per (class, domain), so a final run over all classes
    only assembles the tables.
    """
    from domainlens import layout
    from interp.controls import CONTROLS_FILE, shuffle_pairing
    from interp.hooked.activations import select_per_class
    from interp.plots.circuits import (
        plot_circuits_for_class,
        plot_node_sharing,
        plot_similarity_heatmaps,
    )
    from interp.plots.cka import save_figure
    from training.domainnet import available_domains, load_index

    settings = (settings or CircuitSettings()).validate()
    references_asked = settings.check_references()
    domains = options.get("domains")
    inputs = load_inputs(source, out_name=layout.CIRCUITS_DIR, at_least=1,
                         references=references_asked, seed_reference=settings.seed_reference,
                         clip_only="circuits", **{**options, "domains": None, "cache_dir": ""})
    run, spec, device, out = inputs.run, inputs.info, inputs.device, inputs.out
    classes, domains = check_classes_domains(classes, domains, spec.classes,
                                             available_domains(spec.data_root))
    draw = draw_class if draw_class is not None else classes[0]
    if draw not in classes:  # checked before any work, not after every circuit
        raise ValueError(f"draw_class {draw!r} is not among the computed classes {classes}")
    cache_dir = out / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta = spec.meta(model=True)

    # ---- select images, failing fast on classes with too few
    indexes = {d: load_index(spec.data_root, [d], splits=("test",)) for d in domains}
    chosen: dict[tuple[str, str], pd.DataFrame] = {}
    short = []
    for d in domains:
        for c in classes:
            rows = indexes[d][indexes[d]["class_name"] == c]
            if len(rows) < settings.n_images:
                short.append(f"{c}/{d}: {len(rows)}")
            else:
                chosen[(c, d)] = select_per_class(rows, settings.n_images, settings.seed)
    if short:
        raise ValueError(
            f"fewer test images than the {settings.n_images} requested (n_images / --n-images) for "
            f"(class/domain: available) {short[:10]}{' ...' if len(short) > 10 else ''}; "
            "lower n_images or leave those classes out"
        )
    common = dict(spec=spec, classes=classes, domains=domains, chosen=chosen, indexes=indexes,
                  settings=settings, cache_dir=cache_dir, device=device, progress=progress)
    computed, labels_by_site = _compute_circuits(run, meta, desc="circuits", **common)

    # ---- per (class, domain): circuit files and long tables
    node_rows, edge_rows, faith_rows = [], [], []
    circuits: dict[tuple[str, str], Circuit] = {}
    files: dict[tuple[str, str], Path] = {}
    for (c, d), (circuit, payload) in computed.items():
        circuits[(c, d)] = circuit
        files[(c, d)] = circuit.save(out / "circuits" / _safe(c) / f"{_safe(d)}.json")
        nodes, edges_frame = circuit.to_frames()
        row_meta = {**meta, "class_name": c, "domain": d}
        node_rows.append(nodes.assign(**row_meta, metric="node_effect").rename(columns={"score": "value"}))
        edge_rows.append(edges_frame.assign(**row_meta, metric="edge_weight").rename(columns={"weight": "value"}))
        if payload.get("faithfulness") is not None:
            faith_rows.append(pd.DataFrame(payload["faithfulness"]).assign(**row_meta))

    nodes_table = pd.concat(node_rows, ignore_index=True)
    edges_table = pd.concat(edge_rows, ignore_index=True)
    faith_table = (pd.concat(faith_rows, ignore_index=True) if faith_rows
                   else pd.DataFrame(columns=[*FAITH_COLUMNS, *meta, "class_name", "domain"]))

    # ---- comparison of the measured circuits and of every reference (same code path)
    def compare(found: dict[tuple[str, str], Circuit], found_meta: dict[str, Any]) -> pd.DataFrame:
        return compare_domains(found, h=settings.wl_h, neighbours=settings.neighbours,
                               labels=labels_by_site, meta=found_meta)

    tables = {"none": compare(circuits, meta)}
    if "init" in references_asked:  # epoch 0 analysed already: the same circuits
        if run.epoch == 0:
            tables["init"] = tables["none"]
        else:
            found, _ = _compute_circuits(inputs.checkpoint(0), meta, desc="circuits (epoch 0)",
                                         **common)
            tables["init"] = compare({k: v[0] for k, v in found.items()}, meta)
    if "class-shuffle" in references_asked:
        if len(classes) < 2:
            warnings.warn(f"class-shuffle reference skipped: it needs at least 2 classes, got {classes}",
                          stacklevel=2)
        else:
            tables["class-shuffle"] = _class_shuffle_comparison(
                circuits, classes, domains, shuffle_pairing(classes, settings.seed), compare, meta)
    if "seed" in references_asked:
        other = inputs.seed_run(settings.seed_reference)
        if other.kind != "clip":
            raise ValueError(f"seed reference run {settings.seed_reference} is a {other.kind!r} run")
        other_meta = other.info.meta(model=True)
        found, _ = _compute_circuits(other, other_meta, desc="circuits (seed run)", **common)
        tables["seed"] = compare({k: v[0] for k, v in found.items()}, other_meta)

    parts, summaries, group_parts = [], [], []
    for reference, table in tables.items():
        table = table.assign(class_subset=table["class_name"].map(spec.class_subset))
        parts.append(table.assign(reference=reference))
        part_summary = aggregate(table.drop(columns=["class_subset"]), spec.heldout)
        summaries.append(part_summary.assign(reference=reference))
        group_parts.append(pair_group_summary(part_summary, spec.test_domain).assign(reference=reference))
    # the comparison tables keep interp's run columns; a model's label is its run's name
    comparison, summary, groups = (_with_model(pd.concat(p, ignore_index=True))
                                   for p in (parts, summaries, group_parts))
    controls = _controls(comparison, spec, settings, meta)
    for frame, name in ((nodes_table, "circuit_nodes.csv"), (edges_table, "circuit_edges.csv"),
                        (faith_table, "faithfulness.csv"), (comparison, "comparison.csv"),
                        (summary, "comparison_summary.csv"), (groups, "comparison_groups.csv"),
                        (controls, CONTROLS_FILE)):
        write_table(out / name, frame)
    measured = summary[summary["reference"] == "none"].drop(columns=["reference"])

    figures = []
    if len(domains) >= 2:
        fig = plot_node_sharing(measured, highlight=spec.test_domain)
        figures.append(out / "node_sharing.png")
        save_figure(fig, figures[-1], dpi=120, bbox_inches="tight")
        fig = plot_similarity_heatmaps(measured, domains=domains)
        figures.append(out / "circuit_similarity.png")
        save_figure(fig, figures[-1], dpi=120, bbox_inches="tight")
    cls = draw
    fig = plot_circuits_for_class({d: files[(cls, d)] for d in domains}, cls)
    figures.append(out / f"circuits_{_safe(cls)}.png")
    save_figure(fig, figures[-1], dpi=120, bbox_inches="tight")
    return CircuitResults(out, nodes_table, edges_table, faith_table, comparison, summary, groups,
                          files, figures, controls)


def _with_model(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``model`` column first, from its ``run`` column (a model's label is the
    name of its run, or of the non-run source: :attr:`training.runinfo.RunInfo.model`)."""
    table = table.drop(columns=["model"], errors="ignore")
    table.insert(0, "model", table["run"] if "run" in table.columns else None)
    return table


def _compute_circuits(
    run: Any, meta: dict[str, Any], *, spec: Any, classes: Sequence[str], domains: Sequence[str],
    chosen: dict[tuple[str, str], pd.DataFrame], indexes: dict[str, pd.DataFrame],
    settings: CircuitSettings, cache_dir: Path, device: str, progress: bool, desc: str,
) -> tuple[dict[tuple[str, str], tuple[Circuit, dict[str, Any]]], dict[str, str]]:
    """The circuit of every (class, domain) of one checkpoint on the chosen images, through
    the (class, domain) cache (keyed by the weights, so every checkpoint has its own entries).
    Returns ``({(class, domain): (circuit, payload)}, {site: label})``."""
    from interp.hooked.activations import model_digest, select_per_class
    from interp.hooked.head import ZeroShotHead
    from interp.interventions.units import site_label
    from training.zeroshot import class_text_embeddings, class_texts

    model = run.model.eval()
    digest = model_digest(model)
    text_file = cache_dir / f"text-{cache_key(model=digest, classes=list(spec.classes))}.pt"
    if text_file.is_file():
        embeddings = torch.load(text_file, weights_only=True)
    else:
        embeddings = class_text_embeddings(run.source, run.text_tokenizer,
                                           class_texts(spec.classes))
        torch_save(embeddings, text_file)
    model.set_head(ZeroShotHead(embeddings.to(device), class_names=spec.classes))
    label_of = {c: i for i, c in enumerate(spec.classes)}

    sites = check_node_sites(model, settings.sites)
    labels_by_site = {s: site_label(model, s) for s in sites}
    parents = site_parents(model, sites)
    references: dict[str, torch.Tensor] = {}

    def reference_for(domain: str) -> torch.Tensor:
        if domain not in references:
            rows = select_per_class(indexes[domain], settings.n_reference_per_class, settings.seed + 1)
            references[domain] = run.images(rows["path"].tolist())
        return references[domain]

    found: dict[tuple[str, str], tuple[Circuit, dict[str, Any]]] = {}
    pairs = [(c, d) for c in classes for d in domains]
    for c, d in tqdm(pairs, desc=desc, disable=not progress):
        rows = chosen[(c, d)]
        # the pixels the model sees (decoding a few small images is cheap next to the
        # attribution), so an image edited in place, whatever its mtime, is recomputed
        images = run.images(rows["path"].tolist())
        key = cache_key(format=CACHE_FORMAT, model=digest, images=tensor_digest(images), label=label_of[c],
                        classes=list(spec.classes), sites=sites, settings=settings.heavy_key(),
                        reference=settings.n_reference_per_class)
        target = cache_dir / f"{_safe(c)}__{_safe(d)}-{key}.pt"
        if target.is_file():
            payload = torch.load(target, map_location="cpu", weights_only=True)
        else:
            payload = _compute_one(model, images, label_of[c], sites, parents, settings,
                                   reference_for(d) if (settings.baseline == "mean"
                                                        or settings.faithfulness) else None,
                                   device)
            torch_save(payload, target)
        effects = NodeEffects(**payload["nodes"])
        edges = EdgeWeights.from_payload(payload["edges"])
        circuit = build_circuit(effects, edges, top_k=settings.top_k, rank=settings.edge_rank,
                                labels=labels_by_site,
                                meta={**meta, "class_name": c, "domain": d,
                                      **{k: v for k, v in asdict(settings).items()
                                         if k not in ("sites", "seed_reference", "references")}})
        found[(c, d)] = (circuit, payload)
    return found, labels_by_site


def _class_shuffle_comparison(
    circuits: dict[tuple[str, str], Circuit], classes: Sequence[str], domains: Sequence[str],
    pairing: dict[str, str], compare: Callable[..., pd.DataFrame], meta: dict[str, Any],
) -> pd.DataFrame:
    """The class-shuffle reference: per domain pair (A, B) and class ``c``, the circuit of
    ``(c, A)`` against that of ``(pairing[c], B)``, by the same comparison (rows named by
    ``c``)."""
    parts = []
    for a, b in itertools.combinations(domains, 2):
        mixed: dict[tuple[str, str], Circuit] = {}
        for c in classes:
            mixed[(c, a)] = circuits[(c, a)]
            mixed[(c, b)] = circuits[(pairing[c], b)]
        parts.append(compare(mixed, meta))
    return pd.concat(parts, ignore_index=True)


def _controls(comparison: pd.DataFrame, spec: Any, settings: CircuitSettings,
              meta: dict[str, Any]) -> pd.DataFrame:
    """``controls.csv``: per (metric, site, domain pair, class subset, reference) the mean over
    classes of value and reference, their excess and a bootstrap interval over classes."""
    from interp.controls import CONTROL_KEYS, controls_frame, excess_table

    table = comparison.rename(columns={"metric": "measure"})
    keep = ["measure", "site", "domain_a", "domain_b", "class_name", "value", "reference"]
    parts = []
    for subset in ("held-out", "seen", "all"):
        rows = table if subset == "all" else table[table["class_name"].map(spec.class_subset) == subset]
        parts.append(rows[keep].assign(class_subset=subset))
    long = pd.concat(parts, ignore_index=True)
    values = long[long["reference"] == "none"].drop(columns=["reference"])
    references = long[long["reference"] != "none"]
    excess = excess_table(values, references, by=list(CONTROL_KEYS), n_boot=settings.n_boot,
                          seed=settings.seed)
    return controls_frame(excess, meta)


def _compute_one(model, images, label, sites, parents, settings: CircuitSettings,
                 reference, device) -> dict[str, Any]:
    """Node effects, edge weights and faithfulness of one (class, domain); ``images``
    ``(N, 3, S, S)``, the class's inputs."""
    images = images.to(device)
    labels = torch.full((images.shape[0],), label, dtype=torch.long)
    common = dict(metric=settings.metric, baseline=settings.baseline, reference=reference,
                  batch_size=settings.batch_size, progress=False)
    effects = node_effects(model, images, labels, sites, method=settings.method,
                           steps=settings.steps, rule=settings.rule, **common)
    kept = select_nodes(effects, fraction=settings.fraction, threshold=settings.threshold)
    edges = edge_weights(model, images, labels, kept, sites, method=settings.edge_method,
                         steps=settings.steps, rule=settings.rule, parents=parents, **common)
    faith = None
    if settings.faithfulness:
        faith = faithfulness_table(model, images, labels, kept, reference=reference, sites=sites,
                                   metric=settings.metric, n_random=settings.n_random,
                                   seed=settings.seed, batch_size=settings.batch_size)
        faith = faith.to_dict(orient="list")
    return {"format": CACHE_FORMAT, "nodes": effects.to_payload(), "edges": edges.to_payload(),
            "faithfulness": faith}


