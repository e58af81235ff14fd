"""Input checks of matrices: symmetric up to round-off, positive definite."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import finite, numeric

__all__ = ["SYMMETRY_RTOL", "positive_definite", "symmetric"]

# relative tolerance for round-off in a matrix meant to be symmetric (float32 products)
SYMMETRY_RTOL = 1e-5


def symmetric(mat: Any, what: str, rtol: float = SYMMETRY_RTOL) -> None:
    """Refuse a concrete square matrix that is not symmetric up to round-off
    (``|A − Aᵀ| ≤ rtol · max |A|``).

    Example:
        >>> from composable_ebm._validate import symmetric
        >>> symmetric([[1.0, 0.5], [0.0, 1.0]], "cov")
        Traceback (most recent call last):
        ...
        ValueError: cov must be symmetric, but its entries [0, 1] = 0.5 and [1, 0] = 0.0 differ
    """
    arr = numeric(mat, what)
    if arr is None or arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.size == 0:
        return
    arr = arr.astype(np.float64)
    gap = np.abs(arr - arr.T)
    if gap.max() > rtol * np.abs(arr).max():
        i, j = (int(k) for k in np.unravel_index(np.argmax(gap), gap.shape))
        raise ValueError(
            f"{what} must be symmetric, but its entries [{i}, {j}] = {float(arr[i, j])!r} and "
            f"[{j}, {i}] = {float(arr[j, i])!r} differ"
        )


def positive_definite(mat: Any, what: str) -> np.ndarray | None:
    """The lower Cholesky factor (float64) of a concrete symmetric matrix, or a
    ``ValueError`` saying it is not positive definite; ``None`` for a traced matrix.

    Example:
        >>> from composable_ebm._validate import positive_definite
        >>> positive_definite([[1.0, 2.0], [2.0, 1.0]], "cov")
        Traceback (most recent call last):
        ...
        ValueError: cov is not positive definite (smallest eigenvalue -1)
    """
    arr = numeric(mat, what)
    if arr is None:
        return None
    finite(arr, what)
    arr = arr.astype(np.float64)
    try:
        chol = np.linalg.cholesky(0.5 * (arr + arr.T))
    except np.linalg.LinAlgError:
        chol = None
    if chol is None or not np.all(np.isfinite(chol)) or np.any(np.diag(chol) <= 0):
        low = float(np.linalg.eigvalsh(0.5 * (arr + arr.T)).min()) if arr.size else 0.0
        raise ValueError(f"{what} is not positive definite (smallest eigenvalue {low:.3g})")
    return chol
