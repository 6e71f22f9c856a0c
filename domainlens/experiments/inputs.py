"""What every analysis of one model reads, loaded in one place.

A :class:`ModelSource` names a model: a run directory trained here, or any OpenCLIP model
(``NAME`` with ``pretrained`` a tag or a weights file, ``local-dir:DIR``, ``hf-hub:ORG/REPO``;
:func:`training.sources.open_model`) plus the held-out classes to use. :func:`load_inputs`
checks what can be checked before any work (a non-run source needs a data root and an output
folder; references that need a training history are refused for it), loads the model as a
hooked tower (:func:`interp.hooked.runs.load_hooked_model`), and resolves the data root, the
domains, the output folder and the activation cache into an :class:`AnalysisInputs`, whose
:meth:`~AnalysisInputs.activations` collects pooled activations with the source's own
preprocessing. Tables carry the source's label first (``model`` column, ``info.meta(model=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from domainlens import layout
from interp.controls import DEFAULT_REFERENCES

if TYPE_CHECKING:  # torch loads inside the functions: `--help` stays fast
    import pandas as pd
    from typing_extensions import Unpack

    from interp.hooked.activations import DomainActivations
    from interp.hooked.runs import HookedRun
    from training.runinfo import RunInfo

#: References that need a training history (the epoch-0 checkpoint, a second seed's run).
HISTORY_REFERENCES: tuple[str, ...] = ("init", "seed")


@dataclass(frozen=True)
class ReferenceSettings:
    """The controls shared by the analyses' settings (:mod:`interp.controls`): ``references``
    (``init``, ``class-shuffle``, ``seed``), ``seed_reference`` (the ``seed`` run's directory)
    and ``n_boot`` (bootstrap resamples of the excess intervals)."""

    references: tuple[str, ...] = DEFAULT_REFERENCES
    seed_reference: Path | None = None
    n_boot: int = 1000

    def check_references(self) -> tuple[str, ...]:
        """Validate the three fields (no file access); returns the references, deduplicated."""
        from interp.controls import check_references

        return check_references(self.references, self.seed_reference, self.n_boot)


@dataclass(frozen=True)
class ImageSettings:
    """Which images an analysis reads and how it runs them through the model: at most
    ``max_per_class`` per domain and class (seeded by ``seed``; ``None``: all), in batches of
    ``batch_size`` decoded by ``workers`` processes, with progress bars unless not
    ``progress``."""

    max_per_class: int | None = None
    seed: int = 0
    batch_size: int = 64
    workers: int = 0
    progress: bool = True

    def check_images(self) -> None:
        """Raise ``ValueError`` for a ``max_per_class`` or ``batch_size`` below 1."""
        from training.util.validate import check_number

        if self.max_per_class is not None:
            check_number("max_per_class", self.max_per_class, low=1, integer=True)
        check_number("batch_size", self.batch_size, low=1, integer=True)


@dataclass(frozen=True)
class ModelSource:
    """A model to analyse (module docstring).

    ``source``: a run directory, an OpenCLIP architecture name, ``local-dir:DIR`` or
    ``hf-hub:ORG/REPO``; ``pretrained``: a tag or weights file (OpenCLIP names only);
    ``heldout``: held-out class names (default: the run's manifest, else the data root's
    ``heldout_classes.txt``).
    """

    source: str | Path
    pretrained: str | None = None
    heldout: tuple[str, ...] | None = None

    @property
    def is_run(self) -> bool:
        """Whether the source is a run directory (it holds ``model_config.json``)."""
        from training.sources import is_run_dir

        return is_run_dir(self.source)

    def describe(self) -> str:
        """The source as the user gave it, for messages (``'RN50' with pretrained 'openai'``)."""
        text = repr(str(self.source))
        return text if self.pretrained is None else f"{text} with pretrained {self.pretrained!r}"

    def load(self, *, epoch: int | None = None, device: str = "cpu",
             data_root: str | Path | None = None) -> HookedRun:
        """The model as a hooked tower (:func:`interp.hooked.runs.load_hooked_model`)."""
        from interp.hooked.runs import load_hooked_model

        return load_hooked_model(self.source, self.pretrained, epoch=epoch, device=device,
                                 data_root=data_root, heldout=self.heldout)


#: How a model is spelled in one word (``domainlens compare --models``), for help and errors.
SPEC_HELP = ("a run directory, NAME:TAG (an OpenCLIP name and pretrained tag, e.g. "
             "RN50-quickgelu:openai), NAME=FILE (an OpenCLIP name and a weights file), NAME "
             "(random weights), local-dir:DIR or hf-hub:ORG/REPO")


def parse_model_spec(text: str, heldout: Sequence[str] | None = None) -> ModelSource:
    """One ``--models`` entry (:data:`SPEC_HELP`) as a :class:`ModelSource`; ``heldout``
    applies to sources that are not runs (a run keeps its manifest's)."""
    from training.sources import HF_HUB, LOCAL_DIR, is_run_dir

    held = tuple(heldout) if heldout else None
    if is_run_dir(text):
        return ModelSource(text)
    if text.startswith((LOCAL_DIR, HF_HUB)):
        return ModelSource(text, None, held)
    for sep in ("=", ":"):
        name, found, pretrained = text.partition(sep)
        if found:
            if not name or not pretrained:
                raise ValueError(f"model {text!r}: expected {SPEC_HELP}")
            return ModelSource(name, pretrained, held)
    return ModelSource(text, None, held)


def as_source(source: str | Path | ModelSource, pretrained: str | None = None,
              heldout: Sequence[str] | None = None) -> ModelSource:
    """``source`` as a :class:`ModelSource` (``pretrained``/``heldout`` only with a path/name)."""
    if isinstance(source, ModelSource):
        if pretrained is not None or heldout:
            raise ValueError("give pretrained/heldout in the ModelSource, not beside it")
        return source
    return ModelSource(source, pretrained, tuple(heldout) if heldout else None)


def check_source(source: ModelSource, *, data_root: str | Path | None, out: str | Path | None,
                 references: Sequence[str] = (), seed_reference: str | Path | None = None) -> None:
    """Before any work: a non-run source needs ``data_root`` and ``out`` and cannot have the
    references of :data:`HISTORY_REFERENCES`; a run's ``init``/``seed`` references need their
    checkpoints (:func:`interp.controls.check_reference_runs`). Raises ``ValueError``."""
    from interp.controls import check_reference_runs

    if source.is_run:
        check_reference_runs(source.source, references, seed_reference)
        return
    what = source.describe()
    if data_root is None:
        raise ValueError(f"{what} is not a run directory: give the data root (--data ROOT)")
    if out is None:
        raise ValueError(f"{what} is not a run directory: give an output folder (--out DIR)")
    history = [r for r in references if r in HISTORY_REFERENCES]
    if history:
        raise ValueError(
            f"reference {history[0]!r} needs a training history (the epoch-0 checkpoint, a second "
            f"seed's run) and {what} is not a run directory; use class-shuffle "
            "(--references class-shuffle)")


def check_domains_of(data: Path, domains: Sequence[str] | None, at_least: int) -> list[str]:
    """``domains`` validated (default: every domain of ``data`` with a test split); at least
    ``at_least`` of them."""
    from training.domainnet import available_domains
    from training.domains import check_domains

    found = list(check_domains(domains)) if domains else list(available_domains(data))
    if len(found) < at_least:
        raise ValueError(f"need at least {'two' if at_least == 2 else at_least} domains, "
                         f"got {found}")
    return found


@dataclass
class AnalysisInputs:
    """A loaded model and what an analysis of it reads.

    ``run``: the hooked model (:class:`interp.hooked.runs.HookedRun`); ``data``: the data
    root; ``domains``: the analysed domains; ``out``: the output folder (created);
    ``cache_dir``: the activation cache (``None``: none); ``source``/``data_root``/``device``/
    ``epoch`` (as asked, ``None``: latest): how ``run`` was loaded, to load its references the
    same way.
    """

    run: HookedRun
    data: Path
    domains: list[str]
    out: Path
    cache_dir: Path | None
    source: ModelSource
    data_root: str | Path | None
    device: str
    epoch: int | None = None

    @property
    def info(self) -> RunInfo:
        return self.run.info

    def meta(self, run: HookedRun | None = None) -> dict[str, Any]:
        """Metadata columns of a table of ``run`` (default: the analysed one), ``model`` first."""
        run = run or self.run
        return run.info.meta(run.epoch, model=True)

    def title(self, run: HookedRun | None = None) -> str:
        """Figure title of ``run`` (default: the analysed one): its label and epoch."""
        run = run or self.run
        return run.label if run.epoch is None else f"{run.label} (epoch {run.epoch})"

    def subsets(self, names: Sequence[str]) -> dict[str, list[str] | None]:
        """``{subset: class folder names}`` of the model's classes (``all``: ``None``)."""
        return {s: (None if s == "all" else list(self.info.subset(s))) for s in names}

    def checkpoint(self, epoch: int) -> HookedRun:
        """The analysed run at another ``epoch`` (``init``: 0); the loaded one if it is that."""
        if self.run.epoch == epoch:
            return self.run
        return self.source.load(epoch=epoch, device=self.device, data_root=self.data_root)

    def seed_run(self, run_dir: str | Path) -> HookedRun:
        """The ``seed`` reference run at the asked epoch (default: its latest), on this
        model's data root and classes."""
        return ModelSource(run_dir).load(epoch=self.epoch, device=self.device, data_root=self.data)

    def activations(
        self, run: HookedRun, sites: Sequence[str], images: ImageSettings, *,
        split: str = "test", pooling: str = "mean",
    ) -> dict[str, DomainActivations]:
        """Pooled activations ``{domain: DomainActivations}`` (``(N, F)`` per site) of ``run``
        over each analysed domain's ``split`` (:func:`domain_activations`)."""
        return domain_activations(run, self.data, self.domains, sites, images, split=split,
                                  pooling=pooling, device=self.device, cache_dir=self.cache_dir)


def domain_activations(
    run: HookedRun, data: str | Path, domains: Sequence[str], sites: Sequence[str],
    images: ImageSettings, *, split: str = "test", pooling: str = "mean", device: str = "cpu",
    cache_dir: str | Path | None = None,
) -> dict[str, DomainActivations]:
    """Pooled activations ``{domain: DomainActivations}`` (``(N, F)`` per site) of ``run``
    (a :class:`interp.hooked.runs.HookedRun`) over each domain's ``split`` of ``data``, the
    ``images`` settings, decoded as ``run``'s source says (:attr:`HookedRun.input_preprocess`);
    ``cache_dir``: activation cache (``None``/``""``: none)."""
    from interp.hooked.activations import collect_domain_activations

    return collect_domain_activations(
        run.model, data, domains, sites, split=split, max_per_class=images.max_per_class,
        seed=images.seed, mean=run.mean, std=run.std, pooling=pooling,
        batch_size=images.batch_size, device=device, cache_dir=cache_dir or None,
        num_workers=images.workers, progress=images.progress, preprocess=run.input_preprocess,
    )


class AnalysisOptions(TypedDict, total=False):
    """The keywords every analysis function takes beside its model source and settings.

    ``pretrained``/``heldout``: of a source given as a path or name (:class:`ModelSource`);
    ``data_root``: the DomainNet-format root (default: a run's manifest; required for a
    non-run source); ``domains``: the analysed domains (default: every domain with a test
    split); ``epoch``: a run's checkpoint (default: latest; runs only); ``out``: the output
    folder (default: below the run directory; required for a non-run source);
    ``cache_dir``: the activation cache (default ``cache/activations`` below the run, or below
    ``out`` for a non-run source; ``""`` disables it); ``device``.
    """

    pretrained: str | None
    heldout: Sequence[str] | None
    data_root: str | Path | None
    domains: Sequence[str] | None
    epoch: int | None
    out: str | Path | None
    cache_dir: str | Path | None
    device: str


def write_table(path: Path, table: pd.DataFrame) -> Path:
    """Write a tidy table as CSV (atomically: :func:`training.util.files.write_csv`), its
    ``model`` column first; returns ``path``."""
    from training.util.files import write_csv

    if "model" in table.columns:
        table = table[["model", *(c for c in table.columns if c != "model")]]
    return write_csv(path, table)


def load_inputs(
    source: str | Path | ModelSource, *, out_name: str | Path, at_least: int = 2,
    references: Sequence[str] = (), seed_reference: str | Path | None = None,
    clip_only: str | None = None, **options: Unpack[AnalysisOptions],
) -> AnalysisInputs:
    """Check (:func:`check_source`), load and resolve one analysis' inputs.

    ``out_name``: the default output folder below a run directory (``eval/cka``); a non-run
    source writes to ``out``. ``at_least``: domains the analysis needs. ``references``/
    ``seed_reference``: checked for the source. ``clip_only``: the analysis' name if it needs
    a CLIP model (zero-shot logits). ``options``: :class:`AnalysisOptions`.
    """
    source = as_source(source, options.get("pretrained"), options.get("heldout"))
    out, device = options.get("out"), options.get("device", "cpu")
    data_root, domains = options.get("data_root"), options.get("domains")
    check_source(source, data_root=data_root, out=out, references=references,
                 seed_reference=seed_reference)
    if domains:  # names checked before the model loads
        from training.domains import check_domains

        check_domains(domains)
    run = source.load(epoch=options.get("epoch"), device=device, data_root=data_root)
    if clip_only and run.kind != "clip":
        raise ValueError(f"{clip_only} needs a CLIP model (zero-shot logits); {run.name} is a "
                         f"{run.kind!r} run")
    data = run.info.require_data()
    home = run.run_dir if run.run_dir is not None else Path(out)  # type: ignore[arg-type]
    found = check_domains_of(data, domains, at_least)
    cache_dir = options.get("cache_dir")
    if cache_dir is None:
        cache_dir = home / layout.ACTIVATION_CACHE / "activations"
    folder = Path(out) if out is not None else home / out_name
    folder.mkdir(parents=True, exist_ok=True)
    return AnalysisInputs(
        run=run, data=data, domains=found, out=folder,
        cache_dir=Path(cache_dir) if cache_dir else None, source=source,
        data_root=data_root, device=device, epoch=options.get("epoch"),
    )


__all__ = ["AnalysisInputs", "AnalysisOptions", "HISTORY_REFERENCES", "ImageSettings", "ModelSource", "ReferenceSettings",
           "SPEC_HELP", "as_source", "check_source", "domain_activations", "load_inputs",
           "parse_model_spec", "write_table"]
