"""The factorizations, in numpy float64: one layer's weight -> the weights of its factors.

Every function takes the weight of one convolution group (``[n, c, *kernel]``, ``n`` outputs and
``c`` inputs of that group) or a matrix, and returns the factor weights in the layouts ONNX
Conv / MatMul read, so that composing the factors reproduces the weight exactly at full rank.

- **Spatial SVD** (Jaderberg et al. 2014, scheme 2): ``W[o, c, i, j]`` read as the matrix
  ``M[(c, i), (o, j)]`` of shape ``c*kh x n*kw``; ``M ~= U_r S_r V_r^T`` gives a ``kh x 1`` conv
  (``c -> r``, weights ``U_r sqrt(S_r)``) followed by a ``1 x kw`` conv (``r -> n``, weights
  ``sqrt(S_r) V_r^T``).
- **Channel SVD** (Zhang et al. 2015): ``W`` read as ``n x c*kh*kw``; the first factor is a conv
  with the original kernel and ``r`` outputs, the second a ``1x1`` conv ``r -> n``.
- **Tucker-2** (Kim et al. 2015): ``W ~= G x_0 U_out x_1 U_in`` with orthonormal ``U_in``
  (``c x r_in``) and ``U_out`` (``n x r_out``) from the leading left singular vectors of the mode
  unfoldings (HOSVD), optionally refined by HOOI (alternating: each factor from the unfolding of
  ``W`` projected on the other), core ``G = W x_0 U_out^T x_1 U_in^T``. Factors: a ``1x1`` conv
  ``c -> r_in`` (``U_in^T``), the core conv ``r_in -> r_out`` with the original kernel, and a
  ``1x1`` conv ``r_out -> n`` (``U_out``).
- **Matrix SVD**: ``Y = X W`` with ``W`` of shape ``k x n``; ``W ~= A B`` with ``A = U_r sqrt(S_r)``
  (``k x r``) and ``B = sqrt(S_r) V_r^T`` (``r x n``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SVD",
    "svd",
    "spatial_matrix",
    "spatial_factors",
    "channel_matrix",
    "channel_factors",
    "singular_values",
    "mode_singular_values",
    "tucker2",
    "tucker2_factors",
    "matrix_factors",
    "relative_error",
]


def singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values of ``matrix`` in descending order (float64, via the smaller Gram
    matrix's eigenvalues)."""
    m = np.asarray(matrix, np.float64)
    wide = m.T if m.shape[0] > m.shape[1] else m
    values = np.linalg.eigvalsh(wide @ wide.T)[::-1]
    return np.sqrt(np.clip(values, 0, None))


SVD = tuple[np.ndarray, np.ndarray, np.ndarray]


def svd(matrix: np.ndarray) -> SVD:
    """``(U, s, V^T)`` of the thin SVD of ``matrix`` in float64, from the eigenvectors of the
    smaller Gram matrix (several times faster than a dense SVD on layer weights). ``U`` (of a
    wide matrix; ``V`` of a tall one) is orthonormal, so ``U_r U_r^T M`` is exactly the best
    rank-``r`` projection; singular values below ``1e-12`` of the largest are floored there
    when dividing, which scales their (negligible) components down rather than up."""
    m = np.asarray(matrix, np.float64)
    tall = m.shape[0] > m.shape[1]
    wide = m.T if tall else m
    # float64 throughout: float32 eigh is no faster here (13.3 vs 14.0 s on a 4096 Gram,
    # Xeon, 2 cores) and its vectors then need a QR in float64 (8 s more).
    values, vectors = np.linalg.eigh(wide @ wide.T)
    order = np.argsort(values)[::-1]
    s = np.sqrt(np.clip(values[order], 0, None))
    u = vectors[:, order]
    floor = max(float(s[0]) * 1e-12, np.finfo(np.float64).tiny) if s.size else 1.0
    vt = (u.T @ wide) / np.maximum(s, floor)[:, None]
    return (vt.T, s, u.T) if tall else (u, s, vt)


