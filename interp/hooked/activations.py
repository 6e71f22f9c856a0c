"""Pooled activations of a hooked tower over an image set, batched and cached on disk.

Every requested site's activation is pooled to one vector per image *inside the hook* and
written into a preallocated ``(N, F)`` float32 tensor, so memory is ``N x F`` per site plus one
batch of activations, never ``N`` full token or feature maps. The forward pass stops right
after the last requested site. Pooling (see :func:`pool_activation`):

* ``"mean"``: mean over all positions (ViT: every token, class token included; ResNet: every
  spatial position);
* ``"patch_mean"``: ViT: mean over patch tokens, class token excluded (ResNet: as ``mean``);
* ``"cls"``: ViT class token (token 0); not defined for convolutional maps.

Per-image sites (final embedding, logits) are returned as they are. Results can be cached
under ``cache_dir``: the file name is a hash of the model's weights, the images (paths, sizes,
mtimes and preprocessing, or the input tensor's bytes), the sites and the pooling; files are
written atomically (temp file + rename).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from interp.hooked.base import HookedImageTower, eval_mode
from interp.hooked.images import DEFAULT_MEAN, DEFAULT_STD, ImageFileDataset
from training.util.files import digest, torch_save
from training.util.seeding import seeded_rng
from training.util.validate import check_choice

if TYPE_CHECKING:
    from training.sources import Preprocess

POOLINGS: tuple[str, ...] = ("mean", "patch_mean", "cls")
CACHE_FORMAT = 1

_PER_IMAGE = ("vector", "head_vector", "head_weights")
_NO_CLASS_TOKEN = ("sequence", "spatial")


class _StopForward(Exception):
    """Raised by the last requested hook to skip the rest of the forward pass."""


def check_pooling(model: HookedImageTower, sites: Sequence[str], pooling: str) -> None:
    """Raise ``ValueError`` if ``pooling`` is unknown or undefined for one of ``sites``."""
    check_choice("pooling", pooling, POOLINGS)
    if pooling == "cls":
        bad = [s for s in sites if model.site_layout(s) in _NO_CLASS_TOKEN]
        if bad:
            raise ValueError(
                f"pooling='cls' needs a class token, but site(s) {bad} have none "
                "(convolutional maps or token sequences without a class token); use 'mean'"
            )


def pool_activation(x: Tensor, layout: str, pooling: str) -> Tensor:
    """Pool one site's batch of activations to ``(B, F)``.

    ``x`` is laid out as ``layout`` (see :data:`interp.hooked.base.LAYOUTS`): ``tokens``
    ``(B, T, D)`` -> ``(B, D)``; ``heads``/``head_result`` ``(B, T, H, d)`` -> ``(B, H*d)``
    (pooled over T); ``pattern`` ``(B, H, Tq, Tk)`` -> ``(B, H*Tk)`` (pooled over queries);
    ``spatial`` ``(B, C, H, W)`` -> ``(B, C)``; ``sequence`` ``(B, L, D)`` -> ``(B, D)``;
    per-image layouts are flattened.
    """
    check_choice("pooling", pooling, POOLINGS)
    if layout in _PER_IMAGE:
        return x.flatten(1)
    if layout == "spatial":
        if pooling == "cls":
            raise ValueError("pooling='cls' is undefined for convolutional feature maps")
        return x.mean(dim=(2, 3))
    if layout == "sequence":
        if pooling == "cls":
            raise ValueError("pooling='cls' is undefined for sequences without a class token")
        return x.mean(dim=1)
    axis = 2 if layout == "pattern" else 1
    if pooling == "cls":
        return x.select(axis, 0).flatten(1)
    if pooling == "patch_mean":
        x = x.narrow(axis, 1, x.shape[axis] - 1)
    return x.mean(dim=axis).flatten(1)


def tensor_digest(*tensors: Tensor) -> str:
    """Hex sha256 of tensors' dtypes, shapes and bytes: the one content digest of tensors (cache
    keys of activations, circuits and models)."""
    sha = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        sha.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """Hex digest of a model's class and state dict (names, dtypes, shapes, bytes)."""
    state = sorted(model.state_dict().items())
    return digest(type(model).__qualname__, [(name, tensor_digest(t)) for name, t in state],
                  length=64)


def _data_identity(images: Tensor | Dataset, data_key: str | None) -> str:
    if data_key is not None:
        return f"key:{data_key}"
    if isinstance(images, Tensor):
        return f"tensor:{tensor_digest(images)}"
    identity = getattr(images, "identity", None)
    if callable(identity):
        return f"{type(images).__qualname__}:{identity()}"
    raise ValueError(
        f"cannot fingerprint a {type(images).__name__} for the activation cache: pass "
        "data_key=... (a string naming these images) or cache_dir=None"
    )


def activation_cache_file(
    cache_dir: str | Path,
    model: HookedImageTower,
    images: Tensor | Dataset,
    sites: Sequence[str],
    pooling: str,
    data_key: str | None = None,
) -> Path:
    """Where :func:`collect_activations` caches these activations."""
    key = digest(
        {
            "format": CACHE_FORMAT,
            "model": model_digest(model),
            "data": _data_identity(images, data_key),
            "sites": sorted(sites),
            "pooling": pooling,
        },
        length=24,
    )
    return Path(cache_dir) / f"activations-{key}.pt"


def _batches(
    images: Tensor | Dataset, batch_size: int, num_workers: int
) -> tuple[int, Any]:
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
        n = images.shape[0]
        return n, (images[i : i + batch_size] for i in range(0, n, batch_size))
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return len(images), (b[0] if isinstance(b, list | tuple) else b for b in loader)


