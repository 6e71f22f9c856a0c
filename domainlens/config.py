"""Experiment configs for ``domainlens reproduce``: TOML files validated into dataclasses.

A config has a top-level ``name`` and the sections ``[data]``, ``[mixtures]``, ``[train]``,
``[eval]``, ``[analyses]``, ``[experiments]``, ``[ao]`` (the attribute-object experiment of
``[data] source = "ao"``) and ``[run]`` (how the steps are executed: in
this process, as local subprocesses or as SLURM jobs; no step's inputs). Every key is checked:
an unknown key, setup, domain, class subset or a value of the wrong type is an error naming it
and the allowed values, raised before any work starts. Shipped configs (``smoke``,
``quickstart``, ``study``, ``paper``) live in ``domainlens/configs/`` and are addressed by
name.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from training.captions import CAPTION_STYLES
from training.domains import DOMAINS, check_domains
from training.mixtures import SELECTIONS, SETUPS, SIZE_RULES, TEST_DOMAINS
from training.util.validate import check_choice, check_choices, check_device, check_number

CONFIG_DIR = Path(__file__).parent / "configs"
#: ``ao``: the attribute-object experiment (``[ao]``; :mod:`domainlens.ao_experiment`) instead
#: of the domain experiment.
DATA_SOURCES = ("synth", "domainnet", "ao")
ANALYSIS_CLASSES = ("held-out", "seen", "all")
#: interp.circuits' NODE_METHODS and EDGE_METHODS (not imported: that loads torch; a test
#: keeps them equal).
CIRCUIT_METHODS = ("atp", "ig", "ig_loop")
CIRCUIT_EDGE_METHODS = ("gxa", "ig")
#: What an ``[analyses.circuit_variants]`` entry may change of the circuits settings (the
#: method, its baseline and node/edge selection; images, classes and controls stay shared).
CIRCUIT_VARIANT_KEYS = ("method", "edge_method", "steps", "rule", "baseline", "fraction",
                        "threshold", "top_k", "edge_rank", "metric", "wl_h", "neighbours")
EVAL_EPOCHS = ("last", "all")
#: Reference values computed beside every similarity (issue 13): the run's epoch-0
#: checkpoint, a class-shuffled pairing, another seed's run of the same setup.
REFERENCES = ("init", "class-shuffle", "seed")
PIPELINE_SETUPS = tuple(s for s in SETUPS if s != "domain-interp")
#: ``[run] executor``: in this process one step after another, as submitit subprocesses on
#: this machine, or as submitit SLURM jobs (training waves as job arrays).
EXECUTORS = ("inline", "local", "slurm")
#: sbatch options submitit sets itself (the job array, the log files): not for ``[run] extra``.
RESERVED_SBATCH = ("array", "output", "error", "open-mode", "signal", "wckey")


@dataclass(frozen=True)
class DataSection:
    """Where the images come from: generated (``synth``) or a DomainNet-format root.

    ``root``/``base_tsv``: relative paths are taken relative to the experiment's output folder
    for ``synth`` (where the images are generated) and to the working directory for
    ``domainnet``. The generator settings (``image_size`` ... ``classes``) apply to ``synth``.
    ``heldout``: ``"fixed"`` (the root's declared held-out classes) or ``"random"``:
    ``heldout_count`` classes drawn per seed of ``split_seeds`` (one class split each; every
    run is trained once per split, so each number gets a spread over splits).
    """

    source: str = "synth"
    root: str = "data"
    base_tsv: str = ""
    image_size: int = 64
    n_train: int = 64
    n_test: int = 24
    n_base: int = 48
    classes: tuple[str, ...] = ()
    seed: int = 0
    workers: int = 2
    heldout: str = "fixed"
    heldout_count: int = 0
    split_seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class MixturesSection:
    """Which mixtures to build: every setup for every test domain, under one size rule."""

    test_domains: tuple[str, ...] = ("sketch", "quickdraw")
    setups: tuple[str, ...] = ("natural-only", "cg-low", "cg-high", "leave-out-domain")
    size_rule: str = "paper"
    size: int = 0
    selection: str = "first"
    captions: str = "domain"
    seed: int = 0


@dataclass(frozen=True)
class TrainSection:
    """One CLIP training run per (setup, test domain, seed). ``warmup_steps = 0``: 5% of all
    steps. ``threads``: torch intra-op threads (0: leave torch's default)."""

    model: str = "tiny-vit"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.2
    warmup_steps: int = 0
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"
    threads: int = 0
    precision: str = "fp32"


@dataclass(frozen=True)
class EvalSection:
    """Zero-shot evaluation of every run: the last checkpoint or all of them (learning
    curves; costs one pass over the test splits per epoch)."""

    epochs: str = "last"
    batch_size: int = 256


@dataclass(frozen=True)
class AnalysesSection:
    """Which mechanistic analyses run on which runs (empty ``setups``/``test_domains``: all
    configured ones). ``classes`` is the class subset all three analyses use;
    ``circuit_classes`` caps how many of its classes get circuits (0: all).
    ``circuit_method``/``circuit_edge_method``: node and edge attribution (default the fast
    ``atp``/``gxa``; the paper's is ``ig``/``ig``, 10 steps from a zero baseline).
    ``embeddings``: embedding separation (domain-mean and class-mean distances, a linear
    domain probe, densMAP pictures of up to ``umap_per_domain`` images per domain);
    ``features``: SAE feature sharing on the final embedding (``sae_epochs`` of training).
    ``references``: the controls computed beside every similarity (``init``,
    ``class-shuffle``, ``seed``); ``seed`` is added by itself when more than one seed is
    analysed, unless ``seed_reference = false``. ``n_boot``: bootstrap resamples of the
    intervals (analyses' excess over a reference, the report's one-seed accuracy findings).
    ``circuit_variants``: named circuits settings computed beside the default ones on every
    analysed run (``{name = {method = "ig", edge_method = "ig"}, ...}``, keys among
    :data:`CIRCUIT_VARIANT_KEYS`), each with the same controls and its own findings rows:
    how a circuit finding depends on the attribution method, baseline and node fraction."""

    setups: tuple[str, ...] = ("cg-high",)
    test_domains: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    cka: bool = True
    patching: bool = True
    circuits: bool = True
    embeddings: bool = False
    features: bool = False
    classes: str = "held-out"
    max_images_per_class: int = 16
    patch_source: str = "real"
    circuit_classes: int = 0
    circuit_images: int = 10
    circuit_fraction: float = 0.1
    circuit_method: str = "atp"
    circuit_edge_method: str = "gxa"
    references: tuple[str, ...] = ("init", "class-shuffle")
    seed_reference: bool = True
    n_boot: int = 1000
    threads: int = 1
    umap_per_domain: int = 500
    sae_epochs: int = 100
    circuit_variants: dict = field(default_factory=dict)


#: The paper's domain-interpolation subsets (Fig. 3/8), per test domain, as extra domains
#: beside real and the test domain's seen classes.
PAPER_DOMAIN_SUBSETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sketch": (("quickdraw",), ("painting",), ("infograph",), ("clipart",),
               ("clipart", "quickdraw"), ("clipart", "painting"), ("clipart", "infograph"),
               ("clipart", "painting", "quickdraw"), ("clipart", "infograph", "painting")),
    "clipart": (("sketch",), ("quickdraw",), ("painting",), ("infograph",),
                ("quickdraw", "sketch"), ("infograph", "sketch"), ("painting", "sketch"),
                ("painting", "quickdraw", "sketch"), ("infograph", "painting", "sketch")),
}
ALLOW_SETUPS = ("cg-low", "cg-high")
ROBUSTNESS_FITS = ("pooled", "per-domain")
HELDOUT_MODES = ("fixed", "random")


