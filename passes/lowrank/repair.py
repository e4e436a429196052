"""Data-aware repair: refit each split layer's last factor by least squares (Zhang et al. 2015,
"Accelerating very deep convolutional networks for classification and detection", the
asymmetric reconstruction of section 3.3, here for the last factor's weights and bias).

The factors of a split layer approximate its weight; what matters is its output. With ``Z``
the input of the last factor in the *split* model (so the error of every earlier split is in
it) and ``Y`` the layer's output in the *original* model, on the same calibration batches, the
last factor is refit to ``min ||Y - Z W^T - b||^2``. For a Conv a row of ``Z`` is one output
position's receptive field in the last factor (its im2col patch, ``1 x 1`` or ``1 x kw``), for
a grouped conv the fit is solved per group, and a MatMul has no bias to fit.

The sums come from one streamed pass over the calibration data (:class:`graphopt.observe.Gram`
for ``Z^T Z`` and the column sums, plus ``Z^T Y`` and ``sum Y``), so memory does not grow with
the number of samples; every split layer is refit from the same pass. A small ridge term
(``RIDGE`` times the mean diagonal of ``Z^T Z``) keeps rank-deficient fits stable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from graphopt.observe import ActivationTap, Gram

__all__ = ["RIDGE", "RepairTarget", "conv_rows", "refit_last_factors"]

RIDGE = 1e-6


@dataclasses.dataclass(frozen=True)
class RepairTarget:
    """One split layer to refit: the last factor's input in the split model (``z``), the
    layer's output in the original model (``y``), and the last factor's geometry (``None``
    for a MatMul/Gemm factor)."""

    z: str
    y: str
    weight_shape: tuple[int, ...]
    groups: int = 1
    conv: dict | None = None
    fit_bias: bool = True


def conv_rows(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int], pads: Sequence[int]) -> np.ndarray:
    """im2col: ``[batch * out positions, channels * prod(kernel)]`` rows of a Conv's input,
    columns ordered as the weight's ``(channel, *kernel)``."""
    spatial = x.ndim - 2
    if all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(pads):
        moved = np.moveaxis(x, 1, -1)
        return moved.reshape(-1, x.shape[1])
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)])
    extents = [dilations[i] * (kernel[i] - 1) + 1 for i in range(spatial)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, extents,
                                                       axis=tuple(range(2, x.ndim)))
    index = ((slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
             + tuple(slice(None, None, d) for d in dilations))
    windows = windows[index]
    # [batch, c, *out, *kernel] -> [batch, *out, c, *kernel]
    order = (0, *range(2, 2 + spatial), 1, *range(2 + spatial, 2 + 2 * spatial))
    moved = windows.transpose(order)
    return moved.reshape(-1, x.shape[1] * int(np.prod(kernel)))


def _output_rows(y: np.ndarray, conv: bool) -> np.ndarray:
    if conv:
        return np.moveaxis(y, 1, -1).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


class _Sums:
    """``Z^T Z`` and ``sum Z`` (a :class:`Gram`), ``Z^T Y``, ``sum Y`` over streamed rows."""

    def __init__(self) -> None:
        self.gram = Gram(to_rows=lambda rows: rows)
        self.cross: np.ndarray | None = None
        self.y_sums: np.ndarray | None = None

    def update(self, z_rows: np.ndarray, y_rows: np.ndarray) -> None:
        z_rows = z_rows.astype(np.float64)
        y_rows = y_rows.astype(np.float64)
        self.gram.update(z_rows)
        cross, sums = z_rows.T @ y_rows, y_rows.sum(axis=0)
        if self.cross is None or self.y_sums is None:
            self.cross, self.y_sums = cross, sums
        else:
            self.cross += cross
            self.y_sums += sums


def _solve(sums: _Sums, columns: slice, outputs: slice, fit_bias: bool
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Weights ``[outputs, columns]`` and bias of the least-squares fit on one block."""
    gram = sums.gram
    zz = gram.xtx[columns, columns]
    zy = sums.cross[columns, outputs]
    if fit_bias:
        z_sum = gram.column_sums[columns]
        size = zz.shape[0]
        system = np.zeros((size + 1, size + 1))
        system[:size, :size], system[:size, size], system[size, :size] = zz, z_sum, z_sum
        system[size, size] = gram.rows
        rhs = np.vstack([zy, sums.y_sums[outputs][None, :]])
    else:
        system, rhs, size = zz.copy(), zy, zz.shape[0]
    ridge = RIDGE * max(float(np.mean(np.diag(zz))), 1e-12)
    system[np.arange(size), np.arange(size)] += ridge
    solution = np.linalg.solve(system, rhs)
    weight = solution[:size].T
    return weight, (solution[size] if fit_bias else None)


def refit_last_factors(original: ir.Model, split: ir.Model, targets: Sequence[RepairTarget],
                       source: Iterable[Mapping[str, np.ndarray]]
                       ) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], int]:
    """The refit ``(weight, bias)`` of every target's last factor (weight in the factor's
    ``weight_shape``), and the number of calibration batches used."""
    sums = [_Sums() for _ in targets]
    batches = 0
    with ActivationTap(split, [t.z for t in targets]) as z_tap, \
            ActivationTap(original, [t.y for t in targets]) as y_tap:
        for feed in source:
            z_values = z_tap.run(feed)
            y_values = y_tap.run(feed)
            for target, accumulator in zip(targets, sums, strict=True):
                z = z_values[target.z]
                rows = (conv_rows(z, **target.conv) if target.conv is not None
                        else z.reshape(-1, z.shape[-1]))
                accumulator.update(rows, _output_rows(y_values[target.y], target.conv is not None))
            del z_values, y_values
            batches += 1
    results = []
    for target, accumulator in zip(targets, sums, strict=True):
        if target.conv is None:
            weight, bias = _solve(accumulator, slice(None), slice(None), target.fit_bias)
            results.append((weight.T.reshape(target.weight_shape), bias))  # [r, n] for X @ B
            continue
        outputs = target.weight_shape[0]
        per_group_out = outputs // target.groups
        per_group_cols = int(np.prod(target.weight_shape[1:]))
        weights, biases = [], []
        for g in range(target.groups):
            weight, bias = _solve(accumulator,
                                  slice(g * per_group_cols, (g + 1) * per_group_cols),
                                  slice(g * per_group_out, (g + 1) * per_group_out),
                                  target.fit_bias)
            weights.append(weight)
            biases.append(bias)
        results.append((np.concatenate(weights).reshape(target.weight_shape),
                        np.concatenate(biases)))
    return results, batches
