"""``domainlens embeddings``: how far apart the domains' final image embeddings sit.

Collects a run's L2-normalised final image embeddings over each domain's test split (cached
on disk), writes distance tables, per-dimension differences, a cross-validated linear domain
probe and a seeded densMAP picture; with ``--aligned TWIN``, compares the run with its
aligned-captions twin side by side instead (separation and held-out accuracy).
"""

from __future__ import annotations

import argparse

from domainlens.experiments.embeddings import CLASS_SUBSETS, REFERENCES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embeddings", help="embedding separation between domains (distances, probe, UMAP)",
        description="Distance between domain-mean and class-mean final image embeddings (every "
        "pair of domains), per-dimension |mean difference| of each domain against the rest, a "
        "cross-validated one-vs-rest linear domain probe (balanced accuracy), each with the "
        "init / domain-shuffle / class-shuffle references, and a 2-D densMAP picture of a seeded "
        "subsample. Writes CSV tables and PNG figures to <out>.",
    )
    parser.add_argument("run", help="training run directory (runs/<name>)")
    parser.add_argument("--aligned", default=None, metavar="TWIN",
                        help="the aligned-captions twin of RUN (same setup, test domain, seed, "
                        "rows): write the side-by-side comparison instead")
    parser.add_argument("--data", default=None,
                        help="DomainNet-format data root (default: the run's mixture data root)")
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: latest)")
    parser.add_argument("--domains", nargs="+", default=None, help="domains (default: all in --data)")
    parser.add_argument("--classes", nargs="+", choices=CLASS_SUBSETS, default=list(CLASS_SUBSETS),
                        help="class subsets of the distance tables (default: all three)")
    parser.add_argument("--references", nargs="*", choices=REFERENCES, default=list(REFERENCES),
                        help="controls: init (epoch-0 checkpoint), domain-shuffle, class-shuffle "
                        "(default: all; none: pass the flag alone)")
    parser.add_argument("--folds", type=int, default=5, help="probe cross-validation folds")
    parser.add_argument("--umap-per-domain", type=int, default=500,
                        help="at most this many images per domain in the UMAP picture (seeded)")
    parser.add_argument("--umap-without", default="quickdraw",
                        help="also draw the picture without this domain (default: quickdraw)")
    parser.add_argument("--no-umap", action="store_true", help="skip the UMAP picture")
    parser.add_argument("--max-per-class", type=int, default=None,
                        help="at most this many test images per domain and class (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="subsampling, shuffle and probe seed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="image-decoding processes")
    parser.add_argument("--cache-dir", default=None,
                        help="activation cache (default: <run>/cache/activations)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--out", default=None, help="output folder (default: <run>/eval/"
                        "embeddings, or <run>/eval/aligned_captions with --aligned)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_embeddings)


def run_embeddings(args: argparse.Namespace) -> int:
    import pandas as pd

    from domainlens.experiments.embeddings import (
        EmbeddingSettings,
        aligned_captions_run,
        embeddings_run,
    )

    settings = EmbeddingSettings(
        classes=args.classes, references=args.references, folds=args.folds,
        umap=not args.no_umap, umap_per_domain=args.umap_per_domain,
        umap_without=args.umap_without or None, max_per_class=args.max_per_class,
        seed=args.seed, batch_size=args.batch_size, workers=args.workers,
        progress=not args.quiet,
    )
    common = dict(settings=settings, epoch=args.epoch, out=args.out,
                  cache_dir="" if args.no_cache else args.cache_dir, device=args.device)
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    if args.aligned:
        written = aligned_captions_run(args.run, args.aligned, args.data, args.domains, **common)
        table = pd.read_csv(written["table"])
        wide = table.pivot_table(index=["quantity", "domain"], columns="variant",
                                 values="value").reset_index()
        print(wide.to_string(index=False, float_format=fmt))
    else:
        written = embeddings_run(args.run, args.data, args.domains, **common)
        probe = pd.read_csv(written["probe"])
        print("domain probe, balanced accuracy (chance 0.5):")
        print(probe.pivot(index="domain", columns="reference", values="value")
              .to_string(float_format=fmt))
    for path in written.values():
        print(f"wrote {path}")
    return 0