@dataclass(frozen=True)
class ExperimentsSection:
    """The paper's data-centric experiments beside the main setups (issue 14).

    ``supervised``: a supervised baseline run per main (setup, test domain, seed, split).
    ``domain_interp``: test domains that get the domain interpolation (real + D's seen classes
    + a subset of the other rendition domains); ``domain_subsets``: per test domain a list of
    subsets (lists of domain names), default the paper's for sketch and clipart.
    ``allow``: fractions p in (0, 1) of D's held-out classes added to each of ``allow_setups``
    for every test domain (the endpoints: the CG setup and its upper bound).
    ``shared_runs``: natural-only (which does not depend on the test domain) is trained once
    per seed and split and scored for every test domain. ``effective_robustness``: the report's
    figure and findings of every run's distance above the natural-only line (from the existing
    tables); ``robustness_fit``: that line over all natural-only runs (``pooled``) or per test
    domain. ``aligned``: test domains whose CG high-diversity runs get a twin trained with
    aligned captions (no domain words; same seed and rows); on the analysed ones, embedding
    separation and held-out accuracy of both side by side (issue 15; the paper: quickdraw)."""

    supervised: bool = False
    domain_interp: tuple[str, ...] = ()
    domain_subsets: dict = field(default_factory=dict)
    allow: tuple[float, ...] = ()
    allow_setups: tuple[str, ...] = ALLOW_SETUPS
    shared_runs: bool = False
    effective_robustness: bool = False
    robustness_fit: str = "pooled"
    aligned: tuple[str, ...] = ()

    def subsets(self, test_domain: str) -> tuple[tuple[str, ...], ...]:
        """The domain-interpolation subsets of ``test_domain`` (each in canonical order)."""
        given = self.domain_subsets.get(test_domain)
        chosen = PAPER_DOMAIN_SUBSETS.get(test_domain, ()) if given is None else given
        return tuple(tuple(d for d in DOMAINS if d in set(sub)) for sub in chosen)


