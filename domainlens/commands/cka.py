"""``domainlens cka``: layerwise cross-domain CKA of a trained run.

Loads a checkpoint as a hooked image tower, collects pooled activations over each domain's
test split (cached on disk), computes CKA between every pair of domains at every layer for
each class subset and kernel, and writes ``cka.csv`` plus figures drawn from it.
"""

from __future__ import annotations

import argparse

CLASS_SUBSETS = ("held-out", "seen", "all")


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
    parser.set_defaults(func=run_cka)


def run_cka(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from interp.activations import collect_domain_activations
    from interp.cross_domain import cross_domain_cka
    from interp.plots.cka import plot_cka_by_layer, plot_cka_heatmaps, save_figure
    from interp.runs import load_hooked_run
    from training.domainnet import available_domains, class_names, heldout_classes
    from training.domains import check_domains

    run = load_hooked_run(args.run, epoch=args.epoch, device=args.device)
    data = args.data or run.data_root
    if data is None:
        raise ValueError(f"no --data given and run {args.run!r} names no data root in mixture.json")
    domains = list(check_domains(args.domains)) if args.domains else list(available_domains(data))
    if len(domains) < 2:
        raise ValueError(f"need at least two domains, got {domains}")
    model = run.model
    layers = model.layers()
    sites = model.check_sites(args.sites) if args.sites else [s.name for s in layers]
    heldout = list(heldout_classes(data))
    subsets = {
        "held-out": heldout,
        "seen": [c for c in class_names(data) if c not in set(heldout)],
        "all": None,
    }
    cache_dir = None if args.no_cache else Path(args.cache_dir or Path(args.run) / "cache" / "activations")
    out = Path(args.out or Path(args.run) / "eval" / "cka")
    out.mkdir(parents=True, exist_ok=True)

    acts = collect_domain_activations(
        model, data, domains, sites, split=args.split, max_per_class=args.max_per_class,
        seed=args.seed, mean=run.mean, std=run.std, pooling=args.pooling,
        batch_size=args.batch_size, device=args.device, cache_dir=cache_dir,
        num_workers=args.workers, progress=not args.quiet,
    )
    tables = []
    for subset in args.classes:
        for kernel in args.kernel:
            table = cross_domain_cka(
                acts, sites=sites, layers=layers, domains=domains, classes=subsets[subset],
                class_subset=subset, missing=args.missing, mode=args.mode, kernel=kernel,
                unbiased=not args.biased, max_per_class=args.max_per_class, seed=args.seed,
                meta={**run.meta(), "pooling": args.pooling, "split": args.split},
                progress=not args.quiet,
            )
            tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    csv = out / "cka.csv"
    table.to_csv(csv, index=False)

    title = f"{run.name} (epoch {run.epoch})"
    written = [csv, save_figure(plot_cka_by_layer(table, title=title), out / "cka_by_layer.png")]
    for (subset, kernel), part in table.groupby(["class_subset", "kernel"], sort=False):
        fig = plot_cka_heatmaps(part, title=f"{title}: {subset} classes, {kernel} CKA")
        written.append(save_figure(fig, out / f"cka_heatmaps_{subset}_{kernel}.png"))
    summary = table.pivot_table(index=["class_subset", "kernel", "layer_index", "layer"],
                                values="value", aggfunc="mean").reset_index()
    print(f"mean CKA over domain pairs ({run.name}, epoch {run.epoch}):")
    print(summary.drop(columns="layer_index").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for path in written:
        print(f"wrote {path}")
    return 0
