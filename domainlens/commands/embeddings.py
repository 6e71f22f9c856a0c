"""``domainlens embeddings``: how far apart the domains' final image embeddings sit.

Collects a run's (or any OpenCLIP model's: ``--model``) L2-normalised final image embeddings over each domain's test split (cached
on disk), writes distance tables, per-dimension differences, a cross-validated linear domain
probe and a seeded densMAP picture; with ``--aligned TWIN``, compares the run with its
aligned-captions twin side by side instead (separation and held-out accuracy).
"""

from __future__ import annotations

import argparse

from domainlens.commands import common
from domainlens.experiments.embeddings import CLASS_SUBSETS, REFERENCES

DESCRIPTION = """\
Distance between domain-mean and class-mean final image embeddings (every pair of domains)
of a run or any OpenCLIP model (--model), per-dimension |mean difference| of each domain
against the rest, a cross-validated one-vs-rest linear domain probe (balanced accuracy),
each with the init / domain-shuffle / class-shuffle references, and a 2-D densMAP picture of
a seeded subsample. Writes CSV tables (the model column first) and PNG figures to <out>."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.analysis_parser(
        subparsers, "embeddings", help="embedding separation between domains (distances, probe, UMAP)",
        description=DESCRIPTION,
        out_default="<run>/eval/embeddings, or <run>/eval/aligned_captions with --aligned",
    )
    parser.add_argument("--aligned", default=None, metavar="TWIN",
                        help="the aligned-captions twin of RUN (same setup, test domain, seed, "
                        "rows): write the side-by-side comparison instead")
    parser.add_argument("--classes", nargs="+", choices=CLASS_SUBSETS, default=list(CLASS_SUBSETS),
                        help="class subsets of the distance tables (default: all three)")
    parser.add_argument("--references", nargs="*", choices=REFERENCES, default=None,
                        help="controls: init (epoch-0 checkpoint; runs only), domain-shuffle, "
                        "class-shuffle (default: all a source has; none: pass the flag alone)")
    parser.add_argument("--folds", type=int, default=5, help="probe cross-validation folds")
    parser.add_argument("--umap-per-domain", type=int, default=500,
                        help="at most this many images per domain in the UMAP picture (seeded)")
    parser.add_argument("--umap-without", default="quickdraw",
                        help="also draw the picture without this domain (default: quickdraw)")
    parser.add_argument("--no-umap", action="store_true", help="skip the UMAP picture")
    parser.add_argument("--max-per-class", type=int, default=None,
                        help="at most this many test images per domain and class (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="subsampling, shuffle and probe seed")
    parser.set_defaults(func=run_embeddings)


def run_embeddings(args: argparse.Namespace) -> int:
    import pandas as pd

    from domainlens.experiments.embeddings import (
        EmbeddingSettings,
        aligned_captions_run,
        embeddings_run,
    )

    source = common.source_from_args(args)
    settings = EmbeddingSettings(
        classes=args.classes,
        references=common.references_from_args(args.references, REFERENCES, source),
        folds=args.folds, umap=not args.no_umap, umap_per_domain=args.umap_per_domain,
        umap_without=args.umap_without or None, max_per_class=args.max_per_class,
        seed=args.seed, batch_size=args.batch_size, workers=args.workers,
        progress=not args.quiet,
    )
    shared = dict(settings=settings, **common.options_from_args(args))
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    if args.aligned:
        written = aligned_captions_run(source.source, args.aligned, **shared)
        table = pd.read_csv(written["table"])
        wide = table.pivot_table(index=["quantity", "domain"], columns="variant",
                                 values="value").reset_index()
        print(wide.to_string(index=False, float_format=fmt))
    else:
        written = embeddings_run(source, **shared)
        probe = pd.read_csv(written["probe"])
        print("domain probe, balanced accuracy (chance 0.5):")
        print(probe.pivot(index="domain", columns="reference", values="value")
              .to_string(float_format=fmt))
    common.print_written(written)
    return 0