@dataclass(frozen=True)
class AOSection:
    """The attribute-object experiment (``[data] source = "ao"``; issue 18): one AO root and
    mixture per value of the knob (:class:`training.attributes.AOSpec`), a CLIP per (knob,
    seed) and, with ``supervised``, an object-label baseline on the same images; with ``cka``,
    layerwise CKA between the colours on every CLIP run (with its epoch-0 reference). The
    images' size and seed are ``[data] image_size`` and ``seed``; the training seeds
    ``[train] seeds``.
    ``heldout_pairs``: ``[value, object]`` pairs (empty: one colour per object, the spec's
    default)."""

    entanglements: tuple[float, ...] = (0.0, 0.5, 1.0)
    objects: tuple[str, ...] = ("apple", "cup", "fish", "umbrella")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow")
    patterns: tuple[str, ...] = ("plain", "striped", "dotted")
    entangle: tuple[str, ...] = ("colour",)
    heldout_pairs: tuple = ()
    n_train: int = 1200
    n_test: int = 2
    supervised: bool = True
    cka: bool = False


@dataclass(frozen=True)
class RunSection:
    """How ``reproduce`` executes the steps (:mod:`domainlens.executors`). Not an input of any
    step: changing it reruns nothing.

    ``executor``: ``inline`` (this process, one step after another), ``local`` (submitit
    subprocesses on this machine) or ``slurm`` (submitit jobs; each wave of ready steps of one
    kind as one job array). ``jobs``: steps at a time; ``local``: 0 means one per visible GPU,
    or 1 on a CPU machine, and the CPU cores are divided between the jobs (torch threads);
    ``slurm``: array tasks running at a time (0: no limit). The SLURM options: ``partition``,
    ``account`` (empty: the cluster's default), ``gpus_per_job`` (requested per job when
    ``[train] device`` is not ``cpu``), ``cpus_per_job`` (also the job's torch threads; 0:
    the partition's default), ``time`` (minutes per job; also the local executor's limit),
    ``mem_gb`` (0: the partition's default), ``setup`` (shell lines run before each job, e.g.
    ``module load cuda``), ``extra`` (further sbatch options passed through as they are, e.g.
    ``{ qos = "high", constraint = "a100" }``)."""

    executor: str = "inline"
    jobs: int = 0
    partition: str = ""
    account: str = ""
    gpus_per_job: int = 1
    cpus_per_job: int = 0
    time: int = 720
    mem_gb: float = 0.0
    setup: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: data -> mixtures -> runs -> evaluation -> analyses -> report."""

    name: str
    out: str
    data: DataSection = field(default_factory=DataSection)
    mixtures: MixturesSection = field(default_factory=MixturesSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    analyses: AnalysesSection = field(default_factory=AnalysesSection)
    experiments: ExperimentsSection = field(default_factory=ExperimentsSection)
    ao: AOSection = field(default_factory=AOSection)
    run: RunSection = field(default_factory=RunSection)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def data_root(self) -> Path:
        root = Path(self.data.root)
        if root.is_absolute() or self.data.source == "domainnet":
            return root
        return self.out_dir / root

    @property
    def base_tsv(self) -> Path:
        """The natural base set: the generator's ``base.tsv`` or the configured file."""
        if self.data.source == "synth":
            return self.data_root / "base.tsv"
        return Path(self.data.base_tsv)

    @property
    def analysed_setups(self) -> tuple[str, ...]:
        return self.analyses.setups or self.mixtures.setups

    @property
    def analysed_test_domains(self) -> tuple[str, ...]:
        return self.analyses.test_domains or self.mixtures.test_domains

    @property
    def analysis_references(self) -> tuple[str, ...]:
        """The references the analyses compute: the configured ones, plus ``seed`` when more
        than one seed is analysed (and ``seed_reference`` is on)."""
        an = self.analyses
        refs = tuple(dict.fromkeys(an.references))
        if len(an.seeds) > 1 and an.seed_reference and "seed" not in refs:
            refs += ("seed",)
        return refs

    def replace(self, section: str | None = None, **values: Any) -> ExperimentConfig:
        """A copy with top-level fields, or fields of one section, replaced (and validated)."""
        if section is None:
            return validate(dataclasses.replace(self, **values))
        updated = _section(SECTIONS[section], {**dataclasses.asdict(getattr(self, section)),
                                               **values}, section)
        return validate(dataclasses.replace(self, **{section: updated}))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def inputs(self) -> dict[str, Any]:
        """:meth:`to_dict` without ``[run]``: what the results depend on (how the steps are
        executed does not change them)."""
        return {k: v for k, v in self.to_dict().items() if k != "run"}


