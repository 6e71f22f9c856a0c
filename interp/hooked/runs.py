"""A training run's checkpoint as a hooked image tower, with the run's metadata.

Loading goes through ``training.checkpoints.load_run_model`` (which checks the checkpoint
against ``model_config.json``); the run's metadata (setup, test domain, training and mixture
seeds, held-out classes, data root, normalisation) is its :class:`training.runinfo.RunInfo`,
read by :func:`training.runinfo.read_run_info`, the reader every command uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.hooked import hook_image_tower
from interp.hooked.base import HookedImageTower
from interp.hooked.head import ZeroShotHead
from training.runinfo import RunInfo, read_run_info


@dataclass
class HookedRun:
    """A hooked checkpoint of a run plus what analyses need to know about it.

    ``model``: the hooked image tower (eval mode); ``source``: the loaded OpenCLIP model (or
    the supervised classifier), sharing parameters with ``model``; ``info``: the run's
    metadata (:class:`training.runinfo.RunInfo`). ``kind``, ``setup``, ``test_domain``,
    ``seed`` (training seed), ``mixture_seed``, ``data_root``, ``mean``/``std`` (the image
    normalisation the model was trained with), ``image_size``, ``manifest`` and
    ``model_config`` read through to ``info``.
    """

    model: HookedImageTower
    source: nn.Module
    info: RunInfo
    epoch: int
    checkpoint: Path

    @property
    def run_dir(self) -> Path:
        return self.info.run_dir

    @property
    def name(self) -> str:
        """The run's name (its directory name)."""
        return self.info.name

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def setup(self) -> str | None:
        return self.info.setup or None

    @property
    def test_domain(self) -> str | None:
        return self.info.test_domain

    @property
    def seed(self) -> int | None:
        """The training seed."""
        return self.info.seed

    @property
    def mixture_seed(self) -> int | None:
        return self.info.mixture_seed

    @property
    def data_root(self) -> str | None:
        return None if self.info.data_root is None else str(self.info.data_root)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.info.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.info.std

    @property
    def manifest(self) -> dict[str, Any]:
        return self.info.manifest

    @property
    def model_config(self) -> dict[str, Any]:
        return self.info.model_config

    @property
    def image_size(self) -> int:
        """Square input size in pixels."""
        return int(self.model.cfg.image_size[0])

    def zero_shot_head(
        self,
        class_names: Sequence[str],
        templates: Sequence[str] | None = None,
        use_model_logit_scale: bool = False,
    ) -> ZeroShotHead:
        """A zero-shot head over ``class_names`` from this run's text tower (CLIP runs only);
        attach it with ``run.model.set_head(head)``."""
        if self.kind != "clip":
            raise ValueError(f"run {self.name!r} is a {self.kind} run: it has no text tower")
        from training.models import tokenizer_for

        return ZeroShotHead.from_texts(
            self.source, tokenizer_for(self.model_config), class_names, templates,
            use_model_logit_scale,
        )

    def meta(self) -> dict[str, Any]:
        """Metadata columns for tidy tables: run, setup, test_domain, seed (training seed),
        epoch."""
        return {
            "run": self.name,
            "setup": self.setup,
            "test_domain": self.test_domain,
            "seed": self.seed,
            "epoch": self.epoch,
        }


def load_hooked_run(
    run_dir: str | Path,
    epoch: int | None = None,
    device: str | torch.device = "cpu",
    head: nn.Module | None = None,
    data_root: str | Path | None = None,
) -> HookedRun:
    """Load epoch ``epoch`` (default: latest) of a run as a hooked tower in eval mode.

    ``data_root`` overrides the run's data root in ``run.info``. Raises ``FileNotFoundError``
    for a missing run or checkpoint and ``ValueError`` for an epoch without a checkpoint or a
    checkpoint that does not fit the run's model config.
    """
    from training.checkpoints import load_run_model

    run_dir = Path(run_dir)
    info = read_run_info(run_dir, data_root)
    loaded = load_run_model(run_dir, epoch=epoch, device=device)
    source = loaded.model.eval()
    hooked = hook_image_tower(source, head=head).eval()
    return HookedRun(model=hooked, source=source, info=info, epoch=int(loaded.epoch),
                     checkpoint=Path(loaded.path))
