"""Where every file of an experiment lives: the one place that spells run and analysis paths.

The experiments (:mod:`domainlens.experiments`), the pipeline (:mod:`domainlens.pipeline`)
and the report (:mod:`domainlens.report`) read their file names from here, so a name changed
once changes everywhere. An experiment's output folder ``<out>``::

    <out>/config.json                  the resolved config
    <out>/data/                        generated images (source = "synth")
    <out>/mixtures/<D>/<name>.tsv      one mixture per (test domain D, setup)
    <out>/runs/<D>/<name>-s<seed>/     one training run (checkpoints, eval/zero_shot.csv)
    <out>/runs/shared/lso-real-only-s<seed>/   natural-only with [experiments] shared_runs
    <out>/runs/<D>/<name>-supervised-s<seed>/  the supervised baseline on the same mixture
    (with [data] heldout = "random": mixtures/split<k>/<D>/..., runs/<D>/<name>-split<k>-s<seed>)
    <out>/analyses/<D>/<name>-s<seed>/{cka,patching,circuits,embeddings,features,cache}/   (each analysis folder
                                       with its controls.csv: value, reference, excess)
    <out>/results/                     the tidy tables and the figures drawn from them (PNG+PDF)
    <out>/report.md, report.html       results tables, figures and per-step timings
    <out>/.state/                      one record per finished step (key, outputs, seconds)

The attribute-object experiment (``[data] source = "ao"``)::

    <out>/data/ao-e<knob>/             one AO root per knob value, its mixture in
                                       mixtures/real/ao-e<knob>.tsv (training.attributes)
    <out>/runs/ao/ao-e<knob>-s<seed>/  a CLIP run (eval/ao.csv); ao-e<knob>-supervised-s<seed>/
    <out>/results/ao_accuracy.csv, ao_summary.csv, ao_heldout_vs_nmi.{png,pdf,csv},
                 ao_cka.csv, ao_cka_by_layer.{png,pdf,csv} (with [ao] cka)

Inside a run directory the training side's names are :mod:`training.checkpoints`'s
(``checkpoints/``, ``run.json``, ``mixture.json``) and :mod:`training.evaluate`'s
(``eval/zero_shot.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ExperimentConfig

# ---------------------------------------------------------------- experiment folder
CONFIG_FILE = "config.json"
MIXTURES_DIR = "mixtures"
RUNS_DIR = "runs"
ANALYSES_DIR = "analyses"
RESULTS_DIR = "results"
STATE_DIR = ".state"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
#: Written into a run directory by the pipeline: the key of the step that trains it.
RUN_KEY_FILE = "pipeline_step.key"
#: Suffix of a run directory moved aside when its settings changed (never deleted).
STALE_SUFFIX = ".stale"

# ---------------------------------------------------------------- per-run analyses
CKA_DIR = "cka"
CKA_TABLE = "cka.csv"
CKA_BY_LAYER = "cka_by_layer.png"
PATCHING_DIR = "patching"
CIRCUITS_DIR = "circuits"
CIRCUIT_NODES = "circuit_nodes.csv"
CIRCUIT_EDGES = "circuit_edges.csv"
FAITHFULNESS = "faithfulness.csv"
COMPARISON = "comparison.csv"
COMPARISON_SUMMARY = "comparison_summary.csv"
COMPARISON_GROUPS = "comparison_groups.csv"
NODE_SHARING_FIGURE = "node_sharing.png"
CIRCUIT_SIMILARITY_FIGURE = "circuit_similarity.png"


def circuit_variant_dir(name: str) -> str:
    """Folder of the circuits of ``[analyses.circuit_variants]`` entry ``name``."""
    return f"{CIRCUITS_DIR}-{name}"


ACTIVATION_CACHE = "cache"
#: Each analysis folder's value/reference/excess table (issue 13's controls).
CONTROLS = "controls.csv"
EMBEDDINGS_DIR = "embeddings"
SEPARATION_TABLE = "separation.csv"
SEPARATION_DIMS = "separation_dims.csv"
DOMAIN_PROBE = "domain_probe.csv"
UMAP_TABLE = "umap.csv"
SEPARATION_FIGURE = "separation.png"
DOMAIN_PROBE_FIGURE = "domain_probe.png"
UMAP_FIGURE = "umap.png"
FEATURES_DIR = "features"
SAE_QUALITY = "sae_quality.csv"
SAE_HISTORY = "sae_history.csv"
SHARING_TABLE = "sharing.csv"
SHARING_SUMMARY = "sharing_summary.csv"
SHARING_SCORES = "sharing_scores.csv"
SHARING_FIGURE = "sharing.png"
SHARING_BY_LAYER = "sharing_by_layer.png"
# ---------------------------------------------------------------- attribute-object experiment
AO_RUNS = "ao"
AO_TABLE = "ao_accuracy.csv"
AO_SUMMARY = "ao_summary.csv"
AO_FIGURE = "ao_heldout_vs_nmi"
AO_CKA = "ao_cka.csv"
AO_CKA_FIGURE = "ao_cka_by_layer"


def ao_name(entanglement: float) -> str:
    """``ao-e<knob>``: an AO root's and its mixture's name (``ao-e0.5``,
    :func:`training.attributes.mixture_name`)."""
    from training.attributes import mixture_name

    return mixture_name(entanglement)


def ao_data_root(config: ExperimentConfig, entanglement: float) -> Path:
    """``<out>/<[data] root>/ao-e<knob>``: the AO root of one knob value."""
    return config.data_root / ao_name(entanglement)


def ao_run_id(entanglement: float, seed: int, kind: str = "clip") -> str:
    """``ao-e<knob>-s<seed>`` (CLIP) or ``ao-e<knob>-supervised-s<seed>``."""
    middle = "-supervised" if kind == "supervised" else ""
    return f"{ao_name(entanglement)}{middle}-s{seed}"


def ao_run_dir(config: ExperimentConfig, entanglement: float, seed: int,
               kind: str = "clip") -> Path:
    """``<out>/runs/ao/<ao_run_id>``."""
    return config.out_dir / RUNS_DIR / AO_RUNS / ao_run_id(entanglement, seed, kind)


ALIGNED_DIR = "aligned_captions"
ALIGNED_TABLE = "aligned_captions.csv"
ALIGNED_FIGURE = "aligned_captions.png"


def cka_heatmaps(subset: str, kernel: str) -> str:
    """Figure stem of one (class subset, kernel) CKA heatmap grid."""
    return f"cka_heatmaps_{subset}_{kernel}"


def umap_without(domain: str) -> str:
    """Figure of the UMAP picture without one domain (``umap_no_quickdraw.png``)."""
    return f"umap_no_{domain}.png"


def sae_file(site: str) -> str:
    """Weights of the SAE trained on one site's activations."""
    return f"sae_{site.replace('.', '_')}.pt"


