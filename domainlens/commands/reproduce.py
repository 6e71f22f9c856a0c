"""``domainlens reproduce``: a whole experiment from one config (see :mod:`domainlens.pipeline`)."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Run an experiment end to end: data (generated, or a DomainNet-format root plus a base TSV)
-> mixtures for every configured (test domain, setup) -> one CLIP training run per (test
domain, setup, seed) -> zero-shot evaluation -> CKA, activation patching, circuits, embedding
separation and SAE features on the configured runs -> figures -> report.md and report.html.
Every step is skipped when its outputs exist for the same inputs (content hashes), so an interrupted experiment resumes
where it stopped; --dry-run prints the plan with an estimated time and runs nothing.

CONFIG is a shipped config name ({configs}) or a TOML file; see the
README for its sections. The config is checked completely (unknown keys, setups, domains,
a data root that is not DomainNet-shaped) before any work starts.

Executors ([run] section, or the options below): inline (default: this process, one step
after another), local (submitit subprocesses on this machine, --jobs at a time, the cores
divided between them, one GPU each) or slurm (submitit jobs; the training runs of a wave as
one job array, with the SLURM options below). The step records in <out>/.state stay the
truth: a rerun after a failure or cancellation submits only the unfinished steps; a failed
job's error and log are printed and listed in the report. --dry-run with an executor prints
what would be submitted, job by job, with its resources."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from domainlens.config import shipped_configs

    parser = subparsers.add_parser(
        "reproduce", help="run a whole experiment from a config: data to report",
        description=DESCRIPTION.format(configs=", ".join(shipped_configs())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    run = parser.add_argument_group("executor (override the config's [run] section)")
    run.add_argument("--executor", default=None, metavar="{inline,local,slurm}",
                     help="inline (this process), local (subprocesses) or slurm (cluster jobs)")
    run.add_argument("--jobs", type=int, default=None, metavar="N",
                     help="steps at a time (local; slurm: array tasks at a time; 0: automatic)")
    run.add_argument("--partition", default=None, help="SLURM partition")
    run.add_argument("--account", default=None, help="SLURM account")
    run.add_argument("--gpus-per-job", type=int, default=None, metavar="N",
                     help="GPUs per SLURM job (default 1; none when [train] device = 'cpu')")
    run.add_argument("--cpus-per-job", type=int, default=None, metavar="N",
                     help="CPUs per SLURM job (also its torch threads)")
    run.add_argument("--time", type=int, default=None, metavar="MINUTES",
                     help="time limit per job, minutes (default 720)")
    run.add_argument("--mem-gb", type=float, default=None, metavar="GB",
                     help="memory per SLURM job (default: the partition's)")
    run.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                     help="another sbatch option passed through, e.g. --slurm qos=high "
                          "(repeatable; adds to [run] extra)")
    parser.set_defaults(func=run_command)


def run_overrides(args: argparse.Namespace, extra: dict | None = None) -> dict:
    """The ``[run]`` fields given on the command line (``--slurm KEY=VALUE`` added to
    ``extra``, the config's ``[run] extra``)."""
    names = ("executor", "jobs", "partition", "account", "gpus_per_job", "cpus_per_job",
             "time", "mem_gb")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.slurm:
        extra = dict(extra or {})
        for item in args.slurm:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--slurm expects KEY=VALUE (an sbatch option), got {item!r}")
            extra[key.strip()] = value
        overrides["extra"] = extra
    return overrides


def run_command(args: argparse.Namespace) -> int:
    from domainlens.config import load_config
    from domainlens.executors import StepsFailed
    from domainlens.pipeline import reproduce

    config = load_config(args.config, out=args.out)
    overrides = {k: v for k, v in (("root", args.data_root), ("base_tsv", args.base_tsv)) if v}
    if overrides:
        config = config.replace("data", **overrides)
    run = run_overrides(args, config.run.extra)
    if run:
        config = config.replace("run", **run)
    try:
        reproduce(config, dry_run=args.dry_run, progress=not args.quiet)
    except StepsFailed as error:
        print(f"domainlens reproduce: {error}", file=sys.stderr)
        return 1
    return 0
