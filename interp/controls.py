"""Reference values beside every cross-domain similarity, and the excess over them.

A similarity between two domains (CKA of class means, circuit overlap, patching recovery)
only means something next to what it would be without learning and without the class in
common. The experiments compute the same analysis, by the same code path, for references
(:data:`REFERENCES`) and write them in the same tidy tables with a ``reference`` column
(``"none"`` = the measured value):

* ``"init"``: the run's epoch-0 (untrained) checkpoint, same images and settings;
* ``"class-shuffle"``: the same domain pair, but class ``c`` of domain A against class
  ``c' = pairing[c] != c`` of domain B, a seeded derangement of the class list
  (:func:`shuffle_pairing`), the chance level of class-specific sharing;
* ``"seed"``: the same analysis (same classes, domains, images) on a second seed's run of
  the same setup.

``controls.csv`` then has one row per (measure, site, domain pair, class subset, reference)
with ``excess = value - reference_value`` and a percentile bootstrap interval over classes
(classes resampled with replacement, value and reference recomputed on the same resample;
the conventions of :func:`interp.metrics.bootstrap_ci`: seeded, non-finite resamples counted,
never dropped). Everything here except :func:`check_reference_runs` is a pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.util.seeding import seeded_rng
from training.util.validate import check_choices, check_number

if TYPE_CHECKING:  # torch and pandas load on first use: the CLI imports this module for its flags
    import pandas as pd
    import torch

    from interp.metrics import Interval

#: Reference kinds (module docstring); ``"none"`` marks the measured value in tables.
REFERENCES: tuple[str, ...] = ("init", "class-shuffle", "seed")
DEFAULT_REFERENCES: tuple[str, ...] = ("init", "class-shuffle")
NONE = "none"
#: File name of the controls table in every analysis folder.
CONTROLS_FILE = "controls.csv"
#: Columns of every experiment's ``controls.csv``.
CONTROL_COLUMNS: tuple[str, ...] = (
    "measure", "site", "domain_a", "domain_b", "class_subset", "run", "setup", "test_domain",
    "seed", "reference", "value", "reference_value", "excess", "excess_low", "excess_high",
    "n_classes",
)
#: The columns that identify one compared quantity in ``controls.csv``.
CONTROL_KEYS: tuple[str, ...] = ("measure", "site", "domain_a", "domain_b", "class_subset")
RUN_COLUMNS: tuple[str, ...] = ("run", "setup", "test_domain", "seed")


# --------------------------------------------------------------------------- settings
def check_references(
    references: Sequence[str], seed_reference: str | Path | None, n_boot: int
) -> tuple[str, ...]:
    """Validate an experiment's reference settings (no file access); returns the references.

    ``"seed"`` needs ``seed_reference`` (CLI ``--seed-run``) and ``seed_reference`` is only
    accepted together with ``"seed"``.
    """
    references = tuple(dict.fromkeys(check_choices("references", list(references), REFERENCES)))
    if "seed" in references and seed_reference is None:
        raise ValueError("reference 'seed' needs the second seed's run directory: "
                         "seed_reference=<run dir> (CLI: --seed-run DIR)")
    if seed_reference is not None and "seed" not in references:
        raise ValueError(f"seed_reference={str(seed_reference)!r} is given but 'seed' is not among "
                         f"the references {list(references)}; add it (CLI: --references ...,seed)")
    check_number("n_boot", n_boot, low=1, integer=True)
    return references


def check_reference_runs(
    run_dir: str | Path, references: Sequence[str], seed_reference: str | Path | None
) -> None:
    """Before any work: ``"init"`` needs an ``epoch_0`` checkpoint of ``run_dir``, ``"seed"``
    a run directory with a checkpoint. Raises ``ValueError`` naming what is missing."""
    from training.checkpoints import list_checkpoints

    if "init" in references and Path(run_dir).is_dir():  # a missing run: the loader's error
        found = list_checkpoints(run_dir)
        if 0 not in found:
            raise ValueError(
                f"reference 'init' needs the run's epoch-0 (untrained) checkpoint, but {run_dir} has "
                f"checkpoints for epochs {sorted(found)}; drop 'init' from the references "
                "(CLI: --references class-shuffle)")
    if "seed" in references:
        other = Path(seed_reference)  # type: ignore[arg-type]
        if not other.is_dir() or not list_checkpoints(other):
            raise ValueError(f"seed reference run {str(other)!r} is not a run directory with checkpoints")
        if other.resolve() == Path(run_dir).resolve():
            raise ValueError(f"seed reference run {str(other)!r} is the analysed run itself")


def parse_references(text: str | None, seed_run: str | Path | None = None) -> tuple[str, ...]:
    """The CLI's ``--references`` (comma-separated, e.g. ``init,class-shuffle,seed``; ``none``
    or empty: no references). Not given (``None``): :data:`DEFAULT_REFERENCES`, plus ``seed``
    when ``--seed-run`` is given. Validated later by :func:`check_references`."""
    if text is None:
        return (*DEFAULT_REFERENCES, *(("seed",) if seed_run is not None else ()))
    names = [part.strip() for part in text.split(",") if part.strip()]
    return () if names == [NONE] else tuple(names)


def add_reference_arguments(parser: Any, n_boot: bool = True) -> None:
    """``--references``, ``--seed-run`` (and ``--n-boot``) of the analysis commands."""
    parser.add_argument("--references", default=None, metavar="LIST",
                        help="references computed beside the values, comma-separated from "
                        f"{','.join(REFERENCES)} (default: init,class-shuffle, plus seed with "
                        "--seed-run; 'none' for none); tables get a 'reference' column and "
                        "controls.csv the excess over each with a bootstrap interval over classes")
    parser.add_argument("--seed-run", default=None, metavar="DIR",
                        help="a second seed's run of the same setup: the 'seed' reference")
    if n_boot:
        parser.add_argument("--n-boot", type=int, default=1000,
                            help="bootstrap resamples of the excess intervals (default: 1000)")


# --------------------------------------------------------------------------- class shuffle
def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn permutation of ``range(n)`` without fixed points, ``(n,)`` int.

    Rejection sampling (about e draws on average); ``n >= 2``.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def shuffle_pairing(classes: Sequence[Hashable], seed: int, *keys: str | int) -> dict[Hashable, Hashable]:
    """``{c: c'}``: class ``c`` of domain A is compared with class ``c' != c`` of domain B.

    A derangement of ``classes`` (in the given order) drawn from
    ``seeded_rng(seed, "class-shuffle", *keys)``: the same for every model analysed with the
    same class list, seed and keys (e.g. the class subset's name).
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate classes in {classes}")
    perm = derangement(len(classes), seeded_rng(int(seed), "class-shuffle", *keys))
    return {c: classes[int(j)] for c, j in zip(classes, perm, strict=True)}


def shuffled_labels(labels: Sequence[Any] | np.ndarray, pairing: Mapping[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Relabel domain B's rows so that ``pairing`` applies: a row of class ``pairing[c]`` gets
    label ``c``; rows of classes outside ``pairing``'s values are dropped.

    ``labels`` ``(N,)`` -> ``(new_labels (M,), keep (N,) bool)`` with ``M = keep.sum()``.
    """
    labels = np.asarray(labels)
    inverse = {b: a for a, b in pairing.items()}
    keep = np.array([lab in inverse for lab in labels.tolist()], dtype=bool)
    new = np.array([inverse[lab] for lab in labels[keep].tolist()], dtype=labels.dtype)
    return new, keep


# --------------------------------------------------------------------------- bootstrap
def bootstrap_excess(
    value_fn: Callable[[np.ndarray], np.ndarray],
    reference_fn: Callable[[np.ndarray], np.ndarray],
    n: int,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of ``value - reference`` over ``n`` classes.

    ``value_fn``/``reference_fn``: class indices ``(R, n)`` int (each row a resample, drawn with
    replacement; the first call gets the identity ``(1, n)``) -> the statistic per row ``(R,)``.
    Both see the same resamples. Conventions of :func:`interp.metrics.bootstrap_ci` (seeded;
    non-finite resamples widen the interval or make it NaN, never dropped).
    """
    from interp.metrics import bootstrap_ci

    def excess(index: np.ndarray) -> np.ndarray:
        rows = index.astype(np.int64)
        return np.asarray(value_fn(rows), dtype=np.float64) - np.asarray(reference_fn(rows), dtype=np.float64)

    return bootstrap_ci(np.arange(n, dtype=np.float64), statistic=excess, n_boot=n_boot,
                        level=level, seed=seed)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nanmean(values, axis=-1)


def ratio_of_sums(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``sum(numerator) / sum(denominator)`` over the last axis (``(R, n) -> (R,)``): the ratio of
    mean differences of per-class sums, e.g. patching recovery from per-class sums of
    ``patched - receiver`` and ``target - receiver``. Non-finite where the sum is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(numerator, axis=-1) / np.sum(denominator, axis=-1)


def excess_table(
    values: pd.DataFrame,
    references: pd.DataFrame,
    *,
    by: Sequence[str],
    unit: str = "class_name",
    columns: Sequence[str] = ("value",),
    statistic: Callable[..., np.ndarray] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Value, reference value and their excess with a bootstrap interval over ``unit`` rows.

    ``values``: one row per (``by`` ..., ``unit``) with ``columns``; ``references``: the same
    plus a ``reference`` column. Per ``by`` key and reference, the units both tables have are
    aligned; ``statistic`` maps the ``columns`` arrays, each ``(R, n)``, to ``(R,)`` (default:
    the NaN-ignoring mean of the single column; :func:`ratio_of_sums` for two). Returns
    ``by`` ..., ``reference``, ``value``, ``reference_value``, ``excess``, ``excess_low``,
    ``excess_high``, ``n_classes`` (aligned units).
    """
    import pandas as pd

    from interp.metrics import bootstrap_ci

    by, columns = list(by), list(columns)
    if statistic is None:
        if len(columns) != 1:
            raise ValueError(f"give a statistic for several columns {columns}")
        statistic = _nanmean_rows
    out_columns = [*by, "reference", "value", "reference_value", "excess", "excess_low",
                   "excess_high", "n_classes"]
    if values.empty or references.empty:
        return pd.DataFrame(columns=out_columns)
    refs = {key: part for key, part in references.groupby([*by, "reference"], sort=False, dropna=False)}
    rows = []
    k = len(columns)
    for key, part in values.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        own = part.drop_duplicates(unit).set_index(unit)[columns]
        for reference in dict.fromkeys(references["reference"]):
            other = refs.get((*key, reference))
            if other is None:
                continue
            other = other.drop_duplicates(unit).set_index(unit)[columns]
            shared = [u for u in own.index if u in other.index]
            if not shared:
                continue
            data = [own.loc[shared, c].to_numpy(np.float64, copy=True) for c in columns]
            data += [other.loc[shared, c].to_numpy(np.float64, copy=True) for c in columns]

            def excess(*arrays: np.ndarray) -> np.ndarray:
                return (np.asarray(statistic(*arrays[:k]), dtype=np.float64)
                        - np.asarray(statistic(*arrays[k:]), dtype=np.float64))

            interval = bootstrap_ci(*data, statistic=excess, n_boot=n_boot, level=level, seed=seed)
            value = float(np.asarray(statistic(*(d[None] for d in data[:k]))).reshape(-1)[0])
            ref = float(np.asarray(statistic(*(d[None] for d in data[k:]))).reshape(-1)[0])
            rows.append({**dict(zip(by, key, strict=True)), "reference": reference, "value": value,
                         "reference_value": ref, "excess": value - ref, "excess_low": interval.low,
                         "excess_high": interval.high, "n_classes": len(shared)})
    return pd.DataFrame(rows, columns=out_columns)


def controls_frame(table: pd.DataFrame, meta: Mapping[str, Any]) -> pd.DataFrame:
    """Order an excess table as ``controls.csv`` (:data:`CONTROL_COLUMNS`), the run columns
    (``run``, ``setup``, ``test_domain``, ``seed``) from ``meta`` (the analysed run's, also for
    rows whose reference was computed on another checkpoint or run)."""
    import pandas as pd

    out = pd.DataFrame(table).copy()
    for column in RUN_COLUMNS:
        out[column] = meta.get(column)
    for column in CONTROL_COLUMNS:
        if column not in out.columns:
            out[column] = None
    return out[list(CONTROL_COLUMNS)].reset_index(drop=True)


# --------------------------------------------------------------------------- resampled CKA
def _batched_hsic(k: torch.Tensor, l: torch.Tensor, unbiased: bool) -> torch.Tensor:  # noqa: E741
    """HSIC of Gram matrices ``(R, n, n)`` -> ``(R,)``, the formulas of
    :func:`interp.similarity.cka.hsic` over a batch."""
    n = k.shape[-1]
    inner = (k * l).sum(dim=(1, 2))
    k_rows, l_rows = k.sum(dim=2), l.sum(dim=2)
    if not unbiased:
        value = inner - 2.0 / n * (k_rows * l_rows).sum(1) + k_rows.sum(1) * l_rows.sum(1) / n**2
        return value / (n - 1) ** 2
    k_diag, l_diag = k.diagonal(dim1=1, dim2=2), l.diagonal(dim1=1, dim2=2)
    trace = inner - (k_diag * l_diag).sum(1)
    k_rows, l_rows = k_rows - k_diag, l_rows - l_diag
    ones_term = k_rows.sum(1) * l_rows.sum(1) / ((n - 1) * (n - 2))
    cross_term = 2.0 / (n - 2) * (k_rows * l_rows).sum(1)
    return (trace + ones_term - cross_term) / (n * (n - 3))


def _resampled_grams(x: torch.Tensor, index: torch.Tensor, kernel: str, sigma: float | None) -> torch.Tensor:
    """Gram matrices of ``x[index[r]]`` for every resample: ``(R, n, n)``."""
    import torch

    from interp.similarity.cka import gram_linear, squared_distances

    rows, cols = index[:, :, None], index[:, None, :]
    if kernel == "linear":
        return gram_linear(x)[rows, cols]
    d2 = squared_distances(x)[rows, cols]
    if sigma is None:  # the median rule per resample: lower median of the non-zero distances
        n = index.shape[1]
        upper = torch.triu_indices(n, n, offset=1)
        values = d2[:, upper[0], upper[1]]
        values = torch.where(values > 0, values, torch.full_like(values, float("nan")))
        median = torch.nanmedian(values, dim=1).values
        scale = 2.0 * median
    else:
        scale = torch.full((index.shape[0],), 2.0 * sigma * sigma, dtype=d2.dtype)
    return torch.exp(-d2 / scale[:, None, None])


def resampled_cka(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    index: np.ndarray,
    kernel: str = "linear",
    unbiased: bool = True,
    sigma: float | None = None,
    chunk: int = 4_000_000,
) -> np.ndarray:
    """CKA of ``x[index[r]]`` and ``y[index[r]]`` for every resample ``r``.

    ``x`` ``(n, p)``, ``y`` ``(n, q)`` (rows aligned, e.g. class means), ``index`` ``(R, n)``
    int rows into them (with repeats). Equals :func:`interp.similarity.cka.cka` on each
    resample (RBF: bandwidth by the median rule of each resample when ``sigma`` is None);
    NaN where a self-HSIC is not positive. Batched over ``R`` in chunks of about ``chunk``
    Gram entries. Returns ``(R,)`` float64.
    """
    import torch

    from interp.similarity.cka import as_matrix

    x, y = as_matrix(x, "x"), as_matrix(y, "y")
    index_t = torch.as_tensor(np.asarray(index), dtype=torch.long)
    if index_t.ndim != 2:
        raise ValueError(f"index must be (R, n), got shape {tuple(index_t.shape)}")
    n = index_t.shape[1]
    step = max(1, chunk // max(1, n * n))
    out = []
    for start in range(0, index_t.shape[0], step):
        part = index_t[start:start + step]
        k = _resampled_grams(x, part, kernel, sigma)
        l = _resampled_grams(y, part, kernel, sigma)  # noqa: E741
        xy, xx, yy = (_batched_hsic(a, b, unbiased) for a, b in ((k, l), (k, k), (l, l)))
        denominator = xx * yy
        ratio = torch.where(denominator > 0, xy / denominator.clamp_min(1e-300).sqrt(),
                            torch.full_like(xy, float("nan")))
        out.append(ratio)
    return torch.cat(out).cpu().numpy().astype(np.float64)