def patching_summary(source: str, target: str) -> str:
    """The tidy patching table of one (source, target) domain pair."""
    return f"patching_{source}_to_{target}.csv"


def patching_examples(source: str, target: str) -> str:
    """The per-example patching table of one (source, target) domain pair."""
    return f"patching_examples_{source}_to_{target}.csv"


def circuit_drawing(safe_class: str) -> str:
    """Figure of one class's circuits in every domain (``safe_class``: file-safe name)."""
    return f"circuits_{safe_class}.png"


def eval_table(run_dir: Path) -> Path:
    """``<run>/eval/zero_shot.csv`` (names owned by :mod:`training.evaluate`)."""
    from training.evaluate import EVAL_DIR, TABLE_FILE

    return Path(run_dir) / EVAL_DIR / TABLE_FILE


# ---------------------------------------------------------------- report results
CONTACT_SHEET = "contact_sheet"


# ---------------------------------------------------------------- the runs of a config
#: Folder of the runs shared by every test domain (natural-only with ``shared_runs``).
SHARED_DIR = "shared"
#: The experiment each run belongs to (``main``: the configured setups).
EXPERIMENTS = ("main", "supervised", "domain-interp", "allow", "aligned")


@dataclass(frozen=True)
class RunPlan:
    """One training run of the experiment, as seen from one test domain, and where its files
    go. A shared run (natural-only with ``[experiments] shared_runs``) has one plan per test
    domain with the same ``run_dir`` and ``train_id``: trained and scored once, reported per
    test domain."""

    test_domain: str
    setup: str
    seed: int
    mixture: Path       # the mixture TSV
    run_dir: Path
    kind: str = "clip"                       # or "supervised"
    experiment: str = "main"                 # one of EXPERIMENTS
    split: int | None = None                 # the class split's seed (heldout = "random")
    allow: float = 0.0
    other_domains: tuple[str, ...] = ()
    shared: bool = False
    captions: str | None = None              # None: [mixtures] captions; "aligned": the twin

    @property
    def label(self) -> str:
        """The run's setup with its variant: ``cg-low-allow0.2``, ``domain-interp-cq``,
        ``cg-high-supervised``."""
        label = self.setup
        if self.other_domains:
            from training.domains import DOMAIN_LETTERS

            label += "-" + "".join(DOMAIN_LETTERS[d] for d in self.other_domains)
        if self.allow:
            label += f"-allow{float(self.allow)}"
        if self.captions == "aligned":
            label += "-aligned"
        if self.kind == "supervised":
            label += "-supervised"
        return label

    @property
    def id(self) -> str:
        split = "" if self.split is None else f"split{self.split}/"
        return f"{self.test_domain}/{self.label}/{split}s{self.seed}"

    @property
    def train_id(self) -> str:
        """Id of the run's training and evaluation steps (shared runs: one for all test
        domains)."""
        if not self.shared:
            return self.id
        split = "" if self.split is None else f"split{self.split}/"
        return f"{SHARED_DIR}/{self.label}/{split}s{self.seed}"

    @property
    def table_id(self) -> str:
        """The run's name in the experiment's tables, ``<test domain>/<run dir>``: run
        directory names repeat across test domains (``lso-real-only-s0``)."""
        return f"{self.test_domain}/{self.run_dir.name}"

    @property
    def analysis_dir(self) -> Path:
        return self.run_dir.parent.parent.parent / ANALYSES_DIR / self.test_domain / self.run_dir.name

    @property
    def eval_table(self) -> Path:
        return eval_table(self.run_dir)

    def spec(self, config: ExperimentConfig, heldout: tuple[str, ...] | None = None):
        """The run's :class:`training.mixtures.MixtureSpec` (``heldout``: the split's
        classes, ``None``: the root's)."""
        from training.mixtures import MixtureSpec

        mix = config.mixtures
        # a shared run's mixture is filed under the first test domain (its spec needs one)
        domain = config.mixtures.test_domains[0] if self.shared else self.test_domain
        setup = "domain-interp" if self.other_domains else self.setup
        return MixtureSpec(setup=setup, test_domain=domain, data_root=str(config.data_root),
                           captions=self.captions or mix.captions, allow=self.allow,
                           other_domains=self.other_domains, heldout=heldout,
                           size_rule=mix.size_rule, size=mix.size or None,
                           selection=mix.selection, seed=mix.seed)


