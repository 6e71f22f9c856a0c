"""A mixture on disk, read for training: the TSV rows and the manifest beside it.

A mixture is a TSV readable by OpenCLIP's own trainer, header ``filepath  title  domain
label`` (absolute image paths; ``domain`` one of the six or ``base``; ``label`` the class index
in the data root's sorted class list, -1 for base-only classes), plus ``<same stem>.json``,
the manifest (``name``, ``spec`` with ``setup``, ``test_domain``, ``seed``, ``heldout``,
``data_root``; ``counts``; ``content_hash``). Only ``filepath`` and ``title`` are required
here, so any OpenCLIP-style TSV trains; the supervised baseline also needs ``label``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("filepath", "title")


@dataclass
class Mixture:
    """A mixture TSV loaded into memory.

    Attributes:
        tsv: absolute path of the TSV.
        rows: one row per image-text pair, columns ``filepath``, ``title`` and, if present in
            the TSV, ``domain`` and ``label`` (int).
        manifest: the JSON manifest beside the TSV (``{"name": <stem>}`` if there is none).
        sha256: hash of the TSV's bytes (a resumed run checks it did not change).
    """

    tsv: Path
    rows: pd.DataFrame
    manifest: dict[str, Any]
    sha256: str

    @property
    def name(self) -> str:
        """The mixture's name (manifest ``name``, else the TSV's stem)."""
        return str(self.manifest.get("name") or self.tsv.stem)

    @property
    def spec(self) -> dict[str, Any]:
        """The manifest's ``spec`` (``{}`` if absent)."""
        spec = self.manifest.get("spec")
        return dict(spec) if isinstance(spec, dict) else {}


def manifest_path(tsv: str | Path) -> Path:
    """``<dir>/<stem>.json`` beside the TSV."""
    return Path(tsv).with_suffix(".json")


def read_mixture(tsv: str | Path) -> Mixture:
    """Read a mixture TSV and its manifest, validating both.

    Raises ``FileNotFoundError`` if the TSV is missing and ``ValueError`` if it is empty,
    lacks a required column, has empty paths or non-integer labels, or if the manifest is not
    valid JSON.
    """
    tsv = Path(tsv).expanduser().resolve()
    if not tsv.is_file():
        raise FileNotFoundError(f"mixture TSV {str(tsv)!r} does not exist")
    raw = tsv.read_bytes()
    if not raw.strip():
        raise ValueError(f"mixture {str(tsv)!r} is empty")
    try:
        rows = pd.read_csv(
            tsv, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
        )
    except pd.errors.ParserError as error:
        raise ValueError(f"mixture {str(tsv)!r} is not a valid TSV: {error}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(
            f"mixture {str(tsv)!r} lacks column(s) {missing}; header is {list(rows.columns)}, "
            f"expected {list(REQUIRED_COLUMNS)} (plus optional 'domain', 'label')"
        )
    if len(rows) == 0:
        raise ValueError(f"mixture {str(tsv)!r} has a header but no rows")
    empty = rows["filepath"].str.strip() == ""
    if empty.any():
        raise ValueError(f"mixture {str(tsv)!r}: empty filepath on data line {int(empty.idxmax()) + 1}")
    if "label" in rows.columns:
        ok = rows["label"].str.fullmatch(r"-?\d+")
        if not ok.all():
            i = int((~ok).idxmax())
            raise ValueError(
                f"mixture {str(tsv)!r}: label {rows['label'].iloc[i]!r} on data line {i + 1} "
                "is not an integer"
            )
        rows["label"] = rows["label"].astype("int64")
    manifest: dict[str, Any] = {"name": tsv.stem}
    mpath = manifest_path(tsv)
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"mixture manifest {mpath} is not valid JSON: {error}") from None
        if not isinstance(manifest, dict):
            raise ValueError(f"mixture manifest {mpath} must hold a JSON object")
    return Mixture(tsv=tsv, rows=rows, manifest=manifest, sha256=hashlib.sha256(raw).hexdigest())
