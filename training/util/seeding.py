"""Seeded random generators: the one seeding scheme of the project.

A stream is named by a base seed plus any number of keys (strings, ints); the same name gives
the same numbers on every machine and in every process, and different names give independent
streams (``numpy.random.SeedSequence`` over the seed and a stable 32-bit code per key)::

    rng = seeded_rng(seed, "subsample", domain, cls)      # numpy Generator
    gen = torch_generator(seed, "patching", run_name)     # torch.Generator (CPU)
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

Key = str | int


def _entropy(seed: int, keys: tuple[Key, ...]) -> list[int]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {seed!r}")
    codes = [int(seed) & 0xFFFFFFFFFFFFFFFF]
    for key in keys:
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            codes.append(int(key) & 0xFFFFFFFF)
        else:
            codes.append(zlib.crc32(str(key).encode()))
    return codes


def seed_sequence(seed: int, *keys: Key) -> np.random.SeedSequence:
    """The ``SeedSequence`` of the stream named ``(seed, *keys)``."""
    return np.random.SeedSequence(_entropy(seed, keys))


def seeded_rng(seed: int, *keys: Key) -> np.random.Generator:
    """A numpy ``Generator`` for the stream named ``(seed, *keys)``."""
    return np.random.default_rng(seed_sequence(seed, *keys))


def derived_seed(seed: int, *keys: Key) -> int:
    """A 63-bit integer seed for the stream named ``(seed, *keys)`` (for APIs that take an int)."""
    return int(seed_sequence(seed, *keys).generate_state(1, np.uint64)[0] >> np.uint64(1))


def torch_generator(seed: int, *keys: Key, device: str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded for the stream named ``(seed, *keys)``
    (with no keys: seeded with ``seed`` itself, as ``torch.manual_seed(seed)`` would)."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) if not keys else derived_seed(seed, *keys))
    return generator
