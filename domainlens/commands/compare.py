"""``domainlens compare``: one analysis over several models, their tables and figures side by side."""

from __future__ import annotations

import argparse

from domainlens.commands import common
from domainlens.experiments.inputs import SPEC_HELP
from training.runinfo import CLASS_SUBSETS

DESCRIPTION = """\
Run the same analyses over several models (runs trained here and any OpenCLIP models) on one
data root, concatenate their tidy tables (a model column first) into <out>/compare/ and draw
the figures from those tables:

  eval  zero-shot accuracy per model, eval domain and class subset (a run at its latest
        checkpoint): compare/zero_shot.csv; effective robustness of every model (per eval
        domain, a logit-logit line of held-out on seen top-1 over all compared models):
        compare/robustness.csv; compare/heldout_accuracy.png (held-out top-1 per model and
        domain).
  cka   layerwise cross-domain CKA per model: compare/cka.csv; compare/cka_by_layer.png (mean
        CKA over domain pairs per layer, one line per model on relative depth).

Each model's own outputs go to <out>/models/<model>/. --heldout applies to the OpenCLIP models
(a run keeps its manifest's held-out classes)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="one analysis over several models, side by side",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", nargs="+", required=True, metavar="SRC",
                        help=f"models to compare, each {SPEC_HELP}")
    common.add_data_arguments(parser, required=True)
    parser.add_argument("--analyses", nargs="+", choices=("eval", "cka"), default=["eval", "cka"],
                        help="analyses to run on every model (default: both)")
    parser.add_argument("--classes", nargs="+", choices=CLASS_SUBSETS, default=list(CLASS_SUBSETS),
                        help="CKA class subsets (default: all three)")
    parser.add_argument("--kernel", nargs="+", choices=("linear", "rbf"), default=["linear"],
                        help="CKA kernels (default: linear)")
    parser.add_argument("--references", default="class-shuffle", metavar="LIST",
                        help="CKA references every source has: class-shuffle (default) or none")
    parser.add_argument("--max-per-class", type=int, default=None,
                        help="CKA: at most this many test images per domain and class (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="CKA subsampling and shuffle seed")
    common.add_common_options(parser, out_default=None, batch_size=64,
                       include=("domains", "batch-size", "device", "workers", "out", "quiet"))
    parser.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from domainlens.experiments.cka import CKASettings
    from domainlens.experiments.compare import CompareSettings, compare_models
    from domainlens.experiments.inputs import parse_model_spec
    from interp.controls import parse_references

    sources = [parse_model_spec(text, args.heldout) for text in args.models]
    cka = CKASettings(classes=args.classes, kernels=args.kernel,
                      references=parse_references(args.references),
                      max_per_class=args.max_per_class, seed=args.seed,
                      batch_size=args.batch_size, workers=args.workers, progress=not args.quiet)
    settings = CompareSettings(analyses=args.analyses, cka=cka, batch_size=args.batch_size,
                               progress=not args.quiet)
    written = compare_models(sources, args.data, args.out, settings, domains=args.domains,
                             device=args.device)
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    if "zero_shot" in written:
        table = pd.read_csv(written["zero_shot"])
        held = table[(table["metric"] == "top1") & (table["class_subset"] == "held-out")
                     & table["class_name"].isna()]
        print("held-out top-1 per model and domain:")
        print(held.pivot_table(index="model", columns="eval_domain", values="value", sort=False)
              .to_string(float_format=fmt))
    common.print_written(written)
    return 0
