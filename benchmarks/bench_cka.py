"""Benchmark: layerwise cross-domain CKA, our fast path vs the paper's algorithm, side by side.

Synthetic pooled activations for 6 domains x 10 sites (the widths of the tiny presets:
tiny-rn's stem, bottlenecks and embedding, 16-512 wide, and four 128-wide tiny-vit blocks),
``n`` images per domain (50 classes, images matched by class), float64 CKA for all
sites x 15 domain pairs, computed three ways in one run:

* ``fast``: :func:`interp.similarity.cross_domain.cross_domain_cka` (feature-space unbiased linear
  CKA: per site the six domains' matrices are centred once into one stack ``Z`` (n x 6w) and one
  symmetric product ``Z'Z`` gives all 15 pairs' cross-covariances and the self-HSICs; no n x n
  matrix);
* ``reference``: the paper's algorithm re-implemented from its description
  (``method="reference"``): for every site and pair, both n x n Gram matrices, then unbiased
  HSIC (Song et al. 2012);
* ``gram-cached`` (``--gram-cached``): one Gram matrix per (domain, site) reused by pairs.

Reports the max |difference| between the methods, wall times and ratios; optionally RBF
(shared Gram matrices vs per-pair) on a few sites; and the peak memory of the fast path at
``--big-n`` images per domain, measured in a fresh subprocess (``ru_maxrss``).

Every thread count of ``--threads`` is measured in this one run (fast path, then reference);
the GFLOP/s printed count the matrix products each method does. The load average is printed
at the start and the end (benchmarks/_harness.py); the report is not written when the machine
was busy at the start unless ``--allow-busy`` (then it is marked).

Run:  python benchmarks/bench_cka.py [--n 5000] [--threads 1 2] [--big-n 50000] [--out /tmp/results_cka.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from _harness import BUSY_MARK, add_busy_flag, finish, may_write, start, write_report

DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
#: (site, width): tiny-rn (stem, 4 bottlenecks, embedding) and tiny-vit blocks.
SITES = (
    ("rn.stem", 16), ("rn.L1.0", 64), ("rn.L2.0", 128), ("rn.L3.0", 256), ("rn.L4.0", 512),
    ("rn.embed", 128), ("vit.block0", 128), ("vit.block1", 128), ("vit.block2", 128),
    ("vit.block3", 128),
)
N_CLASSES = 50
LATENT = 32


def synthetic_activations(n: int, seed: int = 0) -> tuple[dict, dict]:
    """``({domain: {site: (n, width) float32}}, {domain: (n,) labels})``, class-structured.

    Every domain has ``n // 50`` images of each of 50 classes: a shared class latent plus a
    domain offset and noise, mapped per site by a shared random map and a domain-specific
    one, with a ReLU (so domains are similar but not identical, and sites differ).
    """
    rng = np.random.default_rng(seed)
    per_class = n // N_CLASSES
    centres = rng.standard_normal((N_CLASSES, LATENT), dtype=np.float32)
    scale = 1.0 / math.sqrt(LATENT)  # a Python float keeps float32 arrays float32
    shared = {s: rng.standard_normal((LATENT, w), dtype=np.float32) * scale for s, w in SITES}
    acts, labels = {}, {}
    for d, domain in enumerate(DOMAINS):
        lab = np.repeat(np.arange(N_CLASSES), per_class)
        offset = rng.standard_normal(LATENT, dtype=np.float32) * (0.5 + 0.3 * d)
        latent = centres[lab] + offset + rng.standard_normal((len(lab), LATENT), dtype=np.float32)
        acts[domain] = {}
        for s, w in SITES:
            own = rng.standard_normal((LATENT, w), dtype=np.float32) * scale
            mix = 0.3 + 0.1 * d
            acts[domain][s] = torch.from_numpy(np.maximum(latent @ (shared[s] + mix * own), 0.0))
        labels[domain] = np.array([f"class{c:02d}" for c in lab])
    return acts, labels


def gram_cached_cka(acts: dict, labels: dict) -> dict:
    """Baseline with one linear Gram matrix per (domain, site), reused by all pairs.

    Rows are matched by class exactly as ``cross_domain_cka(mode="per_sample")`` matches them
    (with equal class counts the selection of a domain is the same for all its pairs).
    """
    from itertools import combinations

    from interp.similarity.cka import cka_ratio, gram_linear, hsic
    from interp.similarity.cross_domain import matched_rows

    rows = {}
    for a, b in combinations(DOMAINS, 2):
        rows[a], rows[b] = matched_rows(labels[a], labels[b], domains=(a, b))
    values = {}
    for site, _ in SITES:
        grams = {d: gram_linear(acts[d][site][torch.as_tensor(rows[d])]) for d in DOMAINS}
        self_hsic = {d: hsic(k, k) for d, k in grams.items()}
        for a, b in combinations(DOMAINS, 2):
            values[(site, a, b)] = cka_ratio(hsic(grams[a], grams[b]), self_hsic[a], self_hsic[b])
        del grams
    return values


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def as_values(table) -> dict:
    return {(r.site, r.domain_a, r.domain_b): r.value for r in table.itertuples()}


def peak_memory_child(n: int) -> None:
    """Subprocess body: fast path at ``n`` per domain; prints a JSON line with RSS peaks."""
    from interp.similarity.cross_domain import cross_domain_cka

    acts, labels = synthetic_activations(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    table, seconds = timed(cross_domain_cka, acts, labels, mode="per_sample", progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    inputs = sum(x.numel() * x.element_size() for d in acts.values() for x in d.values())
    widest = max(w for _, w in SITES)
    print(json.dumps({
        "n": n, "rows": len(table), "seconds": seconds, "peak_before": before, "peak_after": after,
        "inputs": inputs, "n_by_n_float64": n * n * 8, "one_site_float64": 6 * n * widest * 8,
        "finite": bool(np.isfinite(table["value"]).all()),
    }))


def gib(x: float) -> str:
    return f"{x / 1024**3:.2f} GiB"


def reference_flops(n: int) -> float:
    """Matrix-product flops of ``method="reference"``: two ``n x n`` Grams ``X X'`` per pair
    (torch's ``mm``, ``2 n^2 w`` each), 15 pairs per site (HSIC's O(n^2) sums not counted)."""
    return sum(15 * 2 * 2.0 * n * n * w for _, w in SITES)


def cached_flops(n: int) -> float:
    """Matrix-product flops of :func:`gram_cached_cka`: one ``n x n`` Gram per (domain, site)."""
    return sum(len(DOMAINS) * 2.0 * n * n * w for _, w in SITES)


def fast_flops(n: int, blas: str) -> float:
    """Matrix-product flops of the fast path: one stacked ``Z'Z`` per site (see cka.py)."""
    from interp.similarity.cka import linear_hsic_all_flops

    return sum(linear_hsic_all_flops(n, [w] * len(DOMAINS), blas) for _, w in SITES)