def mixture_names(config: ExperimentConfig) -> dict[tuple[str, str], str]:
    """Paper file name of each (test domain, setup) mixture."""
    from training.mixtures import MixtureSpec

    return {(d, s): MixtureSpec(setup=s, test_domain=d, data_root=str(config.data_root),
                                captions=config.mixtures.captions).name
            for d in config.mixtures.test_domains for s in config.mixtures.setups}


def _families(config: ExperimentConfig) -> list[tuple[str, str, str, float, tuple[str, ...],
                                                     str | None]]:
    """(experiment, test domain, setup, allow, other domains, captions) of every CLIP mixture:
    the configured setups, then each experiment's runs with their endpoints (domain
    interpolation: cg-low and cg-high; allow: the CG setup and its upper bound; aligned: the
    CG high-diversity twins with aligned captions), once each."""
    ex = config.experiments
    out: list[tuple[str, str, str, float, tuple[str, ...], str | None]] = []
    for d in config.mixtures.test_domains:
        out += [("main", d, s, 0.0, (), None) for s in config.mixtures.setups]
    for d in ex.domain_interp:
        out += [("domain-interp", d, "cg-low", 0.0, (), None)]
        out += [("domain-interp", d, "domain-interp", 0.0, sub, None) for sub in ex.subsets(d)]
        out += [("domain-interp", d, "cg-high", 0.0, (), None)]
    if ex.allow:
        for d in config.mixtures.test_domains:
            for setup in ex.allow_setups:
                upper = "upper-" + setup.split("-")[1]
                out += [("allow", d, setup, 0.0, (), None)]
                out += [("allow", d, setup, float(p), (), None) for p in sorted(ex.allow)]
                out += [("allow", d, upper, 0.0, (), None)]
    out += [("aligned", d, "cg-high", 0.0, (), "aligned") for d in ex.aligned]
    seen: set[tuple] = set()
    unique = []
    for item in out:  # an endpoint that is a configured setup is the same run
        if item[1:] not in seen:
            seen.add(item[1:])
            unique.append(item)
    return unique


