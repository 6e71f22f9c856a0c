"""CLIP models from OpenCLIP configs: CPU presets, OpenCLIP names, config files; the classifier.

A model is named by one of:

* a preset shipped in ``training/model_configs/`` (``tiny-vit``, ``tiny-rn``; see
  :func:`list_presets`), sized to train at hundreds of images/s on two CPU cores;
* any OpenCLIP architecture name (``RN50``, ``ViT-B-32``; see ``open_clip.list_models()``),
  for users with GPUs; weights are always initialised at random, nothing is downloaded;
* a path to a JSON file holding an OpenCLIP model config (``embed_dim``, ``vision_cfg``,
  ``text_cfg``), or an ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``).

Every run directory stores the resolved config as ``model_config.json`` (the plain OpenCLIP
model config) and ``open_clip_config.json``, so OpenCLIP alone rebuilds the model::

    model = open_clip.create_model(f"local-dir:{run_dir}")
    open_clip.load_checkpoint(model, f"{run_dir}/checkpoints/epoch_3.pt")
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .util.files import write_json

PRESETS_DIR = Path(__file__).parent / "model_configs"
MODEL_CONFIG_FILE = "model_config.json"
OPEN_CLIP_CONFIG_FILE = "open_clip_config.json"
_REQUIRED_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


def list_presets() -> tuple[str, ...]:
    """Names of the CPU-sized presets in ``training/model_configs/`` (file stems)."""
    return tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.json")))


def _check_config(cfg: Any, source: str) -> dict:
    if isinstance(cfg, dict) and "model_cfg" in cfg:
        cfg = cfg["model_cfg"]
    if not isinstance(cfg, dict) or any(k not in cfg for k in _REQUIRED_KEYS):
        raise ValueError(
            f"{source} is not an OpenCLIP model config: expected keys {list(_REQUIRED_KEYS)}"
        )
    if "multimodal_cfg" in cfg:
        raise ValueError(f"{source}: CoCa models (multimodal_cfg) are not supported")
    return copy.deepcopy(cfg)


def resolve_model_config(name: str | Path) -> dict:
    """The OpenCLIP model config (a new dict) for a preset, OpenCLIP name or JSON file.

    Raises ``ValueError`` for an unknown name, listing the presets and pointing to
    ``open_clip.list_models()``.
    """
    import open_clip

    key = str(name)
    if key in list_presets():
        return _check_config(json.loads((PRESETS_DIR / f"{key}.json").read_text()), key)
    path = Path(key)
    if key.endswith(".json") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"model config file {key!r} does not exist")
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"model config {key!r} is not valid JSON: {error}") from None
        return _check_config(cfg, key)
    cfg = open_clip.get_model_config(key.replace("/", "-"))
    if cfg is None:
        raise ValueError(
            f"unknown model {key!r}; presets: {list(list_presets())}; or any OpenCLIP "
            f"architecture name (e.g. 'RN50', 'ViT-B-32'; all of them: python -c "
            f"\"import open_clip; print(open_clip.list_models())\"); or a path to an OpenCLIP "
            f"model-config JSON file"
        )
    return _check_config(cfg, key)


def build_clip(cfg: dict, device: str | torch.device = "cpu") -> nn.Module:
    """An OpenCLIP ``CLIP`` (or ``CustomTextCLIP``) from a model config, randomly initialised.

    Initialisation draws from torch's global RNG: seed it (``torch.manual_seed``) first for a
    reproducible model. The model's preprocess config (image size, OpenAI mean/std) is set as
    ``open_clip.create_model`` sets it.
    """
    import open_clip
    from open_clip.model import set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg

    cfg = copy.deepcopy(cfg)
    text_cfg, vision_cfg = cfg["text_cfg"], cfg["vision_cfg"]
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in text_cfg
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    model = model_class(**cfg)
    preprocess = asdict(PreprocessCfg())
    preprocess["size"] = model.visual.image_size
    set_model_preprocess_cfg(model, preprocess)
    return model.to(device)


def text_prefix_supported(cfg: dict) -> bool:
    """Whether the config's text tower reads its pooled token through a causal mask, so that
    positions after the longest caption cannot change it (OpenCLIP's own ``TextTransformer``
    with causal attention and ``argmax``/``eos`` pooling; not HF or custom text towers)."""
    text_cfg = cfg["text_cfg"]
    return (
        not cfg.get("custom_text", False)
        and "hf_model_name" not in text_cfg
        and not text_cfg.get("no_causal_mask", False)
        and not text_cfg.get("embed_cls", False)
        and text_cfg.get("pool_type", "argmax") in ("argmax", "eos")
    )


def used_token_length(tokens: torch.Tensor) -> int:
    """Number of leading positions of ``(N, context_length)`` token ids that hold a non-pad
    token in some row (pad id 0, as OpenCLIP's ``SimpleTokenizer``); at least 1."""
    used = (tokens != 0).any(dim=0).nonzero()
    return int(used.max()) + 1 if len(used) else 1


def encode_text_prefix(model: nn.Module, text: torch.Tensor) -> torch.Tensor:
    """``open_clip.CLIP.encode_text`` (unnormalised) for ``(B, L)`` ids with ``L`` at most the
    context length: the first ``L`` positional embeddings and the causal mask's top-left
    ``L x L`` block. OpenCLIP always adds all ``context_length`` positions; with a causal mask
    the pooled (end-of-text) token never attends to later positions, so dropping trailing
    padding gives the same features to float rounding for a fraction of the cost (captions
    here are ~8 of 77 tokens). Returns ``(B, embed_dim)``."""
    from open_clip.transformer import text_global_pool

    length = text.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, text, model.text_pool_type,
                         eos_token_id=getattr(model, "text_eos_id", None))
    if isinstance(model.text_projection, nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection


class PrefixTextCLIP(nn.Module):
    """A training view of an OpenCLIP ``CLIP`` whose forward runs the text tower on the token
    prefix it is given (:func:`encode_text_prefix`); same parameters, same outputs as
    ``CLIP.forward`` to float rounding: ``(image_features, text_features, logit_scale.exp())``,
    both feature tensors ``(B, embed_dim)`` and L2-normalised."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        clip = self.clip
        image_features = clip.encode_image(image, normalize=True)
        text_features = nn.functional.normalize(encode_text_prefix(clip, text), dim=-1)
        return image_features, text_features, clip.logit_scale.exp()


def create_clip(
    name_or_preset: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Resolve ``name_or_preset`` (see module docstring) and build a random-init CLIP.

    Returns ``(model, model_cfg)``; ``model.encode_image`` maps ``(B, 3, S, S)`` normalised
    images to ``(B, embed_dim)`` and ``model.encode_text`` maps ``(B, context_length)`` token
    ids to ``(B, embed_dim)``.
    """
    cfg = resolve_model_config(name_or_preset)
    return build_clip(cfg, device=device), cfg


def image_size(cfg: dict) -> int:
    """Square input size of the config's image tower (pixels)."""
    size = cfg["vision_cfg"].get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise ValueError(f"non-square image size {size} is not supported")
        size = size[0]
    return int(size)


def tokenizer_for(cfg: dict):
    """OpenCLIP's tokenizer for a model config (works offline for the default BPE).

    Returns a callable mapping a list of ``T`` strings to a ``(T, context_length)`` LongTensor.
    """
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    text_cfg = cfg["text_cfg"]
    context_length = int(text_cfg.get("context_length", 77))
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    if text_cfg.get("hf_tokenizer_name"):
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context_length, **kwargs)
    return SimpleTokenizer(context_length=context_length, **kwargs)


