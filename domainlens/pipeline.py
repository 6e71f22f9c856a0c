"""``domainlens reproduce``: one experiment config -> data, mixtures, runs, analyses, report.

:func:`plan` turns an :class:`~domainlens.config.ExperimentConfig` into an ordered list of
:class:`~domainlens.steps.Step` (data, mixtures, one training and one evaluation step per
(test domain, setup, seed), CKA / patching / circuits per analysed run, and the report), each
keyed by a hash of its inputs; :func:`reproduce` runs them, skipping those whose outputs exist
for the same inputs, so an interrupted experiment resumes where it stopped. Everything is
written under the config's output folder::

    <out>/config.json               the resolved config
    <out>/data/                     generated images (source = "synth")
    <out>/mixtures/<D>/<name>.tsv   one mixture per (test domain D, setup)
    <out>/runs/<D>/<name>-s<seed>/  one training run each (checkpoints, eval/zero_shot.csv)
    <out>/analyses/<D>/<name>-s<seed>/{cka,patching,circuits}/
    <out>/results/                  the tidy tables and the figures drawn from them
    <out>/report.md, report.html    results tables, figures and per-step timings
    <out>/.state/                   one record per finished step (key, outputs, seconds)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from training.domains import DOMAINS

from .config import ExperimentConfig
from .steps import Step, assign_keys, is_done, run_steps

# Time estimates: model speeds are measured by timing a few steps of the configured model
# (:func:`measure_throughput`); the rest are rates measured here for the tiny presets.
SYNTH_IMAGES_PER_SECOND = 1800.0  # generator on 2 workers
CIRCUIT_PASSES_PER_IMAGE = 3.0    # attribution + edges + faithfulness, in training-step units
PATCH_FORWARDS = 400.0            # patched forwards of one patching experiment, per image
STATE_DIR = ".state"


@dataclass(frozen=True)
class RunPlan:
    """One training run of the experiment."""

    test_domain: str
    setup: str
    seed: int
    mixture: Path       # the mixture TSV
    run_dir: Path

    @property
    def id(self) -> str:
        return f"{self.test_domain}/{self.setup}/s{self.seed}"

    @property
    def analysis_dir(self) -> Path:
        return self.run_dir.parent.parent.parent / "analyses" / self.test_domain / self.run_dir.name


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch intra-op threads inside the block (0: leave as is)."""
    import torch

    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def mixture_names(config: ExperimentConfig) -> dict[tuple[str, str], str]:
    """Paper file name of each (test domain, setup) mixture."""
    from training.mixtures import MixtureSpec

    return {(d, s): MixtureSpec(setup=s, test_domain=d, data_root=str(config.data_root),
                                captions=config.mixtures.captions).name
            for d in config.mixtures.test_domains for s in config.mixtures.setups}


def run_plans(config: ExperimentConfig) -> list[RunPlan]:
    """Every training run, ordered by test domain, setup, seed."""
    out = config.out_dir
    return [RunPlan(d, s, seed, out / "mixtures" / d / f"{name}.tsv",
                    out / "runs" / d / f"{name}-s{seed}")
            for (d, s), name in mixture_names(config).items() for seed in config.train.seeds]


def analysed_runs(config: ExperimentConfig) -> list[RunPlan]:
    """The runs the mechanistic analyses look at."""
    an = config.analyses
    return [r for r in run_plans(config)
            if r.setup in config.analysed_setups and r.test_domain in config.analysed_test_domains
            and r.seed in an.seeds]


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
    digest = hashlib.sha256()
    for path in sorted(root.glob("*_t*.txt")) + [base_tsv]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


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


