"""The attribute-object experiment of ``domainlens reproduce`` (``[data] source = "ao"``).

:func:`plan_ao` turns the config's ``[ao]`` section into steps: one ``ao-data/<name>`` per
knob value (an AO root and its mixture, :func:`training.attributes.build_ao_dataset`), per
(knob, ``[train] seeds`` seed) a CLIP training run and, with ``[ao] supervised``, an
object-label baseline on the same mixture (``train/<run>``), their held-out / seen pair
evaluation (``eval/<run>``, :func:`training.attributes.evaluate_ao`) and the report.
:func:`write_ao_report` gathers the tables into ``results/ao_accuracy.csv``, summarises them
over seeds (``results/ao_summary.csv``) and draws held-out-pair accuracy against the training
captions' NMI (``results/ao_heldout_vs_nmi.png``), CLIP vs supervised, with the seed spread.
File names are :mod:`domainlens.layout`'s.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training.util.files import write_csv

from . import layout
from .config import ExperimentConfig, ao_specs
from .steps import Step, assign_keys

#: Modules whose code produces each AO step's outputs (part of the step keys).
AO_STEP_CODE: dict[str, tuple[str, ...]] = {
    "ao-data": ("training.attributes", "training.synth", "training.mixtures",
                "training.captions"),
    "eval": ("training.attributes", "training.evaluate", "training.zeroshot",
             "training.runinfo", "training.imagecache"),
    "cka": ("domainlens.ao_experiment", "training.attributes", "interp.similarity",
            "interp.hooked", "training.runinfo"),
    "report": ("domainlens.ao_experiment", "domainlens.report", "domainlens.layout",
               "interp.plots"),
}
#: Estimated images rendered per second (one process, 32 px).
AO_IMAGES_PER_SECOND = 400.0


def ao_runs(config: ExperimentConfig) -> list[tuple[float, int, str]]:
    """``(entanglement, seed, kind)`` of every run, knob-major, CLIP before supervised."""
    kinds = ("clip", "supervised") if config.ao.supervised else ("clip",)
    return [(float(e), int(s), k) for e in config.ao.entanglements for s in config.train.seeds
            for k in kinds]


def plan_ao(config: ExperimentConfig, progress: bool = True) -> list[Step]:
    """The AO experiment's steps in run order (keys assigned; module docstring)."""
    from .layout import RunPlan
    from .pipeline import STEP_CODE, _asdict, _bind, _train, _train_config, measure_throughput

    specs = ao_specs(config)
    train = config.train
    throughput, inference = measure_throughput(train.model, train.device, train.threads,
                                               train.batch_size)
    steps: list[Step] = []
    for knob, spec in specs.items():
        root = layout.ao_data_root(config, knob)
        n_images = spec.n_train + spec.n_test * len(spec.objects) * len(spec.colours) * len(
            spec.patterns)
        steps.append(Step(
            id=f"ao-data/{spec.name}", params={"spec": spec.to_dict()},
            run=_bind(_build, spec, root, progress),
            outputs=[root / "mixtures" / "real" / f"{spec.name}.tsv"],
            estimate=n_images / AO_IMAGES_PER_SECOND + 2, code=AO_STEP_CODE["ao-data"],
        ))
    train_params = {k: v for k, v in _asdict(train).items() if k not in ("seeds", "threads")}
    for knob, seed, kind in ao_runs(config):
        spec = specs[knob]
        run_id = layout.ao_run_id(knob, seed, kind)
        run_dir = layout.ao_run_dir(config, knob, seed, kind)
        tsv = layout.ao_data_root(config, knob) / "mixtures" / "real" / f"{spec.name}.tsv"
        plan = RunPlan(test_domain="real", setup="ao", seed=seed, mixture=tsv, run_dir=run_dir,
                       kind=kind)
        settings = _train_config(config, plan, progress)
        identity = {k: v for k, v in _asdict(settings).items()
                    if k not in ("mixture", "out", "progress")}
        step = Step(
            id=f"train/{run_id}", params={**train_params, "seed": seed, "kind": kind,
                                          "mixture": spec.name, "settings": identity},
            depends=[f"ao-data/{spec.name}"], run=lambda: None,
            outputs=[run_dir / "checkpoints" / f"epoch_{train.epochs}.pt"],
            estimate=spec.n_train * train.epochs / throughput + 5, code=STEP_CODE["train"],
        )
        step.run = _bind(_train, settings, train.threads, step, kind)  # the key is known late
        steps.append(step)
        n_test = spec.n_test * len(spec.objects) * len(spec.colours) * len(spec.patterns)
        steps.append(Step(
            id=f"eval/{run_id}", params={"batch_size": config.eval.batch_size},
            depends=[f"train/{run_id}"], run=_bind(_evaluate, config, run_dir),
            outputs=[run_dir / "eval" / "ao.csv"], estimate=3 * n_test / inference + 3,
            code=AO_STEP_CODE["eval"],
        ))
        if kind == "clip" and config.ao.cka:
            steps.append(Step(
                id=f"cka/{run_id}", params={"attribute": "colour", "references": ["init"]},
                depends=[f"train/{run_id}"], run=_bind(_attribute_cka, config, run_dir),
                outputs=[run_dir / "eval" / "ao_cka_colour.csv"],
                estimate=2 * n_test / inference + 5, code=AO_STEP_CODE["cka"],
            ))
    out = config.out_dir
    steps.append(Step(
        id="report", params={"config": config.inputs()},
        depends=[s.id for s in steps if s.id.startswith(("eval/", "cka/"))],
        run=_bind(write_ao_report, config),
        outputs=[out / layout.REPORT_MD, out / layout.REPORT_HTML], estimate=10.0,
        code=AO_STEP_CODE["report"],
    ))
    assign_keys(steps)
    return steps