SECTIONS: dict[str, type] = {"data": DataSection, "mixtures": MixturesSection,
                             "train": TrainSection, "eval": EvalSection,
                             "analyses": AnalysesSection, "experiments": ExperimentsSection,
                             "ao": AOSection, "run": RunSection}


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build a section dataclass, rejecting unknown keys and values of the wrong type."""
    defaults = cls()
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{where}]; allowed: {allowed}")
    out = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"[{where}] {key} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(f"[{where}] {key} must be a table, got {value!r}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"[{where}] {key} must be true or false, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"[{where}] {key} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"[{where}] {key} must be an integer, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"[{where}] {key} must be a string, got {value!r}")
        out[key] = value
    return cls(**out)


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Check every value with a closed set of choices or a range, and the values that must
    agree across sections; returns ``config``. Everything that would fail later (some only
    after all training: a patch source equal to a test domain, more circuit images than test
    images) fails here, before any work starts."""
    data, mix, train, ev, an = (config.data, config.mixtures, config.train, config.eval,
                                config.analyses)
    check_choice("[data] source", data.source, DATA_SOURCES)
    if data.source == "domainnet" and not data.base_tsv:
        raise ValueError("[data] source = 'domainnet' needs base_tsv (the natural base set, an "
                         "OpenCLIP TSV)")
    for key, low in (("image_size", 16), ("n_train", 1), ("n_base", 0), ("n_test", 1),
                     ("workers", 1), ("seed", 0)):
        check_number(f"[data] {key}", getattr(data, key), low=low, integer=True)
    if data.source == "synth":
        _check_synth_classes(data)
    if not mix.test_domains or not mix.setups:
        raise ValueError("[mixtures] needs at least one test domain and one setup")
    check_domains(mix.test_domains, TEST_DOMAINS)
    check_choices("[mixtures] setups", mix.setups, PIPELINE_SETUPS)
    check_choice("[mixtures] size_rule", mix.size_rule, SIZE_RULES)
    check_choice("[mixtures] selection", mix.selection, SELECTIONS)
    check_choice("[mixtures] captions", mix.captions, CAPTION_STYLES)
    if (mix.size_rule == "fixed") != (mix.size > 0):
        raise ValueError("[mixtures] size > 0 is required with size_rule = 'fixed', and only then")
    if not train.seeds:
        raise ValueError("[train] seeds must list at least one seed")
    check_number("[train] epochs", train.epochs, low=1, integer=True)
    check_number("[train] batch_size", train.batch_size, low=2, integer=True)  # contrastive pairs
    check_number("[train] lr", train.lr, low=0, low_open=True)
    check_number("[train] weight_decay", train.weight_decay, low=0)
    check_number("[train] warmup_steps", train.warmup_steps, low=0, integer=True)
    check_number("[train] threads", train.threads, low=0, integer=True)
    check_device("[train] device", train.device)
    check_choice("[train] precision", train.precision, ("fp32", "bf16", "fp16"))
    check_choice("[eval] epochs", ev.epochs, EVAL_EPOCHS)
    check_number("[eval] batch_size", ev.batch_size, low=1, integer=True)
    check_choices("[analyses] setups (must be among [mixtures] setups)", an.setups, mix.setups)
    check_domains(an.test_domains, mix.test_domains)
    check_choices("[analyses] seeds (must be among [train] seeds)", [str(s) for s in an.seeds],
                  [str(s) for s in train.seeds])
    check_choices("[analyses] classes", [an.classes], ANALYSIS_CLASSES)
    check_domains([an.patch_source], DOMAINS)
    check_choices("[analyses] circuit_method", [an.circuit_method], CIRCUIT_METHODS)
    check_choices("[analyses] circuit_edge_method", [an.circuit_edge_method], CIRCUIT_EDGE_METHODS)
    if not 0 < an.circuit_fraction <= 1:
        raise ValueError(f"[analyses] circuit_fraction must be in (0, 1], got {an.circuit_fraction}")
    if an.patching and an.patch_source in config.analysed_test_domains:
        raise ValueError(
            f"[analyses] patch_source {an.patch_source!r} is an analysed test domain; patching "
            "from a domain into itself measures nothing: choose another domain, e.g. 'real'"
        )
    check_number("[analyses] circuit_classes", an.circuit_classes, low=0, integer=True)
    check_number("[analyses] circuit_images", an.circuit_images, low=1, integer=True)
    check_number("[analyses] max_images_per_class", an.max_images_per_class, low=1,
                 integer=True)
    check_number("[analyses] threads", an.threads, low=0, integer=True)
    check_number("[analyses] umap_per_domain", an.umap_per_domain, low=1, integer=True)
    check_number("[analyses] sae_epochs", an.sae_epochs, low=1, integer=True)
    if an.circuits and data.source == "synth" and an.circuit_images > data.n_test:
        raise ValueError(
            f"[analyses] circuit_images = {an.circuit_images} is more than the {data.n_test} "
            "test images per class and domain that [data] n_test generates"
        )
    _check_circuit_variants(an)
    check_choices("[analyses] references", an.references, REFERENCES)
    if "seed" in an.references and len(an.seeds) < 2:
        raise ValueError("[analyses] references: 'seed' needs at least two [analyses] seeds, got "
                         f"{list(an.seeds)}")
    check_number("[analyses] n_boot", an.n_boot, low=10, integer=True)
    _check_heldout(data)
    _check_experiments(config)
    _check_ao(config)
    _check_run(config)
    return config


