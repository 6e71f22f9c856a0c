"""``domainlens patch``: cross-domain activation patching of a trained run or any OpenCLIP model."""

from __future__ import annotations

import argparse

from domainlens.commands import common
from interp.controls import add_reference_arguments
from training.runinfo import CLASS_SUBSETS

_PAIRINGS = ("paired", "class_mean")
_DIRECTIONS = ("denoising", "noising")
_GRANULARITIES = ("position", "head", "channel_group")


DESCRIPTION = """\
Patch a class's activations from its images in the source domain into its images in the
target domain (denoising) and back (noising), site by site, in a run or any OpenCLIP model
(--model), and report per layer how much of the gap between the two domains' zero-shot
metric is closed (normalised recovery, bootstrap intervals). Also sweeps layer x position
and layer x head (ViT) or layer x channel group (ResNet). Writes
<out>/patching_<source>_to_<target>.csv (tidy, the model column first), the per-example CSV,
and PNG figures drawn from the table."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.analysis_parser(
        subparsers, "patch", help="activation patching between two domains of a model's image tower",
        description=DESCRIPTION,
        out_default="<run>/patching", include=("epoch", "device", "out", "quiet"),
    )
    parser.add_argument("--source", required=True, help="domain whose activations are patched in (e.g. real)")
    parser.add_argument("--target", required=True, help="domain that receives them (e.g. quickdraw)")
    parser.add_argument("--classes", choices=CLASS_SUBSETS, default="held-out",
                        help="class subset: held-out (C2, default), seen (C1) or all")
    parser.add_argument("--max-per-class", type=int, default=8,
                        help="test images per domain and class (seeded subsample; default 8)")
    parser.add_argument("--metric", choices=("logit", "logit_diff", "prob"), default="logit_diff",
                        help="true-class logit, logit difference to the runner-up (default), or "
                        "probability")
    parser.add_argument("--logit-scale", choices=("cosine", "model"), default="cosine",
                        help="head logits: plain cosine (default) or times CLIP's learned scale")
    parser.add_argument("--pairing", nargs="+", choices=_PAIRINGS, default=list(_PAIRINGS),
                        help="donor per target image: a source image of the same class (paired) "
                        "or the source class mean (class_mean); default both")
    parser.add_argument("--directions", nargs="+", choices=_DIRECTIONS, default=list(_DIRECTIONS),
                        help="denoising (source into target) and/or noising (target into source)")
    parser.add_argument("--sites", nargs="+", choices=("layers", "components"),
                        default=["layers", "components"],
                        help="site-level patching at the model's layers and/or per-block "
                        "components (attention/MLP outputs, ResNet branches)")
    parser.add_argument("--granularity", nargs="*", choices=_GRANULARITIES, default=None,
                        help="sweeps (default: ViT position head; ResNet position channel_group); "
                        "give the flag alone for none")
    parser.add_argument("--n-groups", type=int, default=8, help="channel groups per site")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="subsampling, pairing and bootstrap seed")
    parser.add_argument("--max-batch", type=int, default=256,
                        help="images per batched patched forward (bounds memory)")
    add_reference_arguments(parser, n_boot=False)
    parser.set_defaults(func=run_patch)


def run_patch(args: argparse.Namespace) -> int:
    from domainlens.experiments.patching import PatchSettings, patch_run

    source = common.source_from_args(args)
    settings = PatchSettings(
        classes=args.classes, max_per_class=args.max_per_class, metric=args.metric,
        pairings=args.pairing, directions=args.directions, site_sets=args.sites,
        granularities=args.granularity, n_groups=args.n_groups, logit_scale=args.logit_scale,
        n_boot=args.n_boot, seed=args.seed, max_batch=args.max_batch, progress=not args.quiet,
        references=common.comma_references(args, source), seed_reference=common.seed_run_from_args(args),
    )
    written = patch_run(source, args.source, args.target, settings, **common.options_from_args(args))
    import pandas as pd

    table = pd.read_csv(written["summary"])
    site_rows = table[(table["granularity"] == "site") & (table["statistic"] == "recovery")
                      & (table["class_name"] == "all") & (table["reference"] == "none")]
    print(f"recovery ({args.source} -> {args.target}, metric {args.metric}):")
    print(site_rows.pivot_table(index=["site_order", "layer"], columns=["pairing", "direction"],
                                values="value").droplevel(0).to_string(float_format=lambda v: f"{v:.3f}"))
    common.print_written(written)
    return 0
