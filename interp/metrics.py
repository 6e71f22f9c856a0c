"""Metrics on zero-shot logits, normalised recovery and seeded bootstrap intervals.

Everything here is a pure function. A *metric* maps the model's output logits ``(N, C)`` and
the true class of each row ``(N,)`` to one value per row ``(N,)``:

* ``"logit"``: the true class's logit (with a cosine head, the paper's circuit metric: cosine
  between image and class text embedding, times the head's logit scale);
* ``"logit_diff"``: true-class logit minus the largest other logit (the runner-up), positive
  iff the row is classified correctly;
* ``"prob"``: softmax probability of the true class (depends on the head's logit scale: with
  plain cosines, scale 1, probabilities are close to uniform; use CLIP's learned scale).

A metric may also be any callable with that signature. Patching and ablation compare a
metric under an intervention with two reference runs; :func:`normalized_recovery` gives
``(patched - corrupted) / (clean - corrupted)`` per example, :func:`recovery_of_means` the
ratio of mean differences (the aggregate that stays defined when single gaps are tiny), and
:func:`faithfulness` is the same ratio under its circuit name
``(F(C) - F(empty)) / (F(M) - F(empty))``. :func:`bootstrap_ci` resamples examples with a
seeded generator, so every interval is reproducible; resamples whose statistic is not finite
are counted, never dropped (NaN bounds above :data:`MAX_NONFINITE` of them).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from training.util.seeding import seeded_rng
from training.util.validate import check_choice, check_number

#: A metric: logits ``(N, C)``, true labels ``(N,)`` int -> one value per row ``(N,)``.
MetricFn = Callable[[Tensor, Tensor], Tensor]

#: Built-in metric names (see the module docstring).
METRIC_NAMES: tuple[str, ...] = ("logit", "logit_diff", "prob")


def _check_logits_labels(logits: Tensor, labels: Tensor) -> Tensor:
    """Validate shapes and label range; return labels as a long tensor on the logits' device."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    labels = torch.as_tensor(labels, device=logits.device)
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be (N,) = ({logits.shape[0]},) to match logits {tuple(logits.shape)}, "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    n_classes = logits.shape[1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)].unique().tolist()
        raise ValueError(f"label(s) {bad} out of range: the logits have classes 0..{n_classes - 1}")
    return labels.long()


def true_class_logit(logits: Tensor, labels: Tensor) -> Tensor:
    """Logit of each row's true class: ``(N, C), (N,) -> (N,)``."""
    labels = _check_logits_labels(logits, labels)
    return logits.gather(1, labels[:, None])[:, 0]


def logit_diff(logits: Tensor, labels: Tensor) -> Tensor:
    """True-class logit minus the largest other logit: ``(N, C), (N,) -> (N,)``.

    With a single class there is no runner-up and the value is the true logit itself.
    """
    labels = _check_logits_labels(logits, labels)
    true = logits.gather(1, labels[:, None])[:, 0]
    if logits.shape[1] == 1:
        return true
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(dim=1).values


