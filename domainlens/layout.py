"""Where every file of an experiment lives: the one place that spells run and analysis paths.

The experiments (:mod:`domainlens.experiments`), the pipeline (:mod:`domainlens.pipeline`)
and the report (:mod:`domainlens.report`) read their file names from here, so a name changed
once changes everywhere. An experiment's output folder ``<out>``::

    <out>/config.json                  the resolved config
    <out>/data/                        generated images (source = "synth")
    <out>/mixtures/<D>/<name>.tsv      one mixture per (test domain D, setup)
    <out>/runs/<D>/<name>-s<seed>/     one training run (checkpoints, eval/zero_shot.csv)
    <out>/analyses/<D>/<name>-s<seed>/{cka,patching,circuits,embeddings,features,cache}/
                                       (each analysis folder with its controls.csv:
                                       value, reference, excess)
    <out>/results/                     the tidy tables and the figures drawn from them (PNG+PDF)
    <out>/report.md, report.html       results tables, figures and per-step timings
    <out>/.state/                      one record per finished step (key, outputs, seconds)

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
@dataclass(frozen=True)
class RunPlan:
    """One training run of the experiment and where its files go."""

    test_domain: str
    setup: str
    seed: int
    mixture: Path       # the mixture TSV
    run_dir: Path

    @property
    def id(self) -> str:
        return f"{self.test_domain}/{self.setup}/s{self.seed}"

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


def mixture_names(config: ExperimentConfig) -> dict[tuple[str, str], str]:
    """Paper file name of each (test domain, setup) mixture."""
    from training.mixtures import MixtureSpec

    return {(d, s): MixtureSpec(setup=s, test_domain=d, data_root=str(config.data_root),
                                captions=config.mixtures.captions).name
            for d in config.mixtures.test_domains for s in config.mixtures.setups}


def run_plans(config: ExperimentConfig) -> list[RunPlan]:
    """Every training run, ordered by test domain, setup, seed."""
    out = config.out_dir
    return [RunPlan(d, s, seed, out / MIXTURES_DIR / d / f"{name}.tsv",
                    out / RUNS_DIR / d / f"{name}-s{seed}")
            for (d, s), name in mixture_names(config).items() for seed in config.train.seeds]


def analysed_runs(config: ExperimentConfig) -> list[RunPlan]:
    """The runs the mechanistic analyses look at."""
    an = config.analyses
    return [r for r in run_plans(config)
            if r.setup in config.analysed_setups and r.test_domain in config.analysed_test_domains
            and r.seed in an.seeds]


def seed_partner(config: ExperimentConfig, run: RunPlan) -> RunPlan | None:
    """The run whose analysis is ``run``'s ``seed`` reference: the same (setup, test domain)
    with the next analysed seed (cyclically: seeds 0, 1, 2 use 1, 2, 0); ``None`` with one
    analysed seed."""
    seeds = list(config.analyses.seeds)
    if len(seeds) < 2 or run.seed not in seeds:
        return None
    partner = seeds[(seeds.index(run.seed) + 1) % len(seeds)]
    return next(r for r in run_plans(config)
                if (r.test_domain, r.setup, r.seed) == (run.test_domain, run.setup, partner))
