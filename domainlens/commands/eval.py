"""``domainlens eval``: zero-shot accuracy of every epoch checkpoint of one or more runs."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Score every epoch checkpoint of a run on the test split of every domain: zero-shot
classification over all classes with a prompt ensemble (OpenAI's 80 ImageNet templates plus
six domain templates; per-prompt normalise, average, renormalise) for CLIP runs, the linear
head for supervised runs. Data root, test domain and held-out classes come from the run's
mixture.json (--data overrides the root).

Writes <run>/eval/zero_shot.csv, a tidy table with columns run, setup, test_domain, seed,
epoch, eval_domain, class_subset (held-out | seen | all), class_name, metric (top1 |
top1_balanced | class_top1), value, n_images; and <run>/eval/learning_curve.png. The headline
is top1 on held-out classes where eval_domain == test_domain."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="zero-shot evaluation of a run's checkpoints",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    parser.add_argument("--data", default=None,
                        help="DomainNet-format root (default: from the run's mixture.json)")
    parser.add_argument("--epochs", type=int, nargs="+", default=None,
                        help="checkpoint epochs to score (default: all; -1 = latest)")
    parser.add_argument("--domains", nargs="+", default=None,
                        help="domains to score (default: every domain with a test split)")
    parser.add_argument("--batch-size", type=int, default=256, help="default: 256")
    parser.add_argument("--cache-dir", default=None,
                        help="keep decoded test images in a memmap file here, shared by runs")
    parser.add_argument("--device", default="cpu", help="default: cpu")
    parser.add_argument("--predictions", action="store_true",
                        help="also write per-image predictions to <run>/eval/predictions.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_run

    for run_dir in args.runs:
        table = evaluate_run(
            run_dir, data_root=args.data, epochs=args.epochs, batch_size=args.batch_size,
            domains=args.domains, cache_dir=args.cache_dir, device=args.device,
            predictions=args.predictions, progress=not args.quiet,
        )
        head = table[(table["metric"] == "top1") & (table["class_subset"] == "held-out")]
        test = head[head["eval_domain"] == head["test_domain"]]
        last = (test if len(test) else head).sort_values("epoch").tail(1)
        summary = ""
        if len(last):
            row = last.iloc[0]
            summary = (f" (epoch {row['epoch']}, {row['eval_domain']} held-out top-1 "
                       f"{row['value']:.3f})")
        print(f"{run_dir}/eval/zero_shot.csv{summary}")
    return 0
