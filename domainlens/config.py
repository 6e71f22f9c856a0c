"""Experiment configs for ``domainlens reproduce``: TOML files validated into dataclasses.

A config has the sections ``[data]``, ``[mixtures]``, ``[train]``, ``[eval]`` and
``[analyses]`` plus top-level ``name`` and ``out``. Every key is checked: an unknown key,
setup, domain or model is an error that names it and the allowed values, raised before any
work starts. Shipped configs (``smoke``, ``quickstart``, ``study``, ``paper``) live in
``domainlens/configs/`` and are addressed by name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from training.domains import DOMAINS, check_domains
from training.mixtures import SETUPS, SIZE_RULES, TEST_DOMAINS

CONFIG_DIR = Path(__file__).parent / "configs"
DATA_SOURCES = ("synth", "domainnet")
CLASS_SUBSETS = ("heldout", "seen", "all")


@dataclass(frozen=True)
class DataSection:
    """Where the images come from: generated (``synth``) or a DomainNet-format root."""

    source: str = "synth"
    root: str = "data"          # relative paths are taken relative to ``out``
    base_tsv: str = ""          # domainnet: the natural base set (OpenCLIP TSV); synth: unused
    image_size: int = 64
    n_train: int = 64
    n_test: int = 24
    n_base: int = 48
    classes: tuple[str, ...] = ()   # synth: a subset of the generator's classes (empty: all)
    seed: int = 0
    workers: int = 2


@dataclass(frozen=True)
class MixturesSection:
    """Which mixtures to build: setups x test domains under one size rule."""

    test_domains: tuple[str, ...] = ("sketch", "quickdraw")
    setups: tuple[str, ...] = ("natural-only", "cg-low", "cg-high", "leave-out-domain")
    size_rule: str = "paper"
    size: int = 0               # for size_rule = "fixed"
    selection: str = "first"
    captions: str = "domain"


@dataclass(frozen=True)
class TrainSection:
    """One training run per (setup, test domain, seed)."""

    model: str = "tiny-vit"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.2
    warmup_fraction: float = 0.05
    seeds: tuple[int, ...] = (0,)
    supervised: bool = False    # also train the supervised baseline per mixture
    device: str = "cpu"


@dataclass(frozen=True)
class EvalSection:
    """Zero-shot evaluation of every run."""

    every_epoch: bool = True    # every checkpoint (learning curves) or the last one only
    batch_size: int = 256


@dataclass(frozen=True)
class AnalysesSection:
    """Which mechanistic analyses run, on which runs."""

    setups: tuple[str, ...] = ()    # runs to analyse (empty: every configured setup)
    seeds: tuple[int, ...] = (0,)
    cka: bool = True
    patching: bool = True
    circuits: bool = True
    classes: str = "heldout"        # class subset for CKA, patching and circuits
    max_images_per_class: int = 16
    patch_source: str = "real"      # patching: source domain; targets are the test domains
    circuit_fraction: float = 0.1   # circuits: top fraction of units kept per layer


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

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def data_root(self) -> Path:
        root = Path(self.data.root)
        return root if root.is_absolute() else self.out_dir / root

    @property
    def analysed_setups(self) -> tuple[str, ...]:
        return self.analyses.setups or self.mixtures.setups


SECTIONS = {"data": DataSection, "mixtures": MixturesSection, "train": TrainSection,
            "eval": EvalSection, "analyses": AnalysesSection}


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build a section dataclass, rejecting unknown keys and values of the wrong type."""
    allowed = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{where}]; allowed: {sorted(allowed)}")
    out = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise ValueError(f"[{where}] {key} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, int | float | str) and not isinstance(value, type(default))
            and not (isinstance(default, float) and isinstance(value, int))
        ):
            raise ValueError(f"[{where}] {key} must be {type(default).__name__}, got {value!r}")
        out[key] = value
    return cls(**out)


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Check values that have a closed set of choices; returns ``config``."""
    data, mix, analyses = config.data, config.mixtures, config.analyses
    if data.source not in DATA_SOURCES:
        raise ValueError(f"unknown data source {data.source!r}; expected one of {DATA_SOURCES}")
    if data.source == "domainnet" and not data.base_tsv:
        raise ValueError("[data] source = 'domainnet' needs base_tsv (the natural base set)")
    check_domains(mix.test_domains, TEST_DOMAINS)
    for setups in (mix.setups, analyses.setups):
        bad = [s for s in setups if s not in SETUPS or s == "domain-interp"]
        if bad:
            raise ValueError(f"unknown setup(s) {bad}; expected some of {list(SETUPS[:-1])}")
    not_built = [s for s in analyses.setups if s not in mix.setups]
    if not_built:
        raise ValueError(f"[analyses] setups {not_built} are not among [mixtures] setups")
    missing_seeds = [s for s in analyses.seeds if s not in config.train.seeds]
    if missing_seeds:
        raise ValueError(f"[analyses] seeds {missing_seeds} are not among [train] seeds")
    if mix.size_rule not in SIZE_RULES:
        raise ValueError(f"unknown size rule {mix.size_rule!r}; expected one of {SIZE_RULES}")
    if (mix.size_rule == "fixed") != (mix.size > 0):
        raise ValueError("[mixtures] size > 0 is required with size_rule = 'fixed' and only then")
    if analyses.classes not in CLASS_SUBSETS:
        raise ValueError(
            f"unknown class subset {analyses.classes!r}; expected one of {CLASS_SUBSETS}")
    check_domains([analyses.patch_source], DOMAINS)
    if not 0 < analyses.circuit_fraction <= 1:
        raise ValueError(f"circuit_fraction must be in (0, 1], got {analyses.circuit_fraction}")
    if config.train.epochs < 1 or not config.train.seeds:
        raise ValueError("[train] needs epochs >= 1 and at least one seed")
    return config


def parse_config(raw: dict[str, Any], default_out: str) -> ExperimentConfig:
    """A config from a parsed TOML table."""
    top = {"name", "out", *SECTIONS}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} at the top of the config; allowed: "
                         f"{sorted(top)}")
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ValueError(f"[{name}] must be a table, got {table!r}")
        sections[name] = _section(cls, table, name)
    name = str(raw.get("name", "experiment"))
    return validate(ExperimentConfig(name=name, out=str(raw.get("out", default_out)),
                                     **sections))


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_config(name_or_path: str | Path, out: str | Path | None = None) -> ExperimentConfig:
    """Load a shipped config by name (``quickstart``) or a TOML file by path.

    ``out`` overrides the config's output folder (default ``outputs/<name>``).
    """
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise ValueError(f"unknown config {str(name_or_path)!r}; shipped configs: "
                             f"{shipped_configs()}, or give a path to a .toml file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        try:
            raw = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from error
    config = parse_config(raw, default_out=f"outputs/{raw.get('name', path.stem)}")
    if out is not None:
        config = ExperimentConfig(**{**config.__dict__, "out": str(out)})
    return config