def split_seeds(config: ExperimentConfig) -> tuple[int | None, ...]:
    """The class splits runs are repeated over (``(None,)``: the root's fixed split)."""
    return (None,) if config.data.heldout == "fixed" else tuple(config.data.split_seeds)


def run_plans(config: ExperimentConfig) -> list[RunPlan]:
    """Every training run (one plan per test domain for a shared run), ordered by test
    domain, setup, seed (the configured setups first, then the experiments'), each class split
    after another; supervised runs follow their experiment's CLIP runs."""
    from training.mixtures import MixtureSpec

    out = config.out_dir
    ex = config.experiments
    plans: list[RunPlan] = []
    for split in split_seeds(config):
        tag = "" if split is None else f"-split{split}"
        mixtures = out / MIXTURES_DIR / ("" if split is None else f"split{split}")
        for experiment, d, setup, allow, others, captions in _families(config):
            shared = ex.shared_runs and setup == "natural-only" and captions is None
            home = config.mixtures.test_domains[0] if shared else d
            name = MixtureSpec(setup=setup, test_domain=home, data_root=str(config.data_root),
                               captions=captions or config.mixtures.captions, allow=allow,
                               other_domains=others).name
            runs = out / RUNS_DIR / (SHARED_DIR if shared else d)
            kinds = ["clip"] + (["supervised"] if ex.supervised and experiment == "main" else [])
            for kind in kinds:
                suffix = "-supervised" if kind == "supervised" else ""
                for seed in config.train.seeds:
                    plans.append(RunPlan(
                        d, "domain-interp" if others else setup, seed,
                        mixtures / home / f"{name}.tsv", runs / f"{name}{suffix}{tag}-s{seed}",
                        kind=kind, experiment="supervised" if kind == "supervised" else experiment,
                        split=split, allow=allow, other_domains=others, shared=shared,
                        captions=captions))
    return plans


def main_runs(config: ExperimentConfig) -> list[RunPlan]:
    """The CLIP runs of the configured setups (the headline's)."""
    return [r for r in run_plans(config) if r.experiment == "main"]


def analysed_runs(config: ExperimentConfig) -> list[RunPlan]:
    """The runs the mechanistic analyses look at."""
    an = config.analyses
    return [r for r in main_runs(config)
            if r.setup in config.analysed_setups and r.test_domain in config.analysed_test_domains
            and r.seed in an.seeds]


def aligned_twin(config: ExperimentConfig, run: RunPlan) -> RunPlan | None:
    """The aligned-captions twin of an analysed CG high-diversity run (``[experiments]
    aligned``): the same test domain, seed and rows, captions without domain words; ``None``
    for any other run."""
    return next((r for r in run_plans(config) if r.experiment == "aligned"
                 and (r.test_domain, r.setup, r.seed, r.split)
                 == (run.test_domain, run.setup, run.seed, run.split)), None)


def seed_partner(config: ExperimentConfig, run: RunPlan) -> RunPlan | None:
    """The run whose analysis is ``run``'s ``seed`` reference: the same (setup, test domain)
    with the next analysed seed (cyclically: seeds 0, 1, 2 use 1, 2, 0); ``None`` with one
    analysed seed."""
    seeds = list(config.analyses.seeds)
    if len(seeds) < 2 or run.seed not in seeds:
        return None
    partner = seeds[(seeds.index(run.seed) + 1) % len(seeds)]
    return next(r for r in main_runs(config)
                if (r.test_domain, r.setup, r.seed, r.split)
                == (run.test_domain, run.setup, partner, run.split))