def _split(matrix: np.ndarray, rank: int, decomposition: SVD | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(U_r sqrt(S_r), sqrt(S_r) V_r^T)`` of a truncated SVD (balanced factors)."""
    u, s, vt = decomposition if decomposition is not None else svd(matrix)
    root = np.sqrt(s[:rank])
    return u[:, :rank] * root, root[:, None] * vt[:rank]


def spatial_matrix(weight: np.ndarray) -> np.ndarray:
    """``W[o, c, i, j]`` as ``M[(c, i), (o, j)]`` (``c*kh x n*kw``)."""
    n, c, kh, kw = weight.shape
    return np.asarray(weight, np.float64).transpose(1, 2, 0, 3).reshape(c * kh, n * kw)


def spatial_factors(weight: np.ndarray, rank: int, decomposition: SVD | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The ``kh x 1`` weight ``[r, c, kh, 1]`` and the ``1 x kw`` weight ``[n, r, 1, kw]``
    (``decomposition``: the SVD of :func:`spatial_matrix`, when already computed)."""
    n, c, kh, kw = weight.shape
    left, right = _split(spatial_matrix(weight), rank, decomposition)
    vertical = left.reshape(c, kh, rank).transpose(2, 0, 1)[..., None]
    horizontal = right.reshape(rank, n, kw).transpose(1, 0, 2)[:, :, None, :]
    return vertical, horizontal


def channel_matrix(weight: np.ndarray) -> np.ndarray:
    """``W`` as ``n x c*prod(kernel)``."""
    return np.asarray(weight, np.float64).reshape(weight.shape[0], -1)


def channel_factors(weight: np.ndarray, rank: int, decomposition: SVD | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The first weight ``[r, c, *kernel]`` and the ``1x1`` weight ``[n, r, 1, ...]``
    (``decomposition``: the SVD of :func:`channel_matrix`, when already computed)."""
    n, *rest = weight.shape
    left, right = _split(channel_matrix(weight), rank, decomposition)
    ones = (1,) * (weight.ndim - 2)
    return right.reshape(rank, *rest), left.reshape(n, rank, *ones)


def _unfold(tensor: np.ndarray, mode: int) -> np.ndarray:
    return np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)


def _leading_vectors(matrix: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank`` leading left singular vectors of ``matrix`` (via the smaller Gram matrix)."""
    gram = matrix @ matrix.T
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:rank]
    return vectors[:, order]


def mode_singular_values(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values of the output-mode and input-mode unfoldings (Tucker-2 spectra)."""
    weight = np.asarray(weight, np.float64)
    return singular_values(_unfold(weight, 0)), singular_values(_unfold(weight, 1))


def _project(tensor: np.ndarray, factor: np.ndarray, mode: int) -> np.ndarray:
    """``tensor x_mode factor^T`` (the mode shrinks to ``factor.shape[1]``)."""
    moved = np.moveaxis(tensor, mode, 0)
    projected = np.tensordot(factor.T, moved, axes=(1, 0))
    return np.moveaxis(projected, 0, mode)


def tucker2(weight: np.ndarray, ranks: tuple[int, int], *,
            hooi_iterations: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(core [r_out, r_in, *kernel], U_out [n, r_out], U_in [c, r_in])`` of the Tucker-2
    decomposition over the output and input modes (HOSVD, then ``hooi_iterations`` of HOOI)."""
    weight = np.asarray(weight, np.float64)
    r_out, r_in = ranks
    u_out = _leading_vectors(_unfold(weight, 0), r_out)
    u_in = _leading_vectors(_unfold(weight, 1), r_in)
    for _ in range(hooi_iterations):
        u_in = _leading_vectors(_unfold(_project(weight, u_out, 0), 1), r_in)
        u_out = _leading_vectors(_unfold(_project(weight, u_in, 1), 0), r_out)
    core = _project(_project(weight, u_out, 0), u_in, 1)
    return core, u_out, u_in


def tucker2_factors(weight: np.ndarray, ranks: tuple[int, int], *, hooi_iterations: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``1x1`` weight ``[r_in, c, 1, ...]``, the core ``[r_out, r_in, *kernel]`` and the
    ``1x1`` weight ``[n, r_out, 1, ...]``."""
    core, u_out, u_in = tucker2(weight, ranks, hooi_iterations=hooi_iterations)
    ones = (1,) * (weight.ndim - 2)
    return u_in.T.reshape(*u_in.T.shape, *ones), core, u_out.reshape(*u_out.shape, *ones)


def matrix_factors(weight: np.ndarray, rank: int, decomposition: SVD | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(A [k, r], B [r, n])`` with ``A B ~= W`` for ``Y = X W``."""
    return _split(weight, rank, decomposition)


def relative_error(weight: np.ndarray, approximation: np.ndarray) -> float:
    """``||W - W~||_F / ||W||_F`` (0 for a zero weight reproduced exactly)."""
    weight = np.asarray(weight, np.float64)
    norm = float(np.linalg.norm(weight))
    difference = float(np.linalg.norm(weight - approximation))
    return difference / norm if norm > 0 else difference
