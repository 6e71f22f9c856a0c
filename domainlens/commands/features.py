"""``domainlens features``: sparse-autoencoder features shared between domains.

Trains an SAE per site (default: the final image embedding) on the L2-normalised pooled
activations of the train split of every domain plus the base set, and counts per class how
many of their most frequent top latents two domains share (share@k averaged over k).
"""

from __future__ import annotations

import argparse

from domainlens.commands import common
from domainlens.experiments.features import CLASS_SUBSETS, EMBED_SITE, REFERENCES

DESCRIPTION = """\
Train a sparse autoencoder (expansion 4, ReLU, tied pre-encoder bias, unit-norm decoder
columns, L2 + L1 loss) per site of a run or any OpenCLIP model (--model) on the train split
of all domains plus the base set; for each class and domain count how often each latent is
among an image's TOP largest positive latents; share@k = |top-k(a) & top-k(b)| / k averaged
over --ks. Writes SAE quality (explained variance, L0, dead latents), per-class sharing
matrices, their class-subset means and every domain's score, and PNG figures."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.analysis_parser(
        subparsers, "features", help="SAE feature sharing between domains (per class, per layer)",
        description=DESCRIPTION,
        out_default="<run>/eval/features",
    )
    parser.add_argument("--sites", nargs="+", default=[EMBED_SITE],
                        help=f"hook names, one SAE each (default: {EMBED_SITE}; layer sites are "
                        "pooled as in cka)")
    parser.add_argument("--classes", nargs="+", choices=CLASS_SUBSETS, default=list(CLASS_SUBSETS),
                        help="class subsets to average the sharing matrices over")
    parser.add_argument("--references", nargs="*", choices=REFERENCES, default=None,
                        help="controls: class-shuffle (class labels permuted within each domain), "
                        "init (everything again on the epoch-0 checkpoint; runs only); default: "
                        "class-shuffle; none: pass the flag alone")
    parser.add_argument("--expansion", type=int, default=4, help="latents per input dimension")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    parser.add_argument("--l1", type=float, default=1e-4, help="L1 coefficient on the latents")
    parser.add_argument("--sae-batch-size", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=100, help="SAE training epochs")
    parser.add_argument("--top", type=int, default=20, help="top latents counted per image")
    parser.add_argument("--ks", nargs="+", type=int, default=[5, 10, 15, 20],
                        help="k of share@k (averaged)")
    parser.add_argument("--no-base", action="store_true",
                        help="train the SAE without the base set (<data>/base.tsv)")
    parser.add_argument("--train-max-per-class", type=int, default=None,
                        help="at most this many train images per domain and class (seeded)")
    parser.add_argument("--max-per-class", type=int, default=None,
                        help="at most this many test images per domain and class (seeded)")
    parser.add_argument("--pooling", choices=("mean", "patch_mean", "cls"), default="mean")
    parser.add_argument("--seed", type=int, default=0, help="SAE and subsampling seed")
    parser.set_defaults(func=run_features)


def run_features(args: argparse.Namespace) -> int:
    import pandas as pd

    from domainlens.experiments.features import FeatureSettings, features_run

    source = common.source_from_args(args)
    settings = FeatureSettings(
        sites=args.sites, expansion=args.expansion, lr=args.lr, l1=args.l1,
        sae_batch_size=args.sae_batch_size, epochs=args.epochs, top=args.top, ks=args.ks,
        include_base=not args.no_base, train_max_per_class=args.train_max_per_class,
        classes=args.classes, pooling=args.pooling, max_per_class=args.max_per_class,
        references=common.references_from_args(args.references, ("class-shuffle",), source),
        seed=args.seed, batch_size=args.batch_size, workers=args.workers,
        progress=not args.quiet,
    )
    written = features_run(source, settings, **common.options_from_args(args))
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    quality = pd.read_csv(written["quality"])
    print("SAE quality:")
    print(quality[["site", "reference", "split", "explained_variance", "l0", "dead", "n_latents"]]
          .to_string(index=False, float_format=fmt))
    scores = pd.read_csv(written["scores"])
    print("sharing score per domain (mean of its row without the diagonal):")
    print(scores.pivot_table(index=["site", "reference", "class_subset"], columns="domain",
                             values="value")
          .to_string(float_format=fmt))
    common.print_written(written)
    return 0
