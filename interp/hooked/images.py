"""Image files -> normalised model inputs, decoded on demand (bounded memory).

Decoding is ``training.imagecache.decode_image`` (shortest side resized bicubically, centre
crop: the pixels of OpenCLIP's eval transform and of the trainer's image cache), followed by
the model's mean/std normalisation; or, for a model that is not a run trained here, OpenCLIP's
own eval transform of that model (:class:`training.sources.Preprocess`: its size, resize mode,
interpolation, mean and std). :meth:`ImageFileDataset.identity` fingerprints the files (path,
size, mtime) and the preprocessing, for on-disk activation caches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from training.sources import Preprocess

#: OpenAI's CLIP normalisation, OpenCLIP's default.
DEFAULT_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
DEFAULT_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


class ImageFileDataset(Dataset):
    """Image files decoded one at a time to ``(3, S, S)`` float32 tensors, normalised.

    ``paths``: image files (any format Pillow reads); ``image_size``: ``S``; ``mean``/``std``:
    per-channel normalisation (OpenCLIP's default if omitted); ``preprocess``: decode and
    normalise by OpenCLIP's eval transform of a model instead (its size, mean and std replace
    the three above).
    """

    def __init__(
        self,
        paths: Sequence[str],
        image_size: int,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.preprocess = preprocess
        if preprocess is not None:
            image_size, mean, std = preprocess.image_size, preprocess.mean, preprocess.std
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def _decode(self, path: str):
        """``(3, S, S)`` uint8 pixels of one file."""
        from training.imagecache import decode_image

        if self.preprocess is not None:
            return self.preprocess.decode(path)
        return decode_image(path, self.image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        """The ``i``-th image, ``(3, S, S)`` float32, normalised."""
        try:
            pixels = self._decode(self.paths[i])
        except FileNotFoundError:
            raise FileNotFoundError(f"image file {self.paths[i]!r} does not exist") from None
        except Exception as error:  # Pillow raises many kinds for a bad file
            raise ValueError(
                f"cannot read image {self.paths[i]!r}: {type(error).__name__}: {error}"
            ) from None
        x = torch.from_numpy(pixels).to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def identity(self) -> str:
        """Hex digest of the files (path, byte size, mtime) and the preprocessing."""
        from training.imagecache import cache_key
        from training.util.files import digest

        how = None if self.preprocess is None else sorted(vars(self.preprocess).items())
        return digest(cache_key(self.paths, self.image_size), self.mean, self.std, len(self.paths),
                      *([] if how is None else [how]), length=64)