#: Sections the attribute-object experiment does not read (they must stay at their defaults).
AO_UNUSED_SECTIONS = ("mixtures", "analyses", "experiments")


def ao_specs(config: ExperimentConfig) -> dict[float, Any]:
    """One :class:`training.attributes.AOSpec` per ``[ao] entanglements`` value (validated:
    a bad value is one line naming it)."""
    from training.attributes import AOSpec

    ao = config.ao
    pairs = tuple(tuple(p) if isinstance(p, (list, tuple)) else p for p in ao.heldout_pairs)
    specs = {}
    for knob in ao.entanglements:
        check_number("[ao] entanglements", knob, low=0, high=1)
        try:
            specs[float(knob)] = AOSpec(
                objects=ao.objects, colours=ao.colours, patterns=ao.patterns,
                entanglement=float(knob), entangle=ao.entangle, heldout_pairs=pairs or None,
                n_train=ao.n_train, n_test=ao.n_test, image_size=config.data.image_size,
                seed=config.data.seed, captions="domain")
        except (ValueError, TypeError) as error:
            raise ValueError(f"[ao] {error}") from None
    return specs


def _check_ao(config: ExperimentConfig) -> None:
    """``[ao]`` only with ``[data] source = "ao"``, which in turn leaves the domain
    experiment's sections at their defaults (they would be silently ignored)."""
    if config.data.source != "ao":
        if config.ao != AOSection():
            raise ValueError("[ao] is for [data] source = 'ao' (the attribute-object "
                             f"experiment), got source {config.data.source!r}")
        return
    used = [name for name in AO_UNUSED_SECTIONS
            if getattr(config, name) != SECTIONS[name]()]
    if used:
        raise ValueError(f"[data] source = 'ao' runs the attribute-object experiment only; "
                         f"{['[' + n + ']' for n in used]} are not read by it: remove them")
    ao = config.ao
    if not ao.entanglements:
        raise ValueError("[ao] entanglements must list at least one value in [0, 1]")
    if len(set(ao.entanglements)) != len(ao.entanglements):
        raise ValueError(f"[ao] entanglements lists a value twice: {list(ao.entanglements)}")
    ao_specs(config)
    if ao.n_train < config.train.batch_size:
        raise ValueError(f"[ao] n_train = {ao.n_train} is less than one [train] batch of "
                         f"{config.train.batch_size}")


