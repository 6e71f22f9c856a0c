"""Find unreadable images: listed in a split file or base set but missing, truncated or corrupt.

Nothing downstream drops an image silently; this check lists every bad one by path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from .domainnet import load_index


def image_error(path: str) -> str | None:
    """Why the image at ``path`` cannot be decoded, or ``None`` if it decodes fully."""
    if not os.path.isfile(path):
        return "missing file"
    try:
        with Image.open(path) as image:
            image.load()  # decode every pixel: catches truncated files that verify() misses
    except Exception as error:  # PIL raises many types for corrupt data
        return f"{type(error).__name__}: {error}"
    return None


def _errors(paths: Sequence[str]) -> list[str | None]:
    return [image_error(p) for p in paths]


def find_bad_images(
    paths: Sequence[str], workers: int = 1, chunk: int = 512, progress: bool = True
) -> pd.DataFrame:
    """Decode every path; returns a DataFrame[path, error] of the bad ones, in input order."""
    from tqdm.auto import tqdm

    chunks = [list(paths[i : i + chunk]) for i in range(0, len(paths), chunk)]
    bar = tqdm(total=len(paths), desc="checking images", unit="img", disable=not progress)
    results: list[str | None] = []
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_errors, chunks):
                results.extend(part)
                bar.update(len(part))
    else:
        for part in map(_errors, chunks):
            results.extend(part)
            bar.update(len(part))
    bar.close()
    table = pd.DataFrame({"path": list(paths), "error": results})
    return table[table["error"].notna()].reset_index(drop=True)


def check_data_root(
    root: str | Path,
    domains: Iterable[str] | None = None,
    base_tsv: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Check every image of a DomainNet-format root (and its base set, if any).

    ``base_tsv=None`` checks ``<root>/base.tsv`` when it exists. Returns DataFrame[path, error]
    listing unreadable images; empty when all decode.
    """
    index = load_index(root, domains)
    paths = index["path"].tolist()
    base = Path(base_tsv) if base_tsv is not None else Path(root) / "base.tsv"
    if base_tsv is not None or base.is_file():
        from .mixtures import read_base_tsv

        paths += read_base_tsv(base, classes=index.attrs["classes"])["filepath"].tolist()
    return find_bad_images(paths, workers=workers, progress=progress)
