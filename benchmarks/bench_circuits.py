"""Circuit benchmarks: node effects for all sites, attribution patching vs per-site IG vs the
paper's per-site IG loop; growth with the number of sites; the whole default experiment.

    python benchmarks/bench_circuits.py [--model tiny-vit] [--images 24] [--steps 10]
                                        [--classes 40] [--domains 6] [--threads 2] [--repeats 3]

Models are the CPU presets with random weights (timings do not depend on the weights) and a
zero-shot head of ``--classes`` random class embeddings; images are random ``(N, 3, S, S)``
tensors (image decoding is not timed). Prints Markdown tables for benchmarks/RESULTS.md.

* nodes: one (class, domain) = ``--images`` images, every default site; ``atp`` (1 fwd+bwd),
  ``ig`` (per-site IG, ``S`` widened passes; ``ig/k``: ``k`` sites a pass) and ``ig_loop``
  (the paper's loop, ``L x S`` passes), with the max difference between ``ig`` and ``ig_loop``;
* growth: the same for the first ``k`` sites, ``k`` = 1/4, 1/2, 3/4, all of them;
* experiment: every (class, domain) of ``--classes`` x ``--domains``: nodes, kept nodes (10%),
  gxa edges, circuit (top-3 signed) and the cross-domain comparison, timed end to end for
  ``atp`` nodes; the other node methods extrapolated from their per-(class, domain) time.

Only ``ig``/``ig/k`` vs ``ig_loop`` compares two computations of the same numbers (per-site
integrated gradients). Attribution patching (``atp``) is a different estimator (a first-order,
one-pass approximation of the patching effect): its speed-up over the paper's loop comes from
computing something else, not from computing the same numbers faster. The printed tables say so.

The 1-minute load average and the thread count are printed at the start and the end
(benchmarks/_harness.py); tables taken when the machine was busy at the start are marked.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _harness import BUSY_MARK, add_busy_flag, finish
from _harness import start as start_conditions

from interp.circuits.attribution import default_sites, node_effects
from interp.circuits.circuit import build_circuit, select_nodes
from interp.circuits.compare import aggregate, compare_domains
from interp.circuits.edges import edge_weights, site_parents
from interp.hooked import hook_image_tower
from interp.hooked.head import ZeroShotHead
from training.models import build_clip, resolve_model_config

DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")


def make_model(name: str, n_classes: int):
    cfg = resolve_model_config(name)
    torch.manual_seed(0)
    clip = build_clip(cfg).eval()
    head = ZeroShotHead(torch.randn(n_classes, cfg["embed_dim"]))
    return hook_image_tower(clip, head=head).eval(), cfg


def images_for(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_nodes(model, images, labels, sites, steps, repeats, per_pass=None,
                methods=("atp", "ig", "ig_loop")):
    """``{method: (median seconds, NodeEffects)}``; ``ig/k`` = per-site IG, ``k`` sites a pass."""
    rows = {}
    runs = [(m, None) for m in methods]
    if per_pass:
        runs.insert(2, ("ig", per_pass))
    for method, k in runs:
        seconds, effects = timed(lambda m=method, k=k: node_effects(
            model, images, labels, sites, method=m, steps=steps, batch_size=len(images),
            sites_per_pass=k, progress=False), repeats)
        rows[method if k is None else f"ig/{k}"] = (seconds, effects)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-vit", help="preset or OpenCLIP config (default: tiny-vit)")
    parser.add_argument("--images", type=int, default=24, help="images per (class, domain)")
    parser.add_argument("--steps", type=int, default=10, help="IG steps")
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--domains", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sites-per-pass", type=int, default=6,
                        help="extra per-site IG row with this many sites per pass (0: none)")
    parser.add_argument("--skip-experiment", action="store_true")
    add_busy_flag(parser)  # accepted for uniformity: this benchmark only prints
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cond = start_conditions(threads=args.threads)
    mark = "" if cond.alone else f" ({BUSY_MARK}: load {cond.load_start:.2f} at the start)"

    model, cfg = make_model(args.model, args.classes)
    size = int(model.cfg.image_size[0])
    sites = default_sites(model)
    images = images_for(args.images, size, 0)
    labels = torch.zeros(args.images, dtype=torch.long)
    print(f"model {args.model}: {model.cfg.architecture}, {len(sites)} sites, {args.images} images "
          f"at {size} px, S={args.steps}, torch threads {args.threads}\n")

    # ---------------------------------------------------------------- nodes, side by side
    rows = bench_nodes(model, images, labels, sites, args.steps, args.repeats, args.sites_per_pass)
    ref_seconds = rows["ig_loop"][0]
    diff = max(float((rows["ig"][1].effects[s] - rows["ig_loop"][1].effects[s]).abs().max())
               for s in sites)
    print(f"### Node effects, all sites, one class x domain{mark}\n")
    print("| method | estimator | fwd+bwd passes | fwd-only passes | image-forwards | seconds | speed-up vs paper loop |")
    print("|---|---|---|---|---|---|---|")
    for method in rows:
        seconds, effects = rows[method]
        c = effects.cost
        what = ("attribution patching: ANOTHER estimator, not the same numbers" if method == "atp"
                else "per-site IG: the same numbers as the loop" if method != "ig_loop"
                else "per-site IG, the paper's loop (reference)")
        print(f"| {method} | {what} | {c['fwd_bwd']} | {c['fwd']} | {c['images']} | {seconds:.3f} | "
              f"{ref_seconds / seconds:.1f}x |")
    print(f"\nmax |ig - ig_loop| over all units: {diff:.2e}. The speed-up of `atp` comes from a "
          "different estimator (first-order attribution patching), not from computing the IG "
          "numbers faster; only the `ig` rows compare like with like.\n")

    # ---------------------------------------------------------------- growth with sites
    print(f"### Growth with the number of sites{mark}\n")
    print("| sites | atp passes | atp s | ig passes | ig s | ig_loop passes | ig_loop s |")
    print("|---|---|---|---|---|---|---|")
    n = len(sites)
    for k in sorted({max(1, n // 4), max(1, n // 2), max(1, 3 * n // 4), n}):
        sub = bench_nodes(model, images, labels, sites[:k], args.steps, max(1, args.repeats - 1))
        cells = []
        for method in ("atp", "ig", "ig_loop"):
            seconds, effects = sub[method]
            cells += [str(effects.cost["fwd_bwd"]), f"{seconds:.3f}"]
        print(f"| {k} | " + " | ".join(cells) + " |")
    print()

    if args.skip_experiment:
        finish(cond)
        return
    # ---------------------------------------------------------------- the whole experiment
    parents = site_parents(model, sites)
    combos = [(c, d) for c in range(args.classes) for d in DOMAINS[: args.domains]]
    start = time.perf_counter()
    circuits, node_s, edge_s = {}, 0.0, 0.0
    for i, (c, d) in enumerate(combos):
        x = images_for(args.images, size, 1000 + i)
        y = torch.full((args.images,), c, dtype=torch.long)
        t0 = time.perf_counter()
        effects = node_effects(model, x, y, sites, method="atp", batch_size=args.images, progress=False)
        t1 = time.perf_counter()
        kept = select_nodes(effects, 0.1)
        edges = edge_weights(model, x, y, kept, sites, parents=parents, batch_size=args.images,
                             progress=False)
        t2 = time.perf_counter()
        node_s, edge_s = node_s + t1 - t0, edge_s + t2 - t1
        circuits[(str(c), d)] = build_circuit(effects, edges, top_k=3, rank="signed")
    t3 = time.perf_counter()
    table = compare_domains(circuits, h=2)
    aggregate(table, heldout=[str(c) for c in range(0, args.classes, 3)])
    compare_s = time.perf_counter() - t3
    total = time.perf_counter() - start
    per_combo_ig = rows["ig"][0]
    per_combo_loop = rows["ig_loop"][0]
    per_combo_atp = rows["atp"][0]
    rest = total - node_s
    print(f"### Whole experiment: {args.classes} classes x {args.domains} domains = {len(combos)} circuits{mark}\n")
    print("| node method | nodes s | edges + circuits + comparison s | total s | |")
    print("|---|---|---|---|---|")
    print(f"| atp | {node_s:.1f} | {rest:.1f} | {total:.1f} | measured (edges {edge_s:.1f} s, "
          f"comparison {compare_s:.1f} s) |")
    for name, per in (("ig", per_combo_ig), ("ig_loop", per_combo_loop)):
        nodes = per * len(combos)
        print(f"| {name} | {nodes:.1f} | {rest:.1f} | {nodes + rest:.1f} | extrapolated: "
              f"{per:.3f} s per circuit x {len(combos)} (atp measured here {per_combo_atp:.3f} s) |")
    print(f"\n{len(table)} comparison rows; mean circuit size "
          f"{statistics.mean(len(c) for c in circuits.values()):.0f} nodes, "
          f"{statistics.mean(c.graph.number_of_edges() for c in circuits.values()):.0f} edges")
    finish(cond)


if __name__ == "__main__":
    main()
