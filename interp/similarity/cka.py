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
:func:`linear_cka_all` compares ``D`` matrices with the same rows all at once: centred once
into one stack ``Z = [X_1 ... X_D]``, one symmetric product ``Z'Z`` holds every pair's
cross-covariance block (formula and cost in :func:`linear_hsic_all`); cross-domain CKA uses
it per site.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
    """Pairwise squared Euclidean distances ``(n, n)`` (zero diagonal, clamped at 0).

    ``|a|^2 + |b|^2 - 2 a.b`` leaves a rounding residue of a few ulps of ``|a|^2 + |b|^2`` for
    identical rows (how many depends on the BLAS); values below that resolution are set to 0, so
    a duplicated row (a bootstrap resample) is at distance exactly 0 wherever it sits in ``x``
    and the median rule, which skips zeros, does not depend on the BLAS.
    """
    x = as_matrix(x)
    sq = (x * x).sum(dim=1)
    scale = sq[:, None] + sq[None, :]
    d2 = (scale - 2.0 * (x @ x.T)).clamp_min_(0.0)
    d2.masked_fill_(d2 <= 16.0 * torch.finfo(d2.dtype).eps * scale, 0.0)
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


# --------------------------------------------------------------------------- all pairs at once
_BLAS_CONTROLLER: Any = None


def _blas_threads(threads: int) -> Any:
    """Context limiting NumPy's BLAS to ``threads`` (threadpoolctl; no-op if unavailable)."""
    global _BLAS_CONTROLLER
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = threadpoolctl.ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=threads, user_api="blas")


