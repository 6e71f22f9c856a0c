"""``domainlens cka``: layerwise cross-domain CKA of a trained run.

Loads a checkpoint as a hooked image tower, collects pooled activations over each domain's
test split (cached on disk), computes CKA between every pair of domains at every layer for
each class subset and kernel, and writes ``cka.csv`` plus figures drawn from it; with
``--references`` the same for the epoch-0 checkpoint, a class-shuffled pairing and a second
seed's run (``reference`` column), and ``controls.csv`` (excess over each reference).
"""

from __future__ import annotations

import argparse

from domainlens.experiments.cka import CLASS_SUBSETS
from interp.controls import add_reference_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cka", help="layerwise cross-domain CKA of a run's image tower",
        description="For every layer of a run's image tower and every pair of domains, CKA "
        "between the domains' class-mean activations (rows aligned by class, over the classes "
        "both domains have in the chosen subset), or between images matched by class. Writes "
        "<out>/cka.csv (tidy) and PNG figures drawn from it.",
    )
    parser.add_argument("run", help="training run directory (runs/<name>)")
    parser.add_argument("--data", default=None,
                        help="DomainNet-format data root (default: the run's mixture data root)")
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: latest)")
    parser.add_argument("--domains", nargs="+", default=None, help="domains (default: all in --data)")
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
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="image-decoding processes")
    parser.add_argument("--cache-dir", default=None,
                        help="activation cache (default: <run>/cache/activations)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--out", default=None, help="output folder (default: <run>/eval/cka)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_reference_arguments(parser)
    parser.set_defaults(func=run_cka)


def run_cka(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from domainlens.experiments.cka import CKASettings, cka_run
    from interp.controls import parse_references

    settings = CKASettings(
        classes=args.classes, kernels=args.kernel, unbiased=not args.biased, mode=args.mode,
        missing=args.missing, pooling=args.pooling, sites=args.sites,
        max_per_class=args.max_per_class, split=args.split, seed=args.seed,
        batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
        references=parse_references(args.references, args.seed_run),
        seed_reference=Path(args.seed_run) if args.seed_run else None, n_boot=args.n_boot,
    )
    written = cka_run(args.run, args.data, args.domains, settings, epoch=args.epoch,
                      out=args.out, cache_dir="" if args.no_cache else args.cache_dir,
                      device=args.device)
    table = pd.read_csv(written["table"])
    table = table[table["reference"] == "none"]
    summary = table.pivot_table(index=["class_subset", "kernel", "layer_index", "layer"],
                                values="value", aggfunc="mean").reset_index()
    run, epoch = table["run"].iloc[0], table["epoch"].iloc[0]
    print(f"mean CKA over domain pairs ({run}, epoch {epoch}):")
    print(summary.drop(columns="layer_index").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for path in written.values():
        print(f"wrote {path}")
    return 0