def preprocess_stats(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel that the model's images are normalised with."""
    from open_clip.model import get_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg

    cfg = get_model_preprocess_cfg(model) or {}
    default = PreprocessCfg()
    return tuple(cfg.get("mean", default.mean)), tuple(cfg.get("std", default.std))


class ImageClassifier(nn.Module):
    """The supervised baseline: an OpenCLIP image tower plus a linear head.

    ``visual`` is exactly the tower ``open_clip.CLIP`` builds from the same config (same
    state-dict keys ``visual.*``, same initialisation for the same seed), so hooks and
    analyses written for a CLIP image tower apply unchanged.

    Args:
        cfg: OpenCLIP model config (only ``vision_cfg`` and ``embed_dim`` are used).
        num_classes: number of output classes ``C``.
    """

    def __init__(self, cfg: dict, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        clip = build_clip(cfg)
        self.visual = clip.visual
        self.head = nn.Linear(int(cfg["embed_dim"]), num_classes)
        self.num_classes = num_classes

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``(B, 3, S, S)`` images -> ``(B, embed_dim)`` features (as CLIP's encode_image)."""
        features = self.visual(image)
        return nn.functional.normalize(features, dim=-1) if normalize else features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` images -> ``(B, C)`` class logits."""
        return self.head(self.visual(image))


def write_model_config(run_dir: str | Path, cfg: dict) -> None:
    """Write ``model_config.json`` and ``open_clip_config.json`` into ``run_dir``."""
    from open_clip.transform import PreprocessCfg

    run_dir = Path(run_dir)
    preprocess = asdict(PreprocessCfg())
    preprocess["size"] = image_size(cfg)
    write_json(run_dir / MODEL_CONFIG_FILE, cfg)
    write_json(run_dir / OPEN_CLIP_CONFIG_FILE, {"model_cfg": cfg, "preprocess_cfg": preprocess})


def read_model_config(run_dir: str | Path) -> dict:
    """The model config stored in a run directory (``model_config.json``)."""
    path = Path(run_dir) / MODEL_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {str(run_dir)!r} a training run?")
    return _check_config(json.loads(path.read_text()), str(path))


def nonfinite_tensors(model: nn.Module) -> list[str]:
    """Names of the floating-point entries of ``model``'s state dict (parameters and saved
    buffers such as BatchNorm statistics) that hold a NaN or an infinity; one host sync for
    the whole model. Unsaved buffers are skipped: a causal attention mask holds -inf."""
    named = [(n, t) for n, t in model.state_dict(keep_vars=True).items()
             if t.is_floating_point()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    return [name for (name, _), ok in zip(named, finite, strict=True) if not ok]
