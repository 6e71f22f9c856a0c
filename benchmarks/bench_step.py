"""Where a CLIP training step goes: data, image forward, text forward, loss, backward,
optimizer; images/s and achieved FLOP/s, for the trainer's settings side by side.

One step is the trainer's (``training.train``): tensor augmentation of a uint8 batch, OpenCLIP's
``ClipLoss``, backward, grad-norm clip 1.0, AdamW over the trainer's parameter groups, logit
scale clamp. Inputs are random (uint8 images; captions drawn from a small caption vocabulary,
as the mixtures' captions use a few hundred of the 49,408 tokens). Variants (all in this one
invocation, interleaved round by round so that load drifts hit all of them alike):

* ``plain``: the trainer before issue 20 (unfused AdamW, NCHW, fp32, a host sync per step);
* ``fused``: fused AdamW; ``channels-last``: NHWC ResNet tower and inputs; ``trim-text``: the
  text tower over the captions' used token positions only (``trim_text``);
* ``fast``: all three (the trainer's fp32 default), no per-step sync;
* ``bf16``: ``fast`` under bfloat16 autocast (``--precision bf16``).

Per-phase times are wall-clock medians over the timed steps (CPU ops run synchronously;
on CUDA every phase boundary synchronises, so there ``fast`` includes syncs the trainer does
not make). FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward
(matrix products and convolutions only, the optimizer's element-wise work is not counted).
The 1-minute load average before and after and the torch thread count are printed: ratios
within one run are comparable, absolute numbers only from a run on an idle machine.

Usage (set OMP_NUM_THREADS to --threads)::

    OMP_NUM_THREADS=2 python benchmarks/bench_step.py --model tiny-rn-32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.imagecache import AugmentConfig, TensorTransform  # noqa: E402
from training.models import (  # noqa: E402
    build_clip,
    encode_text_prefix,
    image_size,
    preprocess_stats,
    resolve_model_config,
    used_token_length,
)
from training.train import (  # noqa: E402
    ClipTask,
    TrainConfig,
    autocast_context,
    is_resnet_tower,
    make_optimizer,
    resolved,
)

VARIANTS: dict[str, dict] = {
    "plain": dict(fused_optimizer=False, channels_last=False, trim_text=False, precision="fp32",
                  sync=True),
    "fused": dict(fused_optimizer=True, channels_last=False, trim_text=False, precision="fp32",
                  sync=False),
    "channels-last": dict(fused_optimizer=False, channels_last=True, trim_text=False,
                          precision="fp32", sync=False),
    "trim-text": dict(fused_optimizer=False, channels_last=False, trim_text=True,
                      precision="fp32", sync=False),
    "fast": dict(fused_optimizer=True, channels_last=True, trim_text=True, precision="fp32",
                 sync=False),
    "bf16": dict(fused_optimizer=True, channels_last=True, trim_text=True, precision="bf16",
                 sync=False),
}
PHASES = ("data", "image_fwd", "text_fwd", "loss", "backward", "clip", "optimizer")
WORDS = ("a photo of a", "a sketch of a", "a painting of a", "clipart of a", "a doodle of a",
         "an infographic of a")
NOUNS = tuple(f"thing{i}" for i in range(48))


class Step:
    """One variant's model, optimizer and inputs; :meth:`run` times one training step."""

    def __init__(self, model_name: str, variant: str, batch: int, seed: int = 0) -> None:
        opts = dict(VARIANTS[variant])
        self.sync = opts.pop("sync")
        cfg = resolve_model_config(model_name)
        torch.manual_seed(seed)
        self.model = build_clip(cfg)
        self.channels_last = opts["channels_last"] and is_resnet_tower(cfg)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        config = resolved(TrainConfig(mixture="-", out="-", model=model_name, batch_size=batch),
                          ClipTask(), cfg)
        config = replace(config, **opts)
        self.precision = config.precision
        self.optimizer = make_optimizer(self.model, config)
        from open_clip.loss import ClipLoss

        self.loss = ClipLoss()
        size = image_size(cfg)
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (4 * batch, 3, size, size), dtype=torch.uint8,
                                    generator=gen)
        from training.models import tokenizer_for

        captions = [f"{WORDS[i % len(WORDS)]} {NOUNS[(i * 7) % len(NOUNS)]}."
                    for i in range(4 * batch)]
        self.tokens = tokenizer_for(cfg)(captions).to(torch.int32)
        if opts["trim_text"]:  # as the trainer: the columns some caption uses
            self.tokens = self.tokens[:, :used_token_length(self.tokens)].contiguous()
        self.trim_text = opts["trim_text"]
        self.transform = TensorTransform(*preprocess_stats(self.model), AugmentConfig())
        self.gen, self.batch, self.step_no = gen, batch, 0
        self.device = torch.device("cpu")

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The trainer's data path: index the uint8 cache, augment, normalise."""
        idx = torch.randint(0, len(self.images), (self.batch,), generator=self.gen)
        x = self.transform(self.images[idx], self.transform.sample(self.batch, self.gen))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.tokens[idx].long()

    def run(self, times: dict[str, list[float]] | None = None) -> None:
        """One step; append each phase's seconds to ``times`` (if given)."""
        marks = [time.perf_counter()]

        def mark() -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

        x, y = self.inputs()
        mark()
        for group in self.optimizer.param_groups:
            group["lr"] = 1e-4
        with autocast_context(self.device, self.precision):
            image = self.model.encode_image(x, normalize=True)
            mark()
            text = (torch.nn.functional.normalize(encode_text_prefix(self.model, y), dim=-1)
                    if self.trim_text else self.model.encode_text(y, normalize=True))
            mark()
            loss = self.loss(image, text, self.model.logit_scale.exp())
        if self.sync:
            float(loss.detach())  # the old trainer's per-step host sync
        mark()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        mark()
        self.optimizer.step()
        ClipTask().after_step(self.model)
        mark()
        if times is not None:
            for name, a, b in zip(PHASES, marks[:-1], marks[1:], strict=True):
                times[name].append(b - a)

    def flops(self) -> int:
        """Matrix-product and convolution FLOPs of one forward + backward."""
        from torch.utils.flop_counter import FlopCounterMode

        x, y = self.inputs()
        with FlopCounterMode(display=False) as counter:
            with autocast_context(self.device, self.precision):
                image = self.model.encode_image(x, normalize=True)
                text = (torch.nn.functional.normalize(encode_text_prefix(self.model, y), dim=-1)
                    if self.trim_text else self.model.encode_text(y, normalize=True))
                loss = self.loss(image, text, self.model.logit_scale.exp())
            loss.backward()
        self.optimizer.zero_grad(set_to_none=True)
        return int(counter.get_total_flops())


