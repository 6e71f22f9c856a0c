"""The compact CLIP trainer: one mixture TSV -> one run directory of epoch checkpoints.

``train_clip(TrainConfig(mixture=..., out=...))`` (CLI: ``domainlens train``) trains an
OpenCLIP model with OpenCLIP's ``ClipLoss``, AdamW (no weight decay on gains, biases and the
logit scale, as OpenCLIP), cosine schedule with linear warmup, gradient-norm clipping and the
logit scale clamped to ``[0, ln 100]`` after every step, as OpenCLIP does.

Defaults, the paper's scaled for small CPU runs (paper: RN50, batch 1024, lr 1e-3, wd 0.2,
500 warmup steps, 32 epochs): batch 128, lr 1e-3, wd 0.2, warmup 5% of all steps (at least
one), grad-norm clip 1.0, betas/eps as OpenCLIP picks them (ViT: 0.9/0.98/1e-6, others:
0.9/0.999/1e-8), seed 0.

Data: every image is decoded once into a uint8 cache (:mod:`training.imagecache`); captions
are tokenised once. An epoch is a permutation of the rows drawn from a generator seeded by
``(seed, epoch)``; its last incomplete batch is dropped. Augmentation parameters are drawn
per global batch from a generator seeded the same way. Nothing depends on state carried
between epochs except the model, the optimizer and torch's global RNG, which the checkpoints
hold: a run resumed from an epoch checkpoint ends with bit-identical weights to one that was
never interrupted.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised (gloo
on CPU, nccl on GPU), every rank draws the same global batch and augmentation parameters and
takes its slice of ``batch_size / world_size`` rows, and ``ClipLoss`` gathers features with
gradients (``local_loss=False, gather_with_grad=True``), so the loss and the averaged gradient
equal a single process's on the same global batch. Only rank 0 writes files.

Speed (issue 20): AdamW is fused (one kernel over all parameters instead of about ten passes;
~20% of a tiny-rn-32 step before), a ResNet image tower and its inputs are channels-last
(NHWC convolutions), and the loss is not read back every step: a NaN/inf loss is noted on
the device (:class:`LossWatch`) and raised at the next log step or before the next checkpoint,
whichever comes first, so a NaN update may be computed but is never saved. The fused kernel
and NHWC convolutions round differently from the plain path (equal to float tolerance, not
bit-identical), so ``fused_optimizer``, ``channels_last`` and ``trim_text`` belong to the run's identity;
within one setting a resumed run stays bit-identical. Left unset, they are on for new runs and
keep a run's recorded values (off for runs made before they existed) when it is resumed.
The text tower runs on the mixture's longest caption's tokens only (``trim_text``: ~8 of
77 positions here; with OpenCLIP's causal mask the pooled end-of-text token never sees the
padding after it, so the features are equal to float rounding, while the text tower's
forward and backward take about a quarter of the time). The token embedding's rows that no caption uses still get AdamW's dense update: their
gradient is zero, but weight decay shrinks them every step, and held-out class names are
made of such tokens, so skipping them would change zero-shot results.

Precision: ``fp32`` (default), ``bf16`` (autocast of forward and loss; weights, gradients and
optimizer state stay float32) or ``fp16`` (CUDA only, with a ``GradScaler`` whose state the
checkpoints keep). bf16 is not the default: its held-out accuracy has not been compared with
fp32's over seeds, and its speed-up at the CPU presets' size is unsettled (see README).

The supervised baseline (:mod:`training.supervised`) runs the same loop with another task.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import checkpoints as ckpt
from .imagecache import AugmentConfig, TensorTransform, load_images
from .models import (
    PrefixTextCLIP,
    build_clip,
    image_size,
    nonfinite_tensors,
    preprocess_stats,
    resolve_model_config,
    text_prefix_supported,
    tokenizer_for,
    used_token_length,
    write_model_config,
)
from .trainset import Mixture, read_mixture
from .util.files import (
    as_write_error,
    atomic_open,
    remove_stale_temps,
    torch_save,
    write_json,
)
from .util.validate import check_choice, check_device, check_number

LOG_COLUMNS: tuple[str, ...] = ("step", "epoch", "loss", "lr", "logit_scale", "images_per_s")
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
#: ``fp32``: plain float32. ``bf16``: bfloat16 autocast of forward and loss (CPU or GPU; the
#: weights, gradients and optimizer state stay float32). ``fp16``: float16 autocast with a
#: ``GradScaler`` (CUDA only).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: What a run made before an option existed was trained with (its ``run.json`` lacks the key):
#: resuming such a run keeps these, so it stays bit-identical to an uninterrupted one.
LEGACY_SETTINGS: dict[str, Any] = {
    "precision": "fp32", "fused_optimizer": False, "channels_last": False, "trim_text": False,
}
KEEP_OPTIMIZER: tuple[str, ...] = ("latest", "all")

#: What a run directory may hold before its ``run.json`` exists (an interrupted start, or the
#: pipeline's step marker): training into a folder with anything else is refused.
RUN_LAYOUT: frozenset[str] = frozenset({
    ckpt.CHECKPOINT_DIR, ckpt.RUN_FILE, ckpt.MIXTURE_FILE, ckpt.LOG_FILE, "model_config.json",
    "open_clip_config.json", "cache", "eval", "pipeline_step.key",
})


class TrainingDiverged(FloatingPointError):
    """The loss or a weight became NaN or infinite; the message says where, in one line."""


@dataclass
class TrainConfig:
    """Settings of one training run (CLIP or supervised baseline).

    ``None`` fields take the task's default (see :func:`resolved`): CLIP uses AdamW,
    lr 1e-3, wd 0.2; the supervised baseline SGD (momentum 0.9), lr 0.01, wd 5e-4.

    Attributes:
        mixture: the mixture TSV.
        out: the run directory (created; re-running with the same settings resumes).
        model: preset name, OpenCLIP model name or model-config JSON file.
        epochs: number of epochs.
        batch_size: global batch size (all processes together); the last incomplete batch
            of every epoch is dropped.
        lr, wd: peak learning rate and weight decay.
        optimizer: ``"adamw"`` or ``"sgd"``.
        beta1, beta2, eps: AdamW settings (``None``: OpenCLIP's choice for the model).
        momentum: SGD momentum.
        warmup_steps: linear warmup steps (``None``: 5% of all steps, at least 1).
        grad_clip: max gradient norm (``None``: no clipping).
        seed: seeds initialisation, data order and augmentation.
        augment: tensor augmentation, or ``None`` to train on the centre crops.
        cache_dir: keep decoded images in a memmap file there (default: in memory, or
            ``<out>/cache`` if the set is larger than 4 GiB).
        workers: image-decoding threads (default: CPU count).
        device: ``"auto"`` (GPU of this rank if available, else CPU), ``"cpu"``, ``"cuda"``.
        log_every: write a ``train_log.csv`` row every this many steps (and at epoch ends).
        progress: show tqdm progress bars.
        stop_after_epoch: stop (as if interrupted) after this epoch's checkpoint is written;
            re-running continues. Not part of the run's identity.
        accept_edited_mixture: train even if the TSV's sha256 differs from the
            ``content_hash`` its manifest recorded (default: refuse, the TSV was edited after
            the manifest was written, so the manifest's spec and counts may not describe it).
        keep_optimizer: ``"latest"`` keeps optimizer state and RNG (needed only to resume) in
            the newest checkpoint alone, stripping them from the previous one once the new one
            is safely written (a tiny-vit checkpoint shrinks from ~75 MB to ~25 MB: most of it
            is the token embedding's AdamW moments); ``"all"`` keeps them everywhere.
        precision: one of :data:`PRECISIONS` (default ``"fp32"``; ``"bf16"`` is flagged in
            ``run.json`` and not the default: its accuracy has not been compared over seeds).
        fused_optimizer: AdamW's fused kernel (one pass over every parameter instead of about
            ten). ``None``: on where the installed torch has it for the device (CPU and CUDA
            in torch >= 2.4); a resumed run keeps what it was started with. Not bit-identical
            to the unfused AdamW (float rounding, ~1e-7 relative per step), so it is part of
            the run's identity; within one setting a resumed run is bit-identical.
        channels_last: NHWC memory format for a ResNet image tower and its input batches
            (faster convolutions on CPU). ``None``: on for ResNet towers, off (no effect) for
            ViTs; a resumed run keeps what it was started with. Changes float rounding like
            ``fused_optimizer``, so it is part of the run's identity.
        trim_text: run the text tower on the leading token positions some caption of the
            mixture uses instead of all ``context_length`` (see the module docstring).
            ``None``: on for OpenCLIP text towers with a causal mask and end-of-text pooling
            (:func:`training.models.text_prefix_supported`), off otherwise; a resumed run
            keeps what it was started with. Part of the run's identity (float rounding).
    """

    mixture: str | Path
    out: str | Path
    model: str = "tiny-vit"
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    wd: float | None = None
    optimizer: str | None = None
    beta1: float | None = None
    beta2: float | None = None
    eps: float | None = None
    momentum: float = 0.9
    warmup_steps: int | None = None
    grad_clip: float | None = 1.0
    seed: int = 0
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    cache_dir: str | Path | None = None
    workers: int | None = None
    device: str = "auto"
    log_every: int = 10
    progress: bool = True
    stop_after_epoch: int | None = None
    keep_optimizer: str = "latest"
    accept_edited_mixture: bool = False
    precision: str = "fp32"
    fused_optimizer: bool | None = None
    channels_last: bool | None = None
    trim_text: bool | None = None


#: Fields that do not change the trained weights (may differ when a run is resumed).
_RUNTIME_FIELDS = (
    "cache_dir", "workers", "device", "log_every", "progress", "stop_after_epoch",
    "keep_optimizer", "accept_edited_mixture",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def config_identity(config: TrainConfig) -> dict[str, Any]:
    """The settings that determine the trained weights, as JSON-ready values."""
    out = {}
    for f in fields(config):
        if f.name in _RUNTIME_FIELDS or f.name in ("mixture", "out"):
            continue
        value = getattr(config, f.name)
        out[f.name] = _jsonable(asdict(value) if isinstance(value, AugmentConfig) else value)
    return out


# ----------------------------------------------------------------------------------------------
# tasks: what differs between contrastive training and the supervised baseline


@dataclass
class TaskData:
    """Per-row training targets, aligned with ``rows`` (the rows a task trains on).

    Attributes:
        rows: the mixture rows used (supervised: labelled rows only).
        targets: ``(N, context_length)`` int32 token ids (CLIP) or ``(N,)`` int64 labels.
        info: extra entries for ``run.json`` (e.g. number and names of classes).
    """

    rows: Any
    targets: torch.Tensor
    info: dict[str, Any]


class Task:
    """Interface of a training task; :class:`ClipTask` and ``SupervisedTask`` implement it."""

    kind: str = ""
    defaults: dict[str, Any] = {}

    def prepare(self, mixture: Mixture, model_cfg: dict, progress: bool) -> TaskData:
        """Select rows and build per-row targets."""
        raise NotImplementedError

    def build_model(self, model_cfg: dict, info: dict[str, Any]) -> nn.Module:
        """A freshly initialised model (global RNG already seeded)."""
        raise NotImplementedError

    def make_loss(self, rank: int, world_size: int) -> Callable[..., torch.Tensor]:
        """``loss(model, images (b,3,S,S) float, targets (b,...)) -> scalar``."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Called on the unwrapped model after every optimizer step."""

    def logit_scale(self, model: nn.Module) -> float:
        """Value for the ``logit_scale`` log column (NaN if the task has none)."""
        return float("nan")


class ClipTask(Task):
    """Contrastive image-text training with OpenCLIP's ``ClipLoss``."""

    kind = "clip"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "wd": 0.2}

    def prepare(self, mixture: Mixture, model_cfg: dict, progress: bool) -> TaskData:
        tokenizer = tokenizer_for(model_cfg)
        titles = mixture.rows["title"].tolist()
        chunks = []
        for start in range(0, len(titles), 4096):
            chunks.append(tokenizer(titles[start:start + 4096]).to(torch.int32))
        return TaskData(rows=mixture.rows, targets=torch.cat(chunks), info={})

    def build_model(self, model_cfg: dict, info: dict[str, Any]) -> nn.Module:
        return build_clip(model_cfg)

    def make_loss(self, rank: int, world_size: int) -> Callable[..., torch.Tensor]:
        from open_clip.loss import ClipLoss

        clip_loss = ClipLoss(
            local_loss=False, gather_with_grad=True, rank=rank, world_size=world_size
        )

        def loss(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            image_features, text_features, scale = model(images, tokens.long())[:3]
            if world_size == 1:
                return clip_loss(image_features, text_features, scale)
            with warnings.catch_warnings():  # OpenCLIP's gather uses a deprecated torch API
                warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*")
                return clip_loss(image_features, text_features, scale)

        return loss

    def after_step(self, model: nn.Module) -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    def logit_scale(self, model: nn.Module) -> float:
        return float(model.logit_scale.detach().exp())


# ----------------------------------------------------------------------------------------------
# pieces of the loop


def resolved(config: TrainConfig, task: Task, model_cfg: dict) -> TrainConfig:
    """``config`` with every ``None`` optimiser setting replaced by the task's default."""
    values = {k: v for k, v in task.defaults.items() if getattr(config, k) is None}
    config = replace(config, **values)
    is_vit = not isinstance(model_cfg["vision_cfg"].get("layers"), (list, tuple)) and (
        "timm_model_name" not in model_cfg["vision_cfg"]
    )
    betas = (0.9, 0.98, 1e-6) if is_vit else (0.9, 0.999, 1e-8)
    for name, value in zip(("beta1", "beta2", "eps"), betas, strict=True):
        if getattr(config, name) is None:
            config = replace(config, **{name: value})
    return config


def validate(config: TrainConfig) -> None:
    """Raise ``ValueError`` (``TypeError`` for a wrong type) naming any setting out of range,
    before any data is read: a value that would only fail later (``lr = inf`` gives a NaN model
    after the first step, ``log_every = 0`` a ZeroDivisionError at the first log step)."""
    check_number("epochs", config.epochs, low=1, integer=True)
    check_number("batch_size", config.batch_size, low=2, integer=True)  # ClipLoss needs pairs
    if config.lr is not None:
        check_number("lr", config.lr, low=0, low_open=True)
    if config.wd is not None:
        check_number("wd", config.wd, low=0)
    if config.optimizer is not None:
        check_choice("optimizer", config.optimizer, OPTIMIZERS)
    for name in ("beta1", "beta2"):
        if getattr(config, name) is not None:
            check_number(name, getattr(config, name), low=0, high=1, high_open=True)
    if config.eps is not None:
        check_number("eps", config.eps, low=0, low_open=True)
    check_number("momentum", config.momentum, low=0, high=1, high_open=True)
    if config.warmup_steps is not None:
        check_number("warmup_steps", config.warmup_steps, low=0, integer=True)
    if config.grad_clip is not None:
        check_number("grad_clip", config.grad_clip, low=0, low_open=True)
    check_number("seed", config.seed, integer=True)
    check_number("log_every", config.log_every, low=1, integer=True)
    if config.workers is not None:
        check_number("workers", config.workers, low=1, integer=True)
    check_device("device", config.device)
    check_choice("keep_optimizer", config.keep_optimizer, KEEP_OPTIMIZER)
    check_choice("precision", config.precision, PRECISIONS)
    for name in ("fused_optimizer", "channels_last", "trim_text"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be True, False or None, got {value!r}")
    if config.fused_optimizer and config.optimizer == "sgd":
        raise ValueError("fused_optimizer applies to AdamW only; got optimizer 'sgd'")
    if config.stop_after_epoch is not None:
        check_number("stop_after_epoch", config.stop_after_epoch, low=0, high=config.epochs,
                     integer=True)


def param_groups(model: nn.Module, wd: float) -> list[dict[str, Any]]:
    """OpenCLIP's split: no weight decay for gains, biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name
        (no_decay if exclude or "logit_scale" in name else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": wd}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (fused if ``config.fused_optimizer``) or SGD over :func:`param_groups`
    (``config`` must be :func:`resolved`)."""
    groups = param_groups(model, float(config.wd))
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
        fused=bool(config.fused_optimizer),
    )


def fused_adamw_available(device: torch.device) -> bool:
    """Whether the installed torch has the fused AdamW kernel for ``device``'s type."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # torch < 2.0
        return False
    return device.type in _get_fused_kernels_supported_devices()


def is_resnet_tower(model_cfg: dict) -> bool:
    """Whether the config's image tower is OpenCLIP's ModifiedResNet (``layers`` a list)."""
    vision = model_cfg["vision_cfg"]
    return isinstance(vision.get("layers"), (list, tuple)) and "timm_model_name" not in vision


def resolve_speedups(config: TrainConfig, model_cfg: dict, device: torch.device,
                     recorded: dict[str, Any] | None, task_kind: str = "clip") -> TrainConfig:
    """``config`` with ``fused_optimizer``, ``channels_last`` and ``trim_text`` decided
    (``config`` must be :func:`resolved`; ``trim_text`` applies to the ``clip`` task only). ``recorded``: the settings in an existing run's ``run.json`` (``None``
    for a new run); an unset option takes the recorded value, or :data:`LEGACY_SETTINGS`'
    if the run predates it, so a resumed run computes exactly what it computed before."""
    auto = {
        "fused_optimizer": config.optimizer == "adamw" and fused_adamw_available(device),
        "channels_last": is_resnet_tower(model_cfg),
        "trim_text": task_kind == "clip" and text_prefix_supported(model_cfg),
    }
    for name, default in auto.items():
        if getattr(config, name) is None:
            if recorded is not None:
                default = recorded.get(name, LEGACY_SETTINGS[name])
            config = replace(config, **{name: bool(default)})
    if config.fused_optimizer and not fused_adamw_available(device):
        raise ValueError(
            f"fused_optimizer: torch {torch.__version__} has no fused AdamW for {device.type}"
        )
    if config.trim_text and not (task_kind == "clip" and text_prefix_supported(model_cfg)):
        raise ValueError(
            "trim_text needs a CLIP run whose OpenCLIP text tower has a causal mask and "
            "end-of-text pooling; this model's does not (use trim_text=False)"
        )
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device (a GradScaler); on {device.type} use 'bf16'"
        )
    return config


def autocast_context(device: torch.device, precision: str):
    """The autocast context of a forward pass and loss for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _recorded_settings(run_dir: Path) -> dict[str, Any] | None:
    """The ``settings`` of the run already in ``run_dir`` (``None`` if there is none)."""
    if not (run_dir / ckpt.RUN_FILE).is_file():
        return None
    return dict(ckpt.read_run_json(run_dir).get("settings") or {})


def cosine_lr(step: int, base_lr: float, warmup: int, total: int) -> float:
    """OpenCLIP's ``cosine_lr`` schedule: learning rate for 0-based ``step``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    e, es = step - warmup, max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * e / es)) * base_lr


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator for one epoch's data order (stream 0) or augmentation (stream 1)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) * 4 + int(stream))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> torch.Tensor:
    """Row indices of one epoch's global batches: ``(n // batch_size, batch_size)``."""
    perm = torch.randperm(n, generator=epoch_generator(seed, epoch, 0))
    steps = n // batch_size
    return perm[: steps * batch_size].view(steps, batch_size)


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device: torch.device) -> Distributed:
    """Join the ``torchrun`` job described by the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    return Distributed(rank, world_size, local_rank, owns)


def pick_device(name: str) -> torch.device:
    """``auto`` -> this rank's GPU if CUDA is available, else CPU. ``ValueError`` for a name
    that is not a device or a GPU that this machine does not have."""
    check_device("device", name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} is not available: torch finds no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _check_resumable(run_dir: Path, info: dict[str, Any]) -> None:
    """Raise ``ValueError`` if ``run_dir`` holds a different run than ``info`` describes."""
    old = ckpt.read_run_json(run_dir) if (run_dir / ckpt.RUN_FILE).is_file() else None
    if old is None:
        if ckpt.list_checkpoints(run_dir):
            raise ValueError(f"{run_dir} holds checkpoints but no {ckpt.RUN_FILE}: not our run")
        entries = run_dir.iterdir() if run_dir.is_dir() else ()
        foreign = sorted(p.name for p in entries
                         if p.name not in RUN_LAYOUT and not p.name.startswith("."))
        if foreign:
            raise ValueError(
                f"{run_dir} is not empty and holds no training run (no {ckpt.RUN_FILE}; it "
                f"holds {foreign[:3]}{' ...' if len(foreign) > 3 else ''}): choose a new or "
                "empty output directory"
            )
        return
    keys = ("kind", "model_config", "settings", "mixture_sha256")
    diffs = []
    for key in keys:
        if old.get(key) != info.get(key):
            if key == "settings":
                a, b = {**LEGACY_SETTINGS, **(old.get(key) or {})}, info.get(key) or {}
                diffs += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in b if a.get(k) != b.get(k)]
            else:
                diffs.append(f"{key} differs")
    if diffs and ckpt.list_checkpoints(run_dir):
        raise ValueError(
            f"{run_dir} already holds a run with other settings ({'; '.join(diffs)}); "
            "choose another output directory or delete that one to start over"
        )


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the ``train_log.csv`` rows up to ``step`` (rows of an interrupted epoch go)."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= step]
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def run_training(config: TrainConfig, task: Task) -> Path:
    """Train ``task`` on ``config.mixture`` into ``config.out``; return the run directory.

    Re-running with the same settings continues from the latest checkpoint (a finished run
    returns at once). See the module docstring for data order, resume and distributed runs.
    """
    validate(config)
    model_cfg = resolve_model_config(config.model)
    config = resolved(config, task, model_cfg)
    run_dir = Path(config.out).expanduser().resolve()
    check_output_dir(run_dir)
    mixture = read_mixture(config.mixture)
    check_mixture_hash(mixture, config.accept_edited_mixture)
    device = pick_device(config.device)
    config = resolve_speedups(config, model_cfg, device, _recorded_settings(run_dir), task.kind)
    job = init_distributed(device)
    try:
        return _train(config, task, model_cfg, mixture, run_dir, device, job)
    finally:
        if job.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def check_output_dir(run_dir: Path) -> None:
    """``ValueError`` if ``run_dir`` or the nearest existing folder above it is a file (the
    run directory could never be created there)."""
    for path in (run_dir, *run_dir.parents):
        if path.exists():
            if not path.is_dir():
                raise ValueError(f"output directory {run_dir} cannot be made: {path} is a file")
            return


def check_mixture_hash(mixture: Mixture, accept: bool = False) -> None:
    """Refuse (``ValueError``) a TSV whose sha256 differs from its manifest's ``content_hash``
    (edited after the manifest was written); with ``accept``, warn and go on."""
    recorded = mixture.manifest.get("content_hash")
    if not recorded or recorded == mixture.sha256:
        return
    message = (
        f"mixture {mixture.tsv} was changed after its manifest was written (sha256 "
        f"{mixture.sha256[:12]}..., manifest content_hash {str(recorded)[:12]}...)"
    )
    if not accept:
        raise ValueError(
            f"{message}: rebuild it with `domainlens mixtures`, or pass --accept-edited-mixture"
        )
    warnings.warn(f"{message}; training on it as it is now", stacklevel=2)


class LossWatch:
    """Watches the loss for NaN/inf without a host sync per step.

    :meth:`update` records, on the device, the first step whose loss was not finite and that
    loss; :meth:`check` (one sync, and under DDP one tiny all-reduce so that every rank stops
    together) raises :class:`TrainingDiverged` naming that step. The trainer checks at every
    log step and before every checkpoint, so a NaN update may be computed but is never saved.
    """

    def __init__(self, device: torch.device) -> None:
        self.step = torch.zeros((), dtype=torch.int64, device=device)  # 0: all finite
        self.value = torch.zeros((), dtype=torch.float32, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        """Note ``loss`` (a scalar tensor) of 1-based global ``step``; no host sync."""
        first = ~torch.isfinite(loss.detach()) & (self.step == 0)
        self.step = torch.where(first, step, self.step)
        self.value = torch.where(first, loss.detach().float(), self.value)

    def check(self, job: Distributed, steps_per_epoch: int, run_dir: Path, lr: float) -> None:
        """Raise if any rank saw a non-finite loss since the run (re)started."""
        flag = self.step.clone()
        if job.world_size > 1:  # nccl reduces device tensors only: flag is on the device
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        step = int(flag)
        if step:
            value = float(self.value) if int(self.step) else "not finite on another rank"
            raise _diverged(f"the loss is {value}", (step - 1) // steps_per_epoch + 1, step,
                            run_dir, lr)


def _diverged(what: str, epoch: int, step: int, run_dir: Path, lr: float) -> TrainingDiverged:
    """The one-line error of a run whose loss or weights stopped being finite in ``epoch``
    (1-based) at global ``step`` (1-based, as ``train_log.csv``)."""
    if epoch < 1:  # the initial weights: nothing was saved
        return TrainingDiverged(f"the initialised model has {what}; no checkpoint was written")
    kept = ckpt.checkpoint_path(run_dir, epoch - 1)
    return TrainingDiverged(
        f"training stopped at epoch {epoch}, step {step}: {what}; the last good checkpoint "
        f"{kept} is kept (nothing later was saved); try a lower lr than {lr:.3g}"
    )


def _train(
    config: TrainConfig,
    task: Task,
    model_cfg: dict,
    mixture: Mixture,
    run_dir: Path,
    device: torch.device,
    job: Distributed,
) -> Path:
    from tqdm.auto import tqdm

    batch_size = int(config.batch_size)
    if batch_size % job.world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {job.world_size} processes"
        )
    data = task.prepare(mixture, model_cfg, config.progress and job.is_main)
    n = len(data.rows)
    if n < batch_size:
        raise ValueError(
            f"mixture {mixture.tsv} has {n} usable rows, fewer than one batch of {batch_size}"
        )
    steps_per_epoch = n // batch_size
    total_steps = steps_per_epoch * int(config.epochs)
    warmup = (
        max(1, round(0.05 * total_steps)) if config.warmup_steps is None else config.warmup_steps
    )
    info = {
        "kind": task.kind,
        "name": run_dir.name,
        "model": str(config.model),
        "model_config": model_cfg,
        "mixture_tsv": str(mixture.tsv),
        "mixture_sha256": mixture.sha256,
        "mixture_name": mixture.name,
        "rows": n,
        "steps_per_epoch": steps_per_epoch,
        "warmup_steps": warmup,
        "settings": config_identity(config),
        **data.info,
    }
    _check_resumable(run_dir, info)
    job.barrier()  # every rank has read the old run.json before rank 0 rewrites it
    if job.is_main:
        (run_dir / ckpt.CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        # temp files of a killed run (a checkpoint each: tens of MB)
        for folder in (run_dir, run_dir / ckpt.CHECKPOINT_DIR):
            remove_stale_temps(folder)
        write_model_config(run_dir, model_cfg)
        manifest = {**mixture.manifest, "tsv": str(mixture.tsv), "tsv_sha256": mixture.sha256}
        write_json(run_dir / ckpt.MIXTURE_FILE, manifest)
        write_json(run_dir / ckpt.RUN_FILE, _jsonable(info))
    job.barrier()

    size = image_size(model_cfg)
    paths = data.rows["filepath"].tolist()
    load = dict(
        size=size, cache_dir=config.cache_dir, workers=config.workers,
        fallback_dir=run_dir / "cache", desc="decoding mixture",
    )
    if job.world_size > 1:  # rank 0 builds a memmap cache first; the others reuse it
        if job.is_main:
            images = load_images(paths, progress=config.progress, **load)
        job.barrier()
        if not job.is_main:
            images = load_images(paths, progress=False, **load)
    else:
        images = load_images(paths, progress=config.progress, **load)
    targets = data.targets
    if config.trim_text:  # padding after the longest caption never reaches the pooled token
        targets = targets[:, :used_token_length(targets)].contiguous()

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(config.seed))
        model = task.build_model(model_cfg, info).to(device)
        if config.channels_last:  # 4-D conv weights to NHWC (the text tower has none)
            model = model.to(memory_format=torch.channels_last)
        mean, std = preprocess_stats(model)
        transform = TensorTransform(mean, std, config.augment)
        optimizer = make_optimizer(model, config)
        loss_fn = task.make_loss(job.rank, job.world_size)
        log_path = run_dir / ckpt.LOG_FILE
        # fp16 needs loss scaling (its range is too small for gradients); bf16 does not
        scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
        watch = LossWatch(device)

        latest = ckpt.latest_checkpoint(run_dir)
        if latest is not None:
            payload = ckpt.read_checkpoint(latest[1], device=device)
            if any(k not in payload for k in ckpt.RESUME_KEYS):
                raise ValueError(
                    f"cannot resume from {latest[1]}: it holds no optimizer/RNG state (only "
                    "the newest checkpoint of a run keeps them)"
                )
            ckpt.check_state_dict(model, payload["state_dict"], f"checkpoint {latest[1]}")
            model.load_state_dict(payload["state_dict"])
            optimizer.load_state_dict(payload["optimizer"])
            if scaler is not None and "scaler" in payload:
                scaler.load_state_dict(payload["scaler"])
            _set_rng_state(payload["rng"], device)
            start_epoch = int(payload["epoch"])
        else:
            start_epoch = 0

        def save(epoch: int, step: int) -> None:
            # No checkpoint after a NaN/inf loss or with a NaN/inf weight is ever written:
            # every rank checks (same weights everywhere) so that all of them stop together.
            # One pass per epoch.
            if epoch > 0:
                watch.check(job, steps_per_epoch, run_dir, float(config.lr))
            bad = nonfinite_tensors(model)
            if bad:
                more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
                raise _diverged(f"non-finite weights in {', '.join(bad[:3])}{more}", epoch,
                                step, run_dir, float(config.lr))
            if not job.is_main:
                return
            path = ckpt.checkpoint_path(run_dir, epoch)
            try:
                _save_checkpoint(path, epoch)
            except OSError as error:  # one line naming the file (e.g. a full disk)
                raise as_write_error(path, error) from error
            if config.keep_optimizer == "latest" and epoch > 0:
                ckpt.strip_resume_state(ckpt.checkpoint_path(run_dir, epoch - 1))

        def _save_checkpoint(path: Path, epoch: int) -> None:
            # util.files.torch_save: atomic, and a full disk is a WriteError naming the file
            # (torch.save alone reports it as "unexpected pos ...")
            torch_save(
                {
                    "epoch": epoch,
                    "name": run_dir.name,
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "kind": task.kind,
                    "step": epoch * steps_per_epoch,
                    "scheduler": {
                        "kind": "cosine", "base_lr": float(config.lr),
                        "warmup_steps": int(warmup), "total_steps": int(total_steps),
                    },
                    "rng": _rng_state(device),
                    "model_config": model_cfg,
                    **({} if scaler is None else {"scaler": scaler.state_dict()}),
                },
                path,
            )

        if latest is None:
            save(0, 0)
            if job.is_main and log_path.exists():
                log_path.unlink()
        elif job.is_main:
            _truncate_log(log_path, start_epoch * steps_per_epoch)
        job.barrier()

        stop = config.epochs if config.stop_after_epoch is None else config.stop_after_epoch
        if start_epoch >= stop:
            return run_dir

        train_model: nn.Module = PrefixTextCLIP(model) if config.trim_text else model
        if job.world_size > 1:
            train_model = nn.parallel.DistributedDataParallel(
                train_model, device_ids=[device.index] if device.type == "cuda" else None
            )
        local = batch_size // job.world_size
        shard = slice(job.rank * local, (job.rank + 1) * local)
        step = start_epoch * steps_per_epoch
        bar = tqdm(
            total=total_steps, initial=step, desc=f"train {run_dir.name}", unit="step",
            disable=not (config.progress and job.is_main), dynamic_ncols=True,
        )
        log_file = None
        if job.is_main:
            new = not log_path.exists()
            log_file = open(log_path, "a", newline="")  # noqa: SIM115 - closed in finally
            writer = csv.writer(log_file)
            if new:
                writer.writerow(LOG_COLUMNS)
        try:
            for epoch in range(start_epoch, stop):
                model.train()
                batches = epoch_batches(n, batch_size, int(config.seed), epoch)
                aug_gen = epoch_generator(int(config.seed), epoch, 1)
                tick, seen = time.perf_counter(), 0
                for i in range(steps_per_epoch):
                    params = transform.sample(batch_size, aug_gen)
                    idx = batches[i, shard]
                    x = transform(images[idx].to(device, non_blocking=True),
                                  None if params is None else params[shard])
                    if config.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    y = targets[idx].to(device, non_blocking=True)
                    lr = cosine_lr(step, float(config.lr), warmup, total_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    with autocast_context(device, config.precision):
                        loss = loss_fn(train_model, x, y)
                    # No host sync per step: a non-finite loss is noted on the device and
                    # raised at the next log step or before the next save (weights are
                    # checked before every save too), so no NaN update is ever saved.
                    watch.update(loss, step + 1)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is None:
                        loss.backward()
                    else:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)  # clip the true gradients
                    if config.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), float(config.grad_clip))
                    if scaler is None:
                        optimizer.step()
                    else:
                        scaler.step(optimizer)
                        scaler.update()
                    task.after_step(model)
                    step += 1
                    seen += batch_size
                    bar.update(1)
                    last = i == steps_per_epoch - 1
                    if step % config.log_every == 0 or last:
                        # every rank checks at the same steps (the check is collective)
                        watch.check(job, steps_per_epoch, run_dir, lr)
                    if log_file is not None and (step % config.log_every == 0 or last):
                        loss_value = float(loss.detach())
                        now = time.perf_counter()
                        writer.writerow([
                            step, f"{step / steps_per_epoch:.4f}", f"{loss_value:.6f}",
                            f"{lr:.6g}", f"{task.logit_scale(model):.4f}",
                            f"{seen / max(now - tick, 1e-9):.1f}",
                        ])
                        log_file.flush()
                        bar.set_postfix(loss=f"{loss_value:.3f}", epoch=epoch + 1)
                        tick, seen = now, 0
                save(epoch + 1, step)
                job.barrier()
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
    return run_dir


def train_clip(config: TrainConfig) -> Path:
    """Train a CLIP on a mixture; returns the run directory (see module docstring)."""
    return run_training(config, ClipTask())


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a ``torchrun`` job."""
    return int(os.environ.get("RANK", "0")) == 0


def main_print(*args: Any) -> None:
    """``print`` to stderr on rank 0 only."""
    if is_main_process():
        print(*args, file=sys.stderr)