def _check_run(config: ExperimentConfig) -> None:
    """``[run]``: the executor and its options, each error naming the bad value."""
    run = config.run
    check_choice("[run] executor", run.executor, EXECUTORS)
    if run.executor == "slurm" and config.train.device.startswith("cuda:"):
        raise ValueError(f"[train] device = {config.train.device!r} names one GPU of this "
                         "machine; with executor = 'slurm' use 'auto' or 'cuda' (every job "
                         "gets its own GPU)")
    check_number("[run] jobs", run.jobs, low=0, integer=True)
    if run.executor == "inline" and run.jobs > 1:
        raise ValueError(f"[run] jobs = {run.jobs} needs executor = 'local' or 'slurm'; the "
                         "inline executor runs one step at a time")
    check_number("[run] gpus_per_job", run.gpus_per_job, low=0, integer=True)
    check_number("[run] cpus_per_job", run.cpus_per_job, low=0, integer=True)
    check_number("[run] time", run.time, low=1, integer=True)
    check_number("[run] mem_gb", run.mem_gb, low=0)
    for key in ("partition", "account"):
        value = getattr(run, key)
        if any(c.isspace() for c in value):
            raise ValueError(f"[run] {key} must be a SLURM {key} name without spaces, got "
                             f"{value!r}")
    for line in run.setup:
        if not isinstance(line, str):
            raise ValueError(f"[run] setup must list shell lines (strings), got {line!r}")
    reserved = [k for k in run.extra if k.replace("_", "-") in RESERVED_SBATCH]
    if reserved:
        raise ValueError(f"[run] extra: {reserved} are set by submitit itself (the job array "
                         f"and its logs); allowed: any other sbatch option")
    for key, value in run.extra.items():
        if isinstance(value, (dict, list)):
            raise ValueError(f"[run] extra.{key} must be a string, number or true (the value of "
                             f"sbatch --{key.replace('_', '-')}), got {value!r}")


