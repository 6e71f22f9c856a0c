"""Data-layer benchmarks: synthetic generation throughput and DomainNet-sized mixture builds.

    python benchmarks/bench_data.py [--rows 600000] [--skip-synth]

Writes nothing outside a temporary folder; prints a Markdown table for benchmarks/RESULTS.md,
with the 1-minute load average at the start and the end (benchmarks/_harness.py; a table taken
when the machine was busy at the start is marked).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import BUSY_MARK, add_busy_flag, finish, start

from training.domains import DOMAINS
from training.mixtures import (
    STANDARD_SETUPS,
    TEST_DOMAINS,
    MixtureSpec,
    build_mixture,
    read_base_tsv,
    write_mixture,
)

#: Share of DomainNet's ~586k images per domain (clipart, infograph, painting, quickdraw,
#: real, sketch), so the fake index has DomainNet's proportions.
DOMAINNET_SHARES = np.array([48.8, 53.2, 75.8, 172.5, 175.3, 70.4]) / 596.0


def write_fake_index(root: Path, rows: int, n_classes: int = 345, n_base: int = 100_000) -> None:
    """Split files (no images) with DomainNet's domain proportions, plus a base TSV."""
    rng = np.random.default_rng(0)
    classes = [f"class_{i:03d}" for i in range(n_classes)]
    root.mkdir(parents=True, exist_ok=True)
    for domain, share in zip(DOMAINS, DOMAINNET_SHARES, strict=True):
        counts = rng.multinomial(int(rows * share), np.full(n_classes, 1 / n_classes))
        for split, frac in (("train", 0.7), ("test", 0.3)):
            lines = []
            for label, (cls, n) in enumerate(zip(classes, counts, strict=True)):
                k = int(n * frac)
                lines.extend(f"{domain}/{cls}/{domain}_{split}_{j:06d}.jpg {label}"
                             for j in range(k))
            (root / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "heldout_classes.txt").write_text("\n".join(classes[::23]) + "\n")
    with open(root / "base.tsv", "w") as handle:
        handle.write("filepath\ttitle\tdomain\tlabel\n")
        for i in range(n_base):
            handle.write(f"/base/{i:07d}.jpg\ta photo of thing {i}\tbase\t-1\n")


def bench_mixtures(rows: int) -> list[tuple[str, float]]:
    from training.domainnet import load_index

    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fake"
        write_fake_index(root, rows)
        start = time.perf_counter()
        index = load_index(root, splits=("train",))
        timings.append((f"read the train index ({len(index):,} rows of {rows:,})",
                        time.perf_counter() - start))
        base = read_base_tsv(root / "base.tsv", index.attrs["classes"])
        per_mixture = []
        for domain in TEST_DOMAINS:
            for setup in STANDARD_SETUPS:
                spec = MixtureSpec(setup=setup, test_domain=domain, data_root=str(root))
                start = time.perf_counter()
                mixture = build_mixture(spec, index, base)
                write_mixture(mixture, Path(tmp) / "out")
                per_mixture.append((time.perf_counter() - start, len(mixture.rows)))
        seconds = [s for s, _ in per_mixture]
        timings.append((f"build + write one mixture (mean of {len(seconds)}, "
                        f"up to {max(n for _, n in per_mixture):,} rows incl. 100k base)",
                        float(np.mean(seconds))))
        timings.append((f"all {len(seconds)} standard mixtures (6 setups x 5 test domains)",
                        float(np.sum(seconds))))
        start = time.perf_counter()
        spec = MixtureSpec(setup="cg-high", test_domain="quickdraw", data_root=str(root))
        write_mixture(build_mixture(spec), Path(tmp) / "cold")
        timings.append(("one mixture from a cold start (reads the index itself)",
                        time.perf_counter() - start))
    return timings


def bench_synth(workers: int) -> list[tuple[str, float]]:
    from training.synth import SynthConfig, generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = generate_dataset(Path(tmp) / "synth", SynthConfig(), workers=workers,
                                   progress=False)
        seconds = time.perf_counter() - start
        images = summary["images"]
    return [(f"default generated dataset ({images:,} images, {workers} workers), seconds",
             seconds), ("generation throughput, images/s", images / seconds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=600_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-synth", action="store_true")
    add_busy_flag(parser)  # accepted for uniformity: this benchmark only prints
    args = parser.parse_args()
    cond = start()
    results = [] if args.skip_synth else bench_synth(args.workers)
    results += bench_mixtures(args.rows)
    finish(cond)
    if not cond.alone:
        print(f"**{BUSY_MARK}** ({cond.load_text()}): rerun alone for figures to report.\n")
    print(f"| measurement | value |\n|---|---|\n| 1-minute load, start -> end | {cond.tag()} |")
    for name, value in results:
        print(f"| {name} | {value:,.2f} |")


if __name__ == "__main__":
    main()
