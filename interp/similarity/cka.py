"""Centered kernel alignment (CKA): pure functions on ``(n, d)`` activation matrices.

Rows are samples (images, or class means), columns are features; two matrices compared by
CKA must have the same ``n`` with rows aligned (row ``i`` of ``x`` and ``y`` are the same image
or class), while their widths may differ. Everything is computed in float64.

* Kernels: linear ``K = X X^T`` and RBF ``K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2))`` with the
  paper's bandwidth rule ``sigma = sqrt(lower median of the non-zero squared distances)``
  (``torch.median``: of an even count, the lower middle value) unless ``sigma`` is given.
* HSIC: biased ``tr(K H L H) / (n - 1)^2`` (``H`` the centring matrix) or unbiased (Song et al.
  2012, needs ``n >= 4``), with ``K~``, ``L~`` the Gram matrices with zeroed diagonals::

      HSIC_1 = [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

* ``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``.
* Feature-space linear CKA (:func:`linear_cka_features`) never builds an ``n x n`` matrix. With
  centred features (HSIC_1 is invariant to shifting the features) and ``s_i = |x_i|^2``,
  ``t_i = |y_i|^2``: ``tr(K~L~) = |X'Y|_F^2 - s.t``, ``1'K~1 = -sum(s)``, ``K~1 = -s``, so::

      HSIC_1 = [|X'Y|_F^2 - s.t + sum(s) sum(t) / ((n-1)(n-2)) - 2 s.t / (n-2)] / (n(n-3))

  and the biased HSIC is ``|X'Y|_F^2 / (n-1)^2``: cost ``O(n d_x d_y)`` time, ``O(n d)`` memory.
* :func:`minibatch_cka` (Nguyen, Raghu & Kornblith 2021): HSIC averaged over minibatches, then
  the ratio; an estimator of the same population quantity for large ``n`` (unbiased HSIC
  recommended: the biased one's expectation depends on the batch size).

:class:`LinearStats` holds the per-matrix part of the feature-space form, so comparing one
matrix with many others (all domain pairs of a layer) centres each matrix once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from training.util.seeding import torch_generator
from training.util.validate import check_choice

Kernel = Literal["linear", "rbf"]
KERNELS: tuple[str, ...] = ("linear", "rbf")
#: Above this many rows the feature-space form never falls back to Gram matrices.
GRAM_ROWS_LIMIT = 4096


def as_matrix(x: Tensor | np.ndarray, name: str = "x") -> Tensor:
    """``x`` as a 2-D float64 CPU-or-device tensor ``(n, d)``; raises on other shapes/NaNs."""
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, features) matrix, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    # One cheap reduction; the exact elementwise check only if the sum is not finite.
    if not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def min_rows(unbiased: bool) -> int:
    """Fewest rows an HSIC estimate needs: 4 (unbiased) or 2 (biased)."""
    return 4 if unbiased else 2


def _check_rows(n: int, unbiased: bool, what: str = "rows") -> None:
    need = min_rows(unbiased)
    if n < need:
        kind = "unbiased HSIC (Song et al. 2012)" if unbiased else "HSIC"
        raise ValueError(f"{kind} needs at least {need} {what}, got {n}")


def _check_pair(x: Tensor | np.ndarray, y: Tensor | np.ndarray, unbiased: bool) -> tuple[Tensor, Tensor]:
    xt, yt = as_matrix(x, "x"), as_matrix(y, "y")
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"x and y must have the same number of rows (aligned samples), got "
            f"{xt.shape[0]} and {yt.shape[0]}"
        )
    _check_rows(xt.shape[0], unbiased)
    return xt, yt.to(xt.device)


def _check_kernel(kernel: str) -> None:
    check_choice("kernel", kernel, KERNELS)


# --------------------------------------------------------------------------- Gram matrices
def gram_linear(x: Tensor | np.ndarray) -> Tensor:
    """Linear Gram matrix ``X X^T``: ``(n, d)`` -> ``(n, n)``."""
    x = as_matrix(x)
    return x @ x.T


def squared_distances(x: Tensor | np.ndarray) -> Tensor:
    """Pairwise squared Euclidean distances ``(n, n)`` (zero diagonal, clamped at 0)."""
    x = as_matrix(x)
    sq = (x * x).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min_(0.0)
    d2.fill_diagonal_(0.0)
    return d2


def median_bandwidth(d2: Tensor) -> float:
    """``sqrt(lower median of the non-zero off-diagonal squared distances)`` of ``d2`` ``(n, n)``.

    The paper's rule (``torch.median``): of an even count, the lower of the two middle values,
    not their mean. Each pair counted once (the upper triangle; the full matrix has every
    value twice, which gives the same lower median).
    """
    n = d2.shape[0]
    rows, cols = torch.triu_indices(n, n, offset=1, device=d2.device)
    values = d2[rows, cols]
    values = values[values > 0]
    if values.numel() == 0:
        raise ValueError("RBF bandwidth undefined: all rows are identical (no non-zero distance)")
    return math.sqrt(float(torch.median(values)))


def gram_rbf(x: Tensor | np.ndarray, sigma: float | None = None) -> Tensor:
    """RBF Gram matrix ``exp(-d2 / (2 sigma^2))`` ``(n, n)``; ``sigma`` by the median rule if None."""
    d2 = squared_distances(x)
    if sigma is None:
        sigma = median_bandwidth(d2)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return torch.exp(d2 / (-2.0 * sigma * sigma))


def gram(x: Tensor | np.ndarray, kernel: Kernel = "linear", sigma: float | None = None) -> Tensor:
    """Gram matrix ``(n, n)`` of ``x`` ``(n, d)`` for ``kernel``."""
    _check_kernel(kernel)
    return gram_linear(x) if kernel == "linear" else gram_rbf(x, sigma)


def center_gram(k: Tensor) -> Tensor:
    """``H K H`` with ``H = I - 11'/n``: ``(n, n)`` -> ``(n, n)``."""
    k = k - k.mean(dim=0, keepdim=True)
    return k - k.mean(dim=1, keepdim=True)


