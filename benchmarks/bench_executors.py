"""Wall time of ``domainlens reproduce CONFIG`` run sequentially and with ``--jobs N`` steps at
a time (issue 16), side by side in one invocation, each in a fresh output folder.

Every variant is one ``domainlens reproduce`` process from scratch (data generation included),
so its wall time is what a user waits. ``inline`` is today's sequential run in one process;
``local:N`` hands the steps to submitit's local executor, N jobs at a time, the cores divided
between them (torch threads). Variants run one after another in the order given; ratios are
each variant's time over the first one's (> 1: the variant is faster). Conditions (load at the
start and end) come from ``_harness.py``: only a run alone decides the CPU default
(``domainlens.executors.LOCAL_CPU_JOBS``).

Usage::

    python benchmarks/bench_executors.py study --out-root /tmp/bench-exec
    python benchmarks/bench_executors.py smoke --out-root /tmp/b --variants inline local:1 local:2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402


def variant(text: str) -> tuple[str, int]:
    """``inline`` -> (inline, 1); ``local:2`` -> (local, 2)."""
    executor, _, jobs = text.partition(":")
    if executor == "inline" and not jobs:
        return "inline", 1
    if executor not in ("local", "slurm") or not jobs.isdigit() or int(jobs) < 1:
        raise argparse.ArgumentTypeError(
            f"a variant is 'inline' or 'local:<jobs>' (e.g. local:2), got {text!r}")
    return executor, int(jobs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="shipped config name or TOML file (e.g. study)")
    parser.add_argument("--out-root", required=True, type=Path,
                        help="one fresh output folder per variant is made under it")
    parser.add_argument("--variants", nargs="+", default=["inline", "local:2"],
                        help="what to time, in order: inline and/or local:<jobs> "
                             "(default: inline local:2)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the output folders (default: removed after timing)")
    args = parser.parse_args(argv)
    for text in args.variants:
        try:
            variant(text)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
    return args


def command(config: str, out: Path, chosen: tuple[str, int]) -> list[str]:
    """The ``domainlens reproduce`` command line of one variant."""
    executor, jobs = chosen
    return [sys.executable, "-m", "domainlens", "reproduce", config, "--quiet",
            "--out", str(out), "--executor", executor, "--jobs", str(jobs)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cond = _harness.start(threads=1)
    rows = []
    for text in args.variants:
        chosen = variant(text)
        out = args.out_root / text.replace(":", "-")
        if out.exists():
            shutil.rmtree(out)  # fresh: nothing may be skipped
        cmd = command(args.config, out, chosen)
        print(f"[bench] {text}: {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        rows.append((text, seconds))
        print(f"[bench] {text}: {seconds:.1f} s", flush=True)
        if not args.keep:
            shutil.rmtree(out)
    _harness.finish(cond)
    first = rows[0][1]
    print(f"\n| {args.config} | wall time | ratio to {rows[0][0]} |\n|---|---|---|")
    for text, seconds in rows:
        print(f"| {text} | {seconds / 60:.1f} min ({seconds:.0f} s) | {first / seconds:.2f}x |")
    print(f"\n{_harness.conditions_line(cond)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
