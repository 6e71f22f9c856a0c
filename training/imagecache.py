"""Images decoded once into a uint8 cache, and augmentation on tensors.

Training on a few thousand small images is bound by JPEG/PNG decoding if every epoch decodes
again. Here every image is decoded once, resized (shortest side, bicubic, as OpenCLIP's eval
transform) and centre-cropped to the model's input size, and kept as one ``(N, 3, S, S)``
uint8 tensor: in memory, or in a ``np.memmap`` file for large sets (file name keyed by a hash
of the paths, their sizes and modification times, and ``S``, so a cache is reused only for the
same images). Augmentation (random resized crop, horizontal flip) and normalisation run on
batches of tensors, with parameters drawn from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .util.files import atomic_path, digest, remove_stale_temps, write_json

#: Above this many bytes an image cache without an explicit directory goes to a memmap file.
DEFAULT_MEMORY_LIMIT = 4 * 1024**3


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image to ``(3, size, size)`` uint8 RGB.

    Shortest side resized to ``size`` (bicubic), then centre crop: the same pixels as
    OpenCLIP's eval transform ``Resize(size) + CenterCrop(size)`` before ``ToTensor``.
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        if min(w, h) != size:
            scale = size / min(w, h)
            new = (max(size, round(w * scale)), max(size, round(h * scale)))
            image = image.resize(new, Image.Resampling.BICUBIC)
            w, h = image.size
        if (w, h) != (size, size):
            left = int(round((w - size) / 2.0))
            top = int(round((h - size) / 2.0))
            image = image.crop((left, top, left + size, top + size))
        array = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def cache_key(paths: Sequence[str], size: int) -> str:
    """Hex digest identifying a list of image files (path, byte size, mtime) at one size."""
    files = []
    for path in paths:
        try:
            stat = os.stat(path)
            files.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            files.append((path, None, None))
    return digest("imagecache", size, files, length=64)


def cache_file(cache_dir: str | Path, paths: Sequence[str], size: int) -> Path:
    """The memmap file that :func:`load_images` uses for these images under ``cache_dir``."""
    return Path(cache_dir) / f"images-{cache_key(paths, size)[:20]}-{len(paths)}x{size}.u8"


def _check_exist(paths: Sequence[str]) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(f"{len(missing)} image file(s) not found:\n  {shown}{more}")


def _decode_into(
    out: np.ndarray, paths: Sequence[str], size: int, workers: int, progress: bool, desc: str
) -> None:
    """Decode ``paths`` into ``out[i]`` with a thread pool; raise naming undecodable files."""
    from tqdm.auto import tqdm

    def work(i: int) -> str | None:
        try:
            out[i] = decode_image(paths[i], size)
        except Exception as error:  # noqa: BLE001 - reported below with the path
            return f"{paths[i]}: {type(error).__name__}: {error}"
        return None

    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, tqdm(
        total=len(paths), desc=desc, unit="img", disable=not progress, leave=False
    ) as bar:
        chunk = 256
        for start in range(0, len(paths), chunk):
            results = pool.map(work, range(start, min(start + chunk, len(paths))))
            failures.extend(r for r in results if r is not None)
            bar.update(min(chunk, len(paths) - start))
    if failures:
        shown = "\n  ".join(failures[:10])
        more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
        raise ValueError(f"cannot decode {len(failures)} image(s):\n  {shown}{more}")


def load_images(
    paths: Sequence[str],
    size: int,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    fallback_dir: str | Path | None = None,
    desc: str = "decoding images",
) -> torch.Tensor:
    """Decode every image once; return a ``(N, 3, size, size)`` uint8 tensor.

    Args:
        paths: image files (any format Pillow reads); ``N = len(paths)``.
        size: output side length in pixels.
        cache_dir: if given, keep the images in a memmap file there (reused when the same
            files at the same size are asked for again); else decode into memory.
        workers: decoding threads (default: CPU count).
        progress: show a tqdm bar.
        memory_limit: bytes above which an in-memory cache is refused and the images go to a
            memmap file in ``fallback_dir`` instead (``ValueError`` if that is ``None``).
        fallback_dir: where to put the memmap file of a set too large for memory.

    Raises ``FileNotFoundError`` naming missing files and ``ValueError`` naming undecodable
    ones; an interrupted build never leaves a cache file behind (temp file + rename).
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no images to load")
    workers = workers or os.cpu_count() or 1
    nbytes = len(paths) * 3 * size * size
    if cache_dir is None and nbytes > memory_limit:
        if fallback_dir is None:
            raise ValueError(
                f"{len(paths)} images at {size}px need {nbytes / 1024**3:.1f} GiB, above the "
                f"in-memory limit of {memory_limit / 1024**3:.1f} GiB: give a cache directory"
            )
        cache_dir = fallback_dir
    if cache_dir is None:
        out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
        _check_exist(paths)
        _decode_into(out, paths, size, workers, progress, desc)
        return torch.from_numpy(out)
    target = cache_file(cache_dir, paths, size)
    if not target.is_file() or target.stat().st_size != nbytes:
        _check_exist(paths)
        remove_stale_temps(target.parent)  # memmaps of killed builds are large
        with atomic_path(target) as tmp:
            out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(paths), 3, size, size))
            _decode_into(out, paths, size, workers, progress, desc)
            out.flush()
            del out
        write_json(target.with_suffix(".json"), {"n": len(paths), "size": size, "first": paths[0]})
    array = np.memmap(target, dtype=np.uint8, mode="c", shape=(len(paths), 3, size, size))
    return torch.from_numpy(array)