# --------------------------------------------------------------------------- HSIC and CKA
def hsic(k: Tensor | np.ndarray, l: Tensor | np.ndarray, unbiased: bool = True) -> float:  # noqa: E741
    """HSIC of two ``(n, n)`` Gram matrices: biased ``tr(KHLH)/(n-1)^2`` or unbiased (Song)."""
    k, l = torch.as_tensor(k, dtype=torch.float64), torch.as_tensor(l, dtype=torch.float64)  # noqa: E741
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape != l.shape:
        raise ValueError(f"need two square Gram matrices of equal size, got {tuple(k.shape)} and {tuple(l.shape)}")
    n = k.shape[0]
    _check_rows(n, unbiased)
    l = l.to(k.device)  # noqa: E741
    inner = float(torch.dot(k.reshape(-1), l.reshape(-1)))  # <K, L> = tr(K L), no n x n temporary
    k_rows, l_rows = k.sum(dim=1), l.sum(dim=1)
    if not unbiased:  # tr(K H L H) = <K, L> - 2/n (K1).(L1) + (1'K1)(1'L1)/n^2
        value = inner - 2.0 / n * float(k_rows @ l_rows) + float(k_rows.sum()) * float(l_rows.sum()) / n**2
        return value / (n - 1) ** 2
    k_diag, l_diag = torch.diagonal(k), torch.diagonal(l)
    trace = inner - float(k_diag @ l_diag)  # tr(K~ L~)
    k_rows, l_rows = k_rows - k_diag, l_rows - l_diag  # K~ 1, L~ 1
    ones_term = float(k_rows.sum()) * float(l_rows.sum()) / ((n - 1) * (n - 2))
    cross_term = 2.0 / (n - 2) * float(k_rows @ l_rows)
    return (trace + ones_term - cross_term) / (n * (n - 3))


def cka_ratio(xy: float, xx: float, yy: float) -> float:
    """``xy / sqrt(xx * yy)`` from three HSIC values (NaN if ``xx * yy`` is not positive)."""
    denominator = xx * yy
    if not denominator > 0:
        return float("nan")
    return xy / math.sqrt(denominator)


def cka_from_grams(k: Tensor | np.ndarray, l: Tensor | np.ndarray, unbiased: bool = True) -> float:  # noqa: E741
    """CKA of two ``(n, n)`` Gram matrices (NaN if a self-HSIC is not positive)."""
    return cka_ratio(hsic(k, l, unbiased), hsic(k, k, unbiased), hsic(l, l, unbiased))


@dataclass(frozen=True)
class LinearStats:
    """Per-matrix part of feature-space linear CKA.

    ``xc``: centred features ``(n, d)`` float64; ``sq_norms``: ``|xc_i|^2`` ``(n,)``;
    ``self_hsic``: ``HSIC(K, K)``; ``unbiased``: which HSIC.
    """

    xc: Tensor
    sq_norms: Tensor
    self_hsic: float
    unbiased: bool

    @property
    def n(self) -> int:
        return int(self.xc.shape[0])


def _cross_sq(a: Tensor, b: Tensor) -> float:
    """``|A'B|_F^2`` for ``A (n, p)``, ``B (n, q)``, via ``A'B`` or the Gram matrices, whichever is cheaper."""
    n, p = a.shape
    q = b.shape[1]
    if n <= GRAM_ROWS_LIMIT and n * (p + q + 1) < p * q:
        return float(((a @ a.T) * (b @ b.T)).sum())
    return float(torch.linalg.matrix_norm(a.T @ b) ** 2)


def _linear_hsic(a: Tensor, b: Tensor, sa: Tensor, sb: Tensor, unbiased: bool) -> float:
    n = a.shape[0]
    cross = _cross_sq(a, b)
    if not unbiased:
        return cross / (n - 1) ** 2
    dot = float(sa @ sb)
    total = float(sa.sum()) * float(sb.sum()) / ((n - 1) * (n - 2))
    return (cross - dot + total - 2.0 * dot / (n - 2)) / (n * (n - 3))


