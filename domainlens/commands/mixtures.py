"""``domainlens mixtures``: build training mixtures (TSV + manifest) for setups and test domains."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from training.mixtures import SELECTIONS, SETUPS, SIZE_RULES, TEST_DOMAINS

    parser = subparsers.add_parser(
        "mixtures", help="build training mixtures as OpenCLIP TSVs with JSON manifests",
        description="Build one setup or all standard setups for one or all test domains. "
        "Writes <out>/<test domain>/<name>.tsv (OpenCLIP CsvDataset format) and <name>.json.",
    )
    parser.add_argument("--data", required=True, help="DomainNet-format root")
    parser.add_argument("--out", default="mixtures", help="output folder (default: mixtures)")
    parser.add_argument("--setup", nargs="+", default=["all"], metavar="SETUP",
                        help=f"'all' (the standard six) or some of {', '.join(SETUPS)}")
    parser.add_argument("--test-domain", nargs="+", default=["all"], metavar="DOMAIN",
                        help=f"'all' or some of {', '.join(TEST_DOMAINS)}")
    parser.add_argument("--base", default=None, help="base set TSV (default <data>/base.tsv)")
    parser.add_argument("--no-base", action="store_true", help="leave out the base set")
    parser.add_argument("--heldout", nargs="+", default=None,
                        help="held-out classes (default: the root's declared ones)")
    parser.add_argument("--allow", type=float, default=0.0,
                        help="fraction of the test domain's held-out images to add")
    parser.add_argument("--other-domains", nargs="+", default=(),
                        help="for domain-interp: the other domains to include")
    parser.add_argument("--captions", choices=("domain", "aligned"), default="domain")
    parser.add_argument("--size-rule", choices=SIZE_RULES, default="paper")
    parser.add_argument("--size", type=int, default=None, help="rows for --size-rule fixed")
    parser.add_argument("--selection", choices=SELECTIONS, default="first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.mixtures import STANDARD_SETUPS, TEST_DOMAINS, build_mixtures

    setups = STANDARD_SETUPS if args.setup == ["all"] else args.setup
    domains = TEST_DOMAINS if args.test_domain == ["all"] else args.test_domain
    written = build_mixtures(
        args.data, args.out, setups=setups, test_domains=domains, progress=not args.quiet,
        base_tsv=args.base, include_base=not args.no_base,
        heldout=tuple(args.heldout) if args.heldout else None, allow=args.allow,
        other_domains=tuple(args.other_domains), captions=args.captions,
        size_rule=args.size_rule, size=args.size, selection=args.selection, seed=args.seed,
    )
    for path in written:
        print(path)
    return 0
