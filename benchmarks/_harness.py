"""Shared conditions report for every benchmark: load average, threads, CPUs, "alone" or busy.

Contention slows the side of a comparison that needs more threads or more passes far more than
the other, so ratios taken on a busy machine overstate (or understate) a lead. Every benchmark
therefore calls :func:`start` first and :func:`finish` last; both print one line, and the
returned :class:`Conditions` decide whether its numbers may go into ``benchmarks/RESULTS.md``.

"Alone" means the 1-minute load average was below :data:`ALONE_LOAD` when the benchmark
started. It is judged at the start only: the benchmark's own threads raise the average while it
runs (a 2-thread job drives it towards 2), so the value at the end is recorded, not judged.

Use::

    parser = argparse.ArgumentParser(...)
    add_busy_flag(parser)
    args = parser.parse_args()
    cond = start(threads=torch.get_num_threads())
    ...
    finish(cond)
    if may_write(cond, args.allow_busy, out):  # refuses busy rows unless --allow-busy
        write_report(out, text, cond)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Below this 1-minute load average at the start, the machine counts as idle ("alone").
ALONE_LOAD = 1.0
BUSY_MARK = "BUSY: not comparable"


def load_average() -> float:
    """The 1-minute load average (``os.getloadavg()[0]``; NaN where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


@dataclass
class Conditions:
    """Load and threads of one benchmark run.

    ``load_start``/``load_end``: 1-minute load averages at the start and end (``load_end`` is
    None until :func:`finish`); ``threads``: torch intra-op threads; ``cpus``: ``os.cpu_count()``.
    """

    load_start: float
    threads: int
    cpus: int
    load_end: float | None = None
    started: float = 0.0

    @property
    def alone(self) -> bool:
        """Whether the machine was idle at the start (load average below :data:`ALONE_LOAD`)."""
        return self.load_start < ALONE_LOAD

    def load_text(self) -> str:
        """``"load 0.42 -> 1.87"`` (start -> end, 1-minute averages)."""
        end = "?" if self.load_end is None else f"{self.load_end:.2f}"
        return f"load {self.load_start:.2f} -> {end}"

    def tag(self) -> str:
        """One cell for a results row: the loads plus ``alone`` or the busy mark."""
        return f"{self.load_text()} ({'alone' if self.alone else BUSY_MARK})"

    def describe(self) -> str:
        """One line: loads, verdict, threads, CPUs, machine and torch version."""
        try:
            import torch

            version = f"torch {torch.__version__}"
        except ImportError:  # pragma: no cover - every benchmark has torch
            version = "no torch"
        verdict = (
            f"alone (start < {ALONE_LOAD:g})" if self.alone
            else f"{BUSY_MARK} (start >= {ALONE_LOAD:g}: other work shares the CPUs)"
        )
        return (
            f"1-minute {self.load_text()}, {verdict}; torch threads {self.threads}, "
            f"{self.cpus} CPUs ({platform.machine()}, {version})"
        )


def start(threads: int | None = None) -> Conditions:
    """Record and print the conditions at the start; ``threads``: torch threads in use."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    cond = Conditions(load_average(), int(threads), os.cpu_count() or 0, started=time.time())
    print(f"[conditions] start: {cond.describe()}", flush=True)
    if not cond.alone:
        print(f"[conditions] {BUSY_MARK}: the 1-minute load average was {cond.load_start:.2f} "
              f"at the start; ratios measured now do not show the speed alone", flush=True)
    return cond


def finish(cond: Conditions) -> Conditions:
    """Record and print the load at the end (the benchmark's own threads are part of it)."""
    cond.load_end = load_average()
    print(f"[conditions] end: 1-minute {cond.load_text()} after {time.time() - cond.started:.0f} s "
          f"(the end value includes this benchmark's own load); start verdict: "
          f"{'alone' if cond.alone else BUSY_MARK}", flush=True)
    return cond


def add_busy_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--allow-busy``: write results even when the machine was busy (rows are marked)."""
    parser.add_argument(
        "--allow-busy", action="store_true",
        help=f"write result files even if the 1-minute load average was >= {ALONE_LOAD:g} at "
             f"the start (rows are marked '{BUSY_MARK}'); default: refuse",
    )


def may_write(cond: Conditions, allow_busy: bool, path: str | Path) -> bool:
    """Whether results may be written to ``path``; prints why not when refusing."""
    if cond.alone or allow_busy:
        return True
    print(f"[conditions] not writing {path}: the machine was busy at the start "
          f"(load {cond.load_start:.2f} >= {ALONE_LOAD:g}); rerun alone, or pass --allow-busy "
          f"to write rows marked '{BUSY_MARK}'", file=sys.stderr, flush=True)
    return False


def conditions_line(cond: Conditions) -> str:
    """Markdown line for a report: the conditions, with the busy mark in bold when busy."""
    line = f"Conditions: {cond.describe()}."
    return line if cond.alone else f"**{BUSY_MARK}.** {line}"


def write_report(path: str | Path, text: str, cond: Conditions) -> None:
    """Write ``text`` atomically to ``path`` with the conditions line appended."""
    from training.util.files import write_text

    write_text(Path(path), text.rstrip("\n") + "\n\n" + conditions_line(cond) + "\n")
    print(f"[conditions] wrote {path}", flush=True)
