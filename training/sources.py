"""Model sources: a run directory, or any OpenCLIP model with pretrained weights.

Every analysis starts from one :func:`open_model` call; ``source`` is one of

* a **run directory** trained here (``runs/lso-.../``): today's path, through
  :func:`training.checkpoints.load_run_model` and :func:`training.runinfo.read_run_info`;
* an **OpenCLIP architecture name** with ``pretrained`` a tag (``"RN50"``, ``"openai"``), a
  weights file (``.pt``/``.bin``/``.safetensors``) or ``None`` (random init): OpenCLIP's
  ``create_model_and_transforms`` resolves them (a tag is read from the Hugging Face cache, or
  downloaded unless ``HF_HUB_OFFLINE=1``);
* ``local-dir:DIR``: a folder with OpenCLIP's ``open_clip_config.json`` (``model_cfg`` and
  ``preprocess_cfg``) and a weights file; ``hf-hub:ORG/REPO``: the same from the hub (cache).

The preprocessing (input size, mean, std, interpolation, resize mode, fill) is OpenCLIP's
preprocess config of that model (:class:`Preprocess`), never our defaults; the data root and
the held-out classes come from the caller. The metadata is a :class:`training.runinfo.RunInfo`
for every source, so analyses read one type: for an OpenCLIP model ``kind="clip"``,
``setup=""``, ``seed=None``, ``run_dir=None``, ``model`` = ``NAME/TAG`` (the file stem for a
weights file, ``random`` without weights), ``local-dir:DIR`` -> the folder name, ``hf-hub:X`` ->
``X``; for a run, ``model`` is the run's name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .runinfo import RunInfo, read_run_info, resolve_heldout

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
#: What :func:`open_model` accepts, for error messages.
SOURCES_HELP = (
    "a run directory, an OpenCLIP architecture name (e.g. 'RN50', 'ViT-B-32'; all of them: "
    "open_clip.list_models()) with an optional pretrained tag or weights file, "
    "'local-dir:DIR' (open_clip_config.json + weights) or 'hf-hub:ORG/REPO'"
)
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")


@dataclass(frozen=True)
class Preprocess:
    """OpenCLIP's eval preprocessing of one model (its ``preprocess_cfg``).

    ``size``: ``(H, W)`` input; ``mean``/``std``: per-channel normalisation; ``interpolation``:
    ``bicubic`` | ``bilinear``; ``resize_mode``: ``shortest`` (resize the short side, centre
    crop), ``longest`` (resize the long side, pad with ``fill_color``) or ``squash``.
    """

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    @classmethod
    def from_model(cls, model: nn.Module) -> Preprocess:
        """The preprocess config OpenCLIP attached to ``model`` (defaults where it has none)."""
        from open_clip.model import get_model_preprocess_cfg
        from open_clip.transform import PreprocessCfg

        cfg = {**vars(PreprocessCfg()), **(get_model_preprocess_cfg(model) or {})}
        size = cfg.get("size") or getattr(getattr(model, "visual", model), "image_size", 224)
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        def as3(value: Any) -> tuple[float, ...]:  # OpenCLIP allows one number for 3 channels
            if isinstance(value, (list, tuple)):
                return tuple(float(v) for v in value)
            return (float(value),) * 3

        return cls(size=size, mean=as3(cfg["mean"]), std=as3(cfg["std"]),
                   interpolation=str(cfg.get("interpolation") or "bicubic"),
                   resize_mode=str(cfg.get("resize_mode") or "shortest"),
                   fill_color=int(cfg.get("fill_color") or 0))

    @property
    def image_size(self) -> int:
        """Square input side in pixels (``ValueError`` for a non-square input)."""
        if self.size[0] != self.size[1]:
            raise ValueError(f"non-square input size {self.size} is not supported")
        return self.size[0]

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """OpenCLIP's own eval transform: PIL image -> normalised ``(3, H, W)`` float tensor."""
        from open_clip.transform import image_transform

        return image_transform(self.size, is_train=False, mean=self.mean, std=self.std,
                               resize_mode=self.resize_mode, interpolation=self.interpolation,
                               fill_color=self.fill_color)

    def decode(self, path: str | Path) -> np.ndarray:
        """One image file -> ``(3, H, W)`` uint8: OpenCLIP's eval transform before
        ``ToTensor``/``Normalize`` (so ``normalize(decode(p) / 255)`` is ``transform()(img)``)."""
        from PIL import Image

        steps = self.transform().transforms
        with Image.open(path) as image:
            image = image.convert("RGB")
            for step in steps:
                if type(step).__name__ in ("MaybeToTensor", "ToTensor"):
                    break
                image = step(image)
            array = np.asarray(image, dtype=np.uint8)
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` -> float, ``(x / 255 - mean) / std``."""
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (images.float() / 255.0 - mean) / std


@dataclass
class LoadedSource:
    """A model opened by :func:`open_model`.

    ``model``: the OpenCLIP ``CLIP``/``CustomTextCLIP`` (or a run's supervised classifier) in
    eval mode; ``info``: its :class:`~training.runinfo.RunInfo` (``info.model`` is the tidy
    ``model`` column); ``preprocess``: OpenCLIP's preprocessing of the model; ``tokenizer``:
    ``list[str]`` -> ``(T, context_length)`` token ids (``None`` for a supervised run);
    ``epoch``/``checkpoint``: the run checkpoint (``None`` for non-run sources, except
    ``checkpoint`` = the weights file when there is one).
    """

    model: nn.Module
    info: RunInfo
    preprocess: Preprocess
    tokenizer: Any
    epoch: int | None = None
    checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def label(self) -> str:
        """The ``model`` column value (name + pretrained tag, or the run's name)."""
        return self.info.model

    @property
    def model_config(self) -> dict[str, Any]:
        return self.info.model_config


def is_run_dir(source: str | Path) -> bool:
    """Whether ``source`` names a training run directory (it holds ``model_config.json``)."""
    from .models import MODEL_CONFIG_FILE

    text = str(source)
    if text.startswith((LOCAL_DIR, HF_HUB)):
        return False
    return (Path(text) / MODEL_CONFIG_FILE).is_file()


def _check_pretrained(name: str, pretrained: str) -> tuple[str, Path | None]:
    """``(kind, path)``: ``("file", path)`` or ``("tag", None)``; one-line errors otherwise."""
    import open_clip

    path = Path(pretrained).expanduser()
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise PermissionError(f"pretrained weights file {str(path)!r} is not readable")
        return "file", path
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained in tags:
        return "tag", None
    if path.suffix in _WEIGHT_SUFFIXES or os.sep in pretrained:
        raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
    raise ValueError(
        f"unknown pretrained {pretrained!r} for {name!r}: expected a weights file or one of "
        f"OpenCLIP's tags for it {list(tags)}"
    )


def _model_info(
    model: nn.Module, label: str, model_cfg: dict, pretrained: str | None,
    data_root: str | Path | None, heldout: Sequence[str] | None, location: Path | None,
    source: str, preprocess: Preprocess,
) -> RunInfo:
    """The :class:`RunInfo` of a non-run model source (module docstring)."""
    from .domainnet import class_names, heldout_classes

    root: Path | None = None
    classes: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    if data_root is not None:
        root = Path(data_root).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"data root {str(root)!r} is not a directory")
        classes = tuple(class_names(root))
        held = (resolve_heldout(heldout, classes, "--heldout", root) if heldout
                else tuple(heldout_classes(root, classes)))
    elif heldout:
        raise ValueError("held-out classes need a data root to resolve them against")
    return RunInfo(
        run_dir=None, kind="clip", setup="", test_domain=None, seed=None, mixture_seed=None,
        data_root=root, classes=classes, heldout=held, image_size=preprocess.image_size,
        mean=preprocess.mean, std=preprocess.std, model_config=model_cfg,
        run_json={"kind": "clip"}, manifest={}, label=label, source=source,
        pretrained=pretrained, location=location, preprocess=vars(preprocess).copy(),
    )


def _create(name: str, pretrained: str | None, device: str | torch.device,
            cache_dir: str | None, what: str) -> nn.Module:
    """``open_clip.create_model_and_transforms``; its failures as one-line ``ValueError``s."""
    import open_clip

    try:
        model, _, _ = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, cache_dir=cache_dir)
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as error:  # noqa: BLE001 - torch / safetensors / hub raise many kinds
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        if len(message) > 300:  # a state-dict mismatch lists every key: keep it one short line
            message = message[:297] + "..."
        raise ValueError(f"cannot load {what}: {type(error).__name__}: {message}") from None
    return model.eval()


def open_model(
    source: str | Path,
    pretrained: str | None = None,
    *,
    epoch: int | None = None,
    device: str | torch.device = "cpu",
    data_root: str | Path | None = None,
    heldout: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
) -> LoadedSource:
    """Open any model source (module docstring) in eval mode.

    ``epoch``: a run's checkpoint (default: latest; refused for other sources);
    ``data_root``/``heldout``: the DomainNet-format root and held-out classes (folder or
    display names; default: the run's manifest, else the root's ``heldout_classes.txt``);
    ``cache_dir``: OpenCLIP's download/hub cache. Raises ``ValueError`` for an unknown model
    name or pretrained tag, or weights that do not load; ``FileNotFoundError`` for a missing
    file or folder.
    """
    import open_clip

    from .models import tokenizer_for

    text = str(source)
    if is_run_dir(source):
        if pretrained is not None:
            raise ValueError(f"{text!r} is a run directory: it has its own weights (drop pretrained)")
        from .checkpoints import load_run_model

        info = read_run_info(source, data_root, heldout=heldout)
        loaded = load_run_model(source, epoch=epoch, device=device)
        tokenizer = tokenizer_for(info.model_config) if loaded.kind == "clip" else None
        preprocess = Preprocess((info.image_size,) * 2, info.mean, info.std)
        return LoadedSource(model=loaded.model.eval(), info=info, preprocess=preprocess,
                            tokenizer=tokenizer, epoch=int(loaded.epoch),
                            checkpoint=Path(loaded.path))
    if epoch is not None:
        raise ValueError(f"epoch={epoch} applies to run directories only, not {text!r}")
    cache = None if cache_dir is None else str(cache_dir)
    if text.startswith(LOCAL_DIR):
        folder = Path(text[len(LOCAL_DIR):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"{text!r}: {folder}/open_clip_config.json does not exist")
        if pretrained is not None:
            raise ValueError(f"{text!r} holds its own weights (drop pretrained)")
        model = _create(f"{LOCAL_DIR}{folder}", None, device, cache, f"{text!r}")
        label, location, kind = folder.resolve().name, folder, "local-dir"
        model_cfg = open_clip.get_model_config(f"{LOCAL_DIR}{folder}")
    elif text.startswith(HF_HUB):
        if pretrained is not None:
            raise ValueError(f"{text!r} holds its own weights (drop pretrained)")
        model = _create(text, None, device, cache, f"{text!r}")
        label, location, kind = text[len(HF_HUB):], None, "hf-hub"
        model_cfg = {}
    else:
        name = text.replace("/", "-")
        model_cfg = open_clip.get_model_config(name)
        if model_cfg is None:
            if Path(text).is_dir():
                raise FileNotFoundError(
                    f"{text!r} is a folder but neither a run directory (no model_config.json) "
                    f"nor marked 'local-dir:'; expected {SOURCES_HELP}")
            raise ValueError(f"unknown model {text!r}; expected {SOURCES_HELP}")
        location = None
        if pretrained is None:
            tag = "random"
        else:
            what, location = _check_pretrained(name, str(pretrained))
            tag = location.stem if what == "file" else str(pretrained)
        model = _create(name, None if location is None and pretrained is None
                        else str(location or pretrained), device, cache,
                        f"{name} with pretrained={pretrained!r}")
        label, kind = f"{name}/{tag}", "openclip"
    preprocess = Preprocess.from_model(model)
    if not model_cfg:  # hf-hub: the config is in the hub cache; what matters is the tokenizer
        model_cfg = {}
    info = _model_info(model, label, model_cfg, None if pretrained is None else str(pretrained),
                       data_root, heldout, location, kind, preprocess)
    tokenizer = open_clip.get_tokenizer(text if kind != "openclip" else name, cache_dir=cache)
    checkpoint = location if location is not None and location.is_file() else None
    return LoadedSource(model=model, info=info, preprocess=preprocess, tokenizer=tokenizer,
                        checkpoint=checkpoint)


__all__ = ["LoadedSource", "Preprocess", "SOURCES_HELP", "is_run_dir", "open_model"]
