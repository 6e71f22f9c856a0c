"""``domainlens data``: generate a DomainNet-format dataset, check images, summarise a root."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="generate, check or summarise a DomainNet-format data root",
        description="Work with DomainNet-format data roots (real DomainNet or generated).",
    )
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)

    synth = actions.add_parser(
        "synth", help="generate the synthetic six-domain dataset and its base set",
        description="Write a procedurally generated dataset in DomainNet's layout: six domains, "
        "split files, declared held-out classes, a natural base set (base.tsv) and a "
        "contact sheet (contact_sheet.png). Deterministic for a seed.",
    )
    synth.add_argument("root", help="output folder")
    synth.add_argument("--image-size", type=int, default=None, help="pixels (default 64)")
    synth.add_argument("--n-train", type=int, default=None, help="train images per domain/class")
    synth.add_argument("--n-test", type=int, default=None, help="test images per domain/class")
    synth.add_argument("--n-base", type=int, default=None, help="base-set images per class")
    synth.add_argument("--classes", nargs="+", default=None, help="restrict to these classes")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=2, help="processes")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=run_synth)

    check = actions.add_parser(
        "check", help="list unreadable images (missing, truncated, corrupt) by path",
        description="Decode every image listed by the split files (and base.tsv if present). "
        "Prints the bad ones and exits with status 1 if there are any.",
    )
    check.add_argument("root")
    check.add_argument("--domains", nargs="+", default=None)
    check.add_argument("--base", default=None, help="base TSV (default <root>/base.tsv if any)")
    check.add_argument("--workers", type=int, default=2)
    check.add_argument("--quiet", action="store_true")
    check.set_defaults(func=run_check)

    info = actions.add_parser(
        "info", help="images per domain, split and class subset",
        description="Print the classes, held-out classes and image counts of a data root.",
    )
    info.add_argument("root")
    info.set_defaults(func=run_info)


def run_synth(args: argparse.Namespace) -> int:
    from dataclasses import fields
    from pathlib import Path

    from training.synth import SynthConfig, contact_sheet, generate_dataset

    given = {"image_size": args.image_size, "n_train": args.n_train, "n_test": args.n_test,
             "n_base": args.n_base, "classes": args.classes}
    names = {f.name for f in fields(SynthConfig)}
    options = {k: v for k, v in given.items() if v is not None and k in names}
    config = SynthConfig(seed=args.seed, **options)
    summary = generate_dataset(args.root, config, workers=args.workers, progress=not args.quiet)
    sheet = contact_sheet(args.root, Path(args.root) / "contact_sheet.png")
    print(f"wrote {summary.get('images', '?')} images to {args.root} "
          f"in {summary.get('seconds', float('nan')):.1f} s; contact sheet {sheet}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from training.imagecheck import check_data_root

    bad = check_data_root(args.root, args.domains, args.base, workers=args.workers,
                          progress=not args.quiet)
    for path, error in bad.itertuples(index=False):
        print(f"{path}\t{error}")
    print(f"{len(bad)} unreadable image(s)")
    return 1 if len(bad) else 0


def run_info(args: argparse.Namespace) -> int:
    import pandas as pd

    from training.domainnet import heldout_classes, load_index

    index = load_index(args.root)
    heldout = set(heldout_classes(args.root))
    index["subset"] = index["class_name"].map(lambda c: "held-out" if c in heldout else "seen")
    classes = index.attrs["classes"]
    print(f"{len(classes)} classes, {len(heldout)} held out: {', '.join(sorted(heldout))}")
    with pd.option_context("display.width", 120):
        print(pd.crosstab([index["domain"], index["split"]], index["subset"], margins=True))
    return 0