def linear_stats(x: Tensor | np.ndarray, unbiased: bool = True) -> LinearStats:
    """Centre ``x`` ``(n, d)`` once and precompute its self-HSIC (feature-space form)."""
    x = as_matrix(x)
    _check_rows(x.shape[0], unbiased)
    xc = x - x.mean(dim=0, keepdim=True)
    sq = (xc * xc).sum(dim=1)
    return LinearStats(xc, sq, _linear_hsic(xc, xc, sq, sq, unbiased), unbiased)


def linear_hsic_stats(a: LinearStats, b: LinearStats) -> float:
    """HSIC between two prepared matrices with the same rows."""
    if a.n != b.n:
        raise ValueError(f"x and y must have the same number of rows, got {a.n} and {b.n}")
    if a.unbiased != b.unbiased:
        raise ValueError("both LinearStats must use the same HSIC (biased or unbiased)")
    return _linear_hsic(a.xc, b.xc.to(a.xc.device), a.sq_norms, b.sq_norms.to(a.xc.device), a.unbiased)


def linear_cka_stats(a: LinearStats, b: LinearStats) -> float:
    """Linear CKA between two prepared matrices (see :func:`linear_stats`)."""
    return cka_ratio(linear_hsic_stats(a, b), a.self_hsic, b.self_hsic)


def linear_cka_features(
    x: Tensor | np.ndarray, y: Tensor | np.ndarray, unbiased: bool = True
) -> float:
    """Linear CKA in feature space (no ``n x n`` matrix): ``x`` ``(n, p)``, ``y`` ``(n, q)``."""
    x, y = _check_pair(x, y, unbiased)
    return linear_cka_stats(linear_stats(x, unbiased), linear_stats(y, unbiased))


def cka(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    kernel: Kernel = "linear",
    unbiased: bool = True,
    sigma: float | None = None,
    method: Literal["auto", "gram", "features"] = "auto",
) -> float:
    """CKA between ``x`` ``(n, p)`` and ``y`` ``(n, q)`` (rows aligned).

    ``kernel``: ``"linear"`` or ``"rbf"`` (``sigma`` given, or per matrix by the median rule);
    ``unbiased``: Song et al.'s HSIC estimator (needs ``n >= 4``) or the biased one;
    ``method``: ``"gram"`` builds both ``n x n`` Gram matrices (the paper's way),
    ``"features"`` is the feature-space form (linear only), ``"auto"`` picks ``features`` for
    the linear kernel and ``gram`` for RBF.
    """
    _check_kernel(kernel)
    if method not in ("auto", "gram", "features"):
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'gram' or 'features'")
    if method == "features" and kernel != "linear":
        raise ValueError("the feature-space form exists for the linear kernel only")
    x, y = _check_pair(x, y, unbiased)
    if kernel == "linear" and method != "gram":
        return linear_cka_features(x, y, unbiased)
    return cka_from_grams(gram(x, kernel, sigma), gram(y, kernel, sigma), unbiased)


def minibatch_cka(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    batch_size: int,
    kernel: Kernel = "linear",
    unbiased: bool = True,
    sigma: float | None = None,
    seed: int = 0,
) -> float:
    """Minibatch CKA (Nguyen et al. 2021) of ``x`` ``(n, p)`` and ``y`` ``(n, q)``.

    Rows are shuffled with ``seed`` (the same permutation for ``x`` and ``y``) and split into
    ``n // batch_size`` minibatches (the remainder is dropped); HSIC(x,y), HSIC(x,x) and
    HSIC(y,y) are averaged over minibatches, then ``CKA = mean_xy / sqrt(mean_xx mean_yy)``.
    Memory is ``O(batch_size^2)`` (RBF) or ``O(batch_size d)`` (linear). For RBF without
    ``sigma`` the median rule is applied per minibatch.
    """
    _check_kernel(kernel)
    x, y = _check_pair(x, y, unbiased)
    _check_rows(batch_size, unbiased, what="rows per minibatch")
    n = x.shape[0]
    n_batches = n // batch_size
    if n_batches == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the number of rows {n}")
    generator = torch_generator(int(seed))
    order = torch.randperm(n, generator=generator).to(x.device)
    xy = xx = yy = 0.0
    for b in range(n_batches):
        idx = order[b * batch_size : (b + 1) * batch_size]
        xb, yb = x[idx], y[idx]
        if kernel == "linear":
            sx, sy = linear_stats(xb, unbiased), linear_stats(yb, unbiased)
            xy += linear_hsic_stats(sx, sy)
            xx += sx.self_hsic
            yy += sy.self_hsic
        else:
            k, l = gram_rbf(xb, sigma), gram_rbf(yb, sigma)  # noqa: E741
            xy += hsic(k, l, unbiased)
            xx += hsic(k, k, unbiased)
            yy += hsic(l, l, unbiased)
    return cka_ratio(xy / n_batches, xx / n_batches, yy / n_batches)