def true_class_prob(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax probability of each row's true class: ``(N, C), (N,) -> (N,)``."""
    labels = _check_logits_labels(logits, labels)
    return logits.float().softmax(dim=1).gather(1, labels[:, None])[:, 0]


def get_metric(metric: str | MetricFn) -> MetricFn:
    """The metric function for a name in :data:`METRIC_NAMES` (callables pass through)."""
    if callable(metric):
        return metric
    functions: dict[str, MetricFn] = {
        "logit": true_class_logit,
        "logit_diff": logit_diff,
        "prob": true_class_prob,
    }
    check_choice("metric (or a callable)", metric, METRIC_NAMES)
    return functions[metric]


def metric_name(metric: str | MetricFn) -> str:
    """A name for tables: the built-in name, or the callable's ``__name__``."""
    if isinstance(metric, str):
        get_metric(metric)
        return metric
    return str(getattr(metric, "__name__", type(metric).__name__))


def evaluate_metric(metric: str | MetricFn, logits: Tensor, labels: Tensor) -> Tensor:
    """Apply ``metric`` and check that it returns one value per row: ``-> (N,)``, detached,
    in the logits' floating dtype (float32 for non-float metric values)."""
    values = torch.as_tensor(get_metric(metric)(logits, labels))
    if values.shape != (logits.shape[0],):
        raise ValueError(
            f"metric {metric_name(metric)!r} must return one value per row, shape "
            f"({logits.shape[0]},), got {tuple(values.shape)}"
        )
    values = values.detach()
    return values if values.is_floating_point() else values.float()


# ------------------------------------------------------------------------- recovery


def normalized_recovery(
    patched: Tensor | np.ndarray,
    corrupted: Tensor | np.ndarray,
    clean: Tensor | np.ndarray,
    min_gap: float = 1e-6,
) -> np.ndarray:
    """Per-example ``(patched - corrupted) / (clean - corrupted)``, float64.

    Shapes broadcast (e.g. ``patched (U, N)`` against ``corrupted``/``clean`` ``(N,)``). 0 = the
    intervention did nothing, 1 = it restored the clean metric. Examples whose gap
    ``|clean - corrupted|`` is below ``min_gap`` get NaN (the ratio is undefined there).
    """
    p, c, k = (np.asarray(torch.as_tensor(a).detach().cpu(), dtype=np.float64)
               for a in (patched, corrupted, clean))
    gap = k - c
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (p - c) / gap
    return np.where(np.abs(gap) < min_gap, np.nan, out)


def recovery_of_means(
    patched: Tensor | np.ndarray, corrupted: Tensor | np.ndarray, clean: Tensor | np.ndarray
) -> float:
    """``mean(patched - corrupted) / mean(clean - corrupted)`` over examples ``(N,)``.

    NaN if the mean gap is zero. Averaging before dividing keeps the aggregate defined when
    some examples' gaps are tiny (their per-example ratio explodes).
    """
    p, c, k = (np.asarray(torch.as_tensor(a).detach().cpu(), dtype=np.float64)
               for a in (patched, corrupted, clean))
    gap = float(np.mean(k - c))
    return float(np.mean(p - c) / gap) if gap != 0 else float("nan")


def faithfulness(
    circuit: Tensor | np.ndarray, empty: Tensor | np.ndarray, full: Tensor | np.ndarray
) -> float:
    """Circuit faithfulness ``(F(C) - F(empty)) / (F(M) - F(empty))`` from per-example metrics.

    ``circuit``: metric with everything outside the circuit ablated; ``empty``: with
    everything ablated; ``full``: the unablated model; each ``(N,)``, averaged before dividing
    (as :func:`recovery_of_means`).
    """
    return recovery_of_means(circuit, empty, full)


# ------------------------------------------------------------------------- bootstrap


#: Largest fraction of non-finite bootstrap resamples for which :func:`bootstrap_ci` still
#: reports bounds (see there).
MAX_NONFINITE: float = 0.01


class _Interval(NamedTuple):
    estimate: float
    low: float
    high: float


class Interval(_Interval):
    """A point estimate with a bootstrap confidence interval: ``(estimate, low, high)``, plus
    ``nonfinite``, the fraction of resamples whose statistic was NaN or infinite (not part of
    the tuple, so ``est, low, high = interval`` keeps working)."""

    nonfinite: float

    def __new__(cls, estimate: float, low: float, high: float, nonfinite: float = 0.0) -> Interval:
        self = super().__new__(cls, estimate, low, high)
        self.nonfinite = float(nonfinite)
        return self


def _ratio_of_mean_diffs(p: np.ndarray, c: np.ndarray, k: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nanmean(p - c, axis=-1) / np.nanmean(k - c, axis=-1)


def _nanmean(values: np.ndarray) -> np.ndarray:
    return np.nanmean(values, axis=-1)


def bootstrap_ci(
    *arrays: Tensor | np.ndarray | Sequence[float],
    statistic: Callable[..., np.ndarray] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    max_nonfinite: float = MAX_NONFINITE,
) -> Interval:
    """Percentile bootstrap over examples, resampling the rows of all ``arrays`` jointly.

    ``arrays``: each ``(N,)``. ``statistic``: maps arrays of shape ``(R, N)`` (``R`` resamples)
    to ``(R,)``; default the NaN-ignoring mean of the single array. Returns the statistic on
    the original data and the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of its
    resampled values. Deterministic for ``seed``.

    Non-finite resamples (e.g. a ratio whose resampled denominator is 0, near a zero gap) are
    not dropped, which would narrow the interval exactly where it is least certain: their
    fraction is ``Interval.nonfinite``; above ``max_nonfinite`` both bounds are NaN; at or
    below, they count as lying beyond both ends (``-inf`` for the low quantile, ``+inf`` for
    the high one), so they can only widen the interval.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array of per-example values")
    data = [np.asarray(torch.as_tensor(a).detach().cpu(), dtype=np.float64) for a in arrays]
    n = data[0].shape[0] if data[0].ndim else 0
    bad = [tuple(d.shape) for d in data if d.ndim != 1 or d.shape[0] != n]
    if bad:
        raise ValueError(f"bootstrap_ci needs 1-D arrays of equal length, got shapes "
                         f"{[tuple(d.shape) for d in data]}")
    if n == 0:
        raise ValueError("bootstrap_ci got no examples")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    check_number("max_nonfinite", max_nonfinite, low=0, high=1)
    if statistic is None:
        if len(data) != 1:
            raise ValueError("give a statistic when bootstrapping several arrays jointly")
        statistic = _nanmean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN resamples -> NaN
        estimate = float(np.asarray(statistic(*(d[None, :] for d in data))).reshape(-1)[0])
        rng = seeded_rng(seed)  # = np.random.default_rng(seed)
        rows = rng.integers(0, n, size=(n_boot, n))
        stats = np.asarray(statistic(*(d[rows] for d in data)), dtype=np.float64).reshape(-1)
        finite = np.isfinite(stats)
        nonfinite = 1.0 - float(finite.mean())
        if nonfinite > max_nonfinite or not finite.any():
            return Interval(estimate, float("nan"), float("nan"), nonfinite)
        low = np.quantile(np.where(finite, stats, -np.inf), (1 - level) / 2)
        high = np.quantile(np.where(finite, stats, np.inf), (1 + level) / 2)
    # a quantile that lands on (or interpolates with) a non-finite resample is no bound
    low, high = (float(b) if np.isfinite(b) else float("nan") for b in (low, high))
    return Interval(estimate, low, high, nonfinite)


def bootstrap_recovery(
    patched: Tensor | np.ndarray,
    corrupted: Tensor | np.ndarray,
    clean: Tensor | np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    max_nonfinite: float = MAX_NONFINITE,
) -> Interval:
    """:func:`recovery_of_means` with a bootstrap interval (examples resampled jointly); a
    resample whose mean gap is 0 is non-finite (see :func:`bootstrap_ci`)."""
    return bootstrap_ci(
        patched, corrupted, clean, statistic=_ratio_of_mean_diffs, n_boot=n_boot, level=level,
        seed=seed, max_nonfinite=max_nonfinite,
    )