@dataclass(frozen=True)
class AugmentConfig:
    """Light augmentation applied on tensors.

    Attributes:
        scale: range of the crop's area as a fraction of the image (random resized crop).
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        hflip: probability of a horizontal flip.
    """

    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"augment scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"augment ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        if not 0 <= self.hflip <= 1:
            raise ValueError(f"hflip must be a probability, got {self.hflip}")


class TensorTransform:
    """uint8 image batches -> normalised float batches, optionally augmented.

    Augmentation parameters are drawn separately (:meth:`sample`) so that a distributed run
    can draw them for the whole global batch and give each rank its slice: every rank then
    sees exactly the pixels a single process would.

    Args:
        mean, std: per-channel normalisation (OpenCLIP's, from the model's preprocess config).
        augment: augmentation settings, or ``None`` for none (evaluation).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        augment: AugmentConfig | None = None,
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.augment = augment

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """Random crop/flip parameters for ``n`` images: ``(n, 5)`` float64 rows
        ``(half_width, half_height, centre_x, centre_y, flip_sign)`` in grid units
        (image spans ``[-1, 1]``), or ``None`` without augmentation."""
        if self.augment is None:
            return None
        a = self.augment
        u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
        area = a.scale[0] + (a.scale[1] - a.scale[0]) * u[:, 0]
        log_lo, log_hi = math.log(a.ratio[0]), math.log(a.ratio[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (1 - w) * (2 * u[:, 2] - 1)
        cy = (1 - h) * (2 * u[:, 3] - 1)
        flip = torch.where(u[:, 4] < a.hflip, -1.0, 1.0).to(torch.float64)
        return torch.stack([w, h, cx, cy, flip], dim=1)

    def __call__(self, images: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, S, S)`` uint8 -> ``(B, 3, S, S)`` float32, cropped/flipped by ``params``
        (``(B, 5)`` from :meth:`sample`) if given, then normalised."""
        x = images.to(torch.float32).div_(255.0)
        if params is not None:
            if params.shape != (x.shape[0], 5):
                raise ValueError(f"params must be ({x.shape[0]}, 5), got {tuple(params.shape)}")
            p = params.to(device=x.device, dtype=torch.float32)
            zero = torch.zeros_like(p[:, 0])
            theta = torch.stack(
                [
                    torch.stack([p[:, 0] * p[:, 4], zero, p[:, 2]], dim=1),
                    torch.stack([zero, p[:, 1], p[:, 3]], dim=1),
                ],
                dim=1,
            )
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)
