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
        print(f"{run_dir}/eval/zero_shot.csv{summary(table)}")
    return 0


def summary(table) -> str:
    """What was just scored, labelled: `` (epoch E, <test domain> held-out top-1 V, the run's
    test domain)`` when the run's test domain was evaluated (the headline), else the held-out
    top-1 of each evaluated domain, said to be other domains (``""`` if there is none)."""
    epochs = table.attrs.get("evaluated_epochs") or sorted(set(table["epoch"]))
    domains = table.attrs.get("evaluated_domains") or list(dict.fromkeys(table["eval_domain"]))
    held = table["class_subset"].isin(("held-out", "heldout"))  # older tables: "heldout"
    head = table[(table["metric"] == "top1") & held
                 & table["epoch"].isin(epochs) & table["eval_domain"].isin(domains)]
    if head.empty:
        return ""
    epoch = int(head["epoch"].max())
    last = head[head["epoch"] == epoch]
    test_domain = str(last["test_domain"].iloc[0] or "")
    test = last[last["eval_domain"] == test_domain]
    if test_domain and len(test):
        return (f" (epoch {epoch}, {test_domain} held-out top-1 {test['value'].iloc[0]:.3f}, "
                "the run's test domain)")
    values = ", ".join(f"{r.eval_domain} {r.value:.3f}" for r in last.itertuples())
    where = (f"not the run's test domain {test_domain}" if test_domain
             else "the run names no test domain")
    return f" (epoch {epoch}, held-out top-1 on {values}; {where})"
