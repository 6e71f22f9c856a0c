"""Any model source as a hooked image tower, with its metadata.

:func:`load_hooked_model` opens a run directory, an OpenCLIP name with a pretrained tag or
weights file, ``local-dir:DIR`` or ``hf-hub:ORG/REPO`` through
:func:`training.sources.open_model`; :func:`load_hooked_run` is the run-directory case.
Loading a run goes through ``training.checkpoints.load_run_model`` (which checks the checkpoint
against ``model_config.json``); the metadata (setup, test domain, training and mixture seeds,
held-out classes, data root, normalisation, the ``model`` label) is a
:class:`training.runinfo.RunInfo` for every source, the type every command reads.
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
from interp.hooked.images import ImageFileDataset
from training.runinfo import RunInfo
from training.sources import Preprocess, open_model


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
    epoch: int | None
    checkpoint: Path | None
    preprocess: Preprocess | None = None
    tokenizer: Any = None

    @property
    def run_dir(self) -> Path | None:
        """The run directory (``None`` for a model that is not a run)."""
        return self.info.run_dir

    @property
    def label(self) -> str:
        """The tidy ``model`` column: name + pretrained tag, or the run's name."""
        return self.info.model

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

    @property
    def input_preprocess(self) -> Preprocess | None:
        """How analyses decode this model's images: ``None`` for a run (as its trainer decoded
        them, :func:`training.imagecache.decode_image`, at ``image_size`` with ``mean``/
        ``std``), OpenCLIP's preprocessing of the model (``preprocess``) for any other source."""
        return None if self.info.is_run else self.preprocess

    def dataset(self, paths: Sequence[str]) -> ImageFileDataset:
        """Image files as this model's inputs: ``(3, S, S)`` float32 each, decoded and
        normalised as :attr:`input_preprocess` says."""
        return ImageFileDataset(paths, self.image_size, mean=self.mean, std=self.std,
                                preprocess=self.input_preprocess)

    def images(self, paths: Sequence[str]) -> torch.Tensor:
        """Image files decoded into one ``(N, 3, S, S)`` float32 batch (:meth:`dataset`)."""
        dataset = self.dataset(paths)
        return torch.stack([dataset[i] for i in range(len(dataset))])

    def zero_shot_head(
        self,
        class_names: Sequence[str],
        templates: Sequence[str] | None = None,
        use_model_logit_scale: bool = False,
    ) -> ZeroShotHead:
        """A zero-shot head over ``class_names`` from this model's text tower (CLIP models
        only); attach it with ``run.model.set_head(head)``."""
        return ZeroShotHead.from_texts(
            self.source, self.text_tokenizer, class_names, templates, use_model_logit_scale,
        )

    @property
    def text_tokenizer(self) -> Any:
        """The source's tokenizer (``list[str]`` -> ``(T, context_length)`` ids): OpenCLIP's
        tokenizer of that model, or a run's from its model config (CLIP models only)."""
        if self.kind != "clip":
            raise ValueError(f"run {self.name!r} is a {self.kind} run: it has no text tower")
        if self.tokenizer is not None:
            return self.tokenizer
        from training.models import tokenizer_for

        return tokenizer_for(self.model_config)

    def meta(self, model: bool = False) -> dict[str, Any]:
        """Metadata columns for tidy tables: run, setup, test_domain, seed (training seed),
        epoch; ``model=True`` puts the ``model`` column first."""
        return {
            **({"model": self.label} if model else {}),
            "run": self.name,
            "setup": self.setup,
            "test_domain": self.test_domain,
            "seed": self.seed,
            "epoch": self.epoch,
        }


def load_hooked_model(
    source: str | Path,
    pretrained: str | None = None,
    *,
    epoch: int | None = None,
    device: str | torch.device = "cpu",
    head: nn.Module | None = None,
    data_root: str | Path | None = None,
    heldout: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
) -> HookedRun:
    """Any model source (:func:`training.sources.open_model`) as a hooked tower in eval mode.

    ``source``: a run directory, an OpenCLIP name (with ``pretrained`` a tag, a weights file
    or ``None``), ``local-dir:DIR`` or ``hf-hub:ORG/REPO``; ``epoch`` (runs only: default the
    latest); ``data_root``/``heldout``: the data root and held-out classes (a run's manifest by
    default). The image tower must be hookable (:func:`interp.hooked.hook_image_tower`:
    ``TypeError``/``ValueError`` naming what is supported otherwise); this is checked before
    any data is read.
    """
    loaded = open_model(source, pretrained, epoch=epoch, device=device, data_root=data_root,
                        heldout=heldout, cache_dir=cache_dir)
    hooked = hook_image_tower(loaded.model, head=head).eval()
    return HookedRun(model=hooked, source=loaded.model, info=loaded.info, epoch=loaded.epoch,
                     checkpoint=loaded.checkpoint, preprocess=loaded.preprocess,
                     tokenizer=loaded.tokenizer)


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
    from training.models import MODEL_CONFIG_FILE

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    if not (run_dir / MODEL_CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir / MODEL_CONFIG_FILE} does not exist: is {str(run_dir)!r} a training run?")
    return load_hooked_model(run_dir, epoch=epoch, device=device, head=head, data_root=data_root)