def _build(spec, root: Path, progress: bool) -> None:
    from training.attributes import build_ao_dataset

    build_ao_dataset(spec, root, progress=progress)


def _evaluate(config: ExperimentConfig, run_dir: Path) -> None:
    from training.attributes import evaluate_ao

    from .pipeline import analysis_device, torch_threads

    with torch_threads(config.train.threads):
        evaluate_ao(run_dir, batch_size=config.eval.batch_size, device=analysis_device(config),
                    progress=False)


def _attribute_cka(config: ExperimentConfig, run_dir: Path) -> None:
    from .pipeline import analysis_device, torch_threads

    with torch_threads(config.train.threads):
        attribute_cka(run_dir, "colour", device=analysis_device(config), progress=False)


# ---------------------------------------------------------------- CKA across attribute values

#: Columns of :func:`attribute_cka` (``value_a``/``value_b``: the two attribute values).
ATTRIBUTE_CKA_COLUMNS: tuple[str, ...] = (
    "run", "kind", "seed", "entanglement", "nmi", "epoch", "reference", "attribute", "site",
    "layer", "layer_index", "value_a", "value_b", "n_classes", "kernel", "value",
)


def _attribute_inputs(run_dir: str | Path, attribute: str, epoch: int | None,
                      references: tuple[str, ...], device: str, kind: str | None = None):
    """What the attribute analyses share: ``(checkpoints, spec, values, root, test, nmi)``
    with ``checkpoints`` ``{"none": run[, "init": its epoch-0 checkpoint]}``, the attribute's
    values (at least two), the AO root, its test grid and the captions' NMI of the attribute.
    ``kind``: the run kind required (one line naming the run otherwise)."""
    from interp.hooked.runs import load_hooked_run
    from training.attributes import read_ao_images, spec_from_manifest
    from training.util.validate import check_choice, check_choices

    check_choices("references", references, ("init",))
    run = load_hooked_run(run_dir, epoch=epoch, device=device)
    if kind is not None and run.info.kind != kind:
        raise ValueError(f"attribute circuits attribute a CLIP's zero-shot logit; {run_dir} is a "
                         f"{run.info.kind!r} run")
    spec = spec_from_manifest(run.info.manifest)
    check_choice("attribute", attribute, list(spec.kinds()))
    values = spec.kinds()[attribute]
    if len(values) < 2:
        raise ValueError(f"attribute {attribute!r} has one value ({list(values)}): nothing to "
                         "compare")
    root = run.info.require_data()
    images = read_ao_images(root)
    test = images[images["split"] == "test"].reset_index(drop=True)
    checkpoints = {"none": run}
    if "init" in references:
        checkpoints["init"] = load_hooked_run(run_dir, epoch=0, device=device)
    nmi = (run.info.manifest.get("nmi") or {}).get(attribute, float("nan"))
    return checkpoints, spec, values, root, test, nmi


