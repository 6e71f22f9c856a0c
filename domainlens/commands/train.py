"""``domainlens train``: one CLIP (or, with ``--supervised``, the supervised baseline) per mixture."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train a CLIP from scratch on a mixture TSV (OpenCLIP's ClipLoss, AdamW, cosine schedule with
warmup, grad clipping, logit scale clamped to ln 100) and write a run directory:
checkpoints/epoch_<k>.pt for k = 0..epochs (OpenCLIP's format), model_config.json,
open_clip_config.json, mixture.json, run.json, train_log.csv.

Re-running the same command continues from the latest checkpoint; a fixed seed gives the same
weights whether or not the run was interrupted. --out must be new, empty or a run directory;
a TSV edited after its manifest was written is refused (--accept-edited-mixture). A NaN or
infinite loss or weight stops the run with a one-line error; no checkpoint after the last
finite one is written. Under torchrun (e.g. `torchrun
--nproc_per_node=2 -m domainlens train ...`) it trains with DDP (gloo on CPU, nccl on GPU);
--batch-size is the global batch.

--supervised trains the baseline instead: the same image tower plus a linear head, cross-entropy
on the mixture's labelled rows (defaults: SGD momentum 0.9, lr 0.01, wd 5e-4)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a CLIP (or the supervised baseline) on a mixture",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mixture", required=True, help="mixture TSV (manifest <stem>.json beside)")
    parser.add_argument("--out", required=True, help="run directory, e.g. runs/<name>")
    parser.add_argument("--model", default="tiny-vit",
                        help="preset (tiny-vit, tiny-rn), OpenCLIP model name (RN50, ViT-B-32) "
                        "or OpenCLIP model-config JSON file (default: tiny-vit)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default: 10)")
    parser.add_argument("--supervised", action="store_true",
                        help="train the supervised baseline (image tower + linear head)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="global batch size (default: 128)")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: 1e-3 CLIP, 0.01 supervised)")
    parser.add_argument("--wd", type=float, default=None,
                        help="weight decay (default: 0.2 CLIP, 5e-4 supervised)")
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default=None,
                        help="default: adamw for CLIP, sgd for the supervised baseline")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="linear warmup steps (default: 5%% of all steps)")
    parser.add_argument("--grad-clip", type=float, default=1.0,
                        help="max gradient norm; 0 disables (default: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--no-augment", action="store_true",
                        help="train on centre crops (default: random resized crop + flip)")
    parser.add_argument("--cache-dir", default=None,
                        help="keep decoded images in a memmap file here (default: in memory)")
    parser.add_argument("--workers", type=int, default=None,
                        help="image-decoding threads (default: CPU count)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--log-every", type=int, default=10,
                        help="train_log.csv row every N steps (default: 10)")
    parser.add_argument("--stop-after-epoch", type=int, default=None,
                        help="stop after this epoch's checkpoint; re-run to continue")
    parser.add_argument("--accept-edited-mixture", action="store_true",
                        help="train even if the TSV differs from the content hash its manifest "
                        "recorded (default: refuse an edited TSV)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="fp32 (default); bf16: bfloat16 autocast (CPU or GPU); fp16: "
                        "float16 autocast with a GradScaler (CUDA only)")
    parser.add_argument("--no-fused-optimizer", action="store_true",
                        help="unfused AdamW (default: fused where torch has it)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="contiguous NCHW ResNet (default: channels-last for ResNets)")
    parser.add_argument("--no-trim-text", action="store_true",
                        help="text tower over all context positions (default: only up to the "
                        "longest caption, where the tower's causal mask makes that exact)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The :class:`training.train.TrainConfig` for parsed command-line arguments."""
    from training.train import TrainConfig

    kwargs = {}
    if args.no_augment:
        kwargs["augment"] = None
    if args.no_fused_optimizer:
        kwargs["fused_optimizer"] = False
    if args.no_channels_last:
        kwargs["channels_last"] = False
    if args.no_trim_text:
        kwargs["trim_text"] = False
    return TrainConfig(
        mixture=args.mixture, out=args.out, model=args.model, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, wd=args.wd, optimizer=args.optimizer,
        warmup_steps=args.warmup_steps, grad_clip=args.grad_clip or None, seed=args.seed,
        cache_dir=args.cache_dir, workers=args.workers, device=args.device,
        log_every=args.log_every, progress=not args.quiet,
        stop_after_epoch=args.stop_after_epoch,
        accept_edited_mixture=args.accept_edited_mixture, precision=args.precision, **kwargs,
    )


def run(args: argparse.Namespace) -> int:
    from training.train import main_print, train_clip

    config = config_from_args(args)
    if args.supervised:
        from training.supervised import train_supervised

        run_dir = train_supervised(config)
    else:
        run_dir = train_clip(config)
    main_print(f"run directory: {run_dir}")
    return 0
