"""``domainlens reproduce``: one experiment config -> data, mixtures, runs, analyses, report.

:func:`plan` turns an :class:`~domainlens.config.ExperimentConfig` into an ordered list of
:class:`~domainlens.steps.Step` (data, mixtures, one training and one evaluation step per
(test domain, setup, seed), CKA / patching / circuits per analysed run, and the report), each
keyed by a hash of its inputs; :func:`reproduce` runs them, skipping those whose outputs exist
for the same inputs, so an interrupted experiment resumes where it stopped. Everything is
written under the config's output folder, laid out as :mod:`domainlens.layout` describes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from training.domains import DOMAINS
from training.util.files import digest, file_sha256, write_json, write_text

from . import layout
from .config import ExperimentConfig
from .layout import RunPlan, aligned_twin, analysed_runs, run_plans, seed_partner
from .steps import Step, assign_keys, is_done, prune_failures, run_steps

if TYPE_CHECKING:
    from domainlens.experiments.circuits import CircuitSettings

# Time estimates: model speeds are measured by timing a few steps of the configured model
# (:func:`measure_throughput`); the rest are rates measured here for the tiny presets.
SYNTH_IMAGES_PER_SECOND = 1800.0  # generator on 2 workers
CIRCUIT_PASSES_PER_IMAGE = 3.0    # attribution + edges + faithfulness, in training-step units
PATCH_FORWARDS = 400.0            # patched forwards of one patching experiment, per image

#: Modules whose code produces each kind of step's outputs: part of the step's key
#: (:func:`domainlens.steps.code_digest`), so a code change reruns the step.
STEP_CODE: dict[str, tuple[str, ...]] = {
    "data": ("training.synth",),
    "mixtures": ("training.mixtures", "training.captions", "training.domainnet",
                 "training.domains"),
    "train": ("training.train", "training.models", "training.trainset", "training.supervised",
              "training.imagecache", "training.checkpoints", "training.util"),
    "eval": ("training.evaluate", "training.zeroshot", "training.runinfo",
             "training.imagecache", "training.domainnet"),
    "cka": ("domainlens.experiments.cka", "interp.similarity", "interp.hooked",
            "interp.plots", "training.runinfo"),
    "patching": ("domainlens.experiments.patching", "interp.interventions", "interp.hooked",
                 "interp.metrics", "interp.plots", "training.zeroshot", "training.runinfo"),
    "circuits": ("domainlens.experiments.circuits", "interp.circuits", "interp.interventions",
                 "interp.hooked", "interp.metrics", "interp.plots", "training.zeroshot",
                 "training.runinfo"),
    "embeddings": ("domainlens.experiments.embeddings", "interp.embeddings", "interp.hooked",
                   "interp.plots", "training.runinfo"),
    "features": ("domainlens.experiments.features", "interp.embeddings", "interp.hooked",
                 "interp.plots", "training.runinfo"),
    "aligned": ("domainlens.experiments.embeddings", "interp.embeddings", "interp.hooked",
                "interp.plots", "training.runinfo"),
    "report": ("domainlens.report", "domainlens.layout", "interp.plots"),
}

#: The per-run analyses, in step order (each an [analyses] switch of the same name).
ANALYSES: tuple[str, ...] = ("cka", "patching", "circuits", "embeddings", "features")


#: Environment variable holding a job's share of the CPU threads (set by
#: :func:`domainlens.executors.run_job` in the job's own process); :func:`torch_threads` never
#: uses more.
THREADS_ENV = "DOMAINLENS_THREADS"


def thread_count(n: int) -> int:
    """The torch threads a step configured for ``n`` (0: torch's default) uses: at most this
    job's share of the cores (:data:`THREADS_ENV`) when the step runs in a submitted job."""
    share = int(os.environ.get(THREADS_ENV) or 0)
    if share > 0:
        return share if n <= 0 else min(n, share)
    return n


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch intra-op threads inside the block (0: leave as is), capped by the job's
    share of the cores when several steps run at once (:func:`thread_count`)."""
    import torch

    n = thread_count(n)
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- data checks and sizes


def check_domainnet_root(root: Path, base_tsv: Path) -> dict[str, int]:
    """Fail unless ``root`` is DomainNet-shaped and ``base_tsv`` exists; returns train/test
    image counts per domain (from the split files) for time estimates."""
    from training.domainnet import load_index

    if not root.is_dir():
        raise ValueError(f"[data] root {str(root)!r} is not a directory; expected a DomainNet-"
                         "format root (<domain>/<class>/<file> and <domain>_{train,test}.txt)")
    if not list(root.glob("*_train.txt")):
        raise ValueError(f"[data] root {str(root)!r} is not DomainNet-shaped: no "
                         "<domain>_train.txt split files in it")
    if not base_tsv.is_file():
        raise ValueError(f"[data] base_tsv {str(base_tsv)!r} does not exist; expected the "
                         "natural base set as an OpenCLIP TSV (filepath, title columns)")
    from training.domainnet import heldout_classes

    index = load_index(root)
    counts = {f"{d}_{s}": int(n) for (d, s), n in index.groupby(["domain", "split"]).size().items()}
    test = index[index["split"] == "test"]
    counts["classes"] = len(index.attrs["classes"])
    counts["heldout_classes"] = len(heldout_classes(root))
    counts["test_per_class"] = int(test.groupby(["domain", "class_name"]).size().max()) if len(test) else 0
    return counts


def data_fingerprint(root: Path, base_tsv: Path) -> str:
    """sha256 over the split files and the base TSV: what a real data root's steps depend on."""
    files = sorted(root.glob("*_t*.txt")) + [base_tsv]
    return digest([(path.name, file_sha256(path)) for path in files], length=64)


def synth_counts(config: ExperimentConfig) -> dict[str, int]:
    """Image counts the generator will write (for estimates before it has run), plus the
    numbers of classes and held-out classes and test images per (domain, class)."""
    from training.synth import BASE_ONLY_CLASSES, SYNTH_CLASSES, SYNTH_HELDOUT_CLASSES

    data = config.data
    classes = data.classes or SYNTH_CLASSES
    counts = {}
    for d in DOMAINS:
        counts[f"{d}_train"] = data.n_train * len(classes)
        counts[f"{d}_test"] = data.n_test * len(classes)
    counts["base"] = data.n_base * (len(classes) + len(BASE_ONLY_CLASSES))
    counts["classes"] = len(classes)
    counts["heldout_classes"] = len(set(classes) & set(SYNTH_HELDOUT_CLASSES))
    counts["test_per_class"] = data.n_test
    return counts


def estimated_rows(counts: dict[str, int], setup: str, test_domain: str) -> int:
    """Rough mixture size: the base set plus the rendition part under the paper's size rule
    (every setup matched to CG low-diversity: real plus the test domain's seen classes)."""
    base = counts.get("base", counts.get("real_train", 0))
    real = counts.get("real_train", 0)
    if setup == "natural-only":
        return base + real
    return base + real + int(0.8 * counts.get(f"{test_domain}_train", 0))


# ---------------------------------------------------------------- the plan

def _default_extra() -> dict:
    from .config import DataSection, ExperimentsSection

    return {"heldout": _asdict(DataSection(), keep=HELDOUT_KEYS),
            "experiments": _asdict(ExperimentsSection())}



def plan(config: ExperimentConfig, progress: bool = True) -> list[Step]:
    """The experiment's steps in run order (keys assigned). Validates the data source first,
    so a wrong data path fails here, before any work. ``[data] source = "ao"`` plans the
    attribute-object experiment instead (:func:`domainlens.ao_experiment.plan_ao`)."""
    if config.data.source == "ao":
        from .ao_experiment import plan_ao

        return plan_ao(config, progress)
    out = config.out_dir
    data, train = config.data, config.train
    steps: list[Step] = []

    if data.source == "synth":
        counts = synth_counts(config)
        data_step = Step(
            id="data", params={"source": "synth", **_asdict(data, drop=HELDOUT_KEYS),
                               "generator": _generator_version()},
            run=lambda: _generate(config, progress), outputs=[config.data_root / "synth.json"],
            estimate=sum(counts.values()) / SYNTH_IMAGES_PER_SECOND + 2, code=STEP_CODE["data"],
        )
    else:
        counts = check_domainnet_root(config.data_root, config.base_tsv)
        data_step = Step(
            id="data", params={"source": "domainnet", "root": str(config.data_root.resolve()),
                               "fingerprint": data_fingerprint(config.data_root, config.base_tsv)},
            run=lambda: None, outputs=[config.data_root], estimate=0.0,
        )
    steps.append(data_step)
    if data.heldout == "random":  # a DomainNet root's classes are known only here
        from .config import check_heldout_count

        check_heldout_count(data.heldout_count, counts["classes"])

    runs = run_plans(config)
    trainings = list(_first_of(runs, lambda r: r.train_id).values())  # a shared run once
    mixtures = sorted({r.mixture for r in runs})
    # the experiments' mixtures and the class splits are inputs of the mixtures step (the
    # defaults add nothing, so a config without experiments keeps its keys)
    defaults = _default_extra()
    extra = {k: v for k, v in {"heldout": _asdict(data, keep=HELDOUT_KEYS),
                               "experiments": _asdict(config.experiments)}.items()
             if v != defaults[k]}
    steps.append(Step(
        id="mixtures", params={**_asdict(config.mixtures), "version": 2, **extra},
        depends=["data"],
        run=lambda: _build_mixtures(config, progress), outputs=mixtures,
        estimate=2.0 * len(mixtures), code=STEP_CODE["mixtures"],
    ))

    throughput, inference = measure_throughput(train.model, train.device, train.threads,
                                                 train.batch_size)
    test_images = sum(n for k, n in counts.items() if k.endswith("_test"))  # images to score
    train_images = sum(n for k, n in counts.items() if k.endswith("_train") or k == "base")
    n_eval_epochs = train.epochs + 1 if config.eval.epochs == "all" else 1
    train_params = {k: v for k, v in _asdict(train).items() if k not in ("seeds", "threads")}
    for r in trainings:
        rows = estimated_rows(counts, r.setup, r.test_domain)
        settings = _train_config(config, r, progress)
        # the full training settings, defaults included (not the paths or the progress flag)
        identity = {k: v for k, v in _asdict(settings).items()
                    if k not in ("mixture", "out", "progress")}
        # options added later, at their defaults, leave existing runs' step keys unchanged
        for key, default in (("precision", "fp32"), ("fused_optimizer", None),
                             ("channels_last", None), ("trim_text", None)):
            if identity.get(key, default) == default:
                identity.pop(key, None)
        run_params = {**train_params, "seed": r.seed, "mixture": r.mixture.name,
                      "settings": identity}
        if r.kind != "clip" or r.split is not None:  # the main CLIP runs keep their keys
            run_params.update(kind=r.kind, split=r.split)
        train_step = Step(
            id=f"train/{r.train_id}", params=run_params,
            depends=["mixtures"], run=lambda: None,
            outputs=[r.run_dir / "checkpoints" / f"epoch_{train.epochs}.pt"],
            estimate=rows * train.epochs / throughput + 5, code=STEP_CODE["train"],
        )
        train_step.run = _bind(_train, settings, train.threads, train_step, r.kind)  # key late
        steps.append(train_step)
        steps.append(Step(
            id=f"eval/{r.train_id}", params=_asdict(config.eval), depends=[f"train/{r.train_id}"],
            run=_bind(_evaluate, config, r, progress), outputs=[r.eval_table],
            estimate=test_images * n_eval_epochs / inference + 3, code=STEP_CODE["eval"],
        ))

    an = config.analyses
    n_classes, n_heldout = counts["classes"], counts["heldout_classes"]
    n_subset = {"held-out": n_heldout, "seen": n_classes - n_heldout, "all": n_classes}[an.classes]
    per_class = min(an.max_images_per_class, counts["test_per_class"])
    n_domains = len(DOMAINS)
    base = dict(zip(ANALYSES, _analysis_settings(config, counts, progress), strict=True))
    variants = _circuit_variants(config, base["circuits"]) if an.circuits else {}
    common = {
        "cka": {"max_images_per_class": an.max_images_per_class},
        "patching": {"classes": an.classes, "max_images_per_class": an.max_images_per_class,
                     "patch_source": an.patch_source},
        "circuits": {"classes": an.classes, "circuit_classes": an.circuit_classes,
                     "circuit_images": an.circuit_images, "circuit_fraction": an.circuit_fraction},
        "embeddings": {}, "features": {},
    }
    # each reference is one more pass of the analysis (init: the epoch-0 checkpoint, seed:
    # the partner run); class-shuffle reuses the activations/circuits except in patching
    references = config.analysis_references
    passes = 1 + ("init" in references) + ("seed" in references)
    estimates = {
        "cka": passes * n_domains * n_classes * per_class / inference + 10,
        "patching": (passes + ("class-shuffle" in references)) * PATCH_FORWARDS * n_subset
        * per_class / inference + 10,
        "circuits": passes * min(an.circuit_classes or n_subset, n_subset) * n_domains
        * an.circuit_images * CIRCUIT_PASSES_PER_IMAGE / throughput + 10,
        # the test split of every domain (again at epoch 0 for init), a probe, a densMAP
        "embeddings": (1 + ("init" in references)) * test_images / inference + 60,
        # the train split of every domain plus the base set, and the SAE's epochs
        "features": (1 + ("init" in references)) * train_images / inference
        + an.sae_epochs * 0.3 + 10,
    }
    bodies = {"cka": _cka, "patching": _patch, "circuits": _circuits, "embeddings": _embeddings,
              "features": _features}
    outputs = {"cka": lambda r: r.analysis_dir / layout.CKA_DIR / layout.CKA_TABLE,
               "patching": lambda r: _patch_summary(config, r),
               "circuits": lambda r: r.analysis_dir / layout.CIRCUITS_DIR / layout.COMPARISON_SUMMARY,
               "embeddings": lambda r: r.analysis_dir / layout.EMBEDDINGS_DIR / layout.DOMAIN_PROBE,
               "features": lambda r: r.analysis_dir / layout.FEATURES_DIR / layout.SHARING_SCORES}
    for r in analysed_runs(config):
        partner = seed_partner(config, r) if "seed" in references else None
        twin = aligned_twin(config, r)
        if twin is not None:
            steps.append(Step(
                id=f"aligned/{r.id}", params={"settings": _asdict(base["embeddings"],
                                                                  drop=("progress",))},
                depends=[f"eval/{r.train_id}", f"eval/{twin.train_id}"],
                run=_bind(_aligned, config, r, twin, base["embeddings"]),
                outputs=[r.analysis_dir / layout.ALIGNED_DIR / layout.ALIGNED_TABLE],
                estimate=estimates["embeddings"], code=STEP_CODE["aligned"],
            ))
        for kind in ANALYSES:
            if not getattr(an, kind):
                continue
            settings = _run_settings(base[kind], partner)
            # each analysis is keyed by its full settings dataclass (defaults included); the
            # seed reference by the partner run's id and its training step, not by a path
            identity = _asdict(settings, drop=("progress",))
            if "seed_reference" in identity:
                identity["seed_reference"] = partner.id if partner is not None else None
            depends = [f"train/{r.train_id}"] + ([f"train/{partner.train_id}"]
                                                  if partner is not None else [])
            steps.append(Step(
                id=f"{kind}/{r.id}", params={**common[kind], "settings": identity},
                depends=depends, run=_bind(bodies[kind], config, r, settings, progress),
                outputs=[outputs[kind](r)], estimate=estimates[kind], code=STEP_CODE[kind],
            ))
        for name, variant in variants.items():  # the same circuits, other settings
            folder = layout.circuit_variant_dir(name)
            settings = _run_settings(variant, partner)
            identity = _asdict(settings, drop=("progress",))
            if "seed_reference" in identity:
                identity["seed_reference"] = partner.id if partner is not None else None
            steps.append(Step(
                id=f"{folder}/{r.id}", params={**common["circuits"], "settings": identity},
                depends=depends, run=_bind(_circuits, config, r, settings, progress, folder),
                outputs=[r.analysis_dir / folder / layout.COMPARISON_SUMMARY],
                estimate=estimates["circuits"] * (variant.steps if variant.method != "atp"
                                                  else 1),
                code=STEP_CODE["circuits"],
            ))

    analysis_kinds = ("eval", "aligned", *ANALYSES,
                      *(layout.circuit_variant_dir(name) for name in variants))
    analysis_ids = [s.id for s in steps if s.id.split("/")[0] in analysis_kinds]
    steps.append(Step(
        id="report", params={"config": config.inputs()}, depends=analysis_ids,
        run=lambda: _report(config),
        outputs=[out / layout.REPORT_MD, out / layout.REPORT_HTML], estimate=20.0,
        code=STEP_CODE["report"],
    ))
    assign_keys(steps)
    return steps


def measure_throughput(model: str, device: str = "cpu", threads: int = 0,
                       batch_size: int = 128) -> tuple[float, float]:
    """(training, inference) images per second of ``model``, timed on random batches: the best
    of two steps after a warm-up step (a second for the tiny presets). Large images get a
    smaller batch so a dry run stays quick."""
    import time

    import torch

    from training.models import create_clip, image_size

    if device != "cpu" and not torch.cuda.is_available():
        device = "cpu"  # a GPU config planned on a CPU machine: time it on the CPU
    elif device == "auto":
        device = "cuda"
    with torch_threads(threads):
        clip, cfg = create_clip(model, device=device)
        size, context = image_size(cfg), int(cfg["text_cfg"].get("context_length", 77))
        batch = max(2, min(batch_size, int(128 * (64 / size) ** 2)))
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, size, size, generator=gen).to(device)
        texts = torch.randint(1, 1000, (batch, context), generator=gen).to(device)
        optimizer = torch.optim.AdamW(clip.parameters(), lr=1e-5)
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            image_features = clip.encode_image(images)
            text_features = clip.encode_text(texts)
            (image_features @ text_features.T).logsumexp(dim=1).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds.append(time.perf_counter() - start)
        infer = []
        with torch.no_grad():
            for _ in range(3):
                start = time.perf_counter()
                clip.encode_image(images)
                infer.append(time.perf_counter() - start)
    return batch / min(seconds[1:]), batch / min(infer[1:])


