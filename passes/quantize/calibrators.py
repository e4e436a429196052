"""Calibrators: the clipping range of an activation from its streamed statistics.

Each calibrator reads a magnitude histogram (:class:`graphopt.observe.Histogram` with
``absolute=True``: bins from 0, exact min and max of the raw values beside it) and returns the
threshold ``t`` beyond which magnitudes are clipped; the quantization range is then the observed
``[min, max]`` cut to ``[-t, t]``.

- ``minmax``: ``t = max |x|`` (nothing clipped).
- ``percentile``: the ``percentile``-th percentile of ``|x|`` (default 99.99).
- ``entropy``: TensorRT's KL-divergence calibration (Migacz, GTC 2017): for each candidate
  threshold, the clipped reference distribution (outliers folded into the last bin) against
  its quantization to ``steps`` bins expanded back; the threshold of least divergence wins.
  The first bin is left out of both distributions: after a ReLU it holds the exact zeros
  (half the values), which every threshold represents exactly, and whose weight otherwise
  drives the threshold far too low.
- ``mse``: the threshold that minimises the expected squared quantization error (rounding
  inside the range, clipping outside) over the histogram, with a uniform quantizer of
  ``steps`` steps over ``[0, t]``.

``steps`` is the number of quantization steps that cover ``[0, t]``: 255 for a non-negative
tensor in asymmetric uint8, 127.5 for a signed one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from graphopt.observe import Histogram

__all__ = ["CALIBRATORS", "calibrate_threshold", "DEFAULT_PERCENTILE"]

DEFAULT_PERCENTILE = 99.99
_ENTROPY_MIN_BINS = 128
_ENTROPY_CANDIDATES = 480  # thresholds tried (every bin of a 608-bin histogram, else strided)
_MSE_CANDIDATES = 128


def _centres(histogram: Histogram) -> np.ndarray:
    edges = histogram.edges
    return (edges[:-1] + edges[1:]) / 2


def _minmax(histogram: Histogram, steps: float, percentile: float) -> float:
    return float(histogram.max)


def _percentile(histogram: Histogram, steps: float, percentile: float) -> float:
    cumulative = np.cumsum(histogram.counts)
    target = cumulative[-1] * percentile / 100.0
    index = int(np.searchsorted(cumulative, target))
    return float(min(histogram.edges[min(index + 1, histogram.bins)], histogram.max))


def _kl(reference: np.ndarray, candidate: np.ndarray) -> float:
    p = reference / reference.sum()
    q = candidate / candidate.sum()
    mask = p > 0
    q = np.where(q > 0, q, 1e-12)
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _entropy(histogram: Histogram, steps: float, percentile: float) -> float:
    counts = histogram.counts.astype(np.float64)
    counts[0] = 0.0  # see the module docstring
    bins = histogram.bins
    quant_bins = max(2, int(steps))
    start = max(quant_bins, min(_ENTROPY_MIN_BINS, bins))
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # tail[i] = counts[i:].sum()
    nonzero = counts > 0
    best, best_index = np.inf, bins
    stride = max(1, (bins - start) // _ENTROPY_CANDIDATES)
    for index in range(start, bins + 1, stride):
        reference = counts[:index].copy()
        reference[-1] += tail[index]
        if reference.sum() == 0:
            continue
        # Quantize the first `index` bins into `quant_bins` groups; each group's mass is spread
        # back uniformly over its non-empty bins.
        bounds = (np.arange(quant_bins) * index) // quant_bins
        sizes = np.diff(np.append(bounds, index))
        group_mass = np.add.reduceat(counts[:index], bounds)
        group_nonzero = np.add.reduceat(nonzero[:index].astype(np.float64), bounds)
        per_bin = np.divide(group_mass, group_nonzero, out=np.zeros(quant_bins),
                            where=group_nonzero > 0)
        candidate = np.repeat(per_bin, sizes) * nonzero[:index]
        divergence = _kl(reference, candidate)
        if divergence < best:
            best, best_index = divergence, index
    return float(min(histogram.edges[best_index], histogram.max))


def _mse(histogram: Histogram, steps: float, percentile: float) -> float:
    centres, counts = _centres(histogram), histogram.counts.astype(np.float64)
    top = float(histogram.max)
    if top <= 0:
        return top
    steps = max(1.0, steps)
    best, best_t = np.inf, top
    for fraction in np.linspace(1.0 / _MSE_CANDIDATES, 1.0, _MSE_CANDIDATES):
        threshold = top * fraction
        scale = threshold / steps
        quantized = np.clip(np.round(centres / scale), 0, steps) * scale
        error = float(np.dot(counts, (quantized - centres) ** 2))
        if error < best:
            best, best_t = error, threshold
    return best_t


CalibratorFn = Callable[[Histogram, float, float], float]
CALIBRATORS: dict[str, CalibratorFn] = {
    "minmax": _minmax,
    "percentile": _percentile,
    "entropy": _entropy,
    "mse": _mse,
}


def calibrate_threshold(method: str, histogram: Histogram, *, steps: float = 127.5,
                        percentile: float = DEFAULT_PERCENTILE) -> float:
    """The clipping threshold of magnitudes by ``method`` (see the module docstring)."""
    if histogram.max is None:
        raise ValueError("no data observed")
    return CALIBRATORS[method](histogram, steps, percentile)