def attribute_cka(run_dir: str | Path, attribute: str = "colour", epoch: int | None = None,
                  kernel: str = "linear", references: tuple[str, ...] = ("init",),
                  batch_size: int = 64, device: str = "cpu", progress: bool = True,
                  write: bool = True) -> pd.DataFrame:
    """Layerwise CKA between the values of one attribute, the AO counterpart of cross-domain
    CKA (:func:`interp.similarity.cross_domain.cross_domain_cka` with the attribute value in
    place of the domain): for every pair of values (red vs blue), CKA between the two values'
    object-class-mean activation matrices of the run's test grid, rows aligned by object.
    High CKA: the image tower arranges the objects alike whatever their colour.

    Unbiased HSIC needs 4 objects; with fewer the biased estimator is used. ``references``:
    ``"init"`` adds the same numbers for the run's epoch-0 checkpoint (``reference`` column
    ``init``; the measured rows are ``none``). Returns columns :data:`ATTRIBUTE_CKA_COLUMNS`,
    also written to ``<run>/eval/ao_cka_<attribute>.csv``."""
    import torch

    from interp.hooked.activations import collect_activations
    from interp.similarity.cross_domain import cross_domain_cka
    from training.util.validate import check_choice

    check_choice("kernel", kernel, ("linear", "rbf"))
    checkpoints, spec, values, root, test, nmi = _attribute_inputs(
        run_dir, attribute, epoch, references, device)
    run = checkpoints["none"]
    sites = [site.name for site in run.model.layers()]
    layers = [(site.name, site.label) for site in run.model.layers()]
    tables = []
    for reference, hooked in checkpoints.items():
        acts = collect_activations(hooked.model, hooked.dataset([str(root / e) for e in
                                                                 test["entry"]]),
                                   sites, batch_size=batch_size, device=device,
                                   progress=progress, desc=f"{attribute} {reference}")
        groups = {v: (test[attribute] == v).to_numpy() for v in values}
        per_value = {v: {site: x[torch.tensor(m)] for site, x in acts.items()}
                     for v, m in groups.items()}
        labels = {v: test.loc[m, "class_name"].tolist() for v, m in groups.items()}
        table = cross_domain_cka(per_value, labels, sites=sites, layers=layers,
                                 domains=list(values), kernel=kernel,
                                 unbiased=len(spec.objects) >= 4, progress=False)
        tables.append(table.assign(reference=reference, epoch=int(hooked.epoch)))
    table = pd.concat(tables, ignore_index=True).rename(
        columns={"domain_a": "value_a", "domain_b": "value_b"})
    table = table.assign(run=run.info.name, kind=run.info.kind, seed=run.info.seed,
                         entanglement=float(spec.entanglement), nmi=nmi, attribute=attribute)
    table = table[list(ATTRIBUTE_CKA_COLUMNS)]
    if write:
        from training.evaluate import EVAL_DIR

        write_csv(Path(run_dir) / EVAL_DIR / f"ao_cka_{attribute}.csv", table)
    return table


ATTRIBUTE_CIRCUIT_COLUMNS: tuple[str, ...] = (
    "run", "kind", "seed", "entanglement", "nmi", "epoch", "reference", "attribute",
    "class_name", "value_a", "value_b", "heldout_pair", "site", "layer", "layer_index",
    "metric", "value",
)


