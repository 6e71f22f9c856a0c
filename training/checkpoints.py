"""Run directories and checkpoints: atomic saves in OpenCLIP's format, loading with validation.

A run directory (see ``DESIGN.md``)::

    <run>/checkpoints/epoch_<k>.pt   k = 0 (initialisation) .. epochs, OpenCLIP's format
    <run>/model_config.json          the OpenCLIP model config
    <run>/open_clip_config.json      the same for open_clip.create_model("local-dir:<run>")
    <run>/mixture.json               the mixture manifest (plus the TSV's path and hash)
    <run>/run.json                   kind (clip | supervised), training settings, classes
    <run>/train_log.csv              step, epoch, loss, lr, logit_scale, images_per_s
    <run>/eval/                      evaluation tables and figures

A checkpoint is a dict with OpenCLIP's keys ``epoch`` (completed epochs), ``name``,
``state_dict`` and ``optimizer``, plus ``kind``, ``step``, ``scheduler``, ``rng`` and
``model_config``; ``open_clip.load_checkpoint(model, path)`` loads a CLIP run's checkpoints.
By default only the newest checkpoint keeps ``optimizer`` and ``rng`` (all a resume needs);
older ones are stripped to weights and metadata once a newer one is safely on disk.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import ImageClassifier, build_clip, read_model_config
from .util.files import torch_save

CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run.json"
MIXTURE_FILE = "mixture.json"
LOG_FILE = "train_log.csv"
_CHECKPOINT_RE = re.compile(r"^epoch_(\d+)\.pt$")


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``<run>/checkpoints/epoch_<epoch>.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"epoch_{int(epoch)}.pt"


def list_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """Completed checkpoints of a run, ``{epoch: path}`` in epoch order (temp files ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """``(epoch, path)`` of the run's newest checkpoint, or ``None`` if there is none."""
    found = list_checkpoints(run_dir)
    if not found:
        return None
    epoch = max(found)
    return epoch, found[epoch]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with ``torch.save`` atomically: temp file in the same folder, fsync,
    rename. A failure (disk full, interrupt) leaves no file at ``path`` and no temp file."""
    return torch_save(payload, path)  # a path: torch's own write errors name the disk


#: Checkpoint entries needed only to resume training (see :func:`strip_resume_state`).
RESUME_KEYS: tuple[str, ...] = ("optimizer", "rng")


def strip_resume_state(path: str | Path) -> None:
    """Rewrite a checkpoint (atomically) without optimizer state and RNG; weights, epoch and
    metadata stay. No-op if the file is missing or already stripped."""
    path = Path(path)
    if not path.is_file():
        return
    payload = read_checkpoint(path)
    if not any(k in payload for k in RESUME_KEYS):
        return
    for key in RESUME_KEYS:
        payload.pop(key, None)
    save_checkpoint(path, payload)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict (``weights_only``); ``ValueError`` naming the file if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path} is not a checkpoint: expected a dict with a 'state_dict'")
    return payload


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run as written (``{"kind": "clip"}`` if absent, e.g. for
    open_clip_train runs). Analyses read :func:`training.runinfo.read_run_info` instead."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return {"kind": "clip"}
    return json.loads(path.read_text())


def read_mixture_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's copy of its mixture manifest as written (``{}`` if absent); see
    :func:`training.runinfo.read_run_info` for its meaning."""
    path = Path(run_dir) / MIXTURE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve_epochs(run_dir: str | Path, epochs: int | list[int] | tuple[int, ...] | None) -> list[int]:
    """Checkpointed epochs to use: all if ``None``; else each asked epoch must exist.

    ``-1`` means the latest. Raises ``ValueError`` naming the available epochs.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"no checkpoints in {Path(run_dir) / CHECKPOINT_DIR}")
    if epochs is None:
        return list(found)
    asked = [epochs] if isinstance(epochs, int) else list(epochs)
    latest = max(found)
    asked = [latest if e == -1 else int(e) for e in asked]
    bad = [e for e in asked if e not in found]
    if bad:
        raise ValueError(
            f"epoch(s) {bad} out of range for {run_dir}: checkpoints exist for epochs "
            f"{list(found)} (-1 = latest)"
        )
    return sorted(set(asked))


def build_run_model(run_dir: str | Path, info: dict[str, Any] | None = None) -> nn.Module:
    """The run's model with random weights: a CLIP, or the supervised ImageClassifier."""
    cfg = read_model_config(run_dir)
    info = read_run_json(run_dir) if info is None else info
    with torch.random.fork_rng(devices=[]):
        if info.get("kind", "clip") == "supervised":
            return ImageClassifier(cfg, int(info["num_classes"]))
        return build_clip(cfg)


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` if ``state_dict`` does not fit ``model`` (names the keys)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. " + "; ".join(shapes[:3]))
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise ValueError(f"{source} does not match its model_config.json: " + "; ".join(parts))


@dataclass
class LoadedModel:
    """A model loaded from a run.

    Attributes:
        model: ``open_clip.CLIP`` (kind ``clip``) or :class:`~training.models.ImageClassifier`
            (kind ``supervised``), in eval mode.
        epoch: the checkpoint's epoch (0 = initialisation).
        kind: ``"clip"`` or ``"supervised"``.
        model_config: the OpenCLIP model config.
        path: the checkpoint file.
        run_json: the run's ``run.json``.
    """

    model: nn.Module
    epoch: int
    kind: str
    model_config: dict
    path: Path
    run_json: dict


def load_run_model(
    run_dir: str | Path, epoch: int | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load epoch ``epoch`` (default: the latest) of a run, checking it against its config.

    Raises ``FileNotFoundError`` for a missing run/checkpoint, ``ValueError`` for an epoch
    without a checkpoint (naming the available ones) or a checkpoint whose tensors do not fit
    ``model_config.json``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    (epoch,) = resolve_epochs(run_dir, -1 if epoch is None else epoch)
    path = checkpoint_path(run_dir, epoch)
    info = read_run_json(run_dir)
    model = build_run_model(run_dir, info)
    payload = read_checkpoint(path)
    state_dict = payload["state_dict"]
    if next(iter(state_dict), "").startswith("module."):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    check_state_dict(model, state_dict, f"checkpoint {path}")
    model.load_state_dict(state_dict, strict=True)
    model.to(device).eval()
    return LoadedModel(
        model=model,
        epoch=epoch,
        kind=info.get("kind", "clip"),
        model_config=read_model_config(run_dir),
        path=path,
        run_json=info,
    )