def synth_class_count(data: DataSection) -> int:
    """How many classes the generator writes for ``data``."""
    from training.synth import SYNTH_CLASSES

    return len(data.classes or SYNTH_CLASSES)


def check_heldout_count(count: int, n_classes: int) -> None:
    """A random split must leave at least one seen class."""
    if count >= n_classes:
        raise ValueError(
            f"[data] heldout_count = {count} asks for more held-out classes than exist: the "
            f"data has {n_classes} classes and at least one must stay seen (at most "
            f"{n_classes - 1})")


def _check_heldout(data: DataSection) -> None:
    check_choice("[data] heldout", data.heldout, HELDOUT_MODES)
    if not data.split_seeds:
        raise ValueError("[data] split_seeds must list at least one seed")
    if len(set(data.split_seeds)) != len(data.split_seeds):
        raise ValueError(f"[data] split_seeds lists a seed twice: {list(data.split_seeds)}")
    for seed in data.split_seeds:
        check_number("[data] split_seeds", seed, low=0, integer=True)
    if data.heldout == "fixed":
        if data.heldout_count or tuple(data.split_seeds) != (0,):
            raise ValueError("[data] heldout_count and split_seeds are for heldout = 'random'; "
                             "the fixed split is the root's declared held-out classes")
        return
    check_number("[data] heldout_count", data.heldout_count, low=1, integer=True)
    if data.source == "synth":  # a DomainNet root's classes are counted at plan time
        check_heldout_count(data.heldout_count, synth_class_count(data))


def _check_experiments(config: ExperimentConfig) -> None:
    """The experiments' values: unknown domains in a subset, p outside (0, 1), ..."""
    ex, mix = config.experiments, config.mixtures
    check_choice("[experiments] robustness_fit", ex.robustness_fit, ROBUSTNESS_FITS)
    check_choices("[experiments] domain_interp (must be among [mixtures] test_domains)",
                  ex.domain_interp, mix.test_domains)
    check_choices("[experiments] domain_subsets (keys must be among domain_interp)",
                  list(ex.domain_subsets), ex.domain_interp)
    for domain in ex.domain_interp:
        allowed = tuple(d for d in DOMAINS if d not in ("real", domain))
        subsets = ex.domain_subsets.get(domain)
        if subsets is None and domain not in PAPER_DOMAIN_SUBSETS:
            raise ValueError(
                f"[experiments] domain_interp: the paper gives no subsets for {domain!r} "
                f"(only for {sorted(PAPER_DOMAIN_SUBSETS)}); list them in "
                f"[experiments.domain_subsets] {domain} = [[...], ...]")
        if subsets is None:
            continue
        if not isinstance(subsets, (list, tuple)) or not subsets:
            raise ValueError(f"[experiments] domain_subsets.{domain} must be a non-empty list "
                             f"of lists of domains, got {subsets!r}")
        for sub in subsets:
            if not isinstance(sub, (list, tuple)) or not sub:
                raise ValueError(f"[experiments] domain_subsets.{domain}: each subset must be a "
                                 f"non-empty list of domains among {list(allowed)}, got {sub!r}")
            check_choices(f"[experiments] domain_subsets.{domain}", list(sub), allowed)
            if set(sub) == set(allowed):
                raise ValueError(f"[experiments] domain_subsets.{domain}: {list(sub)} is every "
                                 "other domain, i.e. cg-high (already the interpolation's end)")
    for p in ex.allow:
        check_number("[experiments] allow", p, low=0, high=1, low_open=True, high_open=True)
    if len(set(ex.allow)) != len(ex.allow):
        raise ValueError(f"[experiments] allow lists a value twice: {list(ex.allow)}")
    check_choices("[experiments] allow_setups", ex.allow_setups, ALLOW_SETUPS)
    if ex.aligned:
        check_choices("[experiments] aligned (must be among [analyses] test_domains)",
                      ex.aligned, config.analysed_test_domains)
        if "cg-high" not in config.analysed_setups:
            raise ValueError("[experiments] aligned twins CG high-diversity runs: it needs "
                             f"'cg-high' among [analyses] setups, got {list(config.analysed_setups)}")
        if mix.captions != "domain":
            raise ValueError(f"[experiments] aligned needs [mixtures] captions = 'domain' (the "
                             f"standard twin), got {mix.captions!r}")