def measure(model: str, variants: list[str], batch: int, steps: int, warmup: int,
            rounds: int, log: Callable[[str], None]) -> dict[str, dict]:
    """Per variant: median seconds per phase and per step over ``rounds`` x ``steps``."""
    runners = {v: Step(model, v, batch) for v in variants}
    times = {v: {p: [] for p in PHASES} for v in variants}
    for runner in runners.values():
        for _ in range(warmup):
            runner.run()
    for r in range(rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            for _ in range(steps):
                runners[v].run(times[v])
        log(f"  round {r + 1}/{rounds} done, load {os.getloadavg()[0]:.2f}")
    flops = {v: runners[v].flops() for v in variants}
    out = {}
    for v in variants:
        totals = [sum(parts) for parts in zip(*(times[v][p] for p in PHASES), strict=True)]
        step_s = statistics.median(totals)
        out[v] = {"phases_ms": {p: 1e3 * statistics.median(times[v][p]) for p in PHASES},
                  "step_ms": 1e3 * step_s, "images_per_s": batch / step_s,
                  "flop_per_step": flops[v], "gflop_per_s": flops[v] / step_s / 1e9}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["tiny-rn-32"],
                        help="presets or OpenCLIP names (default tiny-rn-32)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    omp = os.environ.get("OMP_NUM_THREADS")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()} (OMP_NUM_THREADS="
          f"{omp}), batch {args.batch_size}, load before {os.getloadavg()}", flush=True)
    if omp != str(args.threads):
        print(f"warning: OMP_NUM_THREADS should be {args.threads}", file=sys.stderr)
    results = {}
    for model in args.model:
        print(f"{model}:", flush=True)
        results[model] = res = measure(model, args.variants, args.batch_size, args.steps,
                                       args.warmup, args.rounds, print)
        base = res[args.variants[0]]["images_per_s"]
        print(f"\n| {model} | " + " | ".join(PHASES) + " | step ms | images/s | GFLOP/s | "
              f"x {args.variants[0]} |")
        print("|---" * (len(PHASES) + 5) + "|")
        for v, r in res.items():
            phases = " | ".join(f"{r['phases_ms'][p]:.1f}" for p in PHASES)
            print(f"| {v} | {phases} | {r['step_ms']:.1f} | {r['images_per_s']:.0f} | "
                  f"{r['gflop_per_s']:.1f} | {r['images_per_s'] / base:.2f} |")
        flop = res[args.variants[0]]["flop_per_step"]
        print(f"({flop / 1e9:.2f} GFLOP per step forward + backward, "
              f"{flop / args.batch_size / 1e6:.1f} MFLOP per image)\n", flush=True)
    load_after = os.getloadavg()
    print(f"load after {load_after}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "batch": args.batch_size,
                                               "load_after": load_after, "results": results},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
