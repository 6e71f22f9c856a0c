"""Reader for the DomainNet on-disk layout, real or generated.

Layout: ``<root>/<domain>/<class>/<file>`` and ``<root>/<domain>_{train,test}.txt`` whose lines
are ``<domain>/<class>/<file> <label>``, with label = index of the class in the sorted list of
all class folders. Real DomainNet works as downloaded, including its quirks (class folders
with underscores, painting's test split lacking a class): the class list is the union over
every split file under the root, never one domain's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .domains import DOMAINS, PAPER_HELDOUT_CLASSES, check_domains

SPLITS: tuple[str, ...] = ("train", "test")
INDEX_COLUMNS: tuple[str, ...] = ("path", "domain", "class_name", "label", "split")
HELDOUT_FILE = "heldout_classes.txt"


def split_file(root: str | Path, domain: str, split: str) -> Path:
    """Path of the split file ``<root>/<domain>_<split>.txt``."""
    return Path(root) / f"{domain}_{split}.txt"


def available_domains(root: str | Path) -> tuple[str, ...]:
    """Domains (in canonical order) that have at least one split file under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {str(root)!r} is not a directory")
    found = tuple(d for d in DOMAINS if any(split_file(root, d, s).is_file() for s in SPLITS))
    if not found:
        expected = ", ".join(f"{d}_{{train,test}}.txt" for d in DOMAINS)
        raise FileNotFoundError(
            f"{str(root)!r} is not DomainNet-shaped: no split files; expected some of {expected}"
        )
    return found


def _read_split_lines(path: Path) -> pd.DataFrame:
    """Parse one split file into columns ``rel`` (relative path) and ``label`` (int)."""
    frame = pd.read_csv(
        path, sep=" ", header=None, names=["rel", "label"], dtype={"rel": str, "label": str},
        keep_default_na=False, skip_blank_lines=True, engine="c",
    )
    parts = frame["rel"].str.split("/", n=2, expand=True)
    bad = frame["label"].eq("") | ~frame["label"].str.fullmatch(r"\d+")
    if parts.shape[1] < 3:
        bad |= True
    else:
        bad |= parts[2].isna() | parts[1].isna() | parts[0].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raw = f"{frame['rel'].iloc[i]} {frame['label'].iloc[i]}".strip()
        raise ValueError(
            f"{path}: malformed line {i + 1}: {raw!r}; expected '<domain>/<class>/<file> <label>'"
        )
    frame["domain"] = parts[0]
    frame["class_name"] = parts[1]
    frame["label"] = frame["label"].astype(np.int64)
    return frame


def class_names(root: str | Path) -> tuple[str, ...]:
    """Sorted class folder names: the union over every split file under ``root``."""
    names: set[str] = set()
    for domain in available_domains(root):
        for split in SPLITS:
            path = split_file(root, domain, split)
            if path.is_file():
                names.update(_read_split_lines(path)["class_name"].unique())
    return tuple(sorted(names))


def load_index(
    root: str | Path,
    domains: Iterable[str] | None = None,
    splits: Iterable[str] = SPLITS,
    classes: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read split files into one table.

    Returns a DataFrame with one row per image and columns ``path`` (absolute, str),
    ``domain``, ``class_name`` (folder name), ``label`` (index in :func:`class_names`) and
    ``split``, in split-file order; ``index.attrs["classes"]`` holds the sorted class list of
    the whole root. ``domains=None`` reads every domain present; a requested
    domain or split without a split file raises ``FileNotFoundError``. Labels are checked
    against the sorted class list, so a shuffled or truncated split file is caught here.
    """
    root = Path(root).resolve()
    present = available_domains(root)
    domains = present if domains is None else check_domains(domains)
    splits = tuple(splits)
    bad_splits = [s for s in splits if s not in SPLITS]
    if bad_splits:
        raise ValueError(f"unknown split(s) {bad_splits}; expected some of {list(SPLITS)}")
    frames = {}
    for domain in present:
        for split in SPLITS:
            path = split_file(root, domain, split)
            if path.is_file():
                frame = _read_split_lines(path)
                frame["split"] = split
                frames[(domain, split)] = (path, frame)
    all_classes = sorted(set().union(*(f["class_name"].unique() for _, f in frames.values())))
    label_of = {name: i for i, name in enumerate(all_classes)}
    wanted = None
    if classes is not None:
        wanted = set(classes)
        unknown = sorted(wanted - set(all_classes))
        if unknown:
            raise ValueError(f"unknown class(es) {unknown} under {str(root)!r}")
    out = []
    for domain in domains:
        for split in splits:
            if (domain, split) not in frames:
                raise FileNotFoundError(
                    f"no split file {split_file(root, domain, split)}; domains with split "
                    f"files: {list(present)}"
                )
            path, frame = frames[(domain, split)]
            wrong_domain = frame["domain"] != domain
            if wrong_domain.any():
                i = int(np.flatnonzero(wrong_domain.to_numpy())[0])
                raise ValueError(
                    f"{path}: line {i + 1} names domain {frame['domain'].iloc[i]!r}, "
                    f"expected {domain!r}"
                )
            expected = frame["class_name"].map(label_of).to_numpy()
            wrong = expected != frame["label"].to_numpy()
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                raise ValueError(
                    f"{path}: line {i + 1} gives label {frame['label'].iloc[i]} for class "
                    f"{frame['class_name'].iloc[i]!r}, expected {expected[i]} (its index in "
                    "the sorted class list)"
                )
            if wanted is not None:
                frame = frame[frame["class_name"].isin(wanted)]
            frame = frame.assign(path=str(root) + "/" + frame["rel"])
            out.append(frame[list(INDEX_COLUMNS)])
    index = pd.concat(out, ignore_index=True)
    index.attrs["classes"] = tuple(all_classes)
    return index


def heldout_classes(root: str | Path, classes: Iterable[str] | None = None) -> tuple[str, ...]:
    """The root's declared held-out classes (C2).

    ``<root>/heldout_classes.txt`` (one class folder name per line, written by the generator)
    if present; otherwise the paper's 15 classes, for real DomainNet. Every name must be a class
    of the root (``classes``, if the caller already has :func:`class_names`).
    """
    root = Path(root)
    path = root / HELDOUT_FILE
    if path.is_file():
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        source = str(path)
    else:
        names, source = PAPER_HELDOUT_CLASSES, "the paper's held-out classes"
    known = set(class_names(root) if classes is None else classes)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"held-out classes {unknown} from {source} are not classes of {root}")
    return tuple(sorted(names))
