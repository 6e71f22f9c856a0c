"""``domainlens cka``: layerwise cross-domain CKA of a trained run or any OpenCLIP model.

Loads a checkpoint (or ``--model NAME --pretrained TAG|FILE``) as a hooked image tower, collects pooled activations over each domain's
test split (cached on disk), computes CKA between every pair of domains at every layer for
each class subset and kernel, and writes ``cka.csv`` plus figures drawn from it; with
``--references`` the same for the epoch-0 checkpoint, a class-shuffled pairing and a second
seed's run (``reference`` column), and ``controls.csv`` (excess over each reference).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from domainlens.commands import common
from interp.controls import add_reference_arguments
from training.runinfo import CLASS_SUBSETS

if TYPE_CHECKING:
    from domainlens.experiments.cka import CKASettings
    from domainlens.experiments.inputs import ModelSource


DESCRIPTION = """\
For every layer of a model's image tower (a run, or any OpenCLIP model: --model) and every
pair of domains, CKA between the domains' class-mean activations (rows aligned by class,
over the classes both domains have in the chosen subset), or between images matched by
class. Writes <out>/cka.csv (tidy, the model column first) and PNG figures drawn from it."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.analysis_parser(
        subparsers, "cka", help="layerwise cross-domain CKA of a model's image tower",
        description=DESCRIPTION,
        out_default="<run>/eval/cka",
    )
    parser.add_argument("--classes", nargs="+", choices=CLASS_SUBSETS, default=list(CLASS_SUBSETS),
                        help="class subsets: held-out (C2), seen (C1), all (default: all three)")
    parser.add_argument("--missing", choices=("error", "intersect"), default="error",
                        help="a subset class missing from a domain: fail, or use the classes "
                        "both domains of a pair have (default: error)")
    parser.add_argument("--kernel", nargs="+", choices=("linear", "rbf"), default=["linear", "rbf"],
                        help="CKA kernels (default: both; RBF bandwidth by the median rule)")
    parser.add_argument("--biased", action="store_true", help="biased HSIC (default: unbiased)")
    parser.add_argument("--mode", choices=("class_mean", "per_sample"), default="class_mean",
                        help="rows: class means (the paper) or images matched by class")
    parser.add_argument("--pooling", choices=("mean", "patch_mean", "cls"), default="mean",
                        help="per-image pooling of token/feature maps (cls: ViT class token)")
    parser.add_argument("--sites", nargs="+", default=None,
                        help="hook names (default: the model's layers())")
    parser.add_argument("--max-per-class", type=int, default=None,
                        help="at most this many test images per domain and class (seeded)")
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--seed", type=int, default=0, help="subsampling seed")
    add_reference_arguments(parser)
    parser.set_defaults(func=run_cka)


def settings_from_args(args: argparse.Namespace, source: ModelSource) -> CKASettings:
    """The :class:`~domainlens.experiments.cka.CKASettings` of ``domainlens cka``'s arguments."""
    from domainlens.experiments.cka import CKASettings

    return CKASettings(
        classes=args.classes, kernels=args.kernel, unbiased=not args.biased, mode=args.mode,
        missing=args.missing, pooling=args.pooling, sites=args.sites,
        max_per_class=args.max_per_class, split=args.split, seed=args.seed,
        batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
        references=common.comma_references(args, source), seed_reference=common.seed_run_from_args(args),
        n_boot=args.n_boot,
    )


def run_cka(args: argparse.Namespace) -> int:
    import pandas as pd

    from domainlens.experiments.cka import cka_run

    source = common.source_from_args(args)
    written = cka_run(source, settings_from_args(args, source), **common.options_from_args(args))
    table = pd.read_csv(written["table"])
    table = table[table["reference"] == "none"]
    summary = table.pivot_table(index=["class_subset", "kernel", "layer_index", "layer"],
                                values="value", aggfunc="mean").reset_index()
    model, epoch = table["model"].iloc[0], table["epoch"].iloc[0]
    at = "" if pd.isna(epoch) else f", epoch {int(epoch)}"
    print(f"mean CKA over domain pairs ({model}{at}):")
    print(summary.drop(columns="layer_index").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    common.print_written(written)
    return 0
