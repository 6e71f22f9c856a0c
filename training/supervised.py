"""The supervised baseline: the same image tower plus a linear head, cross-entropy over classes.

It runs :func:`training.train.run_training` (same data cache, order, augmentation, schedule,
checkpoints, resume and DDP) with :class:`SupervisedTask`. It trains on the mixture's rows
with a class label (``label >= 0``: base-only classes are dropped) and predicts all classes
of the data root. Defaults (the paper trains it with SGD): SGD, momentum 0.9, lr 0.01, weight
decay 5e-4, cosine schedule with 5% warmup, grad-norm clip 1.0. The seed seeds everything,
seed 0 included; for the same seed the image tower starts from the same weights as the CLIP
run's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .models import ImageClassifier
from .train import Task, TaskData, TrainConfig, run_training
from .trainset import Mixture


class SupervisedTask(Task):
    """Cross-entropy classification of the mixture's labelled rows."""

    kind = "supervised"
    defaults = {"optimizer": "sgd", "lr": 0.01, "wd": 5e-4}

    def prepare(self, mixture: Mixture, model_cfg: dict, progress: bool) -> TaskData:
        rows = mixture.rows
        if "label" not in rows.columns:
            raise ValueError(
                f"mixture {mixture.tsv} has no 'label' column: the supervised baseline needs one"
            )
        rows = rows[rows["label"] >= 0].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"mixture {mixture.tsv} has no labelled rows (all labels are -1)")
        names: list[str] | None = None
        root = mixture.spec.get("data_root")
        if root:
            from .domainnet import class_names

            names = list(class_names(root))
            num_classes = len(names)
        else:
            num_classes = int(rows["label"].max()) + 1
        top = int(rows["label"].max())
        if top >= num_classes:
            raise ValueError(
                f"mixture {mixture.tsv} has label {top} but the data root {root} has only "
                f"{num_classes} classes"
            )
        labels = torch.tensor(rows["label"].to_numpy(), dtype=torch.int64)
        info: dict[str, Any] = {"num_classes": num_classes, "class_names": names}
        return TaskData(rows=rows, targets=labels, info=info)

    def build_model(self, model_cfg: dict, info: dict[str, Any]) -> nn.Module:
        return ImageClassifier(model_cfg, int(info["num_classes"]))

    def make_loss(self, rank: int, world_size: int) -> Callable[..., torch.Tensor]:
        def loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            # DDP averages gradients over ranks; every rank's slice has the same size, so the
            # mean of per-rank means is the global-batch mean.
            return F.cross_entropy(model(images), labels)

        return loss


def train_supervised(config: TrainConfig) -> Path:
    """Train the supervised baseline on a mixture; returns the run directory."""
    return run_training(config, SupervisedTask())