def _take(
    workspace: dict | None, name: str, shape: tuple[int, int], like: Tensor,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """A ``shape`` tensor of ``dtype``, a view of a buffer kept in ``workspace`` and reused.

    Large fresh allocations cost page faults (measured on the 2-CPU VM: ~70 ms per 120 MB,
    as much as the arithmetic of a small site), so per-site stacks and products reuse one
    buffer each; callers that can go widest first allocate each buffer once.
    """
    numel = shape[0] * shape[1]
    if workspace is None:
        return torch.empty(shape, dtype=dtype, device=like.device)
    key = (name, dtype)
    buffer = workspace.get(key)
    if buffer is None or buffer.numel() < numel or buffer.device != like.device:
        buffer = workspace[key] = torch.empty(numel, dtype=dtype, device=like.device)
    return buffer[:numel].view(shape)


def self_product(
    z: Tensor, blas: Literal["auto", "torch"] = "auto", workspace: dict | None = None
) -> Tensor:
    """``Z'Z`` ``(W, W)`` of a C-contiguous ``(n, W)`` float64 matrix.

    On the CPU ``blas="auto"`` computes it with NumPy, whose ``a.T @ a`` calls the symmetric
    rank-k update (``syrk``: ``n W^2`` flops, half of a general product) of its OpenBLAS,
    limited to ``torch.get_num_threads()`` threads; torch's ``mm`` (MKL) has no symmetric path
    and runs the full ``2 n W^2``. ``blas="torch"`` (and any non-CPU tensor) uses ``z.T @ z``.
    ``workspace``: a dict whose buffer holds the result (reused by the next call).
    """
    width = z.shape[1]
    out = _take(workspace, "product", (width, width), z)
    if blas == "torch" or z.device.type != "cpu" or z.dtype != torch.float64 or not z.is_contiguous():
        return torch.mm(z.T, z, out=out)
    zn = z.numpy()
    with _blas_threads(torch.get_num_threads()):
        np.matmul(zn.T, zn, out=out.numpy())
    return out


def self_product_flops(n: int, width: int, blas: Literal["auto", "torch"] = "auto") -> float:
    """Floating-point operations of :func:`self_product` on ``(n, width)`` (multiply + add)."""
    return float(n) * width * width * (1 if blas == "auto" else 2)


def _gram_route(n: int, widths: Sequence[int], blas: str) -> bool:
    """Whether :func:`linear_hsic_all` takes the ``n x n`` route (fewer flops, small ``n``)."""
    total, depth = sum(widths), len(widths)
    return n <= GRAM_ROWS_LIMIT and 2.0 * n * n * total + depth * depth * n * n < self_product_flops(n, total, blas)


def linear_hsic_all_flops(n: int, widths: Sequence[int], blas: Literal["auto", "torch"] = "auto") -> float:
    """Matrix-product flops of :func:`linear_hsic_all` on ``n`` rows and blocks ``widths``."""
    total, depth = sum(widths), len(widths)
    if _gram_route(n, widths, blas):
        products = 2.0 * n * n * total + 2.0 * depth * depth * n * n
    else:
        products = self_product_flops(n, total, blas)
    return products + 2.0 * n * depth * depth  # + P = S'S


def _block_sums(m: Tensor, offsets: np.ndarray) -> Tensor:
    """Sums of the ``(D, D)`` blocks of ``m`` ``(W, W)`` split at ``offsets`` ``(D,)`` (starts)."""
    out = np.add.reduceat(np.add.reduceat(m.cpu().numpy(), offsets, axis=0), offsets, axis=1)
    return torch.from_numpy(out).to(m.device)


def stacked_centred(
    xs: Sequence[Tensor | np.ndarray],
    names: Sequence[str] | None = None,
    workspace: dict | None = None,
    rows: Sequence[Tensor | np.ndarray | None] | None = None,
) -> tuple[Tensor, list[int]]:
    """``[X_1 - mean ... X_D - mean]``: one C-contiguous float64 ``(n, sum w_d)`` matrix.

    Each ``X_d`` ``(N_d, w_d)`` (any float dtype; converted while copied into its columns),
    or its rows ``rows[d]`` ``(n,)`` when given, is centred once, in place. Returns the stack
    and the widths; raises on a bad shape, rows that differ, or NaN/inf values (named by
    ``names[d]``). ``workspace``: a dict whose buffers hold the stack and the row selection
    (overwritten by the next call with the same dict).
    """
    names = list(names) if names is not None else [f"x{d}" for d in range(len(xs))]
    tensors = [torch.as_tensor(x) for x in xs]
    for name, t in zip(names, tensors, strict=True):
        if t.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (samples, features) matrix, got shape {tuple(t.shape)}")
    if not tensors:
        raise ValueError("need at least one matrix")
    picks = [None if r is None else torch.as_tensor(r, dtype=torch.long, device=t.device)
             for r, t in zip(rows if rows is not None else [None] * len(tensors), tensors, strict=True)]
    counts = {int(t.shape[0]) if r is None else int(r.shape[0]) for r, t in zip(picks, tensors, strict=True)}
    if len(counts) != 1:
        raise ValueError(f"all matrices must have the same number of rows (aligned samples), got {sorted(counts)}")
    n = counts.pop()
    widths = [int(t.shape[1]) for t in tensors]
    z = _take(workspace, "stack", (n, sum(widths)), tensors[0])
    start = 0
    for t, r, w in zip(tensors, picks, widths, strict=True):
        if r is not None:  # gather into a reused buffer of the input dtype, then convert
            t = torch.index_select(t, 0, r, out=_take(workspace, "rows", (n, w), t, t.dtype))
        z[:, start : start + w].copy_(t)
        start += w
    column_sums = z.sum(dim=0)
    # A column sum is finite iff its column is (barring float64 overflow): the only check.
    if not math.isfinite(float(column_sums.sum())):
        start = 0
        for name, w in zip(names, widths, strict=True):
            if not bool(torch.isfinite(column_sums[start : start + w]).all()):
                raise ValueError(f"{name} contains NaN or infinite values")
            start += w
    z -= column_sums / z.shape[0]
    return z, widths


def linear_hsic_all(
    z: Tensor,
    widths: Sequence[int],
    unbiased: bool = True,
    blas: Literal["auto", "torch"] = "auto",
    workspace: dict | None = None,
) -> Tensor:
    """HSIC of every pair of the blocks of a centred stack ``z = [X_1 ... X_D]`` ``(n, W)``.

    Linear kernels ``K_d = X_d X_d'`` are never built. With the blocks centred (HSIC_1 is
    invariant to shifting a block's features, and the biased HSIC centres anyway):

    * one product ``G = Z'Z`` ``(W, W)`` holds every cross-covariance ``G_ab = X_a'X_b``, so
      ``F_ab = |X_a'X_b|_F^2 = tr(K_a K_b)`` is the sum of squares of block ``(a, b)`` of
      ``G`` (diagonal blocks give the self-HSICs);
    * centred columns make every row sum of ``K_d`` zero: ``K_d 1 = X_d (X_d'1) = 0``; the
      diagonal is the row norms ``s_d = (|x_d1|^2 ... |x_dn|^2)``. So the diagonal-removed
      ``K~_d = K_d - diag(s_d)`` has ``K~_d 1 = -s_d``, ``1'K~_d 1 = -sum(s_d)`` and
      ``tr(K~_a K~_b) = F_ab - 2 s_a.s_b + s_a.s_b = F_ab - s_a.s_b``. Song et al.'s

          HSIC_1 = [tr(K~L~) + (1'K~1)(1'L~1)/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

      becomes, with ``P_ab = s_a.s_b`` (``P = S'S``, ``S = [s_1 ... s_D]`` ``(n, D)``) and
      ``T_d = sum(s_d)``::

          HSIC_1[a, b] = [F_ab - P_ab + T_a T_b / ((n-1)(n-2)) - 2 P_ab / (n-2)] / (n(n-3))

      and the biased ``tr(K_a H K_b H) / (n-1)^2 = F_ab / (n-1)^2``.

    Cost: ``n W^2`` flops for ``G`` (:func:`self_product`'s symmetric product), against
    ``2 n W^2`` for ``G`` by a general product and ``sum_pairs 2 n w_a w_b`` pair by pair; when
    ``n`` is small against ``W`` (class means) the ``n x n`` route ``F = [vec K_d]' [vec K_d]``
    (``2 n^2 W + D^2 n^2``) is taken instead. ``workspace``: see :func:`self_product`.
    Returns the ``(D, D)`` float64 HSIC matrix.
    """
    n, total = z.shape
    if sum(widths) != total:
        raise ValueError(f"widths {list(widths)} do not add up to the stack's {total} columns")
    _check_rows(n, unbiased)
    offsets = np.cumsum([0, *widths[:-1]])
    depth = len(widths)
    if _gram_route(n, widths, blas):
        grams = torch.stack([z[:, o : o + w] @ z[:, o : o + w].T for o, w in zip(offsets, widths, strict=True)])
        flat = grams.reshape(depth, n * n)
        f = flat @ flat.T
    else:
        g = self_product(z, blas, workspace).square_()
        if len(set(widths)) == 1:  # one reshape instead of a segmented sum
            w = widths[0]
            f = g.view(depth, w, depth, w).sum(dim=(1, 3))
        else:
            f = _block_sums(g, offsets)
        del g
    if not unbiased:
        return f / (n - 1) ** 2
    # Row norms without an (n, W) temporary (a fresh one costs more than the arithmetic).
    if len(set(widths)) == 1:
        s = torch.linalg.vector_norm(z.view(n, depth, widths[0]), dim=2).square_()
    else:
        s = torch.stack([torch.linalg.vector_norm(z[:, o : o + w], dim=1) for o, w in zip(offsets, widths, strict=True)], dim=1).square_()
    p = s.T @ s
    t = s.sum(dim=0)
    return (f - p + torch.outer(t, t) / ((n - 1) * (n - 2)) - 2.0 * p / (n - 2)) / (n * (n - 3))


def cka_from_hsic_matrix(h: Tensor) -> Tensor:
    """``CKA_ab = H_ab / sqrt(H_aa H_bb)`` of a ``(D, D)`` HSIC matrix (NaN where not positive)."""
    d = torch.diagonal(h)
    denominator = torch.outer(d, d)
    out = h / denominator.clamp_min(torch.finfo(h.dtype).tiny).sqrt()
    return torch.where(denominator > 0, out, torch.full_like(out, float("nan")))


def linear_cka_all(
    xs: Sequence[Tensor | np.ndarray],
    unbiased: bool = True,
    names: Sequence[str] | None = None,
    blas: Literal["auto", "torch"] = "auto",
) -> Tensor:
    """Linear CKA between every pair of ``D`` matrices ``X_d`` ``(n, w_d)`` (same rows): ``(D, D)``.

    Equal to :func:`linear_cka_features` on each pair (to rounding), in one product: each
    matrix is centred once into a stack and all cross-covariances come from ``[X_1..X_D]'
    [X_1..X_D]`` (see :func:`linear_hsic_all` for the formula).
    """
    z, widths = stacked_centred(xs, names)
    return cka_from_hsic_matrix(linear_hsic_all(z, widths, unbiased, blas))


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
