"""Activation patching: batched sweep vs TransformerLens' ``generic_activation_patch``.

    python benchmarks/bench_patching.py [--model tiny-vit] [--batch 16] [--max-batch 256] [--repeats 3]

A full layer x position sweep of ``blocks.{l}.hook_resid_post`` (tiny ViT: 4 layers x 65 tokens
= 260 patched forwards) on the same model, inputs and metric (per-example logit difference),
both sides in one process: TransformerLens runs one forward per patch (explicit index table,
as INTERP_LIBS.md describes), ``interp.interventions.intervene.run_interventions`` stacks the patched copies
along the batch axis (and shares the unpatched prefix). Reports the maximum absolute
difference of the per-example values and patched forwards per second of each side
(best of ``--repeats``). Prints a Markdown table for benchmarks/RESULTS.md.

The 1-minute load average and the thread count are printed at the start and the end
(benchmarks/_harness.py); a table taken when the machine was busy at the start is marked.
"""

from __future__ import annotations

import argparse
import platform
import time

import pandas as pd
import torch
from _harness import BUSY_MARK, add_busy_flag, finish, start


def build(model_name: str, n_classes: int, seed: int):
    from interp.hooked import hook_image_tower
    from interp.hooked.head import ZeroShotHead
    from training.models import create_clip

    torch.manual_seed(seed)
    clip, _ = create_clip(model_name)
    head = ZeroShotHead(torch.randn(n_classes, clip.visual.output_dim))
    return hook_image_tower(clip.eval(), head=head).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-vit", help="preset or OpenCLIP config (a ViT)")
    parser.add_argument("--batch", type=int, default=16, help="images per patched run")
    parser.add_argument("--max-batch", type=int, default=256, help="images per batched forward")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    add_busy_flag(parser)  # accepted for uniformity: this benchmark only prints
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cond = start(threads=args.threads)

    from transformer_lens.patching import generic_activation_patch, layer_pos_patch_setter

    from interp.interventions.intervene import run_interventions
    from interp.interventions.units import PatchUnit, site_shapes
    from interp.metrics import logit_diff

    model = build(args.model, n_classes=10, seed=args.seed)
    if model.cfg.architecture != "vit":
        raise SystemExit("the layer x position sweep against TransformerLens needs a ViT")
    size = model.cfg.image_size
    generator = torch.Generator().manual_seed(args.seed)
    clean = torch.randn(args.batch, 3, *size, generator=generator)
    corrupted = torch.randn(args.batch, 3, *size, generator=generator)
    labels = torch.randint(0, 10, (args.batch,), generator=generator)
    n_layers = model.cfg.n_layers
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
    n_tokens = site_shapes(model, sites[:1])[sites[0]][0]
    index_df = pd.DataFrame(
        [(layer, pos) for layer in range(n_layers) for pos in range(n_tokens)], columns=["layer", "pos"]
    )
    units = [PatchUnit(sites[layer], position=pos) for layer, pos in index_df.itertuples(index=False)]
    with torch.no_grad():
        _, cache = model.run_with_cache(clean, names_filter=sites)
    replacements = {s: cache[s] for s in sites}

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logit_diff(logits, labels)

    def run_tl() -> torch.Tensor:
        with torch.no_grad():
            return generic_activation_patch(
                model, corrupted, cache, metric, layer_pos_patch_setter, "resid_post",
                index_df=index_df, reduce="none",
            ).values

    def run_ours(share_prefix: bool) -> torch.Tensor:
        return run_interventions(
            model, corrupted, replacements, units, metric="logit_diff", labels=labels,
            max_batch=args.max_batch, share_prefix=share_prefix, progress=False,
        )

    def best_time(fn, *fn_args) -> tuple[float, torch.Tensor]:
        best, out = float("inf"), None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = fn(*fn_args)
            best = min(best, time.perf_counter() - start)
        return best, out

    import transformer_lens.patching as tl_patching

    tl_patching.tqdm = lambda x, **_: x  # no progress bar inside the timing
    t_tl, v_tl = best_time(run_tl)
    t_ours, v_ours = best_time(run_ours, True)
    t_plain, v_plain = best_time(run_ours, False)
    n = len(units)
    rows = [
        ("TransformerLens generic_activation_patch", t_tl, n / t_tl, 0.0, 1.0),
        ("interp batched, shared prefix", t_ours, n / t_ours,
         float((v_ours - v_tl).abs().max()), t_tl / t_ours),
        ("interp batched, inputs repeated", t_plain, n / t_plain,
         float((v_plain - v_tl).abs().max()), t_tl / t_plain),
    ]
    print(f"\nLayer x position sweep: {args.model}, {n_layers} layers x {n_tokens} positions = {n} "
          f"patched forwards of {args.batch} images, max_batch {args.max_batch}, "
          f"{args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}\n")
    finish(cond)
    if not cond.alone:
        print(f"**{BUSY_MARK}** ({cond.load_text()}): rerun alone for ratios to report.\n")
    print("| method | time (s) | patched forwards/s | max abs diff vs TL | speed-up vs TL | load |")
    print("|---|---|---|---|---|---|")
    for name, seconds, rate, diff, ratio in rows:
        print(f"| {name} | {seconds:.2f} | {rate:.1f} | {diff:.2e} | {ratio:.2f}x | {cond.tag()} |")


if __name__ == "__main__":
    main()
