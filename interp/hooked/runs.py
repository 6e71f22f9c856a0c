"""A training run's checkpoint as a hooked image tower, with the run's metadata.

Loading goes through ``training.checkpoints.load_run_model`` (which checks the checkpoint
against ``model_config.json``); the run's setup, test domain and seed come from its mixture
manifest (``<run>/mixture.json``) when present, for the tidy tables' metadata columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.hooked import hook_image_tower
from interp.hooked.base import HookedImageTower
from interp.hooked.head import ZeroShotHead
from interp.hooked.images import DEFAULT_MEAN, DEFAULT_STD


@dataclass
class HookedRun:
    """A hooked checkpoint of a run plus what analyses need to know about it.

    ``model``: the hooked image tower (eval mode); ``source``: the loaded OpenCLIP model (or
    the supervised classifier), sharing parameters with ``model``; ``mean``/``std``: the image
    normalisation the model was trained with; ``image_size``: input side in pixels.
    """

    model: HookedImageTower
    source: nn.Module
    run_dir: Path
    epoch: int
    checkpoint: Path
    kind: str = "clip"
    setup: str | None = None
    test_domain: str | None = None
    seed: int | None = None
    data_root: str | None = None
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD
    manifest: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name (its directory name)."""
        return self.run_dir.name

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
        """Metadata columns for tidy tables: run, setup, test_domain, seed, epoch."""
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
) -> HookedRun:
    """Load epoch ``epoch`` (default: latest) of a run as a hooked tower in eval mode.

    Raises ``FileNotFoundError`` for a missing run or checkpoint and ``ValueError`` for an
    epoch without a checkpoint or a checkpoint that does not fit the run's model config.
    """
    from training.checkpoints import load_run_model, read_mixture_manifest
    from training.models import preprocess_stats

    run_dir = Path(run_dir)
    loaded = load_run_model(run_dir, epoch=epoch, device=device)
    source = loaded.model.eval()
    hooked = hook_image_tower(source, head=head).eval()
    manifest = read_mixture_manifest(run_dir)
    spec = manifest.get("spec", {}) if isinstance(manifest, dict) else {}
    mean, std = preprocess_stats(source)
    seed = spec.get("seed")
    return HookedRun(
        model=hooked,
        source=source,
        run_dir=run_dir,
        epoch=int(loaded.epoch),
        checkpoint=Path(loaded.path),
        kind=str(loaded.kind),
        setup=spec.get("setup"),
        test_domain=spec.get("test_domain"),
        seed=int(seed) if seed is not None else None,
        data_root=spec.get("data_root"),
        mean=tuple(mean),
        std=tuple(std),
        manifest=manifest if isinstance(manifest, dict) else {},
        model_config=dict(loaded.model_config),
    )
