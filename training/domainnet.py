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
from .util.validate import check_choices

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
    """Parse one split file into columns ``rel`` (relative path), ``label`` (int), ``domain``,
    ``class_name`` and ``line`` (its 1-based line number), one row per non-blank line (an empty file gives an empty table).

    Every error names the file and the 1-based line number: a line that is not
    ``<domain>/<class>/<file> <label>`` (a missing label, a third field, a path without domain
    and class folders) and a line repeating an earlier one (which would count an image twice).
    """
    expected = "expected '<domain>/<class>/<file> <label>'"
    rels: list[str] = []
    labels: list[int] = []
    numbers: list[int] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            rel = fields[0]
            parts = rel.split("/", 2)
            if len(fields) != 2 or not fields[1].isdigit() or len(parts) < 3 or not all(parts):
                raise ValueError(f"{path}: malformed line {number}: {line.strip()!r}; {expected}")
            if rel in first_line:
                raise ValueError(
                    f"{path}: line {number} repeats the image of line {first_line[rel]}: "
                    f"{rel!r}; every image may be listed once"
                )
            first_line[rel] = number
            rels.append(rel)
            labels.append(int(fields[1]))
            numbers.append(number)
    parts = [rel.split("/", 2) for rel in rels]
    return pd.DataFrame({
        "rel": pd.Series(rels, dtype=object),
        "label": np.asarray(labels, dtype=np.int64),
        "domain": pd.Series([p[0] for p in parts], dtype=object),
        "class_name": pd.Series([p[1] for p in parts], dtype=object),
        "line": np.asarray(numbers, dtype=np.int64),
    })


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
    check_choices("splits", splits, SPLITS)
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
                    f"{path}: line {frame['line'].iloc[i]} names domain "
                    f"{frame['domain'].iloc[i]!r}, "
                    f"expected {domain!r}"
                )
            expected = frame["class_name"].map(label_of).to_numpy()
            wrong = expected != frame["label"].to_numpy()
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                raise ValueError(
                    f"{path}: line {frame['line'].iloc[i]} gives label "
                    f"{frame['label'].iloc[i]} for class "
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