def collect_activations(
    model: HookedImageTower,
    images: Tensor | Dataset,
    sites: Sequence[str] | None = None,
    *,
    pooling: str = "mean",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
    data_key: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "activations",
) -> dict[str, Tensor]:
    """Pooled activations ``{site: (N, F) float32}`` of ``model`` over ``images``.

    ``images``: a tensor ``(N, 3, H, W)`` of model inputs, or a dataset whose items are such
    images (or tuples starting with one), e.g. :class:`interp.hooked.images.ImageFileDataset`.
    ``sites``: hook names (default: ``model.layers()``). ``pooling``: see module docstring.
    The model runs in eval mode without gradients (its mode is restored afterwards).
    ``cache_dir``: reuse/write an on-disk cache; datasets without ``identity()`` need a
    ``data_key``. Rows follow the order of ``images``.
    """
    sites = [s.name for s in model.layers()] if sites is None else list(dict.fromkeys(sites))
    if not sites:
        raise ValueError("no sites requested")
    model.check_sites(sites)
    check_pooling(model, sites, pooling)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    target = None
    if cache_dir is not None:
        target = activation_cache_file(cache_dir, model, images, sites, pooling, data_key)
        if target.is_file():
            payload = torch.load(target, map_location="cpu", weights_only=True)
            return {s: payload["acts"][s] for s in sites}

    order = model.site_names()
    last_site = max(sites, key=order.index)
    layouts = {s: model.site_layout(s) for s in sites}
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n, batches = _batches(images, batch_size, num_workers)
    if n == 0:
        raise ValueError("no images given")
    out: dict[str, Tensor] = {}
    state = {"start": 0, "stop": 0}

    def store(tensor: Tensor, hook: Any) -> None:
        pooled = pool_activation(tensor, layouts[hook.name], pooling).float().cpu()
        if hook.name not in out:
            out[hook.name] = torch.empty(n, pooled.shape[1], dtype=torch.float32)
        out[hook.name][state["start"] : state["stop"]] = pooled
        if hook.name == last_site:
            raise _StopForward

    with eval_mode(model), torch.inference_mode(), model.hooks(fwd_hooks=[(s, store) for s in sites]):
        for batch in tqdm(batches, total=-(-n // batch_size), desc=desc, disable=not progress):
            state["stop"] = state["start"] + batch.shape[0]
            with contextlib.suppress(_StopForward):
                model(batch.to(device))
            state["start"] = state["stop"]
    if state["start"] != n:
        raise RuntimeError(f"expected {n} images, the data yielded {state['start']}")

    if target is not None:
        torch_save({"format": CACHE_FORMAT, "sites": sites, "pooling": pooling, "acts": out}, target)
    return {s: out[s] for s in sites}


@dataclass
class DomainActivations:
    """Pooled activations of one domain's images.

    ``acts``: ``{site: (N, F)}``; ``index``: ``N`` rows (path, domain, class_name, label,
    split) in the same order.
    """

    acts: dict[str, Tensor]
    index: pd.DataFrame

    @property
    def labels(self) -> np.ndarray:
        """Class name of every row, ``(N,)``."""
        return self.index["class_name"].to_numpy()


def select_per_class(index: pd.DataFrame, max_per_class: int | None, seed: int = 0) -> pd.DataFrame:
    """At most ``max_per_class`` rows per (domain, class), drawn reproducibly for ``seed``.

    The draw for a (domain, class) depends only on ``seed``, the domain and the class, not on
    the other rows; kept rows stay in their original order.
    """
    if max_per_class is None:
        return index
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
    keep = []
    for (domain, cls), rows in index.groupby(["domain", "class_name"], sort=False):
        positions = np.arange(len(rows))
        if len(rows) > max_per_class:
            rng = seeded_rng(int(seed), str(domain), str(cls))
            positions = np.sort(rng.choice(len(rows), size=max_per_class, replace=False))
        keep.append(rows.index.to_numpy()[positions])
    kept = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=int)
    return index.loc[kept]


def collect_domain_activations(
    model: HookedImageTower,
    root: str | Path,
    domains: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    *,
    split: str = "test",
    classes: Sequence[str] | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    pooling: str = "mean",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
    progress: bool = True,
    preprocess: Preprocess | None = None,
) -> dict[str, DomainActivations]:
    """Pooled activations over each domain's ``split`` of a DomainNet-format root.

    ``domains``: default every domain with split files; ``classes``: restrict to these class
    folders; ``max_per_class``: seeded subsample per (domain, class). Images are decoded at
    the model's input size and normalised with ``mean``/``std``, or by OpenCLIP's eval
    transform ``preprocess`` (a :class:`training.sources.Preprocess`) when given. Returns
    ``{domain: DomainActivations}`` in the order of ``domains``.
    """
    from training.domainnet import available_domains, load_index

    domains = list(available_domains(root)) if domains is None else list(domains)
    result: dict[str, DomainActivations] = {}
    size = int(model.cfg.image_size[0])
    for domain in domains:
        index = load_index(root, [domain], splits=(split,), classes=classes)
        index = select_per_class(index, max_per_class, seed).reset_index(drop=True)
        if index.empty:
            wanted = "" if classes is None else f" of classes {list(classes)}"
            raise ValueError(f"domain {domain!r} has no {split} images{wanted} under {root}")
        dataset = ImageFileDataset(index["path"].tolist(), size, mean=mean, std=std,
                                   preprocess=preprocess)
        acts = collect_activations(
            model, dataset, sites, pooling=pooling, batch_size=batch_size, device=device,
            cache_dir=cache_dir, num_workers=num_workers, progress=progress, desc=domain,
        )
        result[domain] = DomainActivations(acts=acts, index=index)
    return result
