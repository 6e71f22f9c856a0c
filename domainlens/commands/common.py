"""Arguments shared by the analysis commands (``eval``, ``cka``, ``patch``, ``circuits``,
``embeddings``, ``features``, ``compare``): the model source and the common options.

A model source is a run directory (positional ``RUN``, as before) or ``--model``: an OpenCLIP
architecture name with ``--pretrained TAG|FILE`` (a tag needs the Hugging Face cache or a
download; a weights file is read as it is), ``local-dir:DIR`` or ``hf-hub:ORG/REPO``. Data root
and held-out classes come from ``--data`` and ``--heldout`` (default: the run's manifest, else
the root's ``heldout_classes.txt``). A source that is not a run needs ``--data`` and ``--out``,
and has no references that need a training history (``init``, ``seed``); errors are one line
(``ValueError``, reported by :func:`domainlens.cli.main`) raised before any work.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the experiments load torch: imported inside the functions
    from domainlens.experiments.inputs import ModelSource

#: The options :func:`add_common_options` can add, in ``--help`` order.
COMMON_OPTIONS: tuple[str, ...] = (
    "epoch", "domains", "batch-size", "device", "workers", "cache", "out", "quiet",
)

MODEL_HELP = ("an OpenCLIP model instead of a run: an architecture name (RN50, ViT-B-32, ...; "
              "with --pretrained), local-dir:DIR (open_clip_config.json + weights) or "
              "hf-hub:ORG/REPO (read from the Hugging Face cache)")


def add_source_arguments(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """``RUN`` (one, or with ``several`` any number), ``--model``, ``--pretrained``, ``--data``
    and ``--heldout``."""
    parser.add_argument("run", nargs="*" if several else "?", default=[] if several else None,
                        metavar="RUN", help="training run director" + ("ies" if several else "y")
                        + " (runs/<name>); or give --model")
    parser.add_argument("--model", default=None, metavar="NAME", help=MODEL_HELP)
    parser.add_argument("--pretrained", default=None, metavar="TAG|FILE",
                        help="with --model NAME: an OpenCLIP pretrained tag (e.g. openai; needs "
                        "the Hugging Face cache or a download) or a weights file (.pt, .bin, "
                        ".safetensors); default: random weights")
    add_data_arguments(parser)


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--data ROOT`` (``required``: always, else with ``--model``) and ``--heldout``."""
    parser.add_argument("--data", default=None, metavar="ROOT", required=required,
                        help="DomainNet-format data root" + (" (required)" if required else
                        " (default: the run's mixture data root; required with --model)"))
    parser.add_argument("--heldout", nargs="+", default=None, metavar="CLASS",
                        help="held-out class names (default: the run's manifest, else "
                        "<data>/heldout_classes.txt)")


def add_common_options(
    parser: argparse.ArgumentParser, *, out_default: str | None,
    include: Collection[str] = COMMON_OPTIONS, batch_size: int = 64,
) -> None:
    """The options of :data:`COMMON_OPTIONS` named in ``include``; ``out_default`` says where
    a run's results go by default (``<run>/eval/cka``; ``None``: ``--out`` is required)."""
    out_help = ("output folder (required)" if out_default is None else
                f"output folder (default: {out_default}; required with --model)")
    adders = {
        "epoch": lambda: parser.add_argument(
            "--epoch", type=int, default=None, help="checkpoint epoch (runs only; default: latest)"),
        "domains": lambda: parser.add_argument(
            "--domains", nargs="+", default=None,
            help="domains (default: every domain with a test split in --data)"),
        "batch-size": lambda: parser.add_argument(
            "--batch-size", type=int, default=batch_size, help=f"default: {batch_size}"),
        "device": lambda: parser.add_argument("--device", default="cpu", help="default: cpu"),
        "workers": lambda: parser.add_argument(
            "--workers", type=int, default=0, help="image-decoding processes"),
        "cache": lambda: (
            parser.add_argument("--cache-dir", default=None, help="activation cache (default: "
                                "<run>/cache/activations, or <out>/cache/activations)"),
            parser.add_argument("--no-cache", action="store_true",
                                help="do not read or write the cache")),
        "out": lambda: parser.add_argument("--out", default=None, required=out_default is None,
                                           help=out_help),
        "quiet": lambda: parser.add_argument("--quiet", action="store_true", help="no progress bars"),
    }
    unknown = set(include) - set(adders)
    if unknown:
        raise ValueError(f"unknown common options {sorted(unknown)}; known: {list(adders)}")
    for name in COMMON_OPTIONS:
        if name in include:
            adders[name]()