def best_of(repeats: int, fn, *args, **kwargs):
    """``(result, best seconds, all seconds)`` of ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        result, seconds = timed(fn, *args, **kwargs)
        times.append(seconds)
    return result, min(times), times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="images per domain (default 5000)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch (and NumPy BLAS) thread counts to measure, each in this run (default 1 2)")
    parser.add_argument("--repeats", type=int, default=2, help="fast-path repeats (best is reported)")
    parser.add_argument("--gram-cached", action="store_true",
                        help="also time the baseline with one Gram matrix per (domain, site)")
    parser.add_argument("--torch-blas", action="store_true",
                        help="also time the fast path with torch's z.T @ z (no symmetric product)")
    parser.add_argument("--big-n", type=int, default=0, help="n for the memory check (0: skip)")
    parser.add_argument("--rbf-sites", type=int, default=0, help="sites for the RBF comparison (0: skip)")
    parser.add_argument("--out", default="/tmp/results_cka.md", help="markdown report")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    add_busy_flag(parser)
    args = parser.parse_args(argv)
    if args.child is not None:
        peak_memory_child(args.child)
        return 0

    cond = start(threads=max(args.threads))
    from interp.similarity.cross_domain import cross_domain_cka

    acts, labels = synthetic_activations(args.n)
    kwargs = {"mode": "per_sample", "progress": False}
    print(f"n={args.n} per domain, {len(SITES)} sites x 15 pairs, threads {args.threads}", flush=True)
    f_fast, f_torch, f_ref = fast_flops(args.n, "auto"), fast_flops(args.n, "torch"), reference_flops(args.n)
    lines = [
        "## Layerwise cross-domain CKA (benchmarks/bench_cka.py)",
        "",
        f"Synthetic pooled activations, 6 domains x {len(SITES)} sites (widths "
        f"{', '.join(str(w) for _, w in SITES)}), n = {args.n} images per domain matched by "
        f"class (50 classes), unbiased linear CKA in float64 for all {len(SITES) * 15} "
        "(site, domain pair) cells. All rows in one run, same inputs, same process; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}. GFLOP = the matrix products each method does (multiply and add "
        f"counted; the fast path's symmetric product Z'Z counts n W^2, torch's general one 2 n W^2; "
        f"the reference's O(n^2) HSIC sums are not counted). Fast path {f_fast / 1e9:.1f} GFLOP, "
        f"reference {f_ref / 1e9:.0f} GFLOP: a {f_ref / f_fast:.0f}x smaller count.",
        "",
        "| threads | method | GFLOP | wall time | GFLOP/s | ratio reference / fast | max abs diff vs reference |",
        "|---|---|---|---|---|---|---|",
    ]
    ok = True
    ratios = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        fast, t_fast, all_fast = best_of(args.repeats, cross_domain_cka, acts, labels, **kwargs)
        print(f"[{threads} thr] fast: {', '.join(f'{t:.2f}' for t in all_fast)} s "
              f"({f_fast / t_fast / 1e9:.1f} GFLOP/s)", flush=True)
        reference, t_ref = timed(cross_domain_cka, acts, labels, method="reference", **kwargs)
        print(f"[{threads} thr] reference: {t_ref:.1f} s ({f_ref / t_ref / 1e9:.1f} GFLOP/s), "
              f"ratio {t_ref / t_fast:.1f}x", flush=True)
        v_fast, v_ref = as_values(fast), as_values(reference)
        diff = max(abs(v_fast[k] - v_ref[k]) for k in v_ref)
        ratios[threads] = t_ref / t_fast
        ok = ok and diff < 1e-9
        lines += [
            f"| {threads} | fast (stacked Z'Z per site, NumPy syrk) | {f_fast / 1e9:.1f} | "
            f"{t_fast:.2f} s (runs: {', '.join(f'{t:.2f}' for t in all_fast)}) | "
            f"{f_fast / t_fast / 1e9:.1f} | 1 | {diff:.1e} |",
            f"| {threads} | reference: paper's algorithm (per-pair n x n Grams, unbiased HSIC) | "
            f"{f_ref / 1e9:.0f} | {t_ref:.1f} s | {f_ref / t_ref / 1e9:.1f} | **{t_ref / t_fast:.1f}x** | 0 |",
        ]
        if args.torch_blas:
            tb, t_tb, _ = best_of(args.repeats, cross_domain_cka, acts, labels, blas="torch", **kwargs)
            d_tb = max(abs(v - v_ref[k]) for k, v in as_values(tb).items())
            lines.append(
                f"| {threads} | fast, torch z.T @ z (MKL, general product) | {f_torch / 1e9:.1f} | "
                f"{t_tb:.2f} s | {f_torch / t_tb / 1e9:.1f} | {t_ref / t_tb:.1f}x | {d_tb:.1e} |")
        if args.gram_cached:
            cached, t_cached = timed(gram_cached_cka, acts, labels)
            d_c = max(abs(cached[k] - v_ref[k]) for k in cached)
            lines.append(
                f"| {threads} | Gram matrices cached per (domain, site) | {cached_flops(args.n) / 1e9:.0f} | "
                f"{t_cached:.1f} s | {cached_flops(args.n) / t_cached / 1e9:.1f} | "
                f"{t_ref / t_cached:.1f}x | {d_c:.1e} |")
    if args.rbf_sites:
        sites = [s for s, _ in SITES[: args.rbf_sites]]
        rbf_kwargs = {**kwargs, "kernel": "rbf", "sites": sites}
        rbf_fast, t_rbf_fast = timed(cross_domain_cka, acts, labels, **rbf_kwargs)
        rbf_ref, t_rbf_ref = timed(cross_domain_cka, acts, labels, method="reference", **rbf_kwargs)
        a, b = as_values(rbf_fast), as_values(rbf_ref)
        diff_rbf = max(abs(a[k] - b[k]) for k in b)
        ok = ok and diff_rbf < 1e-9
        lines += [
            f"| {torch.get_num_threads()} | RBF, {len(sites)} sites: Grams shared per (domain, site) | | "
            f"{t_rbf_fast:.1f} s | | 1 | {diff_rbf:.1e} |",
            f"| {torch.get_num_threads()} | RBF, {len(sites)} sites: reference (per-pair Grams) | | "
            f"{t_rbf_ref:.1f} s | | {t_rbf_ref / t_rbf_fast:.1f}x | 0 |",
        ]
    if args.big_n:
        print(f"memory check at n={args.big_n} (subprocess) ...", flush=True)
        command = [sys.executable, __file__, "--child", str(args.big_n)]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        mem = json.loads(result.stdout.strip().splitlines()[-1])
        growth = mem["peak_after"] - mem["peak_before"]
        bounded = growth < mem["n_by_n_float64"] / 4 and mem["finite"]
        ok = ok and bounded
        lines += [
            "",
            f"Peak memory of the fast path at n = {mem['n']} per domain ({mem['rows']} cells, "
            f"{mem['seconds']:.1f} s), fresh process, `ru_maxrss`: **{gib(mem['peak_after'])}** "
            f"in total, **+{gib(growth)}** during CKA (peak before CKA, with the "
            f"{gib(mem['inputs'])} of float32 inputs generated: {gib(mem['peak_before'])}). For "
            f"scale: one n x n float64 matrix is {gib(mem['n_by_n_float64'])}; the widest "
            f"site's stack of six centred float64 matrices is {gib(mem['one_site_float64'])}. No n x n "
            "matrix is allocated; the working set is O(n d) for one site at a time.",
        ]
    finish(cond)
    goal = min(ratios.values()) >= 30 if ratios else False
    command = (f"python benchmarks/bench_cka.py --n {args.n} --threads {' '.join(map(str, args.threads))}"
               + (" --gram-cached" if args.gram_cached else "") + (" --torch-blas" if args.torch_blas else "")
               + f" --big-n {args.big_n} --rbf-sites {args.rbf_sites}")
    lines += [
        "",
        f"Command: `{command}`",
        f"Load: {cond.tag()}. Ratios: "
        + ", ".join(f"{t} thread(s) {r:.1f}x" for t, r in ratios.items())
        + f". Goals: values equal to the reference within 1e-9: {'met' if ok else 'NOT met'}; "
        f">= 30x: {'met' if goal else 'not met'} in this run"
        + ("" if cond.alone else f" ({BUSY_MARK}: rerun alone)") + ".",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if may_write(cond, args.allow_busy, args.out):
        write_report(args.out, report, cond)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
