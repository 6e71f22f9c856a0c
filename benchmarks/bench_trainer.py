"""Trainer throughput, side by side: ``domainlens train`` vs OpenCLIP's ``open_clip_train.main``.

Both train the same model config on the same mixture TSV with the same batch size, epochs,
learning rate, weight decay, warmup and gradient clipping, on CPU in fp32, one after the other
in this one invocation (alternating when repeated, so slow drifts in machine load hit both).
Reported per trainer: steady-state images/s (median over per-step throughput from each
trainer's own log, first epoch's first 5 steps skipped; both include data time), the
wall-clock time of the whole command (start-up, data loading, all epochs, checkpoints) and its
CPU time (user + system, DataLoader workers included: less sensitive to other load on a
shared machine than wall time); and the ratio ours/theirs. The 1-minute load average is
printed at the start and the end (benchmarks/_harness.py) and recorded before and after each
pair; a pair that started with the machine busy (load >= 1) is marked "BUSY: not comparable",
and ``--json`` is not written for a busy run unless ``--allow-busy`` (then rows carry the mark).

Usage (about 3-4 minutes for the defaults on 2 cores)::

    .venv/bin/python benchmarks/bench_trainer.py --models tiny-vit tiny-rn --epochs 3

The data are generated with ``training.synth`` (64 px) into ``--work`` unless ``--data`` names
an existing DomainNet-format root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _harness import BUSY_MARK, add_busy_flag, finish, load_average, may_write, start  # noqa: E402

TERMS = {"clipart": "clipart", "infograph": "infograph", "painting": "painting",
         "quickdraw": "doodle", "real": "photo", "sketch": "sketch"}


def make_data(work: Path, image_size: int) -> Path:
    """A generated DomainNet-format root (reused if present)."""
    from training.synth import SynthConfig, generate_dataset

    root = work / f"data{image_size}"
    if not (root / "real_train.txt").is_file():
        generate_dataset(root, SynthConfig(image_size=image_size, n_train=16, n_test=2,
                                           n_base=8, seed=0), workers=2, progress=False)
    return root


def make_tsv(root: Path, out: Path, rows: int) -> tuple[Path, int]:
    """A mixture TSV: the six domains' training images with simple captions, plus the base
    set; shuffled with a fixed seed and cut to ``rows``."""
    import pandas as pd

    from training.domainnet import load_index
    from training.domains import display_name

    index = load_index(root, splits=("train",))
    rendition = pd.DataFrame({
        "filepath": index["path"],
        "title": [f"a {TERMS[d]} of a {display_name(c)}."
                  for d, c in zip(index["domain"], index["class_name"], strict=True)],
        "domain": index["domain"], "label": index["label"],
    })
    parts = [rendition]
    if (root / "base.tsv").is_file():
        parts.append(pd.read_csv(root / "base.tsv", sep="\t"))
    table = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0)
    table = table.head(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, sep="\t", index=False)
    return out, len(table)


def openclip_local_dir(model: str, folder: Path) -> Path:
    """``<folder>/open_clip_config.json`` for ``--model local-dir:<folder>``."""
    from open_clip.transform import PreprocessCfg

    from training.models import image_size, resolve_model_config

    cfg = resolve_model_config(model)
    preprocess = {**PreprocessCfg().__dict__, "size": image_size(cfg)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}, indent=2))
    return folder


def run(command: list[str], env: dict) -> tuple[float, float]:
    """Run a command; return its wall-clock seconds and the CPU seconds (user + system) of
    it and all its descendants, e.g. DataLoader workers (raise with its stderr on failure)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def ours(tsv: Path, model: str, out: Path, args, env: dict) -> dict:
    import pandas as pd

    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "domainlens", "train", "--mixture", str(tsv),
               "--model", model, "--epochs", str(args.epochs), "--batch-size",
               str(args.batch_size), "--lr", "1e-3", "--wd", "0.2", "--warmup-steps",
               str(args.warmup), "--grad-clip", "1.0", "--log-every", "1", "--out", str(out),
               "--quiet", *args.ours_extra.split()]
    seconds, cpu = run(command, env)
    log = pd.read_csv(out / "train_log.csv")
    steady = log["images_per_s"].iloc[5:]
    return {"wall_s": seconds, "cpu_s": cpu, "img_s": float(statistics.median(steady)),
            "command": command}


_THEIR_RATE = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/.*?Batch \(t\): [\d.]+, ([\d.]+)/s,")