def analysis_parser(
    subparsers: argparse._SubParsersAction, name: str, *, help: str, description: str,
    out_default: str, include: Collection[str] = COMMON_OPTIONS, batch_size: int = 64,
    raw: bool = False,
) -> argparse.ArgumentParser:
    """The sub-parser of one analysis command with the source arguments and the common
    options (``raw``: keep the description's line breaks)."""
    extra = {"formatter_class": argparse.RawDescriptionHelpFormatter} if raw else {}
    parser = subparsers.add_parser(name, help=help, description=description, **extra)
    add_source_arguments(parser)
    add_common_options(parser, out_default=out_default, include=include, batch_size=batch_size)
    return parser


def sources_from_args(args: argparse.Namespace) -> list[ModelSource]:
    """The model sources the arguments name (:func:`add_source_arguments`), checked: a run
    directory or ``--model`` (not both, not neither), ``--pretrained`` only with ``--model``,
    ``--data`` and ``--out`` for a source that is not a run. Raises ``ValueError``."""
    from domainlens.experiments.inputs import ModelSource

    runs = args.run if isinstance(args.run, list) else [args.run] if args.run else []
    heldout = tuple(args.heldout) if args.heldout else None
    if args.model is not None and runs:
        raise ValueError(f"give a run directory or --model, not both (got {runs[0]!r} and "
                         f"--model {args.model!r})")
    if args.pretrained is not None and args.model is None:
        raise ValueError("--pretrained goes with --model NAME (a run directory has its own weights)")
    if args.model is None:
        if not runs:
            raise ValueError("give a run directory (RUN) or a model: --model NAME [--pretrained "
                             "TAG|FILE], --model local-dir:DIR or --model hf-hub:ORG/REPO")
        sources = [ModelSource(run, None, heldout) for run in runs]
        for source in sources:
            _check_run_dir(source)
        return sources
    source = ModelSource(args.model, args.pretrained, heldout)
    if not source.is_run:
        missing = [flag for flag, value in (("--data ROOT", args.data),
                                            ("--out DIR", getattr(args, "out", None)))
                   if value is None]
        if missing:
            raise ValueError(f"--model {args.model} is not a run directory: give "
                             f"{' and '.join(missing)}")
    return [source]


def source_from_args(args: argparse.Namespace) -> ModelSource:
    """The one model source of a command (:func:`sources_from_args`)."""
    return sources_from_args(args)[0]


def _check_run_dir(source: ModelSource) -> None:
    """A positional ``RUN`` must be a run directory (an OpenCLIP model goes with --model)."""
    from pathlib import Path

    if not source.is_run:
        path = Path(source.source)
        what = "does not exist" if not path.exists() else "is not a run (no model_config.json)"
        raise FileNotFoundError(f"run directory {str(path)!r} {what}; for an OpenCLIP model use "
                                "--model NAME [--pretrained TAG|FILE]")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`domainlens.experiments.inputs.AnalysisOptions` the arguments give (data
    root, domains, epoch, out, device; ``--cache-dir``, ``""`` with ``--no-cache``), for the
    analysis functions. The source's ``pretrained``/``heldout`` travel in its ModelSource."""
    names = {"data_root": "data", "domains": "domains", "epoch": "epoch", "out": "out",
             "device": "device", "cache_dir": "cache_dir"}
    options = {key: getattr(args, name) for key, name in names.items() if hasattr(args, name)}
    if getattr(args, "no_cache", False):
        options["cache_dir"] = ""
    return options


def references_from_args(given: Sequence[str] | None, default: Sequence[str],
                         source: ModelSource) -> tuple[str, ...]:
    """The references asked (``given``; ``None``: not given) or ``default``, which for a
    source that is not a run leaves out ``init`` (a given ``init`` is refused later, with a
    message)."""
    if given is not None:
        return tuple(given)
    return tuple(r for r in default if source.is_run or r != "init")


def comma_references(args: argparse.Namespace, source: ModelSource) -> tuple[str, ...]:
    """``--references LIST`` / ``--seed-run`` (:func:`interp.controls.add_reference_arguments`)
    as references, defaulted per source (:func:`references_from_args`)."""
    from interp.controls import parse_references

    given = None if args.references is None else parse_references(args.references, args.seed_run)
    return references_from_args(given, parse_references(None, args.seed_run), source)


def seed_run_from_args(args: argparse.Namespace) -> Any:
    """``--seed-run`` as a path (``None`` if not given)."""
    from pathlib import Path

    return Path(args.seed_run) if args.seed_run else None


def print_written(written: dict[str, Any]) -> None:
    """``wrote <path>`` for every file an analysis wrote."""
    for path in written.values():
        print(f"wrote {path}")