def format_plan(config: ExperimentConfig, steps: list[Step]) -> str:
    """The plan as text: one line per step with its state and estimated time, and a total."""
    state_dir = config.out_dir / layout.STATE_DIR
    lines = [f"experiment {config.name!r} -> {config.out_dir}: {len(steps)} steps"]
    todo = 0.0
    for i, step in enumerate(steps, 1):
        done = is_done(step, state_dir)
        todo += 0.0 if done else step.estimate
        state = "done" if done else f"~{_duration(step.estimate)}"
        lines.append(f"  [{i:>{len(str(len(steps)))}}/{len(steps)}] {step.id:<44} {state}")
    lines.append(f"estimated time left: {_duration(todo)} (model speed timed on this machine)")
    return "\n".join(lines)


def reproduce(
    config: ExperimentConfig,
    dry_run: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Plan and run the experiment, or with ``dry_run`` only print the plan (and, with a
    ``[run] executor`` other than ``inline``, what would be submitted, job by job).

    The steps run as ``config.run`` says: one after another in this process (``inline``), or
    handed to submitit (``local``, ``slurm``; :func:`domainlens.executors.run_with_executor`).
    Returns ``{step id: "done" | "skipped" | "planned"}``; a step that failed in a job raises
    :class:`domainlens.executors.StepsFailed` after every independent step has run.
    """
    steps = plan(config, progress=progress)
    if dry_run:
        log(format_plan(config, steps))
        if config.run.executor != "inline":
            from .executors import format_submissions

            log(format_submissions(config, steps))
        return {s.id: "planned" for s in steps}
    config.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(config.out_dir / layout.CONFIG_FILE, config.to_dict())
    state_dir = config.out_dir / layout.STATE_DIR
    prune_failures(state_dir, steps)
    if config.run.executor == "inline":
        log(f"experiment {config.name!r}: {len(steps)} steps, output in {config.out_dir}")
        status = run_steps(steps, state_dir, log=log)
    else:
        from .executors import run_with_executor

        status = run_with_executor(config, steps, log=log)
    log(f"report: {config.out_dir / layout.REPORT_MD}")
    return status


# ---------------------------------------------------------------- step bodies


def _generate(config: ExperimentConfig, progress: bool) -> None:
    from training.synth import SynthConfig, generate_dataset

    data = config.data
    generate_dataset(config.data_root, SynthConfig(
        image_size=data.image_size, n_train=data.n_train, n_test=data.n_test, n_base=data.n_base,
        seed=data.seed, classes=data.classes or None), workers=data.workers, progress=progress)


def split_heldout(classes: list[str] | tuple[str, ...], count: int, split: int) -> tuple[str, ...]:
    """The held-out classes of random class split ``split``: ``count`` of ``classes`` drawn
    without replacement by a generator seeded by the split (sorted)."""
    from training.util.seeding import seeded_rng

    from .config import check_heldout_count

    check_heldout_count(count, len(classes))
    names = sorted(classes)
    chosen = seeded_rng(split, "heldout-split").choice(len(names), size=count, replace=False)
    return tuple(sorted(names[i] for i in chosen))


def _build_mixtures(config: ExperimentConfig, progress: bool) -> None:
    """Write every mixture the runs train on (each once; one set per class split)."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    from training.domainnet import load_index
    from training.mixtures import build_mixture, read_base_tsv, write_mixture

    root = str(config.data_root.resolve())
    index = load_index(root, splits=("train",))
    classes = index.attrs["classes"]
    base_tsv = (str(config.base_tsv.resolve()) if config.data.source == "domainnet"
                else str(Path(root) / "base.tsv"))
    base = read_base_tsv(base_tsv, classes)
    todo = list(_first_of(run_plans(config), lambda r: r.mixture).items())
    for tsv, r in tqdm(todo, desc="mixtures", disable=not progress):
        heldout = (None if r.split is None
                   else split_heldout(classes, config.data.heldout_count, r.split))
        spec = replace(r.spec(config, heldout), data_root=root,
                       base_tsv=base_tsv if config.data.source == "domainnet" else None)
        write_mixture(build_mixture(spec, index, base), tsv.parent.parent)


def _train_config(config: ExperimentConfig, run: RunPlan, progress: bool):
    """The :class:`training.train.TrainConfig` of one run of the experiment."""
    from training.train import TrainConfig

    train = config.train
    clip = run.kind == "clip"  # the supervised baseline takes its own optimiser defaults
    return TrainConfig(
        mixture=run.mixture, out=run.run_dir, model=train.model, epochs=train.epochs,
        batch_size=train.batch_size, lr=train.lr if clip else None,
        wd=train.weight_decay if clip else None,
        warmup_steps=train.warmup_steps or None, seed=run.seed, device=train.device,
        progress=progress, precision=train.precision,
    )


def _train(settings, threads: int, step: Step, kind: str = "clip") -> None:
    from training.supervised import train_supervised
    from training.train import train_clip

    _claim_run_dir(Path(settings.out), step.key)
    with torch_threads(threads):
        (train_supervised if kind == "supervised" else train_clip)(settings)


def _claim_run_dir(run_dir: Path, key: str) -> None:
    """Mark ``run_dir`` as this step's before training. A run the pipeline trained for other
    inputs (its step key changed) is moved aside to the first free ``<run>.stale``,
    ``<run>.stale-2``, ... and never deleted, so the new run starts clean and every earlier
    run is kept; a run of the same key resumes where it stopped."""
    marker = run_dir / layout.RUN_KEY_FILE
    if marker.is_file() and marker.read_text() != key:
        run_dir.rename(stale_name(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(marker, key)


def stale_name(run_dir: Path) -> Path:
    """The first of ``<run>.stale``, ``<run>.stale-2``, ``<run>.stale-3``, ... that is free."""
    candidate = run_dir.with_name(run_dir.name + layout.STALE_SUFFIX)
    n = 1
    while candidate.exists():
        n += 1
        candidate = run_dir.with_name(f"{run_dir.name}{layout.STALE_SUFFIX}-{n}")
    return candidate


def _evaluate(config: ExperimentConfig, run: RunPlan, progress: bool) -> None:
    from training.evaluate import evaluate_run

    with torch_threads(config.train.threads):
        evaluate_run(run.run_dir, epochs=None if config.eval.epochs == "all" else -1,
                     batch_size=config.eval.batch_size, device=analysis_device(config),
                     figure=config.eval.epochs == "all", progress=progress)


def analysis_device(config: ExperimentConfig) -> str:
    """The device evaluation and analyses run on (``auto``: a GPU if there is one)."""
    import torch

    if config.train.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.train.device


def _analysis_settings(config: ExperimentConfig, counts: dict[str, int], progress: bool):
    """The settings of the CKA, patching, circuits, embeddings and features experiments
    (built once at plan time: the steps are keyed by them, defaults included)."""
    from domainlens.experiments.circuits import CircuitSettings
    from domainlens.experiments.cka import CKASettings
    from domainlens.experiments.embeddings import EmbeddingSettings
    from domainlens.experiments.features import FeatureSettings
    from domainlens.experiments.patching import PatchSettings

    an = config.analyses
    n_heldout, n_all = counts["heldout_classes"], counts["classes"]
    sizes = {"held-out": n_heldout, "seen": n_all - n_heldout, "all": n_all}
    # unbiased HSIC needs at least 4 rows (classes); smaller subsets are left out
    subsets = tuple(s for s in ("held-out", "seen", "all") if sizes[s] >= 4)
    # the controls (issue 13); the seed reference and its run are added per analysed run
    # (_run_settings), in one step, so a settings class never holds "seed" without its run
    controls = {"references": tuple(r for r in config.analysis_references if r != "seed"),
                "n_boot": an.n_boot}
    cka = _with_fields(CKASettings(classes=subsets, kernels=("linear", "rbf"),
                                   max_per_class=an.max_images_per_class, seed=0,
                                   progress=progress), **controls)
    patch = _with_fields(PatchSettings(classes=an.classes, max_per_class=an.max_images_per_class,
                                       progress=progress), **controls)
    circuits = _with_fields(CircuitSettings(n_images=an.circuit_images,
                                            fraction=an.circuit_fraction,
                                            method=an.circuit_method,
                                            edge_method=an.circuit_edge_method), **controls)
    # embeddings: the domain-shuffled pairing always (it is what separation is measured
    # against), init and class-shuffle as configured; features: init and class-shuffle
    embeddings = EmbeddingSettings(
        references=tuple(r for r in ("init", "domain-shuffle", "class-shuffle")
                         if r == "domain-shuffle" or r in controls["references"]),
        umap_per_domain=an.umap_per_domain, max_per_class=an.max_images_per_class,
        progress=progress)
    features = FeatureSettings(
        references=tuple(r for r in ("init", "class-shuffle") if r in controls["references"]),
        epochs=an.sae_epochs, max_per_class=an.max_images_per_class, progress=progress)
    return cka, patch, circuits, embeddings, features


def _circuit_variants(config: ExperimentConfig,
                      circuits: CircuitSettings) -> dict[str, CircuitSettings]:
    """``[analyses.circuit_variants]`` as validated circuits settings: the default
    ``circuits`` settings with each entry's values (a ``threshold`` replaces the fraction)."""
    import dataclasses

    out = {}
    for name, values in config.analyses.circuit_variants.items():
        values = dict(values)
        if "threshold" in values and "fraction" not in values:
            values["fraction"] = None
        try:
            out[name] = dataclasses.replace(circuits, **values).validate()
        except (TypeError, ValueError) as err:
            raise ValueError(f"[analyses.circuit_variants] {name}: {err}") from None
    return out


def _with_fields(settings, **values):
    """``settings`` with those of ``values`` replaced that its dataclass has: the controls'
    fields (``references``, ``seed_reference``, ``n_boot``) belong to the experiments' settings
    (domainlens.experiments); a settings class without them runs without controls."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(settings)}
    return dataclasses.replace(settings, **{k: v for k, v in values.items() if k in names})


def _run_settings(settings, partner: RunPlan | None):
    """One analysed run's settings: the shared ones plus, with a partner run (another seed
    of the same setup), the ``seed`` reference and the partner's directory."""
    if partner is None:
        return settings
    refs = tuple(getattr(settings, "references", ()))
    return _with_fields(settings, references=(*refs, "seed"), seed_reference=partner.run_dir)


def _analysis_classes(config: ExperimentConfig, run: RunPlan) -> list[str]:
    """The run's classes of the configured subset, from its own metadata (RunInfo)."""
    from training.runinfo import read_run_info

    return list(read_run_info(run.run_dir).subset(config.analyses.classes))


def _cka(config: ExperimentConfig, run: RunPlan, settings, progress: bool = True) -> None:
    from domainlens.experiments.cka import cka_run

    with torch_threads(config.analyses.threads):
        cka_run(run.run_dir, settings=settings, out=run.analysis_dir / layout.CKA_DIR,
                cache_dir=run.analysis_dir / layout.ACTIVATION_CACHE,
                device=analysis_device(config))


def _patch_summary(config: ExperimentConfig, run: RunPlan) -> Path:
    return (run.analysis_dir / layout.PATCHING_DIR
            / layout.patching_summary(config.analyses.patch_source, run.test_domain))


def _patch(config: ExperimentConfig, run: RunPlan, settings, progress: bool = True) -> None:
    from domainlens.experiments.patching import patch_run

    with torch_threads(config.analyses.threads):
        patch_run(run.run_dir, config.analyses.patch_source, run.test_domain, settings=settings,
                  out=run.analysis_dir / layout.PATCHING_DIR, device=analysis_device(config))


def _circuits(config: ExperimentConfig, run: RunPlan, settings, progress: bool,
              folder: str = layout.CIRCUITS_DIR) -> None:
    from domainlens.experiments.circuits import run_circuits

    an = config.analyses
    classes = _analysis_classes(config, run)
    if an.circuit_classes:
        classes = classes[: an.circuit_classes]
    with torch_threads(an.threads):
        run_circuits(run.run_dir, classes=classes, settings=settings,
                     out=run.analysis_dir / folder, device=analysis_device(config),
                     progress=progress)


def _embeddings(config: ExperimentConfig, run: RunPlan, settings, progress: bool = True) -> None:
    from domainlens.experiments.embeddings import embeddings_run

    with torch_threads(config.analyses.threads):
        embeddings_run(run.run_dir, settings=settings, out=run.analysis_dir / layout.EMBEDDINGS_DIR,
                       cache_dir=run.analysis_dir / layout.ACTIVATION_CACHE,
                       device=analysis_device(config))


def _features(config: ExperimentConfig, run: RunPlan, settings, progress: bool = True) -> None:
    from domainlens.experiments.features import features_run

    with torch_threads(config.analyses.threads):
        features_run(run.run_dir, settings=settings, out=run.analysis_dir / layout.FEATURES_DIR,
                     cache_dir=run.analysis_dir / layout.ACTIVATION_CACHE,
                     device=analysis_device(config))


def _aligned(config: ExperimentConfig, run: RunPlan, twin: RunPlan, settings) -> None:
    """Standard run vs its aligned-captions twin: separation and held-out accuracy."""
    from domainlens.experiments.embeddings import aligned_captions_run

    with torch_threads(config.analyses.threads):
        aligned_captions_run(run.run_dir, twin.run_dir, settings=settings,
                             out=run.analysis_dir / layout.ALIGNED_DIR,
                             device=analysis_device(config))


def _report(config: ExperimentConfig) -> None:
    from .report import write_report

    write_report(config)


# ---------------------------------------------------------------- helpers


def _first_of(runs: list[RunPlan], key: Callable[[RunPlan], object]) -> dict:
    """The first run of each ``key``, in plan order."""
    out: dict = {}
    for r in runs:
        out.setdefault(key(r), r)
    return out


def _bind(fn: Callable[..., None], *args: object) -> Callable[[], None]:
    return lambda: fn(*args)


def _asdict(section: object, drop: tuple[str, ...] = (),
            keep: tuple[str, ...] | None = None) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(section).items()
            if k not in drop and (keep is None or k in keep)}


#: [data] keys of the class split: inputs of the mixtures, not of the generated images.
HELDOUT_KEYS = ("heldout", "heldout_count", "split_seeds")


def _generator_version() -> int:
    from training.synth import GENERATOR_VERSION

    return GENERATOR_VERSION


def _duration(seconds: float) -> str:
    seconds = math.ceil(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