def theirs(tsv: Path, local_dir: Path, logs: Path, args, env: dict) -> dict:
    shutil.rmtree(logs, ignore_errors=True)
    command = [sys.executable, "-m", "open_clip_train.main", "--train-data", str(tsv),
               "--dataset-type", "csv", "--csv-separator", "\t", "--csv-img-key", "filepath",
               "--csv-caption-key", "title", "--model", f"local-dir:{local_dir}",
               "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
               "--lr", "1e-3", "--wd", "0.2", "--warmup", str(args.warmup),
               "--grad-clip-norm", "1.0", "--device", "cpu", "--precision", "fp32",
               "--workers", str(args.their_workers), "--report-to", "", "--logs", str(logs),
               "--name", "bench", "--save-frequency", "1", "--log-every-n-steps", "1",
               "--seed", "0"]
    seconds, cpu = run(command, env)
    text = (logs / "bench" / "out.log").read_text()
    rates = [float(m.group(3)) for m in _THEIR_RATE.finditer(text)]
    if len(rates) < 6:
        raise RuntimeError(f"could not parse throughput from {logs / 'bench' / 'out.log'}")
    return {"wall_s": seconds, "cpu_s": cpu, "img_s": float(statistics.median(rates[5:])),
            "command": command}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny-vit", "tiny-rn"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rows", type=int, default=2048, help="mixture rows (default 2048)")
    parser.add_argument("--warmup", type=int, default=5, help="warmup steps for both")
    parser.add_argument("--their-workers", type=int, default=1,
                        help="DataLoader workers for open_clip_train (default 1)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ours-extra", default="",
                        help="extra `domainlens train` options, e.g. '--precision bf16' or "
                        "'--no-fused-optimizer --no-channels-last' (the trainer before issue 20)")
    parser.add_argument("--data", default=None, help="existing DomainNet-format root")
    parser.add_argument("--work", default="/tmp/bench_trainer")
    parser.add_argument("--json", default=None, help="also write results here")
    add_busy_flag(parser)
    args = parser.parse_args()
    import torch

    cond = start(threads=torch.get_num_threads())
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (the trainers' threads "
          "follow it)", flush=True)

    from training.models import image_size, resolve_model_config

    work = Path(args.work)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = []
    for model in args.models:
        size = image_size(resolve_model_config(model))
        root = Path(args.data) if args.data else make_data(work, size)
        tsv, n = make_tsv(root, work / f"mix{size}" / "bench.tsv", args.rows)
        local_dir = openclip_local_dir(model, work / f"oc-{model}")
        for repeat in range(args.repeats):
            load_before = load_average()
            if repeat % 2 == 0:  # alternate who goes first
                a = ours(tsv, model, work / f"ours-{model}", args, env)
                b = theirs(tsv, local_dir, work / f"theirs-{model}", args, env)
            else:
                b = theirs(tsv, local_dir, work / f"theirs-{model}", args, env)
                a = ours(tsv, model, work / f"ours-{model}", args, env)
            load = os.getloadavg()[0]
            row = {"model": model, "repeat": repeat, "rows": n, "epochs": args.epochs,
                   "batch_size": args.batch_size, "ours_img_s": a["img_s"],
                   "theirs_img_s": b["img_s"], "ratio_img_s": a["img_s"] / b["img_s"],
                   "ours_wall_s": a["wall_s"], "theirs_wall_s": b["wall_s"],
                   "ratio_wall": b["wall_s"] / a["wall_s"],
                   "ours_cpu_s": a["cpu_s"], "theirs_cpu_s": b["cpu_s"],
                   "ratio_cpu": b["cpu_s"] / a["cpu_s"], "load_1min": load,
                   "load_start": load_before, "load_end": load,
                   "busy": bool(load_before >= 1.0),
                   "ours_command": " ".join(a["command"]),
                   "theirs_command": " ".join(repr(c) if c == "\t" else c
                                              for c in b["command"])}
            results.append(row)
            print(f"{model} #{repeat}: ours {a['img_s']:.0f} img/s ({a['wall_s']:.1f} s wall, "
                  f"{a['cpu_s']:.1f} s CPU), open_clip_train {b['img_s']:.0f} img/s "
                  f"({b['wall_s']:.1f} s wall, {b['cpu_s']:.1f} s CPU), ratio "
                  f"{row['ratio_img_s']:.2f}, load {load_before:.2f} -> {load:.2f}"
                  + (f" ({BUSY_MARK})" if row["busy"] else ""), flush=True)
    print("\n| model | rows x epochs | ours img/s | open_clip_train img/s | ratio | "
          "wall s ours / theirs | CPU s ours / theirs | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['rows']} x {r['epochs']} | {r['ours_img_s']:.0f} | "
              f"{r['theirs_img_s']:.0f} | {r['ratio_img_s']:.2f} | {r['ours_wall_s']:.1f} / "
              f"{r['theirs_wall_s']:.1f} | {r['ours_cpu_s']:.1f} / {r['theirs_cpu_s']:.1f} | "
              f"{r['load_start']:.2f} -> {r['load_end']:.2f}"
              + (f" ({BUSY_MARK})" if r["busy"] else " (alone)") + " |")
    finish(cond)
    if args.json and may_write(cond, args.allow_busy, args.json):
        from training.util.files import write_json

        write_json(Path(args.json), {"conditions": {"load_start": cond.load_start,
                                                    "load_end": cond.load_end,
                                                    "alone": cond.alone, "cpus": cond.cpus},
                                     "rows": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