def _check_synth_classes(data: DataSection) -> None:
    """``[data] classes`` must be generator classes and include a held-out one (else there is
    nothing to measure generalisation on)."""
    if not data.classes:
        return
    from training.synth import SYNTH_CLASSES, SYNTH_HELDOUT_CLASSES

    names = [str(c).strip().lower().replace(" ", "_") for c in data.classes]
    check_choices("[data] classes", names, SYNTH_CLASSES)
    if len(set(names)) != len(names):
        raise ValueError(f"[data] classes lists a class twice: {list(data.classes)}")
    if not set(names) & set(SYNTH_HELDOUT_CLASSES):
        raise ValueError(
            f"[data] classes {list(data.classes)} include no held-out class; add some of "
            f"{sorted(SYNTH_HELDOUT_CLASSES)}"
        )


def _check_circuit_variants(an: AnalysesSection) -> None:
    """Names usable as folder names, tables of known keys; the values themselves are checked
    by the circuits settings when the plan is built (before any step runs)."""
    for name, variant in an.circuit_variants.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
            raise ValueError(f"[analyses.circuit_variants] name {name!r} must be lower-case "
                             "letters, digits, '.', '_' or '-' (it names a folder)")
        if not isinstance(variant, dict) or not variant:
            raise ValueError(f"[analyses.circuit_variants] {name} must be a non-empty table of "
                             f"settings, got {variant!r}")
        check_choices(f"[analyses.circuit_variants] {name} keys", list(variant),
                      CIRCUIT_VARIANT_KEYS)
        if "method" in variant:
            check_choices(f"[analyses.circuit_variants] {name}.method", [variant["method"]],
                          CIRCUIT_METHODS)
        if "edge_method" in variant:
            check_choices(f"[analyses.circuit_variants] {name}.edge_method",
                          [variant["edge_method"]], CIRCUIT_EDGE_METHODS)


def parse_config(raw: dict[str, Any], default_name: str = "experiment",
                 out: str | Path | None = None) -> ExperimentConfig:
    """A validated config from a parsed TOML table; ``out`` defaults to
    ``outputs/<name>``."""
    top = ["name", "out", *SECTIONS]
    unknown = sorted(set(raw) - set(top))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} at the top of the config; allowed: {top}")
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ValueError(f"[{name}] must be a table, got {table!r}")
        sections[name] = _section(cls, table, name)
    name = str(raw.get("name", default_name))
    out = str(out if out is not None else raw.get("out", f"outputs/{name}"))
    return validate(ExperimentConfig(name=name, out=out, **sections))


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def config_path(name_or_path: str | Path) -> Path:
    """The TOML file of a shipped config name (``quickstart``) or a path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        shipped = CONFIG_DIR / f"{name_or_path}.toml"
        if not shipped.is_file():
            raise ValueError(f"unknown config {str(name_or_path)!r}; shipped configs: "
                             f"{shipped_configs()}, or give a path to a .toml file")
        return shipped
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    return path


def load_config(name_or_path: str | Path, out: str | Path | None = None) -> ExperimentConfig:
    """Load and validate a shipped config by name or a TOML file by path.

    ``out`` overrides the output folder (default: the config's ``out``, else
    ``outputs/<name>``).
    """
    path = config_path(name_or_path)
    with open(path, "rb") as handle:
        try:
            raw = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from error
    try:
        return parse_config(raw, default_name=path.stem, out=out)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
