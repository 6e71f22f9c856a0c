"""``domainlens circuits``: attribution circuits of a model for every class x domain, compared."""

from __future__ import annotations

import argparse

from domainlens.commands import common
from interp.controls import add_reference_arguments

DESCRIPTION = """\
Compute the circuit of every requested class in every domain of a CLIP run (or any OpenCLIP
model: --model NAME --pretrained TAG|FILE --data ROOT --out DIR) and compare them across domains (the paper's circuit analysis). Per (class, domain): N test images (seeded),
node effects of every unit of every site (ViT: attention heads, MLP neurons, residual
dimensions per block; ResNet: block output channels) on the true-class zero-shot logit
(cosine), by attribution patching (1 forward + 1 backward) or per-site integrated gradients;
the top fraction of units per site by |effect| (or a relative threshold); edge weights
between kept units of connected sites (gradient x activation or IG); the top-k incoming
edges per node by signed weight or |weight|. Optionally the faithfulness of each circuit
under mean ablation, against seeded random circuits of the same size per site.

Results are cached per (class, domain) under <out>/cache (hash of weights, image pixels and
settings), so an interrupted run resumes. Writes to <out> (default <run>/circuits):
circuits/<class>/<domain>.json, circuit_nodes.csv, circuit_edges.csv, faithfulness.csv
(header only without --faithfulness),
comparison.csv (per class and domain pair: node Jaccard per site, edge Jaccard, WL kernel),
comparison_summary.csv (held-out / seen / all classes: mean, std, n), comparison_groups.csv
(domain-pair groups; 'excluding_quickdraw' has no quickdraw pair), node_sharing.png,
circuit_similarity.png, circuits_<class>.png.

References (--references, default init,class-shuffle; seed with --seed-run): the comparison
tables also hold, in a 'reference' column, the same comparison of the epoch-0 checkpoint's
circuits (init), of class c in A against a seeded other class c' in B (class-shuffle) and of a
second seed's run (seed); controls.csv gives value, reference, excess and a bootstrap interval
over classes."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.analysis_parser(
        subparsers, "circuits", help="attribution circuits per class x domain, compared across domains",
        description=DESCRIPTION, raw=True, out_default="<run>/circuits", batch_size=32,
        include=("epoch", "domains", "batch-size", "device", "out", "quiet"),
    )
    parser.add_argument("--classes", nargs="+", default=None, help="class folders (default: all)")
    parser.add_argument("--n-images", type=int, default=20,
                        help="test images per class and domain, exactly (default: 20)")
    parser.add_argument("--metric", choices=("logit", "logit_diff", "prob"), default="logit",
                        help="metric whose attributions define the circuit: cosine logit of the "
                        "true class (the paper), its margin over the runner-up class, or the "
                        "softmax probability (default: logit)")
    parser.add_argument("--method", choices=("atp", "ig", "ig_loop"), default="atp",
                        help="node effects: attribution patching, per-site IG (S passes), or the "
                        "paper's per-site IG loop (L x S passes) (default: atp)")
    parser.add_argument("--steps", type=int, default=10, help="IG steps (default: 10)")
    parser.add_argument("--rule", choices=("left", "midpoint"), default="left",
                        help="IG Riemann rule (default: left, as the paper's code)")
    parser.add_argument("--baseline", choices=("zero", "mean"), default="zero",
                        help="activation baseline (default: zero, as the paper)")
    select = parser.add_mutually_exclusive_group()
    select.add_argument("--fraction", type=float, default=None,
                        help="keep this fraction of units per site by |effect|, in (0, 1] (default 0.1)")
    select.add_argument("--threshold", type=float, default=None,
                        help="keep units with |effect| >= threshold * the site's max, in (0, 1]")
    parser.add_argument("--edge-method", choices=("gxa", "ig"), default="gxa",
                        help="edge weights: gradient x activation or IG (default: gxa)")
    parser.add_argument("--top-k", type=int, default=3, help="incoming edges kept per node (default: 3)")
    parser.add_argument("--edge-rank", choices=("signed", "abs"), default="signed",
                        help="rank incoming edges by signed weight (the paper) or |weight| (default: signed)")
    parser.add_argument("--wl-h", type=int, default=2, help="WL kernel iterations h (default: 2)")
    parser.add_argument("--neighbours", choices=("undirected", "in", "out", "both"),
                        default="out", help="WL neighbourhood: successors (out, the paper's), "
                        "undirected, predecessors (in) or both (default: out)")
    parser.add_argument("--faithfulness", action="store_true",
                        help="also measure faithfulness/completeness under mean ablation")
    parser.add_argument("--n-random", type=int, default=5,
                        help="random circuits per faithfulness check (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="image sampling and random circuits (default: 0)")
    parser.add_argument("--draw-class", default=None, help="class drawn per domain (default: first)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1, faster for tiny models; to use more "
                        "cores run several processes on disjoint --classes with the same --out, "
                        "then once over all classes to assemble the tables from the cache)")
    add_reference_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from domainlens.experiments.circuits import CircuitSettings, run_circuits

    source = common.source_from_args(args)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)

    fraction = args.fraction if args.fraction is not None or args.threshold is not None else 0.1
    settings = CircuitSettings(
        n_images=args.n_images, metric=args.metric, method=args.method, steps=args.steps, rule=args.rule,
        baseline=args.baseline, fraction=fraction, threshold=args.threshold,
        edge_method=args.edge_method, top_k=args.top_k, edge_rank=args.edge_rank, wl_h=args.wl_h,
        neighbours=args.neighbours, faithfulness=args.faithfulness, n_random=args.n_random,
        seed=args.seed, batch_size=args.batch_size,
        references=common.comma_references(args, source), seed_reference=common.seed_run_from_args(args),
        n_boot=args.n_boot,
    )
    results = run_circuits(source, args.classes, settings=settings, draw_class=args.draw_class,
                           progress=not args.quiet, **common.options_from_args(args))
    groups = results.groups
    wl = groups[(groups["metric"] == "wl_kernel") & (groups["class_subset"] == "all")
                & (groups["reference"] == "none")]
    for row in wl.itertuples():
        print(f"WL kernel (h={settings.wl_h}), {row.pair_group}: {row.value:.3f} over {row.n_pairs} pairs")
    print(f"{results.out}: {len(results.circuit_files)} circuits, tables and {len(results.figures)} figures")
    return 0
