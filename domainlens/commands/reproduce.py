"""``domainlens reproduce``: a whole experiment from one config (see :mod:`domainlens.pipeline`)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run an experiment end to end: data (generated, or a DomainNet-format root plus a base TSV)
-> mixtures for every configured (test domain, setup) -> one CLIP training run per (test
domain, setup, seed) -> zero-shot evaluation -> CKA, activation patching and circuits on the
configured runs -> figures -> report.md and report.html. Every step is skipped when its
outputs exist for the same inputs (content hashes), so an interrupted experiment resumes
where it stopped; --dry-run prints the plan with an estimated time and runs nothing.

CONFIG is a shipped config name (smoke, quickstart, study, paper) or a TOML file; see the
README for its sections. The config is checked completely (unknown keys, setups, domains,
a data root that is not DomainNet-shaped) before any work starts."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce", help="run a whole experiment from a config: data to report",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", default="quickstart",
                        help="shipped config name or TOML file (default: quickstart)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: the config's out, else outputs/<name>)")
    parser.add_argument("--data-root", default=None,
                        help="override [data] root (e.g. where DomainNet is on this machine)")
    parser.add_argument("--base-tsv", default=None, help="override [data] base_tsv")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the steps, which are done and the estimated time; run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from domainlens.config import load_config
    from domainlens.pipeline import reproduce

    config = load_config(args.config, out=args.out)
    overrides = {k: v for k, v in (("root", args.data_root), ("base_tsv", args.base_tsv)) if v}
    if overrides:
        config = config.replace("data", **overrides)
    reproduce(config, dry_run=args.dry_run, progress=not args.quiet)
    return 0