def attribute_circuits(run_dir: str | Path, attribute: str = "colour", settings=None,
                       epoch: int | None = None, references: tuple[str, ...] = ("init",),
                       device: str = "cpu", progress: bool = True,
                       write: bool = True) -> pd.DataFrame:
    """Circuits compared across the values of one attribute, the AO counterpart of the
    cross-domain circuit comparison (:func:`interp.circuits.compare.compare_domains` with the
    attribute value in place of the domain): per object and value, the circuit of the object's
    zero-shot logit on the test grid's images of that (value, object) pair (every value of the
    other kinds), by ``settings`` (a :class:`domainlens.experiments.circuits.CircuitSettings`;
    default its defaults: attribution patching from a zero baseline, the top 10% of units per
    site, top-3 edges); then node Jaccard per site, edge Jaccard and the WL kernel between the
    circuits of two values of the same object. ``heldout_pair``: one of the two (value,
    object) pairs is held out. ``references``: ``"init"`` adds the same comparison on the
    run's epoch-0 checkpoint. Returns columns :data:`ATTRIBUTE_CIRCUIT_COLUMNS`, also written
    to ``<run>/eval/ao_circuits_<attribute>.csv``."""
    import torch
    from tqdm.auto import tqdm

    from domainlens.experiments.circuits import CircuitSettings
    from interp.circuits.attribution import check_node_sites, node_effects
    from interp.circuits.circuit import build_circuit, select_nodes
    from interp.circuits.compare import compare_domains
    from interp.circuits.edges import edge_weights, site_parents
    from interp.interventions.units import site_label
    from training.zeroshot import class_texts

    settings = (settings or CircuitSettings()).validate()
    if settings.baseline != "zero" or settings.faithfulness:
        raise ValueError("attribute circuits use the zero baseline without faithfulness (no "
                         f"reference set per value), got baseline {settings.baseline!r}")
    checkpoints, spec, values, root, test, nmi = _attribute_inputs(
        run_dir, attribute, epoch, references, device, kind="clip")
    run = checkpoints["none"]
    objects = sorted(spec.objects)  # the AO root's labels
    held = set(spec.heldout_pairs or ())
    tables = []
    for reference, hooked in checkpoints.items():
        model = hooked.model.eval()
        model.set_head(hooked.zero_shot_head(class_texts(objects)))
        sites = check_node_sites(model, settings.sites)
        parents = site_parents(model, sites)
        labels = {s: site_label(model, s) for s in sites}
        circuits = {}
        pairs = [(o, v) for o in objects for v in values]
        for obj, value in tqdm(pairs, desc=f"{attribute} circuits {reference}",
                               disable=not progress):
            rows = test[(test["class_name"] == obj) & (test[attribute] == value)]
            x = hooked.images([str(root / e) for e in rows["entry"]]).to(device)
            y = torch.full((len(x),), objects.index(obj), dtype=torch.long)
            common = dict(metric=settings.metric, baseline="zero", reference=None,
                          batch_size=settings.batch_size, progress=False)
            effects = node_effects(model, x, y, sites, method=settings.method,
                                   steps=settings.steps, rule=settings.rule, **common)
            kept = select_nodes(effects, fraction=settings.fraction, threshold=settings.threshold)
            edges = edge_weights(model, x, y, kept, sites, method=settings.edge_method,
                                 steps=settings.steps, rule=settings.rule, parents=parents,
                                 **common)
            circuits[(obj, value)] = build_circuit(effects, edges, top_k=settings.top_k,
                                                   rank=settings.edge_rank, labels=labels)
        table = compare_domains(circuits, h=settings.wl_h, neighbours=settings.neighbours,
                                labels=labels)
        tables.append(table.assign(reference=reference, epoch=int(hooked.epoch)))
    table = pd.concat(tables, ignore_index=True).rename(
        columns={"domain_a": "value_a", "domain_b": "value_b"})
    table["heldout_pair"] = [(a, o) in held or (b, o) in held for a, b, o in
                             zip(table["value_a"], table["value_b"], table["class_name"],
                                 strict=True)]
    table = table.assign(run=run.info.name, kind=run.info.kind, seed=run.info.seed,
                         entanglement=float(spec.entanglement), nmi=nmi, attribute=attribute)
    table = table[list(ATTRIBUTE_CIRCUIT_COLUMNS)]
    if write:
        from training.evaluate import EVAL_DIR

        write_csv(Path(run_dir) / EVAL_DIR / f"ao_circuits_{attribute}.csv", table)
    return table


# ---------------------------------------------------------------- report