def plan(config: ExperimentConfig, progress: bool = True) -> list[Step]:
    """The experiment's steps in run order (keys assigned). Validates the data source first,
    so a wrong data path fails here, before any work."""
    out = config.out_dir
    data, train = config.data, config.train
    steps: list[Step] = []

    if data.source == "synth":
        counts = synth_counts(config)
        data_step = Step(
            id="data", params={"source": "synth", **_asdict(data), "generator": _generator_version()},
            run=lambda: _generate(config, progress), outputs=[config.data_root / "synth.json"],
            estimate=sum(counts.values()) / SYNTH_IMAGES_PER_SECOND + 2,
        )
    else:
        counts = check_domainnet_root(config.data_root, config.base_tsv)
        data_step = Step(
            id="data", params={"source": "domainnet", "root": str(config.data_root.resolve()),
                               "fingerprint": data_fingerprint(config.data_root, config.base_tsv)},
            run=lambda: None, outputs=[config.data_root], estimate=0.0,
        )
    steps.append(data_step)

    runs = run_plans(config)
    mixtures = sorted({r.mixture for r in runs})
    steps.append(Step(
        id="mixtures", params={**_asdict(config.mixtures), "version": 2}, depends=["data"],
        run=lambda: _build_mixtures(config, progress), outputs=mixtures,
        estimate=2.0 * len(mixtures),
    ))

    throughput, inference = measure_throughput(train.model, train.device, train.threads,
                                                 train.batch_size)
    test_images = sum(n for k, n in counts.items() if k.endswith("_test"))  # images to score
    n_eval_epochs = train.epochs + 1 if config.eval.epochs == "all" else 1
    train_params = {k: v for k, v in _asdict(train).items() if k not in ("seeds", "threads")}
    for r in runs:
        rows = estimated_rows(counts, r.setup, r.test_domain)
        train_step = Step(
            id=f"train/{r.id}", params={**train_params, "seed": r.seed, "mixture": r.mixture.name},
            depends=["mixtures"], run=lambda: None,
            outputs=[r.run_dir / "checkpoints" / f"epoch_{train.epochs}.pt"],
            estimate=rows * train.epochs / throughput + 5,
        )
        train_step.run = _bind(_train, config, r, progress, train_step)  # reads its key late
        steps.append(train_step)
        steps.append(Step(
            id=f"eval/{r.id}", params=_asdict(config.eval), depends=[f"train/{r.id}"],
            run=_bind(_evaluate, config, r, progress), outputs=[r.run_dir / "eval" / "zero_shot.csv"],
            estimate=test_images * n_eval_epochs / inference + 3,
        ))

    an = config.analyses
    n_classes, n_heldout = counts["classes"], counts["heldout_classes"]
    n_subset = {"held-out": n_heldout, "seen": n_classes - n_heldout, "all": n_classes}[an.classes]
    per_class = min(an.max_images_per_class, counts["test_per_class"])
    n_domains = len(DOMAINS)
    params = {
        "cka": {"max_images_per_class": an.max_images_per_class},
        "patching": {"classes": an.classes, "max_images_per_class": an.max_images_per_class,
                     "patch_source": an.patch_source},
        "circuits": {"classes": an.classes, "circuit_classes": an.circuit_classes,
                     "circuit_images": an.circuit_images, "circuit_fraction": an.circuit_fraction,
                     "circuit_method": an.circuit_method, "circuit_edge_method": an.circuit_edge_method},
    }
    for r in analysed_runs(config):
        if an.cka:
            steps.append(Step(
                id=f"cka/{r.id}", params=params["cka"], depends=[f"train/{r.id}"],
                run=_bind(_cka, config, r, progress), outputs=[r.analysis_dir / "cka" / "cka.csv"],
                estimate=n_domains * n_classes * per_class / inference + 10,
            ))
        if an.patching:
            steps.append(Step(
                id=f"patching/{r.id}", params=params["patching"], depends=[f"train/{r.id}"],
                run=_bind(_patch, config, r, progress),
                outputs=[_patch_summary(config, r)],
                estimate=PATCH_FORWARDS * n_subset * per_class / inference + 10,
            ))
        if an.circuits:
            k = min(an.circuit_classes or n_subset, n_subset)
            steps.append(Step(
                id=f"circuits/{r.id}", params=params["circuits"], depends=[f"train/{r.id}"],
                run=_bind(_circuits, config, r, progress),
                outputs=[r.analysis_dir / "circuits" / "comparison_summary.csv"],
                estimate=k * n_domains * an.circuit_images * CIRCUIT_PASSES_PER_IMAGE / throughput
                + 10,
            ))

    analysis_ids = [s.id for s in steps if s.id.split("/")[0] in ("eval", "cka", "patching", "circuits")]
    steps.append(Step(
        id="report", params={"config": config.to_dict(), "version": 3}, depends=analysis_ids,
        run=lambda: _report(config), outputs=[out / "report.md", out / "report.html"], estimate=20.0,
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
    state_dir = config.out_dir / STATE_DIR
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
    """Plan and run the experiment, or with ``dry_run`` only print the plan.

    Returns ``{step id: "done" | "skipped" | "planned"}``.
    """
    steps = plan(config, progress=progress)
    if dry_run:
        log(format_plan(config, steps))
        return {s.id: "planned" for s in steps}
    config.out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(config.out_dir / "config.json", json.dumps(config.to_dict(), indent=2))
    log(f"experiment {config.name!r}: {len(steps)} steps, output in {config.out_dir}")
    status = run_steps(steps, config.out_dir / STATE_DIR, log=log)
    log(f"report: {config.out_dir / 'report.md'}")
    return status


# ---------------------------------------------------------------- step bodies


def _generate(config: ExperimentConfig, progress: bool) -> None:
    from training.synth import SynthConfig, generate_dataset

    data = config.data
    generate_dataset(config.data_root, SynthConfig(
        image_size=data.image_size, n_train=data.n_train, n_test=data.n_test, n_base=data.n_base,
        seed=data.seed, classes=data.classes or None), workers=data.workers, progress=progress)


def _build_mixtures(config: ExperimentConfig, progress: bool) -> None:
    from training.mixtures import build_mixtures

    mix = config.mixtures
    options = dict(size_rule=mix.size_rule, selection=mix.selection, captions=mix.captions,
                   seed=mix.seed, size=mix.size or None)
    if config.data.source == "domainnet":
        options["base_tsv"] = str(config.base_tsv.resolve())
    build_mixtures(config.data_root, config.out_dir / "mixtures", setups=mix.setups,
                   test_domains=mix.test_domains, progress=progress, **options)


def _train(config: ExperimentConfig, run: RunPlan, progress: bool, step: Step) -> None:
    from training.train import TrainConfig, train_clip

    train = config.train
    _claim_run_dir(run.run_dir, step.key)
    with torch_threads(train.threads):
        train_clip(TrainConfig(
            mixture=run.mixture, out=run.run_dir, model=train.model, epochs=train.epochs,
            batch_size=train.batch_size, lr=train.lr, wd=train.weight_decay,
            warmup_steps=train.warmup_steps or None, seed=run.seed, device=train.device,
            progress=progress,
        ))


def _claim_run_dir(run_dir: Path, key: str) -> None:
    """Mark ``run_dir`` as this step's before training. A run the pipeline trained for other
    inputs (its step key changed) is moved aside to ``<run>.stale`` rather than deleted, so
    the new run starts clean; a run of the same key resumes where it stopped."""
    marker = run_dir / "pipeline_step.key"
    if marker.is_file() and marker.read_text() != key:
        stale = run_dir.with_name(run_dir.name + ".stale")
        shutil.rmtree(stale, ignore_errors=True)
        run_dir.rename(stale)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(marker, key)


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


def _analysis_classes(config: ExperimentConfig, run: RunPlan) -> list[str]:
    from training.domainnet import class_names, heldout_classes

    heldout = list(heldout_classes(config.data_root))
    if config.analyses.classes == "held-out":
        return heldout
    if config.analyses.classes == "seen":
        return [c for c in class_names(config.data_root) if c not in set(heldout)]
    return list(class_names(config.data_root))


def _cka(config: ExperimentConfig, run: RunPlan, progress: bool) -> None:
    from domainlens.experiments.cka import CKASettings, cka_run
    from training.domainnet import class_names, heldout_classes

    an = config.analyses
    n_heldout, n_all = len(heldout_classes(config.data_root)), len(class_names(config.data_root))
    sizes = {"held-out": n_heldout, "seen": n_all - n_heldout, "all": n_all}
    # unbiased HSIC needs at least 4 rows (classes); smaller subsets are left out
    subsets = tuple(s for s in ("held-out", "seen", "all") if sizes[s] >= 4)
    settings = CKASettings(classes=subsets, kernels=("linear", "rbf"),
                           max_per_class=an.max_images_per_class, seed=0, progress=progress)
    with torch_threads(an.threads):
        cka_run(run.run_dir, settings=settings, out=run.analysis_dir / "cka",
                cache_dir=run.analysis_dir / "cache", device=analysis_device(config))


def _patch_summary(config: ExperimentConfig, run: RunPlan) -> Path:
    source, target = config.analyses.patch_source, run.test_domain
    return run.analysis_dir / "patching" / f"patching_{source}_to_{target}.csv"


def _patch(config: ExperimentConfig, run: RunPlan, progress: bool) -> None:
    from domainlens.experiments.patching import PatchSettings, patch_run

    an = config.analyses
    settings = PatchSettings(classes=an.classes, max_per_class=an.max_images_per_class,
                             progress=progress)
    with torch_threads(an.threads):
        patch_run(run.run_dir, an.patch_source, run.test_domain, settings=settings,
                  out=run.analysis_dir / "patching", device=analysis_device(config))


def _circuits(config: ExperimentConfig, run: RunPlan, progress: bool) -> None:
    from domainlens.experiments.circuits import CircuitSettings, run_circuits

    an = config.analyses
    classes = _analysis_classes(config, run)
    if an.circuit_classes:
        classes = classes[: an.circuit_classes]
    settings = CircuitSettings(n_images=an.circuit_images, fraction=an.circuit_fraction,
                               method=an.circuit_method, edge_method=an.circuit_edge_method)
    with torch_threads(an.threads):
        run_circuits(run.run_dir, classes=classes, settings=settings,
                     out=run.analysis_dir / "circuits", device=analysis_device(config),
                     progress=progress)


def _report(config: ExperimentConfig) -> None:
    from .report import write_report

    write_report(config)


# ---------------------------------------------------------------- helpers


def _bind(fn: Callable[..., None], *args: object) -> Callable[[], None]:
    return lambda: fn(*args)


def _asdict(section: object) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(section).items()}


def _generator_version() -> int:
    from training.synth import GENERATOR_VERSION

    return GENERATOR_VERSION


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _duration(seconds: float) -> str:
    seconds = math.ceil(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
