"""Data-aware repair: refit each split layer's last factor by least squares (Zhang et al. 2015,
"Accelerating very deep convolutional networks for classification and detection", the
asymmetric reconstruction of section 3.3, here for the last factor's weights and bias).

The factors of a split layer approximate its weight; what matters is its output. With ``Z``
the input of the last factor in the *split* model (so the error of every earlier split is in
it) and ``Y`` the layer's output in the *original* model, on the same calibration batches, the
last factor is refit to ``min ||Y - Z W^T - b||^2``. For a Conv a row of ``Z`` is one output
position's receptive field in the last factor (its im2col patch, ``1 x 1`` or ``1 x kw``), for
a grouped conv the fit is solved per group, and a MatMul has no bias to fit.

Layers are refit one after another in graph order, each on inputs that carry the earlier
layers' refits (one streamed pass over the calibration data per layer). The sums
(:class:`graphopt.observe.Gram` for ``Z^T Z`` and the column sums, plus ``Z^T Y`` and
``sum Y``) do not grow with the number of samples. A small ridge term
(``RIDGE`` times the mean diagonal of ``Z^T Z``) keeps rank-deficient fits stable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from graphopt.observe import ActivationTap, Gram
from graphopt.passes.rewrite_utils import set_constant_input

__all__ = ["RIDGE", "RepairTarget", "conv_rows", "refit_last_factors"]

RIDGE = 1e-6


@dataclasses.dataclass(frozen=True)
class RepairTarget:
    """One split layer to refit: the last factor's input in the split model (``z``), the
    layer's output in the original model (``y``), the last factor itself (``node``, in the
    split model), its weight's shape and dtype, and its geometry (``conv``, ``None`` for a
    MatMul/Gemm factor)."""

    z: str
    y: str
    node: ir.Node
    weight_shape: tuple[int, ...]
    dtype: np.dtype
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


def _accumulate(z_tap: ActivationTap, y_tap: ActivationTap, target: RepairTarget,
                source: Iterable[Mapping[str, np.ndarray]]) -> tuple[_Sums, int]:
    sums, batches = _Sums(), 0
    for feed in source:
        z = z_tap.run(feed, [target.z])[target.z]
        y = y_tap.run(feed, [target.y])[target.y]
        rows = (conv_rows(z, **target.conv) if target.conv is not None
                else z.reshape(-1, z.shape[-1]))
        sums.update(rows, _output_rows(y, target.conv is not None))
        del z, y
        batches += 1
    return sums, batches


def _fit(sums: _Sums, target: RepairTarget) -> tuple[np.ndarray, np.ndarray | None]:
    if target.conv is None:
        weight, bias = _solve(sums, slice(None), slice(None), target.fit_bias)
        return weight.T.reshape(target.weight_shape), bias  # [r, n] for Z @ B
    per_group_out = target.weight_shape[0] // target.groups
    per_group_cols = int(np.prod(target.weight_shape[1:]))
    weights, biases = [], []
    for g in range(target.groups):
        weight, bias = _solve(sums, slice(g * per_group_cols, (g + 1) * per_group_cols),
                              slice(g * per_group_out, (g + 1) * per_group_out), target.fit_bias)
        weights.append(weight)
        biases.append(bias)
    return np.concatenate(weights).reshape(target.weight_shape), np.concatenate(biases)


def refit_last_factors(original: ir.Model, split: ir.Model, targets: Sequence[RepairTarget],
                       source: Iterable[Mapping[str, np.ndarray]]
                       ) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], int]:
    """The refit ``(weight, bias)`` of every target's last factor (weight in the factor's
    ``weight_shape``), and the number of calibration batches streamed.

    Layers are refit in the order given (graph order), each on the outputs of the earlier
    ones as already refit: every fit is written into ``split`` (the target's ``node``) before
    the next layer's ``Z`` is observed, which costs one pass over the data per layer. Fitting
    all layers on one pass of the unrepaired model is cheaper but wrong where splits are
    aggressive: a refit layer moves the inputs the later fits were made on.
    """
    results = []
    batches = 0
    with ActivationTap(original, [t.y for t in targets]) as y_tap:
        for target in targets:
            with ActivationTap(split, [target.z]) as z_tap:
                sums, seen = _accumulate(z_tap, y_tap, target, source)
            batches += seen
            weight, bias = _fit(sums, target)
            results.append((weight, bias))
            hint = f"{target.node.name or 'lowrank'}_repaired"
            set_constant_input(target.node, 1, weight.astype(target.dtype), f"{hint}_w")
            if bias is not None:
                set_constant_input(target.node, 2, bias.astype(target.dtype), f"{hint}_b")
    return results, batches