def collect_ao(config: ExperimentConfig) -> pd.DataFrame:
    """Every finished run's ``eval/ao.csv``, concatenated (empty if none)."""
    tables = []
    for knob, seed, kind in ao_runs(config):
        path = layout.ao_run_dir(config, knob, seed, kind) / "eval" / "ao.csv"
        if path.is_file():
            tables.append(pd.read_csv(path))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def ao_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds per (kind, entanglement, attribute, pair subset,
    metric), with the mean caption NMI of the knob."""
    keys = ["kind", "entanglement", "attribute", "pair_subset", "metric"]
    grouped = table.groupby(keys, sort=True)
    summary = grouped["value"].agg(["mean", "std", "count"]).reset_index()
    summary.insert(2, "nmi", grouped["nmi"].mean().to_numpy())
    return summary.rename(columns={"count": "n_seeds"})


#: Lines of the figure: (kind, metric, label).
FIGURE_LINES: tuple[tuple[str, str, str], ...] = (
    ("clip", "pair_top1", "CLIP pair top-1"),
    ("clip", "object_top1", "CLIP object top-1"),
    ("clip", "attribute_top1", "CLIP attribute top-1"),
    ("supervised", "object_top1", "supervised object top-1"),
)


def plot_heldout_vs_nmi(table: pd.DataFrame, attribute: str = "colour",
                        chance: dict[str, float] | None = None):
    """Accuracy against the training captions' NMI of ``attribute`` (one point per knob):
    a panel for held-out pairs and one for seen pairs, a line per :data:`FIGURE_LINES` entry
    (mean over seeds, std as error bar, each seed a faint dot); ``chance`` (label -> accuracy)
    as dotted lines. Returns ``(figure, the table it shows)``."""
    from .report import _figure

    data = table[table["attribute"] == attribute]
    summary = ao_summary(data) if len(data) else pd.DataFrame()
    fig = _figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, subset in zip(axes, ("held-out", "seen"), strict=True):
        for i, (kind, metric, label) in enumerate(FIGURE_LINES):
            rows = summary[(summary["kind"] == kind) & (summary["metric"] == metric)
                           & (summary["pair_subset"] == subset)] if len(summary) else summary
            if rows.empty:
                continue
            colour = f"C{i}"
            ax.errorbar(rows["nmi"], rows["mean"], yerr=rows["std"].fillna(0), marker="o",
                        capsize=3, color=colour, label=label)
            seeds = data[(data["kind"] == kind) & (data["metric"] == metric)
                         & (data["pair_subset"] == subset)]
            ax.scatter(seeds["nmi"], seeds["value"], s=8, alpha=0.35, color=colour)
        for k, (label, level) in enumerate((chance or {}).items()):
            ax.axhline(level, color="grey", linestyle=":" if k == 0 else "--", linewidth=1,
                       label=label)
        ax.set_title(f"{subset} ({attribute}, object) pairs")
        ax.set_xlabel(f"caption NMI({attribute}; object)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig, summary


def collect_ao_cka(config: ExperimentConfig) -> pd.DataFrame:
    """Every CLIP run's ``eval/ao_cka_colour.csv``, concatenated (empty if none)."""
    tables = []
    for knob, seed, kind in ao_runs(config):
        path = layout.ao_run_dir(config, knob, seed, kind) / "eval" / "ao_cka_colour.csv"
        if kind == "clip" and path.is_file():
            tables.append(pd.read_csv(path))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def plot_cka_by_layer(table: pd.DataFrame):
    """Mean CKA over colour pairs per layer: a line per knob value (mean over seeds, std as a
    band), the epoch-0 networks' mean dashed. Returns ``(figure, the table it shows)``."""
    from .report import _figure

    per_run = (table.groupby(["reference", "entanglement", "nmi", "seed", "layer_index", "layer"])
               ["value"].mean().reset_index())
    shown = (per_run.groupby(["reference", "entanglement", "nmi", "layer_index", "layer"])["value"]
             .agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "n_seeds"}))
    fig = _figure(figsize=(6, 3.6))
    ax = fig.subplots()
    measured = shown[shown["reference"] == "none"]
    knobs = sorted(measured["entanglement"].unique())
    for i, knob in enumerate(knobs):
        rows = measured[measured["entanglement"] == knob].sort_values("layer_index")
        colour = f"C{i}"
        ax.plot(rows["layer_index"], rows["mean"], marker="o", color=colour,
                label=f"e = {knob:g} (NMI {rows['nmi'].iloc[0]:.2f})")
        ax.fill_between(rows["layer_index"], rows["mean"] - rows["std"].fillna(0),
                        rows["mean"] + rows["std"].fillna(0), color=colour, alpha=0.15)
    init = per_run[per_run["reference"] == "init"].groupby(["layer_index", "layer"])["value"]
    init = init.mean().reset_index()
    if len(init):
        ax.plot(init["layer_index"], init["value"], linestyle="--", color="grey",
                label="epoch 0")
    labels = measured.drop_duplicates("layer_index").sort_values("layer_index")
    ax.set_xticks(labels["layer_index"], labels["layer"], fontsize=7)
    ax.set_xlabel("layer")
    ax.set_ylabel("CKA between colours (mean over pairs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig, shown


def write_ao_report(config: ExperimentConfig) -> dict[str, Path]:
    """``results/ao_accuracy.csv``, ``ao_summary.csv``, the figure, ``report.md`` and
    ``report.html`` of the AO experiment."""
    from .report import _atomic, _html, _markdown, _save, step_times

    out = config.out_dir
    results = out / layout.RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True)
    table = collect_ao(config)
    blocks: list[tuple[str, object]] = [
        ("h1", f"domainlens report: {config.name}"),
        ("p", f"Attribute-object compositional generalization: objects {list(config.ao.objects)}, "
              f"colours {list(config.ao.colours)}, patterns {list(config.ao.patterns)}, "
              f"knob values {list(config.ao.entanglements)} on {list(config.ao.entangle)}, "
              f"{config.ao.n_train} training images each, model {config.train.model}, "
              f"{config.train.epochs} epoch(s), seeds {list(config.train.seeds)}. Config: "
              "config.json."),
    ]
    paths: dict[str, Path] = {}
    if not table.empty:
        write_csv(results / layout.AO_TABLE, table)
        summary = ao_summary(table)
        write_csv(results / layout.AO_SUMMARY, summary)
        ao = config.ao
        chance = {"object chance": 1 / len(ao.objects),
                  "pair chance": 1 / (len(ao.objects) * len(ao.colours))}
        fig, shown = plot_heldout_vs_nmi(table, chance=chance)
        paths["figure"] = _save(fig, shown, results / layout.AO_FIGURE)
        display = summary[summary["attribute"] == "colour"].copy()
        display["value"] = [f"{m:.3f}" + ("" if pd.isna(s) else f" ± {s:.3f}")
                            for m, s in zip(display["mean"], display["std"], strict=True)]
        display = display.pivot_table(index=["kind", "entanglement", "nmi", "pair_subset"],
                                      columns="metric", values="value", aggfunc="first")
        blocks += [
            ("h2", "Held-out and seen (colour, object) pairs"),
            ("p", "Top-1 (mean ± std over seeds) on the test grid: object over all objects, "
                  "attribute over the colours, pair over every (colour, object) prompt; "
                  "held-out: the image's (colour, object) pair is held out (never in "
                  "training); seen: every pair of the image occurs in training; unseen: its "
                  "colour pair is not held out but has no training image all the same (at "
                  "knob 1 an object keeps one colour). nmi: the training captions' "
                  f"NMI(colour; object). Chance: object {chance['object chance']:.3f}, "
                  f"attribute {1 / len(ao.colours):.3f}, pair {chance['pair chance']:.3f}. "
                  "Every kind and pattern row: results/ao_summary.csv; "
                  "per run: results/ao_accuracy.csv."),
            ("table", display.reset_index().round(4)),
            ("h2", "Figures"),
            ("p", "Accuracy against the caption NMI, CLIP vs the supervised baseline (mean "
                  "± std over seeds; dots: seeds). Table: "
                  f"{(results / layout.AO_FIGURE).with_suffix('.csv').relative_to(out)}."),
            ("img", str(paths["figure"].relative_to(out))),
        ]
    else:
        blocks.append(("p", "No run has been evaluated yet."))
    cka = collect_ao_cka(config)
    if not cka.empty:
        write_csv(results / layout.AO_CKA, cka)
        fig, shown = plot_cka_by_layer(cka)
        paths["cka"] = _save(fig, shown, results / layout.AO_CKA_FIGURE)
        blocks += [
            ("h2", "CKA between colours"),
            ("p", "Per layer, linear CKA between two colours' object-class-mean activations "
                  "on the test grid (rows: objects; the cross-domain CKA with colour in place "
                  "of the domain), averaged over colour pairs, per knob value (mean ± std over "
                  "seeds), and for the epoch-0 networks (dashed). With few objects the "
                  "unbiased estimate is noisy. Every pair and site: "
                  f"{(results / layout.AO_CKA).relative_to(out)}."),
            ("img", str(paths["cka"].relative_to(out))),
        ]
    times = step_times(config)
    if not times.empty:
        per_kind = times.groupby("kind", sort=False)["seconds"].agg(["count", "sum", "mean"])
        per_kind = per_kind.reset_index()
        per_kind.columns = ["step kind", "steps", "total s", "mean s"]
        blocks += [("h2", "Time per step"), ("table", per_kind.round(1))]
    _atomic(out / layout.REPORT_MD, lambda p: Path(p).write_text(_markdown(blocks)))
    _atomic(out / layout.REPORT_HTML, lambda p: Path(p).write_text(_html(blocks, config.name)))
    return {"markdown": out / layout.REPORT_MD, "html": out / layout.REPORT_HTML, **paths}
